"""What goes into and comes out of the CRM store: small dataclasses, one docstring per field."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from .errors import InvalidFilter
from .phone import normalize_phone

logger = logging.getLogger(__name__)

DIRECTIONS = ("inbound", "outbound", "internal")
OUTCOMES = (
    "answered",
    "missed",
    "busy",
    "no-answer",
    "failed",
    "abandoned",
    "voicemail",
    "cancelled",
    "unavailable",
    "rejected",
)
TASK_TYPES = ("callback", "follow-up", "other")
TASK_STATUSES = ("open", "done", "cancelled")

MAX_PAGE = 1000
"""Largest `limit` a list query accepts."""


@dataclass(frozen=True)
class CallStarted:
    """A call the engine has just accepted or placed: written at once, with no outcome yet."""

    call_id: str
    """SIP Call-ID of the caller's leg."""
    direction: str
    """inbound (from a trunk), outbound (to a trunk) or internal (agent to agent)."""
    from_number: str
    """Caller as presented (E.164 for trunk calls, the extension for agents)."""
    to_number: str
    """Called number or extension as dialled."""
    started_at: datetime
    """When the INVITE arrived (or was sent); timezone-aware."""
    did: str | None = None
    """The company number dialled, for inbound trunk calls."""
    agent: str | None = None
    """Extension of the agent on the call, when already known (outbound, internal)."""
    ring_group: str | None = None
    """Ring group the call was routed to."""
    customer_phone: str | None = None
    """The customer's number (any written form, normalised here); links the call to a contact,
    creating the contact on first contact. None for internal calls."""
    campaign_id: int | None = None
    """Dialer campaign that placed the call."""
    lead_id: int | None = None
    """Dialer lead the call was for."""


@dataclass(frozen=True)
class CallEnded:
    """How a call ended: closes its row and emits `call.ended` with the whole record."""

    ended_at: datetime
    """When the last leg hung up (or the call was refused)."""
    outcome: str
    """One of OUTCOMES."""
    sip_status: int | None = None
    """Final SIP status the caller got (200 for answered calls)."""
    hangup_cause: str | None = None
    """Who or what ended it: caller-bye, callee-bye, ring-timeout, rtp-timeout, engine-restart..."""
    answered_at: datetime | None = None
    """When it was answered, if `call_answered` was not called for it."""
    agent: str | None = None
    """Extension that answered (last one after transfers), if not recorded already."""
    recording_path: str | None = None
    """Where the stereo WAV lies, relative to the recordings root."""
    analytics: Mapping[str, Any] | None = None
    """Speech analytics (talk time per side, silence, overtalk...), stored as JSONB."""
    quality: Mapping[str, Any] | None = None
    """Media quality per leg (loss, jitter, the phones' RTCP reports), stored as JSONB."""
    transfers: Sequence[Mapping[str, Any]] | None = None
    """The whole transfer chain, failed and cancelled attempts included (each with its
    `result`, and `outcome` when it failed); replaces the chain `call_transferred` built,
    which has the completed ones only. None: left as it is."""


@dataclass(frozen=True)
class CallbackRequest:
    """Ask for a callback task together with `call_ended` (same transaction)."""

    assignee: str | None
    """Extension to call back; None means the contact's responsible manager."""
    due_at: datetime
    """By when the customer should be called back."""
    text: str = ""
    """What the task says to the person doing it."""
    prefer_responsible: bool = False
    """True: the contact's responsible manager gets the task and `assignee` only when the
    contact has none (missed calls: the ring group's owner is the fallback)."""


@dataclass(frozen=True)
class Call:
    """A calls row as the API shows it."""

    id: int
    """Row id (what the API calls the call's id)."""
    call_id: str
    """SIP Call-ID of the caller's leg."""
    direction: str
    """inbound, outbound or internal."""
    from_number: str
    """Caller."""
    to_number: str
    """Called number or extension."""
    did: str | None
    """Company number dialled (inbound)."""
    agent: str | None
    """Extension that handled the call."""
    ring_group: str | None
    """Ring group the call went to."""
    started_at: datetime
    """Call start."""
    ringing_at: datetime | None
    """First ringing of an agent phone (or of the remote side)."""
    answered_at: datetime | None
    """Answer time; None if never answered."""
    ended_at: datetime | None
    """End time; None while the call is going on."""
    ring_seconds: float | None
    """Ringing until answer or end."""
    talk_seconds: float | None
    """Answer to end."""
    outcome: str | None
    """One of OUTCOMES; None while the call is going on."""
    sip_status: int | None
    """Final SIP status of the caller's leg."""
    hangup_cause: str | None
    """Who or what ended the call."""
    recording_path: str | None
    """Recording file, relative to the recordings root."""
    analytics: dict[str, Any] | None
    """Speech analytics."""
    quality: dict[str, Any] | None
    """Media quality per leg, by the leg's SIP Call-ID: packets received and lost, jitter, and
    what the phone reported by RTCP (far_end: loss, jitter, round trip)."""
    campaign_id: int | None
    """Dialer campaign."""
    lead_id: int | None
    """Dialer lead."""
    contact_id: int | None
    """The customer's contact."""
    contact_phone: str | None
    """The customer's E.164 number (from the contact)."""
    node: str
    """Engine node that handled the call."""
    disposition: str | None = None
    """What the agent recorded: sale, callback, not-interested, wrong-number, dnc."""
    disposition_note: str | None = None
    """The agent's free-text note."""
    transfers: list[dict[str, Any]] = field(default_factory=list)
    """Each transfer of the call in order ({at, from, to, by, mode, id, result}): with `agent`
    (the last one) the chain of agents who talked to the customer. `result` is completed,
    failed (with `outcome`: busy, no-answer, rejected, unavailable, caller-gone,
    queue-abandoned... and the SIP `status` when a party refused), cancelled (a warm
    transfer's consultation), or queued while a queue has the caller; a transfer into a
    queue has `queue` once a member answered. While the call lasts only completed ones are
    in the row; its end writes them all."""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (ISO 8601 timestamps): webhook payloads and the REST API."""
        return _jsonable(self.__dict__)


@dataclass(frozen=True)
class Contact:
    """A customer known by phone number."""

    id: int
    """Row id."""
    phone: str
    """E.164 number, unique."""
    name: str | None
    """Name, when someone told us."""
    responsible: str | None
    """Extension of the responsible manager (gets the callback tasks)."""
    created_at: datetime
    """First contact."""

    def to_json(self) -> dict[str, Any]:
        return _jsonable(self.__dict__)


@dataclass(frozen=True)
class Task:
    """Work for a person, e.g. call a customer back."""

    id: int
    """Row id."""
    type: str
    """callback, follow-up or other."""
    contact_id: int
    """Contact the task is about."""
    contact_phone: str
    """That contact's E.164 number."""
    assignee: str | None
    """Extension that should do it."""
    due_at: datetime
    """Deadline."""
    status: str
    """open, done or cancelled."""
    text: str
    """What to do."""
    created_from_call: int | None
    """Call row that caused the task."""
    last_call: int | None
    """Latest call row that updated it (a repeat missed call)."""
    missed_calls: int
    """Missed calls from the contact this task covers."""
    created_at: datetime
    """Creation time."""
    updated_at: datetime
    """Last change."""
    closed_at: datetime | None
    """When it was done or cancelled."""

    def to_json(self) -> dict[str, Any]:
        return _jsonable(self.__dict__)


@dataclass(frozen=True)
class CallFilter:
    """What `list_calls` selects; every field optional. Build from query strings with
    `from_query`, which raises InvalidFilter (HTTP 400) with a reason."""

    since: datetime | None = None
    """Calls started at or after this time."""
    until: datetime | None = None
    """Calls started before this time."""
    agent: str | None = None
    """Extension that handled the call."""
    outcome: str | None = None
    """One of OUTCOMES."""
    phone: str | None = None
    """E.164 number on either end of the call, or the call's contact."""
    direction: str | None = None
    """inbound, outbound or internal."""
    limit: int = 100
    """Page size, 1..MAX_PAGE."""
    offset: int = 0
    """Rows to skip, >= 0."""

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise InvalidFilter(f"{name} must carry a timezone")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise InvalidFilter("since must be before until")
        if self.outcome is not None and self.outcome not in OUTCOMES:
            raise InvalidFilter(f"unknown outcome {self.outcome!r}; one of {', '.join(OUTCOMES)}")
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise InvalidFilter(f"unknown direction {self.direction!r}")
        _check_page(self.limit, self.offset)

    @classmethod
    def from_query(
        cls, query: Mapping[str, str], *, default_country_code: str, tz: Any = UTC
    ) -> CallFilter:
        """Parse GET /calls parameters: `date=YYYY-MM-DD` (one day in `tz`), or `since`/`until`
        (ISO 8601; a bare date means its midnight in `tz`), `agent`, `outcome`, `phone`,
        `direction`, `limit`, `offset`. Unknown parameters are refused too (a typo must not
        silently widen the query)."""
        known = {"date", "since", "until", "agent", "outcome", "phone", "direction"}
        known |= {"limit", "offset"}
        unknown = sorted(set(query) - known)
        if unknown:
            raise InvalidFilter(f"unknown filter {', '.join(unknown)}")
        since = _parse_time(query, "since", tz)
        until = _parse_time(query, "until", tz)
        if "date" in query:
            if since is not None or until is not None:
                raise InvalidFilter("use either date or since/until")
            day = _parse_date(query["date"], "date")
            since = datetime.combine(day, time(), tz)
            until = since + timedelta(days=1)
        phone = query.get("phone")
        if phone is not None:
            if phone.startswith(" "):
                # An unencoded "+" in a query string arrives as a space.
                phone = "+" + phone[1:]
            try:
                phone = normalize_phone(phone, default_country_code)
            except ValueError as exc:
                raise InvalidFilter(f"phone: {exc}") from None
        return cls(
            since=since,
            until=until,
            agent=query.get("agent") or None,
            outcome=query.get("outcome") or None,
            phone=phone,
            direction=query.get("direction") or None,
            limit=_parse_int(query, "limit", 100),
            offset=_parse_int(query, "offset", 0),
        )


@dataclass(frozen=True)
class TaskFilter:
    """What `list_tasks` selects."""

    status: str | None = None
    """open, done or cancelled; None for all."""
    assignee: str | None = None
    """Extension."""
    limit: int = 100
    """Page size, 1..MAX_PAGE."""
    offset: int = 0
    """Rows to skip."""

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in TASK_STATUSES:
            raise InvalidFilter(f"unknown task status {self.status!r}")
        _check_page(self.limit, self.offset)

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> TaskFilter:
        """Parse GET /tasks parameters: status, assignee, limit, offset."""
        unknown = sorted(set(query) - {"status", "assignee", "limit", "offset"})
        if unknown:
            raise InvalidFilter(f"unknown filter {', '.join(unknown)}")
        return cls(
            status=query.get("status") or None,
            assignee=query.get("assignee") or None,
            limit=_parse_int(query, "limit", 100),
            offset=_parse_int(query, "offset", 0),
        )


def _check_page(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidFilter(f"limit must be 1..{MAX_PAGE}")
    if offset < 0:
        raise InvalidFilter("offset must be >= 0")


def _parse_int(query: Mapping[str, str], name: str, default: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise InvalidFilter(f"{name} must be an integer, not {text!r}") from None


def _parse_date(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidFilter(f"{name} must be a date YYYY-MM-DD, not {text!r}") from None


def _parse_time(query: Mapping[str, str], name: str, tz: Any) -> datetime | None:
    text = query.get(name)
    if text is None:
        return None
    if len(text) == 10:
        return datetime.combine(_parse_date(text, name), time(), tz)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidFilter(f"{name} must be an ISO 8601 time, not {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=tz)


def _jsonable(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in fields.items()}


def row_fields(cls: type, row: Mapping[str, Any]) -> dict[str, Any]:
    """The row's columns that `cls` (a dataclass) has, for `cls(**...)`."""
    names = cls.__dataclass_fields__  # type: ignore[attr-defined]
    return {k: row[k] for k in names}
