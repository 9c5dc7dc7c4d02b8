"""Caller ID in and out: who calls us through a trunk, and who we say calls through it.

Inbound (only from a trunk: a phone's P-Asserted-Identity or Remote-Party-ID is never read, and
never reaches another leg, since every leg's INVITE is our own): the asserted identity of
P-Asserted-Identity (RFC 3325), else Remote-Party-ID (draft-ietf-sip-privacy-04, what older
carriers send), else the From. A caller who asks for privacy (RFC 3323 `Privacy: id`, `user` or
`header`; RPID `privacy=full` or `uri`) or presents no usable number (`anonymous`,
`anonymous@anonymous.invalid`, no digits) is withheld: the engine knows them as "anonymous",
which the journal keeps without a callback task. A malformed identity header is logged and
skipped, never an error for the call.

Outbound: From carries the trunk's caller ID in the carrier's format; per trunk, also
P-Asserted-Identity and/or Remote-Party-ID with the identity the carrier bills; a withheld
caller ID goes as `"Anonymous" <sip:anonymous@anonymous.invalid>` with `Privacy: id` (the
carrier still gets the asserted identity and removes it at its trust domain's edge).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from telephony.numbers import NumberError, NumberPlan
from telephony.sip import AbsoluteUri, NameAddr, ParseError, SipRequest, SipUri, split_list

logger = logging.getLogger(__name__)

__all__ = ["ANONYMOUS", "IDENTITY_HEADERS", "CallerId", "OutboundIdentity", "inbound_caller"]

ANONYMOUS = "anonymous"
"""The caller the engine sees for a withheld number."""

IDENTITY_HEADERS = ("pai", "rpid")
"""Identity headers a trunk can send: P-Asserted-Identity, Remote-Party-ID."""

_HIDING = frozenset({"id", "user", "header"})
"""RFC 3323 / 3325 privacy values that ask to keep the caller's identity from the callee."""


@dataclass(frozen=True)
class CallerId:
    """Who called, as far as the engine will use it."""

    number: str | None
    """E.164, or None when withheld."""
    source: str
    """Where it came from: "pai", "rpid", "from"; "privacy" or "none" when withheld."""

    @property
    def withheld(self) -> bool:
        return self.number is None

    @property
    def caller(self) -> str:
        """What the journal, CRM and phones get: the E.164 number, or "anonymous"."""
        return self.number or ANONYMOUS


def inbound_caller(request: SipRequest, plan: NumberPlan, *, trusted: bool) -> CallerId:
    """The caller of an INVITE. `trusted`: it came from a trunk, whose identity headers we
    believe; else only the From counts."""
    call_id = request.headers.get("Call-ID") or "?"
    privacy = _privacy(request)
    candidates: list[tuple[str, NameAddr]] = []
    if trusted:
        candidates += [("pai", value) for value in _name_addrs(request, "P-Asserted-Identity")]
        for value in _name_addrs(request, "Remote-Party-ID"):
            if (_param(value, "party") or "calling") != "calling":
                continue
            if (_param(value, "privacy") or "off") in ("full", "uri"):
                privacy.add("id")
            candidates.append(("rpid", value))
    with_from = _from(request)
    if with_from is not None:
        candidates.append(("from", with_from))
    for source, value in candidates:
        number = _number(value, plan)
        if number is None:
            continue
        if privacy & _HIDING:
            logger.info("call %s: the caller asks for privacy: withheld", call_id)
            return CallerId(None, "privacy")
        return CallerId(number, source)
    logger.info("call %s: no usable caller number: withheld", call_id)
    return CallerId(None, "privacy" if privacy & _HIDING else "none")


def _privacy(request: SipRequest) -> set[str]:
    values: set[str] = set()
    for line in request.headers.get_lines("Privacy"):
        values.update(v.strip().lower() for v in line.replace(",", ";").split(";") if v.strip())
    return values


def _name_addrs(request: SipRequest, header: str) -> Iterator[NameAddr]:
    call_id = request.headers.get("Call-ID") or "?"
    for line in request.headers.get_lines(header):
        for item in split_list(line):
            try:
                yield NameAddr.parse(item)
            except ParseError as exc:
                logger.warning("call %s: %s ignored: %s", call_id, header, exc)


def _from(request: SipRequest) -> NameAddr | None:
    try:
        return request.from_
    except ParseError:  # the message layer checked it; be safe anyway
        return None


def _param(value: NameAddr, name: str) -> str | None:
    raw = value.params.get(name)
    return raw.strip('"').lower() if raw else None


def _number(value: NameAddr, plan: NumberPlan) -> str | None:
    """The E.164 number of an identity, or None for an anonymous or non-numeric one."""
    uri = value.uri
    if isinstance(uri, SipUri):
        if uri.host.lower() == "anonymous.invalid" or not uri.user:
            return None
        user = uri.user.split(";", 1)[0]  # telephone-subscriber parameters (;isub=, ;ext=)
    elif isinstance(uri, AbsoluteUri) and uri.scheme == "tel":
        user = uri.opaque.split(";", 1)[0]
    else:
        return None
    if user.lower() in (ANONYMOUS, "unknown", "unavailable", "restricted", "private"):
        return None
    try:
        return plan.to_e164(user)
    except NumberError:
        return None


@dataclass(frozen=True)
class OutboundIdentity:
    """What a trunk says about who calls (config per trunk)."""

    headers: tuple[str, ...] = ()
    """Identity headers sent: "pai", "rpid" (IDENTITY_HEADERS)."""
    asserted: str = ""
    """The number asserted in them (E.164); empty: the call's caller ID."""
    withhold: bool = False
    """Every call through the trunk goes with its caller ID withheld."""

    def __post_init__(self) -> None:
        unknown = [h for h in self.headers if h not in IDENTITY_HEADERS]
        if unknown:
            raise ValueError(
                f"identity_headers may name {', '.join(IDENTITY_HEADERS)}, not {unknown[0]!r}"
            )

    def outgoing(
        self, caller_id: str, plan: NumberPlan, host: str
    ) -> tuple[NameAddr, list[tuple[str, str]]]:
        """The From and the identity headers of an INVITE to the carrier presenting
        `caller_id` (an E.164 number, or "" / "anonymous" for none); `host`: ours."""
        withheld = self.withhold or not caller_id or caller_id == ANONYMOUS
        shown = _written(caller_id, plan)
        asserted = _written(self.asserted, plan) if self.asserted else shown
        if withheld:
            from_ = NameAddr(
                "Anonymous", SipUri(user=ANONYMOUS, host="anonymous.invalid"), params={}
            )
        else:
            from_ = NameAddr(None, SipUri(user=shown, host=host), params={})
        headers: list[tuple[str, str]] = []
        if asserted and asserted != ANONYMOUS:
            uri = SipUri(user=asserted, host=host)
            if "pai" in self.headers:
                headers.append(("P-Asserted-Identity", str(NameAddr(None, uri, params={}))))
            if "rpid" in self.headers:
                params: dict[str, str | None] = {
                    "party": "calling",
                    "screen": "yes",
                    "privacy": "full" if withheld else "off",
                }
                headers.append(("Remote-Party-ID", str(NameAddr(None, uri, params=params))))
        if withheld:
            headers.append(("Privacy", "id"))
        return from_, headers


def _written(number: str, plan: NumberPlan) -> str:
    """`number` in the carrier's format when it is a phone number; else as it is."""
    if not number or number == ANONYMOUS:
        return number
    try:
        return plan.present(plan.to_e164(number))
    except NumberError:
        return number
