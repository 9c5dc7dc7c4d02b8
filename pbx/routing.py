"""Routing configuration of the PBX: trunks, the DIDs they deliver, ring groups."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from telephony.numbers import NumberPlan

from .callerid import OutboundIdentity

RING_STRATEGIES = ("ringall", "round-robin", "longest-idle")


@dataclass(frozen=True)
class Trunk:
    name: str
    """How routes and logs refer to the carrier."""
    allow_from: tuple[str, ...] = ()
    """Source IPs whose calls to this trunk's DIDs are accepted without digest auth."""
    outbound: tuple[str, int] | None = None
    """Where calls to external numbers go (the carrier's SIP host and port); None: inbound only."""
    caller_id: str = ""
    """Number presented on outbound calls through this trunk."""
    password: str | None = None
    """When set, the carrier REGISTERs with digest auth as user `name`: its calls are accepted
    from the registered address, and outbound calls go to the registered contact."""
    cps: float = 10.0
    """Calls per second the carrier accepts from us: the dialer never starts more (shared by
    every campaign on the trunk)."""
    session_timers: bool = True
    """RFC 4028 session timers on this carrier's calls, both ways (off for one that
    misbehaves with them)."""
    transport: str = "udp"
    """How calls reach `outbound`: udp, tcp or tls (the certificate checked as [sip] tls_verify
    and tls_ca_file say, against the outbound host name)."""
    srtp: str = "off"
    """SRTP (SDES) on this trunk's calls, both ways: off, optional or required."""
    numbers: NumberPlan = field(default_factory=NumberPlan)
    """How the carrier writes numbers (its country, its outbound format, technical prefixes):
    what it sends is read to E.164, what we send it is written its way."""
    identity: OutboundIdentity = field(default_factory=OutboundIdentity)
    """What outbound calls say about the caller: identity headers, withheld caller ID."""
    trust_identity: bool = True
    """Its P-Asserted-Identity / Remote-Party-ID name the caller (a carrier that screens them);
    False: only its From does (a PBX on the trunk that passes its phones' headers on)."""
    # -- a provider we register to and authenticate with (pbx/trunks.py) --
    register: bool = False
    """We REGISTER `username`@`domain` at `registrar` and keep the binding refreshed."""
    username: str = ""
    """Our account at the provider: digest username and the AOR's user part."""
    secret: str | None = None
    """Our digest password at the provider (registration and 401/407 to our requests).
    Not `password`, which is the carrier's password when it registers to us."""
    realm: str | None = None
    """When set, only challenges of this realm are answered (credentials go nowhere else)."""
    registrar: tuple[str, int] | None = None
    """The provider's registrar (host, port); also where calls go without `outbound_proxy`."""
    domain: str = ""
    """The provider's SIP domain (AOR and Request-URIs); the registrar's host by default."""
    outbound_proxy: tuple[str, int] | None = None
    """Where every request to the provider goes (REGISTER, INVITE, OPTIONS) when set."""
    expires: int = 3600
    """Registration lifetime asked for, in seconds."""
    priority: int = 0
    """Failover order: the lowest first (ties in the file's order)."""
    channels: int = 0
    """Simultaneous calls the trunk carries, both ways (0: no limit); a full trunk is skipped."""
    qualify: float = 0.0
    """Seconds between OPTIONS pings (0: off); no answer marks the trunk down until one comes."""

    @property
    def signalling(self) -> tuple[str, int] | None:
        """Where our requests to this trunk go: outbound proxy, registrar or `outbound`."""
        return self.outbound_proxy or self.registrar or self.outbound

    @property
    def sip_domain(self) -> str:
        if self.domain:
            return self.domain
        target = self.registrar or self.signalling
        return target[0] if target else ""


@dataclass(frozen=True)
class Did:
    number: str
    """E.164: the Request-URI user part the carrier sends, in whatever format, is read with the
    trunk's NumberPlan and matched on E.164."""
    trunk: str
    """The trunk this DID arrives on; calls to it from elsewhere are refused."""
    route: str
    """Where calls go: `ringgroup:NAME`, `agent:EXT` or `ivr:FLOW` (IVR flows come later)."""
    label: str = ""
    """Shown before the caller's number on the agents' phones (caller ID presentation)."""
    record: bool = True
    """False: calls to this number are not recorded (per-route opt-out)."""


@dataclass(frozen=True)
class RingGroup:
    name: str
    members: tuple[str, ...]
    """Extensions in hunt order."""
    strategy: str = "ringall"
    """ringall, round-robin or longest-idle."""
    member_timeout: float = 15.0
    """Seconds one member rings before the next is tried (round-robin, longest-idle)."""
    ring_timeout: float = 30.0
    """Seconds the whole group may ring before the call counts as missed."""
    owner: str | None = None
    """Gets the callback task of a missed call when the contact has no responsible manager."""
    auto_reply: Path | None = None
    """WAV played to a caller nobody answered ("we will call you back")."""
    hours: OpeningHours | None = None
    """Outside these hours calls are not rung: they are missed at once (auto-reply, task)."""


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(r"^\s*([a-z]{3})(?:-([a-z]{3}))?\s+(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True)
class OpeningHours:
    """When a route takes calls, in its own time zone: "mon-fri 09:00-18:00, sat 10:00-14:00"."""

    spans: tuple[tuple[frozenset[int], time, time], ...]
    """(weekdays 0=Monday, opens, closes) — closing time exclusive."""
    timezone: str = "UTC"
    """IANA zone name of the office (the customer's time does not matter here)."""

    @classmethod
    def parse(cls, text: str, timezone: str = "UTC") -> OpeningHours:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {timezone!r}") from exc
        spans = []
        for part in text.lower().split(","):
            match = _SPAN.match(part)
            if not match or match.group(1) not in _DAYS or (match.group(2) or "mon") not in _DAYS:
                raise ValueError(
                    f"opening hours must look like 'mon-fri 09:00-18:00', got {part.strip()!r}"
                )
            first = _DAYS.index(match.group(1))
            last = _DAYS.index(match.group(2)) if match.group(2) else first
            days = frozenset(range(first, last + 1)) if first <= last else frozenset(
                [*range(first, 7), *range(0, last + 1)])  # fmt: skip
            h1, m1, h2, m2 = (int(g) for g in match.group(3, 4, 5, 6))
            if (
                h1 > 23
                or h2 > 24
                or m1 > 59
                or m2 > 59
                or (h2, m2) > (24, 0)
                or (h1, m1) >= (h2, m2)
            ):
                raise ValueError(f"bad time span in {part.strip()!r}")
            closes = time(23, 59, 59, 999999) if h2 == 24 else time(h2, m2)
            spans.append((days, time(h1, m1), closes))
        return cls(tuple(spans), timezone)

    def is_open(self, when: datetime) -> bool:
        local = when.astimezone(ZoneInfo(self.timezone))
        now = local.time()
        return any(
            local.weekday() in days and opens <= now < closes for days, opens, closes in self.spans
        )
