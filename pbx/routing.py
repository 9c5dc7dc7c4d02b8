"""Routing configuration of the PBX: trunks, the DIDs they deliver, ring groups."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class Did:
    number: str
    """The dialled number as the carrier sends it in the Request-URI user part."""
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
