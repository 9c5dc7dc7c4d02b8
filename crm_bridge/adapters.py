"""CRM adapters: turn an outbox event into the HTTP requests one kind of CRM expects, and read
its answers.

Pure (no I/O, no clock of their own): the outbox worker hands `render` an `Attempt` (the time,
the attempt count, the remote ids known so far, an OAuth token), sends what it returns and asks
`classify` what the answer means. An answer may be a step of a longer exchange
(`Verdict.NEXT`: look the contact up, then post the call): the worker then renders again with
the ids learned, within the same attempt. Remote ids are stored with the delivery and handed to
every later attempt and every later event of the same aggregate, so a retry never creates what
an earlier attempt already made.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Protocol

from . import webhooks
from .config import CrmEndpoint
from .links import link_signature

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
        "call.transferred",
    }
)
TASK_EVENTS = frozenset({"task.created", "task.updated", "task.done", "task.cancelled"})
SIGNATURE_HEADER = "X-Callcenter-Signature"
"""The pre-Standard-Webhooks signature header (`sha256=<hex HMAC of the body>`), still sent for
one release so receivers can move to `webhook-signature`."""
RECORDING_LINK_FIELDS = frozenset({"id", "format", "expires", "signature"})
"""Fields a `recording_link` template may use."""


class Verdict(Enum):
    """What an attempt's answer means for the delivery."""

    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"
    NEXT = "next"
    """This request worked and another one follows for the same event (same attempt)."""


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
class Attempt:
    """What an adapter knows when it renders a request."""

    now: float
    """Seconds since the epoch at this attempt (signature timestamps, link expiry)."""
    attempts: int = 0
    """Earlier attempts of this delivery that sent something (a retry after a timeout may find
    that the first one reached the CRM)."""
    refs: Mapping[str, Any] = field(default_factory=dict)
    """Remote ids known so far: those stored by earlier events of the aggregate, by earlier
    attempts of this one and by earlier steps of this attempt; `related` holds the refs of the
    call a task came from."""
    token: str | None = None
    """OAuth access token of the endpoint's account, when it uses OAuth."""


@dataclass(frozen=True)
class Outcome:
    """An adapter's reading of one answer."""

    verdict: Verdict
    refs: Mapping[str, Any] = field(default_factory=dict)
    """Remote ids learned (merged into the delivery's stored refs, whatever the verdict)."""
    error: str | None = None
    """Why it is not delivered (kept as the delivery's last error)."""
    retry_after: float | None = None
    """Seconds the CRM asked us to wait."""
    throttled: bool = False
    """The CRM says we send too fast (429, QUERY_LIMIT_EXCEEDED): the worker holds every
    request to this account back for a while, not just this delivery."""


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
        self, endpoint: CrmEndpoint, event: OutboxEvent, attempt: Attempt
    ) -> HttpRequest | None:
        """The next request delivering `event`, or None when nothing (more) is to be sent
        (delivered)."""
        ...

    def classify(
        self,
        endpoint: CrmEndpoint,
        event: OutboxEvent,
        attempt: Attempt,
        status: int,
        body: bytes,
    ) -> Outcome:
        """What the CRM's answer (`status` and raw `body`) to the request rendered for
        `attempt` means."""
        ...


def classify_status(status: int) -> Verdict:
    """Verdict for an HTTP status alone: 2xx delivered; 408, 429, 5xx and 401/403 (our
    credentials, not the event, are wrong: fixing the config must let the backlog through)
    retried; any other 4xx (and 3xx) dead at once."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status in (401, 403, 408, 429) or status >= 500:
        return Verdict.RETRY
    return Verdict.DEAD


def http_outcome(status: int, body: bytes) -> Outcome:
    """The status-only reading, with the body's start as the error of a failure."""
    verdict = classify_status(status)
    if verdict is Verdict.DELIVERED:
        return Outcome(verdict)
    error = f"HTTP {status}: {body[:200].decode(errors='replace')}"
    return Outcome(verdict, error=error, throttled=status == 429)


def sign_body(secret: str, body: bytes) -> str:
    """Value of the legacy signature header: `sha256=` + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str) -> bool:
    """For receivers of the legacy header: constant-time check."""
    return hmac.compare_digest(sign_body(secret, body), header)


def to_json(value: Any) -> bytes:
    """Compact UTF-8 JSON, as the adapters send it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def template_fields(template: str) -> set[str]:
    """Names a str.format template uses (ValueError for a malformed template)."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def phone_digits(phone: Any) -> str | None:
    """A number's digits without "+", or None for a withheld / non-numeric caller ID (what a
    CRM can look a contact up by)."""
    text = str(phone or "")
    digits = "".join(ch for ch in text if ch.isdigit())
    return digits if len(digits) >= 5 and digits == text.lstrip("+") else None


def customer_phone(data: Mapping[str, Any]) -> str | None:
    """The customer's number of a call or task payload, if it is a real number."""
    if "direction" not in data:  # a task
        phone = data.get("contact_phone")
    elif data["direction"] == "inbound":
        phone = data.get("contact_phone") or data["from_number"]
    else:
        phone = data.get("contact_phone") or data["to_number"]
    return str(phone) if phone_digits(phone) else None


def agent_chain(data: Mapping[str, Any]) -> list[str]:
    """The agents who talked to the customer of a call payload, in order: each completed
    transfer's `from`, then the final `agent` (just the agent for a call never transferred)."""
    chain = [
        str(t["from"])
        for t in data.get("transfers") or ()
        if t.get("from") and t.get("result", "completed") == "completed"
    ]
    if data.get("agent"):
        chain.append(str(data["agent"]))
    return [a for i, a in enumerate(chain) if i == 0 or a != chain[i - 1]]


def recording_url(endpoint: CrmEndpoint, data: Mapping[str, Any], now: float) -> str | None:
    """The link to a call's recording for this endpoint (signed and expiring when its template
    asks for it), if it has one."""
    if not data.get("recording_path") or not endpoint.recording_link:
        return None
    fmt = endpoint.recording_format
    expires = int(now + endpoint.link_ttl)
    signature = ""
    if endpoint.link_secret:
        signature = link_signature(endpoint.link_secret, int(data["id"]), fmt, expires)
    return endpoint.recording_link.format(
        id=data["id"], format=fmt, expires=expires, signature=signature
    )


class JsonWebhook:
    """Generic webhook: POST {type, timestamp, event, idempotency_key, occurred_at, data},
    signed per Standard Webhooks (and with the legacy header for one release)."""

    events = CALL_EVENTS | TASK_EVENTS

    def render(
        self, endpoint: CrmEndpoint, event: OutboxEvent, attempt: Attempt
    ) -> HttpRequest | None:
        data = event.payload
        if event.event_type in CALL_EVENTS:
            link = recording_url(endpoint, data, attempt.now)
            if link is not None:
                data = {**data, "recording_url": link}
        occurred = event.occurred_at.isoformat()
        body = to_json(
            {
                "type": event.event_type,
                "timestamp": occurred,
                "event": event.event_type,
                "idempotency_key": event.idempotency_key,
                "occurred_at": occurred,
                "data": data,
            }
        )
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": event.idempotency_key,
            "X-Callcenter-Event": event.event_type,
        }
        secrets = endpoint.signing_secrets
        if secrets:
            headers.update(
                webhooks.sign_headers(secrets, event.idempotency_key, int(attempt.now), body)
            )
            if endpoint.legacy_signature:
                headers[SIGNATURE_HEADER] = sign_body(secrets[0], body)
        return HttpRequest("POST", endpoint.url, headers, body)

    def classify(
        self,
        endpoint: CrmEndpoint,
        event: OutboxEvent,
        attempt: Attempt,
        status: int,
        body: bytes,
    ) -> Outcome:
        return http_outcome(status, body)
