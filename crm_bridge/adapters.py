"""CRM adapters: turn an outbox event into the HTTP request one kind of CRM expects.

Pure (no I/O, no clock): the outbox worker sends what `render` returns and classifies the answer.
Adapters register by kind in a read-only mapping handed to the store and the worker.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Protocol

from .config import CrmEndpoint

logger = logging.getLogger(__name__)

CALL_EVENTS = frozenset(
    {
        "call.started",
        "call.ringing",
        "call.answered",
        "call.screen-pop",
        "call.ended",
        "call.disposition",
        "call.pickup",
    }
)
TASK_EVENTS = frozenset({"task.created", "task.updated", "task.done", "task.cancelled"})
SIGNATURE_HEADER = "X-Callcenter-Signature"


@dataclass(frozen=True)
class OutboxEvent:
    """One outbox row as the adapters see it."""

    id: int
    """Outbox row id (increases with time within one database)."""
    aggregate: str
    """'call/<id>' or 'task/<id>': events of one aggregate are delivered in id order."""
    event_type: str
    """call.started, call.ended, task.created, ..."""
    payload: Mapping[str, Any]
    """The call or task record at the time of the event (Call.to_json / Task.to_json)."""
    idempotency_key: str
    """Same on every attempt; receivers deduplicate on it."""
    occurred_at: datetime
    """When the thing happened (call end, task creation...)."""


@dataclass(frozen=True)
class HttpRequest:
    """What to send for one delivery attempt."""

    method: str
    """POST, PATCH..."""
    url: str
    """Absolute URL."""
    headers: Mapping[str, str]
    """Request headers (Content-Type included)."""
    body: bytes
    """Raw body, exactly as signed."""


class CrmAdapter(Protocol):
    """A kind of CRM."""

    events: frozenset[str]
    """Event types this CRM can take (the default subscription of its endpoints)."""

    def render(
        self, endpoint: CrmEndpoint, event: OutboxEvent, remote_ref: str | None
    ) -> HttpRequest | None:
        """The request delivering `event`, or None when this CRM has nothing to do with it
        (counted as delivered). `remote_ref` is what `remote_ref()` got from the latest
        delivered event of the same aggregate (the CRM's own id for the object)."""
        ...

    def remote_ref(self, event: OutboxEvent, body: bytes) -> str | None:
        """The CRM's id for the object, from a 2xx response body, if it gives one."""
        ...


def sign_body(secret: str, body: bytes) -> str:
    """Value of the signature header: `sha256=` + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str) -> bool:
    """For receivers (and tests): constant-time check of a signature header."""
    return hmac.compare_digest(sign_body(secret, body), header)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class JsonWebhook:
    """Generic webhook: POST {event, idempotency_key, occurred_at, data} signed with HMAC."""

    events = CALL_EVENTS | TASK_EVENTS

    def render(
        self, endpoint: CrmEndpoint, event: OutboxEvent, remote_ref: str | None
    ) -> HttpRequest | None:
        body = _json(
            {
                "event": event.event_type,
                "idempotency_key": event.idempotency_key,
                "occurred_at": event.occurred_at.isoformat(),
                "data": _with_recording_url(endpoint, event),
            }
        )
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": event.idempotency_key,
            "X-Callcenter-Event": event.event_type,
        }
        if endpoint.secret:
            headers[SIGNATURE_HEADER] = sign_body(endpoint.secret, body)
        return HttpRequest("POST", endpoint.url, headers, body)

    def remote_ref(self, event: OutboxEvent, body: bytes) -> str | None:
        return None


def _with_recording_url(endpoint: CrmEndpoint, event: OutboxEvent) -> Mapping[str, Any]:
    data = event.payload
    if event.event_type in CALL_EVENTS and data.get("recording_path") and endpoint.recording_link:
        return {**data, "recording_url": endpoint.recording_link.format(id=data["id"])}
    return data


# amoCRM API v4 call_status codes (CallInterface in amoCRM's PHP client).
AMO_LEFT_MESSAGE = 1
AMO_CALL_LATER = 2
AMO_NOT_IN_PLACE = 3
AMO_CONVERSATION = 4
AMO_WRONG_NUMBER = 5
AMO_NOT_REACHED = 6
AMO_BUSY = 7
AMO_UNDEFINED = 8
AMO_TASK_TYPE_CALL = 1
"""amoCRM's predefined task type "call" (2 is "meeting")."""

_AMO_STATUS = {
    "answered": AMO_CONVERSATION,
    "voicemail": AMO_LEFT_MESSAGE,
    "busy": AMO_BUSY,
    "missed": AMO_NOT_REACHED,
    "no-answer": AMO_NOT_REACHED,
    "abandoned": AMO_NOT_REACHED,
    "cancelled": AMO_NOT_REACHED,
    "unavailable": AMO_NOT_IN_PLACE,
}
# SIP statuses saying the number itself is wrong (404 Not Found, 484 Address Incomplete,
# 604 Does Not Exist Anywhere).
_WRONG_NUMBER = {404, 484, 604}
_AMO_RESULT = {
    "answered": "Conversation",
    "voicemail": "Left a message",
    "busy": "Busy",
    "unavailable": "No agent available",
}


def amo_call_status(outcome: str, sip_status: int | None) -> int:
    """amoCRM call_status for one of our outcomes."""
    if outcome in _AMO_STATUS:
        return _AMO_STATUS[outcome]
    if sip_status in _WRONG_NUMBER:
        return AMO_WRONG_NUMBER
    return AMO_UNDEFINED


class AmoCrmAdapter:
    """amoCRM API v4: finished calls to POST /api/v4/calls, tasks to /api/v4/tasks."""

    events = frozenset({"call.ended"}) | TASK_EVENTS

    def render(
        self, endpoint: CrmEndpoint, event: OutboxEvent, remote_ref: str | None
    ) -> HttpRequest | None:
        data = event.payload
        base = endpoint.url.rstrip("/")
        if event.event_type == "call.ended":
            call = self._call(endpoint, event)
            return (
                None
                if call is None
                else self._request(endpoint, "POST", base + "/api/v4/calls", [call], event)
            )
        if event.event_type in ("task.created", "task.updated"):
            task: dict[str, Any] = {
                "text": data["text"] or f"Call back {data['contact_phone']}",
                "complete_till": int(datetime.fromisoformat(data["due_at"]).timestamp()),
                "task_type_id": AMO_TASK_TYPE_CALL,
            }
            user = endpoint.user_map.get(data.get("assignee") or "")
            if user is not None:
                task["responsible_user_id"] = user
            if remote_ref is not None:
                task["id"] = int(remote_ref)
                return self._request(endpoint, "PATCH", base + "/api/v4/tasks", [task], event)
            # Created before this endpoint knew it (or its creation was dead-lettered): create.
            task["request_id"] = event.idempotency_key
            return self._request(endpoint, "POST", base + "/api/v4/tasks", [task], event)
        if event.event_type in ("task.done", "task.cancelled"):
            if remote_ref is None:
                return None
            result = "Done" if event.event_type == "task.done" else "Cancelled"
            task = {"id": int(remote_ref), "is_completed": True, "result": {"text": result}}
            return self._request(endpoint, "PATCH", base + "/api/v4/tasks", [task], event)
        return None

    def _call(self, endpoint: CrmEndpoint, event: OutboxEvent) -> dict[str, Any] | None:
        data = event.payload
        direction = data["direction"]
        if direction not in ("inbound", "outbound"):
            return None  # amoCRM logs calls with customers only
        phone = data.get("contact_phone") or (
            data["from_number"] if direction == "inbound" else data["to_number"]
        )
        outcome = data["outcome"]
        result = _AMO_RESULT.get(outcome, "Not reached")
        if outcome == "answered" and data.get("agent"):
            result += f" ({data['agent']})"
        call: dict[str, Any] = {
            "direction": direction,
            "uniq": event.idempotency_key,
            "duration": round(data.get("talk_seconds") or 0),
            "source": endpoint.source,
            "phone": phone,
            "call_result": result,
            "call_status": amo_call_status(outcome, data.get("sip_status")),
            "created_at": int(datetime.fromisoformat(data["started_at"]).timestamp()),
        }
        if data.get("recording_path") and endpoint.recording_link:
            call["link"] = endpoint.recording_link.format(id=data["id"])
        user = endpoint.user_map.get(data.get("agent") or "")
        if user is not None:
            call["responsible_user_id"] = user
        return call

    def _request(
        self, endpoint: CrmEndpoint, method: str, url: str, items: list[Any], event: OutboxEvent
    ) -> HttpRequest:
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {endpoint.secret}",
            "Idempotency-Key": event.idempotency_key,
        }
        return HttpRequest(method, url, headers, _json(items))

    def remote_ref(self, event: OutboxEvent, body: bytes) -> str | None:
        if event.event_type not in TASK_EVENTS:
            return None
        try:
            task_id = json.loads(body)["_embedded"]["tasks"][0]["id"]
        except (ValueError, KeyError, IndexError, TypeError):
            logger.warning("amoCRM answer to %s carries no task id", event.idempotency_key)
            return None
        return str(task_id)


DEFAULT_ADAPTERS: Mapping[str, CrmAdapter] = MappingProxyType(
    {"webhook": JsonWebhook(), "amocrm": AmoCrmAdapter()}
)
"""The shipped adapters by CrmEndpoint.kind (read-only; pass your own mapping to add kinds)."""


def subscribed(
    endpoints: tuple[CrmEndpoint, ...], adapters: Mapping[str, CrmAdapter], event_type: str
) -> list[str]:
    """Names of the endpoints that take `event_type`."""
    names = []
    for endpoint in endpoints:
        wanted = endpoint.events if endpoint.events is not None else adapters[endpoint.kind].events
        if event_type in wanted:
            names.append(endpoint.name)
    return names


def check_endpoints(endpoints: tuple[CrmEndpoint, ...], adapters: Mapping[str, CrmAdapter]) -> None:
    """Raise ValueError for unknown kinds, duplicate names or empty URLs (config errors)."""
    names = [e.name for e in endpoints]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate CRM endpoint names in {names}")
    for endpoint in endpoints:
        if endpoint.kind not in adapters:
            raise ValueError(
                f"CRM endpoint {endpoint.name!r}: unknown kind {endpoint.kind!r}"
                f" (one of {', '.join(sorted(adapters))})"
            )
        if not endpoint.url.startswith(("http://", "https://")):
            raise ValueError(f"CRM endpoint {endpoint.name!r}: url must be http(s)")
