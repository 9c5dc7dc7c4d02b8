"""DTMF as RTP telephone-events (RFC 4733).

```
 0                   1                   2                   3
 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
|     event     |E|R| volume    |          duration             |
```

All packets of one key press share the RTP timestamp of its start; ``duration`` grows with each
update, the first packet carries the marker bit and the end packet is sent three times.
:class:`DtmfReceiver` turns such a stream into each digit exactly once, :class:`DtmfSender`
produces one.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from dataclasses import dataclass
from typing import Final

from .errors import RtpError
from .packet import RtpPacket

logger = logging.getLogger(__name__)

__all__ = [
    "DTMF_DIGITS",
    "DtmfReceiver",
    "DtmfSender",
    "TelephoneEvent",
    "digit_to_event",
    "event_to_digit",
]

#: Event codes 0-15 in order (RFC 4733 3.2, table 7).
DTMF_DIGITS: Final = "0123456789*#ABCD"
_EVENT: Final = struct.Struct("!BBH")
_TS_MOD: Final = 1 << 32


def digit_to_event(digit: str) -> int:
    """Event code of a DTMF key ("0"-"9", "*", "#", "A"-"D"; a-d accepted)."""
    code = DTMF_DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if code < 0:
        raise RtpError(f"not a DTMF digit: {digit!r}")
    return code


def event_to_digit(event: int) -> str | None:
    """The DTMF key of an event code, None for other events (16 is hook flash)."""
    return DTMF_DIGITS[event] if 0 <= event < 16 else None


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """The 4-byte payload of a telephone-event packet."""

    #: Event code (0-15: DTMF keys).
    event: int
    #: E bit: this is (a retransmission of) the end of the event.
    end: bool = False
    #: Power level as -dBm0, 0-63 (10 means -10 dBm0).
    volume: int = 10
    #: Duration so far, in RTP timestamp units.
    duration: int = 0

    @property
    def digit(self) -> str | None:
        return event_to_digit(self.event)

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < 4:
            raise RtpError(f"telephone-event payload too short ({len(payload)} bytes)")
        event, flags, duration = _EVENT.unpack_from(payload)
        # Only the first event block counts; RFC 4733 2.5.1.5 redundant blocks are not used here.
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def __bytes__(self) -> bytes:
        if not 0 <= self.volume <= 63 or not 0 <= self.duration <= 0xFFFF:
            raise RtpError(f"telephone-event volume/duration out of range: {self}")
        return _EVENT.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)


@dataclass(slots=True)
class _Press:
    timestamp: int
    event: int
    ended: bool


class DtmfReceiver:
    """Turns received telephone-event packets into digits, each exactly once.

    A digit is reported on the first packet of a new event (a timestamp not seen before), so a
    lost start packet still yields it from an update or end packet; repeated and late packets of
    a reported event are ignored. A long press split into segments (RFC 4733 2.5.2.3: same event,
    new timestamp, no marker, previous segment not ended) stays one digit.
    """

    def __init__(self, *, memory: int = 16) -> None:
        # Timestamps of recent events: enough to absorb reordering across a few presses.
        self._recent: deque[tuple[int, int]] = deque(maxlen=memory)
        self._current: _Press | None = None

    def feed(self, packet: RtpPacket) -> str | None:
        """Feed one telephone-event packet; return the digit it starts, if any."""
        event = TelephoneEvent.parse(packet.payload)
        return self.feed_event(
            event, timestamp=packet.timestamp, marker=packet.marker, ssrc=packet.ssrc
        )

    def feed_event(
        self, event: TelephoneEvent, *, timestamp: int, marker: bool = False, ssrc: int = 0
    ) -> str | None:
        key = (ssrc, timestamp)
        cur = self._current
        if key in self._recent:
            if cur is not None and cur.timestamp == timestamp and event.end:
                cur.ended = True
            return None
        self._recent.append(key)
        continuation = (
            cur is not None
            and not marker
            and not cur.ended
            and cur.event == event.event
            and 0 < (timestamp - cur.timestamp) % _TS_MOD <= 0x10000
        )
        self._current = _Press(timestamp, event.event, event.end)
        if continuation:
            return None
        digit = event.digit
        if digit is not None:
            logger.debug("RFC 4733 digit %s (ts %d)", digit, timestamp)
        return digit


class DtmfSender:
    """The packets of one RFC 4733 key press, one per call of :meth:`next_packet` (per ptime).

    Durations report the time elapsed since the start: 0 with the marker, then one ptime more
    per packet up to the full duration, which is sent with the E bit ``end_packets`` times. Every
    packet has the timestamp of the start; afterwards the audio timestamp should move on by
    :attr:`duration_samples` (plus the ptimes spent on the end retransmissions).
    """

    def __init__(
        self,
        digit: str,
        *,
        payload_type: int,
        ssrc: int,
        timestamp: int,
        duration_ms: int = 100,
        volume: int = 10,
        clock_rate: int = 8000,
        ptime_ms: int = 20,
        end_packets: int = 3,
    ) -> None:
        self.event = digit_to_event(digit)
        self.payload_type = payload_type
        self.ssrc = ssrc
        self.timestamp = timestamp
        self.volume = volume
        self.step = clock_rate * ptime_ms // 1000
        #: Length of the tone in timestamp units.
        self.duration_samples = min(0xFFFF, clock_rate * duration_ms // 1000)
        self.end_packets = end_packets
        self._elapsed = 0
        self._ends_sent = 0

    @property
    def done(self) -> bool:
        return self._ends_sent >= self.end_packets

    def next_packet(self, sequence_number: int) -> RtpPacket | None:
        """The next packet of the press, or None once the last end packet went out."""
        if self.done:
            return None
        first = self._elapsed == 0 and self._ends_sent == 0
        duration = min(self._elapsed, self.duration_samples)
        end = duration >= self.duration_samples
        if end:
            self._ends_sent += 1
        else:
            self._elapsed += self.step
        payload = _EVENT.pack(self.event, (0x80 if end else 0) | self.volume, duration)
        return RtpPacket(
            self.payload_type,
            sequence_number & 0xFFFF,
            self.timestamp & 0xFFFF_FFFF,
            self.ssrc,
            payload,
            marker=first,
        )
