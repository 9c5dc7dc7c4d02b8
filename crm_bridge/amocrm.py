"""amoCRM API v4 adapter (https://www.amocrm.ru/developers/content/crm_platform/api-reference).

A finished call is looked up first: `GET /api/v4/contacts?query=<phone>` (204 when nobody has
the number). A known contact gets the call through `POST /api/v4/calls` (amoCRM attaches it to
the contact's card or its one open lead; "if no entity has this number, the call will not be
added", and a 2xx then carries the refusal in its `errors`, which we read). An unknown caller
goes to the unsorted inbox, `POST /api/v4/leads/unsorted/sip`, which makes a lead and a contact
a manager accepts or declines. Calls carry `call_responsible` (the agent, or the contact's
responsible manager for a missed call).

Tasks attach to the entity the call landed on (the unsorted lead, the call's entity, or the
contact looked up by phone) with `entity_id`/`entity_type`, for the agent or else the contact's
responsible manager. amoCRM does not de-duplicate `request_id`, so a retry of a task creation
whose first attempt may have reached amoCRM (a timeout) first lists the entity's open call
tasks and adopts one with the same text and deadline instead of creating a second one; an
unsorted entry is checked the same way by its `uniq`.

An inbound call that rings raises amoCRM's call notification (`POST /api/v2/events/`, type
phone_call, https://www.amocrm.ru/developers/content/telephony/call_event) for the contact's
responsible user, while the call can still be ringing (a backlog does not pop up stale cards);
its lookup is kept for the call's later events.

Every request names the account's access token (OAuth, or a long-lived token as `secret`); the
outbox worker keeps requests within 7 per second per account and backs off on 429.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from datetime import datetime
from typing import Any

from .adapters import (
    TASK_EVENTS,
    Attempt,
    HttpRequest,
    OutboxEvent,
    Outcome,
    Verdict,
    agent_chain,
    customer_phone,
    http_outcome,
    phone_digits,
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


_BATCHED_POSTS = ("/api/v4/calls", "/api/v4/leads/unsorted/sip", "/api/v4/tasks")
NOTIFY_WINDOW = 60.0
"""Seconds after a call starts during which its ringing notification is still worth sending
(a backlog drained later skips them)."""
# Entity types of a call's answer (singular) to the plural the tasks API wants.
_PLURAL = {"contact": "contacts", "lead": "leads", "company": "companies", "customer": "customers"}
# Per-item error codes meaning "nobody in the account has this number".
_NOT_FOUND_CODES = {"NotFound", "EntityNotFound", 204, 244, 264}


def _embedded(body: bytes, key: str) -> list[dict[str, Any]]:
    try:
        answer = json.loads(body) if body else {}
        items = answer.get("_embedded", {}).get(key, [])
    except (ValueError, AttributeError):
        return []
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _item_errors(body: bytes) -> list[dict[str, Any]]:
    """Per-item errors of a 2xx batch answer (`errors` at the top level)."""
    try:
        answer = json.loads(body) if body else {}
    except ValueError:
        return []
    errors = answer.get("errors") if isinstance(answer, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


class AmoCrmAdapter:
    """amoCRM API v4: finished calls (via the contact lookup and the unsorted inbox) and
    callback tasks linked to the CRM entity."""

    events = frozenset({"call.started", "call.ended"}) | TASK_EVENTS

    # -- requests --------------------------------------------------------------------------

    def render(
        self, endpoint: CrmEndpoint, event: OutboxEvent, attempt: Attempt
    ) -> HttpRequest | None:
        if event.event_type == "call.started":
            return self._render_notification(endpoint, event, attempt)
        if event.event_type == "call.ended":
            return self._render_call(endpoint, event, attempt)
        if event.event_type in ("task.created", "task.updated"):
            return self._render_task(endpoint, event, attempt)
        if event.event_type in ("task.done", "task.cancelled"):
            task_id = attempt.refs.get("task_id")
            if task_id is None or attempt.refs.get("closed"):
                return None
            result = "Done" if event.event_type == "task.done" else "Cancelled"
            task = {"id": int(task_id), "is_completed": True, "result": {"text": result}}
            return self._request(endpoint, attempt, "PATCH", "/api/v4/tasks", [task])
        return None

    def _render_call(
        self, endpoint: CrmEndpoint, event: OutboxEvent, attempt: Attempt
    ) -> HttpRequest | None:
        data, refs = event.payload, attempt.refs
        if data["direction"] not in ("inbound", "outbound"):
            return None  # amoCRM logs calls with customers only
        phone = customer_phone(data)
        if phone is None:
            return None  # withheld: nothing amoCRM can file it under
        if refs.get("amo_call_id") or refs.get("lead_id"):
            return None  # an earlier attempt got it there
        if "contact_id" not in refs:
            return self._lookup(endpoint, attempt, phone)
        if refs["contact_id"] is not None:
            call = self._call(endpoint, event, refs, attempt.now)
            return self._request(endpoint, attempt, "POST", "/api/v4/calls", [call])
        if attempt.attempts and "unsorted_checked" not in refs:
            query = "filter[category][]=sip&order[created_at]=desc&limit=50"
            return self._request(endpoint, attempt, "GET", f"/api/v4/leads/unsorted?{query}")
        return self._request(
            endpoint,
            attempt,
            "POST",
            "/api/v4/leads/unsorted/sip",
            [self._unsorted(endpoint, event, attempt.now)],
        )

    def _render_notification(
        self, endpoint: CrmEndpoint, event: OutboxEvent, attempt: Attempt
    ) -> HttpRequest | None:
        """An inbound call rings: amoCRM's call notification (POST /api/v2/events/, type
        phone_call) pops up the caller's card for the contact's responsible user (everyone
        when the caller is unknown). Only while the call can still be ringing."""
        data, refs = event.payload, attempt.refs
        phone = customer_phone(data)
        late = attempt.now - event.occurred_at.timestamp() > NOTIFY_WINDOW
        if data["direction"] != "inbound" or phone is None or late or refs.get("notified"):
            return None
        if "contact_id" not in refs:
            return self._lookup(endpoint, attempt, phone)
        notice: dict[str, Any] = {"type": "phone_call", "phone_number": phone}
        if refs.get("responsible_user_id"):
            notice["users"] = [int(refs["responsible_user_id"])]
        request = self._request(endpoint, attempt, "POST", "/api/v2/events/", [])
        return HttpRequest(request.method, request.url, request.headers, to_json({"add": [notice]}))

    def _render_task(
        self, endpoint: CrmEndpoint, event: OutboxEvent, attempt: Attempt
    ) -> HttpRequest | None:
        data, refs = event.payload, attempt.refs
        task: dict[str, Any] = {
            "text": _task_text(data),
            "complete_till": _task_due(data),
            "task_type_id": AMO_TASK_TYPE_CALL,
        }
        user = self._task_user(endpoint, data, refs)
        if user is not None:
            task["responsible_user_id"] = user
        if refs.get("task_id") is not None:
            task["id"] = int(refs["task_id"])
            return self._request(endpoint, attempt, "PATCH", "/api/v4/tasks", [task])
        entity = self._entity(refs)
        if entity is None and "contact_id" not in refs and phone_digits(data.get("contact_phone")):
            return self._lookup(endpoint, attempt, data["contact_phone"])
        if entity is not None:
            task["entity_type"], task["entity_id"] = entity
        if attempt.attempts and "task_checked" not in refs:
            # The first attempt may have created it before its answer was lost.
            query = {"filter[is_completed]": "0", "filter[task_type][]": str(AMO_TASK_TYPE_CALL)}
            if entity is not None:
                query["filter[entity_type]"] = entity[0]
                query["filter[entity_id][]"] = str(entity[1])
            query["order[created_at]"] = "desc"
            query["limit"] = "50"
            path = "/api/v4/tasks?" + urllib.parse.urlencode(query)
            return self._request(endpoint, attempt, "GET", path)
        task["request_id"] = event.idempotency_key
        return self._request(endpoint, attempt, "POST", "/api/v4/tasks", [task])

    def _lookup(self, endpoint: CrmEndpoint, attempt: Attempt, phone: str) -> HttpRequest:
        query = urllib.parse.urlencode({"query": phone_digits(phone) or phone, "limit": "1"})
        return self._request(endpoint, attempt, "GET", f"/api/v4/contacts?{query}")

    def _entity(self, refs: Any) -> tuple[str, int] | None:
        related = refs.get("related") or {}
        for source in (refs, related):
            if source.get("lead_id"):
                return ("leads", int(source["lead_id"]))
            if source.get("entity_id") and source.get("entity_type") in _PLURAL:
                return (_PLURAL[source["entity_type"]], int(source["entity_id"]))
        for source in (refs, related):
            if source.get("contact_id"):
                return ("contacts", int(source["contact_id"]))
        return None

    def _task_user(self, endpoint: CrmEndpoint, data: Any, refs: Any) -> int | None:
        user = endpoint.user_map.get(data.get("assignee") or "")
        if user is not None:
            return user
        related = refs.get("related") or {}
        owner = refs.get("responsible_user_id") or related.get("responsible_user_id")
        return int(owner) if owner else None

    def _call(
        self, endpoint: CrmEndpoint, event: OutboxEvent, refs: Any, now: float
    ) -> dict[str, Any]:
        data = event.payload
        outcome = data["outcome"]
        result = _AMO_RESULT.get(outcome, "Not reached")
        if outcome == "answered" and data.get("agent"):
            result += f" ({' → '.join(agent_chain(data))})"
        call: dict[str, Any] = {
            "direction": data["direction"],
            "uniq": event.idempotency_key,
            "duration": round(data.get("talk_seconds") or 0),
            "source": endpoint.source,
            "phone": customer_phone(data),
            "call_result": result,
            "call_status": amo_call_status(outcome, data.get("sip_status")),
            "created_at": int(datetime.fromisoformat(data["started_at"]).timestamp()),
            "request_id": event.idempotency_key,
        }
        link = recording_url(endpoint, data, now)
        if link is not None:
            call["link"] = link
        user = endpoint.user_map.get(data.get("agent") or "")
        if user is not None:
            call["responsible_user_id"] = user
            call["call_responsible"] = user
        elif refs.get("responsible_user_id"):
            # Nobody answered: the contact's manager is the one who should see it.
            call["call_responsible"] = int(refs["responsible_user_id"])
        return call

    def _unsorted(self, endpoint: CrmEndpoint, event: OutboxEvent, now: float) -> dict[str, Any]:
        data = event.payload
        phone = customer_phone(data)
        started = int(datetime.fromisoformat(data["started_at"]).timestamp())
        metadata: dict[str, Any] = {
            "is_call_event_needed": True,
            "uniq": event.idempotency_key,
            "duration": round(data.get("talk_seconds") or 0),
            "service_code": endpoint.source,
            "phone": phone,
            "called_at": started,
            "from": phone if data["direction"] == "inbound" else (data.get("agent") or ""),
        }
        link = recording_url(endpoint, data, now)
        if link is not None:
            metadata["link"] = link
        lead: dict[str, Any] = {"name": f"Call {data['direction']} {phone}"}
        user = endpoint.user_map.get(data.get("agent") or "")
        if user is not None:
            lead["responsible_user_id"] = user
        return {
            "request_id": event.idempotency_key,
            "source_uid": event.idempotency_key,
            "source_name": endpoint.source,
            "created_at": started,
            "metadata": metadata,
            "_embedded": {
                "leads": [lead],
                "contacts": [
                    {
                        "name": phone,
                        "custom_fields_values": [
                            {
                                "field_code": "PHONE",
                                "values": [{"value": phone, "enum_code": "WORK"}],
                            }
                        ],
                    }
                ],
            },
        }

    def _request(
        self,
        endpoint: CrmEndpoint,
        attempt: Attempt,
        method: str,
        path: str,
        items: list[Any] | None = None,
    ) -> HttpRequest:
        headers = {"Authorization": f"Bearer {attempt.token or endpoint.secret}"}
        body = b""
        if items is not None:
            headers["Content-Type"] = "application/json"
            body = to_json(items)
        return HttpRequest(method, endpoint.url.rstrip("/") + path, headers, body)

    # -- batching: calls, unsorted entries and tasks of several events in one request ------

    def batch_key(self, endpoint: CrmEndpoint, request: HttpRequest) -> str | None:
        """Requests that may share one: the same batch method, path and token."""
        path = urllib.parse.urlsplit(request.url).path
        if request.method == "POST" and path.endswith(_BATCHED_POSTS):
            return f"POST {path} {request.headers.get('Authorization', '')}"
        if request.method == "PATCH" and path.endswith("/api/v4/tasks"):
            return f"PATCH {path} {request.headers.get('Authorization', '')}"
        return None

    def merge(self, endpoint: CrmEndpoint, requests: list[HttpRequest]) -> HttpRequest:
        items = [item for r in requests for item in json.loads(r.body)]
        first = requests[0]
        return HttpRequest(first.method, first.url, first.headers, to_json(items))

    def split(
        self, endpoint: CrmEndpoint, requests: list[HttpRequest], status: int, body: bytes
    ) -> list[bytes]:
        """Each request's share of a batched answer: its items (by request_id, or by id for a
        PATCH) and its per-item errors, in the shape of an answer to it alone."""
        if not 200 <= status < 300:
            return [body] * len(requests)
        answer = json.loads(body) if body else {}
        embedded = answer.get("_embedded") or {}
        kind = next(iter(embedded), "items")
        found = [i for i in embedded.get(kind, []) if isinstance(i, dict)]
        errors = _item_errors(body)
        parts = []
        for request in requests:
            mine = json.loads(request.body)
            keys = {str(i.get("request_id", i.get("id"))) for i in mine}
            ours = [i for i in found if str(i.get("request_id", i.get("id"))) in keys]
            part = {
                "_total_items": len(ours),
                "errors": [e for e in errors if str(e.get("request_id")) in keys],
                "_embedded": {kind: ours},
            }
            parts.append(to_json(part))
        return parts

    # -- answers ---------------------------------------------------------------------------

    def classify(
        self,
        endpoint: CrmEndpoint,
        event: OutboxEvent,
        attempt: Attempt,
        status: int,
        body: bytes,
    ) -> Outcome:
        request = self.render(endpoint, event, attempt)
        assert request is not None  # we are answering what render sent
        path = urllib.parse.urlsplit(request.url).path
        if request.method == "GET" and path.endswith("/api/v4/contacts"):
            return self._looked_up(status, body)
        outcome = http_outcome(status, body)
        if outcome.verdict is not Verdict.DELIVERED:
            return outcome
        if request.method == "GET" and path.endswith("/leads/unsorted"):
            return self._unsorted_checked(event, body)
        if request.method == "GET" and path.endswith("/api/v4/tasks"):
            return self._tasks_checked(event, body)
        if path.endswith("/api/v4/calls"):
            return self._call_answer(body)
        if path.endswith("/leads/unsorted/sip"):
            return self._unsorted_answer(body)
        if path.endswith("/api/v2/events/"):
            return Outcome(Verdict.DELIVERED, {"notified": True})
        if event.event_type in ("task.done", "task.cancelled"):
            return Outcome(Verdict.DELIVERED, {"closed": True})
        return self._task_answer(body)

    def _looked_up(self, status: int, body: bytes) -> Outcome:
        if status == 204:  # no contact has this number
            return Outcome(Verdict.NEXT, {"contact_id": None})
        outcome = http_outcome(status, body)
        if outcome.verdict is not Verdict.DELIVERED:
            return outcome
        contacts = _embedded(body, "contacts")
        if not contacts:
            return Outcome(Verdict.NEXT, {"contact_id": None})
        contact = contacts[0]
        refs = {
            "contact_id": contact.get("id"),
            "responsible_user_id": contact.get("responsible_user_id"),
        }
        return Outcome(Verdict.NEXT, refs)

    def _call_answer(self, body: bytes) -> Outcome:
        calls = _embedded(body, "calls")
        if calls and calls[0].get("id"):
            call = calls[0]
            refs = {"amo_call_id": call["id"]}
            if call.get("entity_id"):
                refs["entity_id"] = call["entity_id"]
                refs["entity_type"] = call.get("entity_type")
            return Outcome(Verdict.DELIVERED, refs)
        errors = _item_errors(body)
        if any(_not_found(e) for e in errors):
            # The contact went away between the lookup and the post: the unsorted inbox.
            return Outcome(Verdict.NEXT, {"contact_id": None})
        if errors:
            return Outcome(Verdict.DEAD, error=f"amoCRM refused the call: {_describe(errors)}")
        return Outcome(Verdict.RETRY, error="amoCRM answered 2xx without the call")

    def _unsorted_answer(self, body: bytes) -> Outcome:
        items = _embedded(body, "unsorted")
        if not items:
            errors = _item_errors(body)
            if errors:
                return Outcome(
                    Verdict.DEAD, error=f"amoCRM refused the unsorted: {_describe(errors)}"
                )
            return Outcome(Verdict.RETRY, error="amoCRM answered 2xx without the unsorted entry")
        return Outcome(Verdict.DELIVERED, _unsorted_refs(items[0]))

    def _unsorted_checked(self, event: OutboxEvent, body: bytes) -> Outcome:
        for item in _embedded(body, "unsorted"):
            if (item.get("metadata") or {}).get("uniq") == event.idempotency_key:
                return Outcome(Verdict.NEXT, _unsorted_refs(item))
        return Outcome(Verdict.NEXT, {"unsorted_checked": True})

    def _tasks_checked(self, event: OutboxEvent, body: bytes) -> Outcome:
        wanted = _task_text(event.payload), _task_due(event.payload)
        for task in _embedded(body, "tasks"):
            if (task.get("text"), task.get("complete_till")) == wanted and task.get("id"):
                return Outcome(Verdict.NEXT, {"task_id": int(task["id"]), "task_checked": True})
        return Outcome(Verdict.NEXT, {"task_checked": True})

    def _task_answer(self, body: bytes) -> Outcome:
        tasks = _embedded(body, "tasks")
        if tasks and tasks[0].get("id"):
            return Outcome(Verdict.DELIVERED, {"task_id": int(tasks[0]["id"])})
        errors = _item_errors(body)
        if errors:
            return Outcome(Verdict.DEAD, error=f"amoCRM refused the task: {_describe(errors)}")
        logger.warning("amoCRM answer to a task carries no task id")
        return Outcome(Verdict.DELIVERED)


def _task_text(data: Any) -> str:
    return str(data["text"] or f"Call back {data['contact_phone']}")


def _task_due(data: Any) -> int:
    return int(datetime.fromisoformat(data["due_at"]).timestamp())


def _unsorted_refs(item: dict[str, Any]) -> dict[str, Any]:
    refs: dict[str, Any] = {"unsorted_uid": item.get("uid")}
    embedded = item.get("_embedded") or {}
    leads = embedded.get("leads") or []
    contacts = embedded.get("contacts") or []
    if leads:
        refs["lead_id"] = leads[0].get("id")
    if contacts:
        refs["unsorted_contact_id"] = contacts[0].get("id")
    return refs


def _not_found(error: dict[str, Any]) -> bool:
    text = f"{error.get('title', '')} {error.get('detail', '')}".lower()
    return error.get("code") in _NOT_FOUND_CODES or "not found" in text


def _describe(errors: list[dict[str, Any]]) -> str:
    return "; ".join(
        str(e.get("detail") or e.get("title") or e.get("code") or e) for e in errors[:3]
    )
