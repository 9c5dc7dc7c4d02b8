"""Typed call events: what a feature sees of a call, never SIP itself."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CallEvent:
    call_id: str
    """The SIP Call-ID of the leg the event is about."""


@dataclass(frozen=True)
class Ringing(CallEvent):
    """The far end is alerting (180/183 on an outgoing leg)."""


@dataclass(frozen=True)
class Answered(CallEvent):
    """The leg is connected: 200 OK received (outgoing) or ACK received (incoming)."""


@dataclass(frozen=True)
class Dtmf(CallEvent):
    digit: str
    """One of 0-9 * # A-D."""
    method: str
    """How it arrived: rfc4733, info or inband."""


@dataclass(frozen=True)
class HoldChanged(CallEvent):
    held: bool
    """True when the leg's party put us on hold (sendonly/inactive/0.0.0.0)."""


@dataclass(frozen=True)
class Ended(CallEvent):
    reason: str
    """Why: remote-bye, local-bye, cancelled, rejected, timeout, rtp-timeout, shutdown, failed,
    session-expired (no RFC 4028 refresh came in time), refresh-failed (ours got 408/481)."""
    sip_status: int | None
    """The final SIP status of the leg, when one was sent or received (e.g. 486, 487, 200)."""
