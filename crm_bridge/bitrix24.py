"""Bitrix24 REST adapter (https://apidocs.bitrix24.com/, telephony methods at
https://dev.1c-bitrix.ru/rest_help/scope_telephony/telephony/index.php).

A finished call is one `batch` request: `telephony.externalcall.register` (Bitrix24 finds the
CRM entity with the number, or creates a lead), `telephony.externalcall.finish` (the call
activity, with duration and status code) and `telephony.externalCall.attachRecord` (the
recording by URL; finish's own RECORD_URL is deprecated), the later commands naming the first
one's CALL_ID as `$result[register][CALL_ID]`. Per-command errors come back in `result_error`
of a 200: what went through is kept in the delivery's refs and the retry sends only the rest.
A repeated register with the same parameters before finish answers the same CALL_ID for 30
minutes, so a retry after a lost answer does not register the call twice.

Callback tasks are `tasks.task.add` linked to the call's CRM entity (`UF_CRM_TASK`: `L_12`,
`C_7`...), or to the entity `telephony.externalCall.searchCrmEntities` finds for the number;
later changes go to `tasks.task.update` / `tasks.task.complete`; a retry after a lost answer
lists tasks with the same title and deadline first.

Two ways in: a portal URL plus a local app's OAuth client (the token goes as `auth`), or an
incoming webhook URL (`https://<portal>/rest/<user>/<code>/`), whose code is the credential.
Limits: a leaky bucket of 50 requests draining at 2 per second per portal; above it the portal
answers 503 `QUERY_LIMIT_EXCEEDED`, which pauses the account
(https://apidocs.bitrix24.com/settings/performance/limits.html).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .adapters import (
    TASK_EVENTS,
    Attempt,
    HttpRequest,
    OutboxEvent,
    Outcome,
    Verdict,
    customer_phone,
    phone_digits,
    recording_url,
    to_json,
)
from .config import CrmEndpoint

DEFAULT_USER = "*"
"""user_map key of the Bitrix24 user who gets calls no agent answered (register needs one)."""
LIMIT_ERRORS = frozenset({"QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT"})
_AUTH_ERRORS = frozenset({"expired_token", "invalid_token", "NO_AUTH_FOUND"})
# Call status codes of telephony.externalcall.finish (SIP-like; "304" is "missed").
_STATUS = {
    "answered": "200",
    "voicemail": "200",
    "missed": "304",
    "no-answer": "304",
    "busy": "486",
    "cancelled": "603-S",
    "abandoned": "603-S",
    "unavailable": "480",
}
_TYPE = {"outbound": 1, "inbound": 2}
_ENTITY_PREFIX = {"LEAD": "L", "CONTACT": "C", "COMPANY": "CO", "DEAL": "D"}


def _query(params: Mapping[str, Any]) -> str:
    """A batch command's query string; `$result[...]` references stay readable for Bitrix24."""
    return "&".join(
        f"{urllib.parse.quote(k, safe='[]')}={urllib.parse.quote(str(v), safe='$[]')}"
        for k, v in params.items()
    )


class Bitrix24Adapter:
    """Bitrix24: finished calls through the external-call methods, callback tasks linked to
    the CRM entity."""

    events = frozenset({"call.ended"}) | TASK_EVENTS

    # -- requests --------------------------------------------------------------------------

    def render(
        self, endpoint: CrmEndpoint, event: OutboxEvent, attempt: Attempt
    ) -> HttpRequest | None:
        if event.event_type == "call.ended":
            return self._render_call(endpoint, event, attempt)
        return self._render_task(endpoint, event, attempt)

    def _render_call(
        self, endpoint: CrmEndpoint, event: OutboxEvent, attempt: Attempt
    ) -> HttpRequest | None:
        data, refs = event.payload, attempt.refs
        phone = customer_phone(data)
        if data["direction"] not in _TYPE or phone is None:
            return None  # internal calls and withheld numbers: nothing to file
        link = recording_url(endpoint, data, attempt.now)
        if refs.get("finished") and (link is None or refs.get("recorded")):
            return None
        user = self._user(endpoint, data.get("agent"))
        call_id = refs.get("b24_call_id") or "$result[register][CALL_ID]"
        commands: dict[str, str] = {}
        if not refs.get("b24_call_id"):
            register = {
                "USER_ID": user,
                "PHONE_NUMBER": phone,
                "TYPE": _TYPE[data["direction"]],
                "CALL_START_DATE": data["started_at"],
                "CRM_CREATE": 1,
                "SHOW": 0,
            }
            commands["register"] = "telephony.externalcall.register?" + _query(register)
        if not refs.get("finished"):
            finish = {
                "CALL_ID": call_id,
                "USER_ID": user,
                "DURATION": round(data.get("talk_seconds") or 0),
                "STATUS_CODE": _STATUS.get(data["outcome"], "OTHER"),
            }
            commands["finish"] = "telephony.externalcall.finish?" + _query(finish)
        if link is not None and not refs.get("recorded"):
            # The portal names the file by FILENAME, which "must end in wav or mp3": the link's.
            name = f"call-{data['id']}.{endpoint.recording_format}"
            record = {"CALL_ID": call_id, "FILENAME": name, "RECORD_URL": link}
            commands["record"] = "telephony.externalCall.attachRecord?" + _query(record)
        return self._call(endpoint, attempt, "batch", {"halt": 0, "cmd": commands})

    def _render_task(
        self, endpoint: CrmEndpoint, event: OutboxEvent, attempt: Attempt
    ) -> HttpRequest | None:
        data, refs = event.payload, attempt.refs
        task_id = refs.get("task_id")
        if event.event_type in ("task.done", "task.cancelled"):
            if task_id is None or refs.get("closed"):
                return None
            return self._call(endpoint, attempt, "tasks.task.complete", {"taskId": task_id})
        fields: dict[str, Any] = {
            "TITLE": _title(data),
            "DEADLINE": data["due_at"],
            "RESPONSIBLE_ID": self._user(endpoint, data.get("assignee"), refs),
        }
        if task_id is not None:
            return self._call(
                endpoint, attempt, "tasks.task.update", {"taskId": task_id, "fields": fields}
            )
        entity = _entity(refs)
        phone = phone_digits(data.get("contact_phone"))
        owner_known = data.get("assignee") in endpoint.user_map or _owner(refs) is not None
        if (entity is None or not owner_known) and "entity_searched" not in refs and phone:
            return self._call(
                endpoint,
                attempt,
                "telephony.externalCall.searchCrmEntities",
                {"PHONE_NUMBER": data["contact_phone"]},
            )
        if entity is not None:
            fields["UF_CRM_TASK"] = [entity]
        if attempt.attempts and "task_checked" not in refs:
            query = {
                "filter": {"TITLE": fields["TITLE"], "RESPONSIBLE_ID": fields["RESPONSIBLE_ID"]},
                "select": ["ID", "TITLE", "DEADLINE"],
            }
            return self._call(endpoint, attempt, "tasks.task.list", query)
        return self._call(endpoint, attempt, "tasks.task.add", {"fields": fields})

    def _user(
        self, endpoint: CrmEndpoint, extension: str | None, refs: Mapping[str, Any] | None = None
    ) -> int:
        user = endpoint.user_map.get(extension or "")
        if user is not None:
            return user
        owner = None if refs is None else _owner(refs)
        return owner if owner is not None else endpoint.user_map[DEFAULT_USER]

    def _call(
        self, endpoint: CrmEndpoint, attempt: Attempt, method: str, params: dict[str, Any]
    ) -> HttpRequest:
        if endpoint.oauth is not None:
            url = f"{endpoint.account}/rest/{method}.json"
            params = {**params, "auth": attempt.token or ""}
        else:  # incoming webhook: the URL carries the credential
            url = endpoint.url.rstrip("/") + f"/{method}.json"
        return HttpRequest("POST", url, {"Content-Type": "application/json"}, to_json(params))

    # -- answers ---------------------------------------------------------------------------

    def classify(
        self,
        endpoint: CrmEndpoint,
        event: OutboxEvent,
        attempt: Attempt,
        status: int,
        body: bytes,
    ) -> Outcome:
        try:
            answer = json.loads(body) if body else {}
        except ValueError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        error = str(answer.get("error") or "")
        reason = f"{error}: {answer.get('error_description') or ''}".strip(": ")
        if error in LIMIT_ERRORS or status == 429:
            return Outcome(Verdict.RETRY, error=reason or f"HTTP {status}", throttled=True)
        if status == 401 or error in _AUTH_ERRORS:
            return Outcome(Verdict.RETRY, error=reason or "HTTP 401")
        if status >= 500 or status == 408:
            return Outcome(Verdict.RETRY, error=reason or f"HTTP {status}")
        if not 200 <= status < 300 or error:
            return Outcome(Verdict.DEAD, error=reason or f"HTTP {status}")
        request = self.render(endpoint, event, attempt)
        assert request is not None  # we are answering what render sent
        method = request.url.rsplit("/", 1)[-1].removesuffix(".json")
        result = answer.get("result")
        if method == "batch":
            return self._batch_answer(result)
        if method == "telephony.externalCall.searchCrmEntities":
            found = result[0] if isinstance(result, list) and result else {}
            refs: dict[str, Any] = {"entity_searched": True}
            if found.get("CRM_ENTITY_TYPE") and found.get("CRM_ENTITY_ID"):
                refs["crm_entity_type"] = found["CRM_ENTITY_TYPE"]
                refs["crm_entity_id"] = int(found["CRM_ENTITY_ID"])
                if found.get("ASSIGNED_BY_ID"):
                    refs["assigned_by_id"] = int(found["ASSIGNED_BY_ID"])
                    # Our contact's manager follows the portal's (the outbox maps the user
                    # to an extension by user_map): inbound routing and callbacks agree.
                    refs["responsible_user_id"] = refs["assigned_by_id"]
            return Outcome(Verdict.NEXT, refs)
        if method == "tasks.task.list":
            due = datetime.fromisoformat(event.payload["due_at"])
            for task in (result or {}).get("tasks", []):
                deadline = task.get("deadline") or task.get("DEADLINE")
                if deadline and datetime.fromisoformat(deadline) == due:
                    found_id = int(task.get("id") or task.get("ID"))
                    return Outcome(Verdict.NEXT, {"task_id": found_id, "task_checked": True})
            return Outcome(Verdict.NEXT, {"task_checked": True})
        if method == "tasks.task.add":
            task = (result or {}).get("task") or {}
            if not task.get("id"):
                return Outcome(Verdict.RETRY, error="Bitrix24 answered without the task id")
            return Outcome(Verdict.DELIVERED, {"task_id": int(task["id"])})
        if method == "tasks.task.complete":
            return Outcome(Verdict.DELIVERED, {"closed": True})
        return Outcome(Verdict.DELIVERED)

    def _batch_answer(self, result: Any) -> Outcome:
        result = result if isinstance(result, dict) else {}
        done = result.get("result") or {}
        errors = result.get("result_error") or {}
        if not isinstance(done, dict):
            done = {}
        if not isinstance(errors, dict):
            errors = {}
        refs: dict[str, Any] = {}
        register = done.get("register")
        if isinstance(register, dict) and register.get("CALL_ID"):
            refs["b24_call_id"] = register["CALL_ID"]
            if register.get("CRM_ENTITY_TYPE") and register.get("CRM_ENTITY_ID"):
                refs["crm_entity_type"] = register["CRM_ENTITY_TYPE"]
                refs["crm_entity_id"] = int(register["CRM_ENTITY_ID"])
            if register.get("CRM_CREATED_LEAD"):
                refs["created_lead"] = int(register["CRM_CREATED_LEAD"])
        if "finish" in done and "finish" not in errors:
            refs["finished"] = True
        if "record" in done and "record" not in errors:
            refs["recorded"] = True
        if not errors:
            return Outcome(Verdict.DELIVERED, refs)
        described = "; ".join(
            f"{name}: {e.get('error', '')} {e.get('error_description', '')}".strip()
            for name, e in errors.items()
            if isinstance(e, dict)
        )
        codes = {e.get("error") for e in errors.values() if isinstance(e, dict)}
        if codes & LIMIT_ERRORS:
            return Outcome(Verdict.RETRY, refs, described, throttled=True)
        if "register" in errors:
            # Nothing was filed: the portal refused the call itself (bad user, bad number).
            return Outcome(Verdict.DEAD, refs, f"Bitrix24 refused the call: {described}")
        # Registered; the rest is sent again on the retry (and only the rest).
        return Outcome(Verdict.RETRY, refs, f"Bitrix24: {described}")


def _title(data: Mapping[str, Any]) -> str:
    return str(data["text"] or f"Call back {data['contact_phone']}")


def _owner(refs: Mapping[str, Any]) -> int | None:
    """The responsible user of the task's CRM entity, when a search found it."""
    related = refs.get("related") or {}
    owner = refs.get("assigned_by_id") or related.get("assigned_by_id")
    return int(owner) if owner else None


def _entity(refs: Mapping[str, Any]) -> str | None:
    """The CRM binding of a task (`L_12`), from the task's own search or its call's refs."""
    related = refs.get("related") or {}
    for source in (refs, related):
        kind, entity_id = source.get("crm_entity_type"), source.get("crm_entity_id")
        if kind in _ENTITY_PREFIX and entity_id:
            return f"{_ENTITY_PREFIX[kind]}_{entity_id}"
    return None
