"""amoCRM API v4 adapter."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from .adapters import (
    TASK_EVENTS,
    Attempt,
    HttpRequest,
    OutboxEvent,
    Outcome,
    Verdict,
    http_outcome,
    recording_url,
    to_json,
)
from .config import CrmEndpoint

logger = logging.getLogger(__name__)

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
        self, endpoint: CrmEndpoint, event: OutboxEvent, attempt: Attempt
    ) -> HttpRequest | None:
        data = event.payload
        remote_ref = attempt.refs.get("task_id")
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
        link = recording_url(endpoint, data)
        if link is not None:
            call["link"] = link
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
        return HttpRequest(method, url, headers, to_json(items))

    def classify(
        self,
        endpoint: CrmEndpoint,
        event: OutboxEvent,
        attempt: Attempt,
        status: int,
        body: bytes,
    ) -> Outcome:
        outcome = http_outcome(status, body)
        if outcome.verdict is not Verdict.DELIVERED or event.event_type not in TASK_EVENTS:
            return outcome
        try:
            task_id = json.loads(body)["_embedded"]["tasks"][0]["id"]
        except (ValueError, KeyError, IndexError, TypeError):
            logger.warning("amoCRM answer to %s carries no task id", event.idempotency_key)
            return outcome
        return Outcome(Verdict.DELIVERED, {"task_id": int(task_id)})
