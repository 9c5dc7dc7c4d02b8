"""RTCP for one anchored leg (RFC 3550 6), sans-IO: what the far end sends us, what we send it,
the compound reports we owe it, and what its reports say about the stream we send.

The leg's socket code feeds every RTP packet it receives and sends (header bytes only), every
RTCP datagram it receives, and asks `due(now)` / `report(now, wall)` on its own timer. Times are
passed in: `now` is a monotonic clock in seconds, `wall` the Unix time for NTP timestamps.

Reception statistics are an `RtpSource` per far-end SSRC (a new SSRC, after a re-INVITE or a
relay switch, starts a new source; the totals keep counting). The stream we send is seen by its
last SSRC, packet and octet counts: when the leg relays the other phone's packets unchanged the
SSRC is that phone's, and our sender report speaks for it, as a media relay that anchors RTCP
must (the phone's own RTCP goes to us, not through).
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import Any, Final

from .errors import RtcpError
from .rtcp import (
    SDES_CNAME,
    Bye,
    ReceiverReport,
    ReportBlock,
    SdesChunk,
    SenderReport,
    SourceDescription,
    ntp_from_unix,
    ntp_middle,
    parse_rtcp,
    serialize_rtcp,
)
from .source import RtpSource

__all__ = ["REPORT_INTERVAL", "RemoteReport", "RtcpSession"]

_SEQ_TS_SSRC: Final = struct.Struct("!HII")
_TS_SSRC: Final = struct.Struct("!II")
#: RFC 3550 6.2: the minimum interval between reports (5 s), randomised over 0.5-1.5 times it
#: (6.3.1) so that legs started together do not report together.
REPORT_INTERVAL: Final = 5.0
#: The first report goes out after half the minimum (RFC 3550 6.2).
FIRST_REPORT: Final = REPORT_INTERVAL / 2


@dataclass(frozen=True, slots=True)
class RemoteReport:
    """What the far end reported about the stream we send it (a report block about our SSRC)."""

    fraction_lost: float
    """Loss since its previous report, 0..1."""
    packets_lost: int
    """Cumulative packets lost."""
    jitter: float
    """Interarrival jitter it measured, in seconds."""
    round_trip: float | None
    """RFC 3550 6.4.1 round-trip time from LSR/DLSR, in seconds; None before it saw our SR."""
    at: float
    """When we got it (the monotonic clock passed in)."""


_SYSTEM_RANDOM = random.SystemRandom()
"""The default source of SSRCs and report jitter: the OS's, no state to seed per leg (seeding a
`random.Random()` read 2.5 kB of urandom for each leg) and none shared across a fork."""


class RtcpSession:
    """RTCP state of one leg: feed it packets, ask it for reports; no sockets, no clock reads."""

    def __init__(
        self,
        *,
        cname: str,
        now: float,
        clock_rate: int = 8000,
        rng: random.Random | None = None,
    ) -> None:
        self._rng = rng or _SYSTEM_RANDOM
        self.cname = cname
        self.clock_rate = clock_rate
        self.own_ssrc = self._rng.getrandbits(32)
        """Our SSRC while we send nothing (receiver reports)."""
        self.source: RtpSource | None = None
        """The far end's current stream."""
        self._expected_before = 0
        self._received_before = 0
        # The stream we send.
        self.packets_sent = 0
        self.octets_sent = 0
        self._last_sent: bytes | None = None
        """The last RTP packet we sent: its timestamp and SSRC are read when a report needs
        them, not on every packet."""
        self._last_sent_at = 0.0
        self._sent_since_report = False
        # Reports.
        self.reports_sent = 0
        self.reports_received = 0
        self.bad_reports = 0
        self.remote: RemoteReport | None = None
        self._next = now + FIRST_REPORT * (0.5 + self._rng.random())
        self._sr_sent: dict[int, float] = {}
        """Middle NTP bits of our recent SRs -> when we sent them (for the round trip)."""

    # -- RTP seen on the leg --------------------------------------------------------------------

    def rtp_received(self, data: bytes, now: float) -> None:
        """One RTP packet from the far end (at least the 12-byte fixed header)."""
        seq, timestamp, ssrc = _SEQ_TS_SSRC.unpack_from(data, 2)
        source = self.source
        if source is None or source.ssrc != ssrc:
            if source is not None:
                self._expected_before += source.total_expected
                self._received_before += source.total_received
            source = self.source = RtpSource(ssrc, clock_rate=self.clock_rate)
        source.receive(seq, timestamp, now=now)

    def rtp_sent(self, data: bytes, now: float) -> None:
        """One RTP packet we sent to the far end (at least the 12-byte fixed header)."""
        self._last_sent = data
        self._last_sent_at = now
        self.packets_sent += 1
        self.octets_sent += max(0, len(data) - 12)
        self._sent_since_report = True

    def sent_elsewhere(self, *, packets: int, octets: int, last: bytes | None, at: float) -> None:
        """Take the sending counters of packets sent for us elsewhere (the native relay,
        telephony.rtp._relay): totals, and the last packet's header when it sent any since."""
        self.packets_sent, self.octets_sent = packets, octets
        if last is not None:
            self._last_sent, self._last_sent_at = last, at
            self._sent_since_report = True

    @property
    def last_sent_at(self) -> float:
        return self._last_sent_at

    @property
    def sent_ssrc(self) -> int | None:
        """SSRC of the stream we send (the last packet's), None before we sent any."""
        last = self._last_sent
        return None if last is None else int(_TS_SSRC.unpack_from(last, 4)[1])

    # -- totals -----------------------------------------------------------------------------------

    @property
    def packets_expected(self) -> int:
        """Packets the far end sent us, from sequence numbers (RFC 3550 A.3), over all its SSRCs."""
        current = self.source.total_expected if self.source is not None else 0
        return self._expected_before + current

    @property
    def packets_lost(self) -> int:
        return max(0, self.packets_expected - self.packets_received)

    @property
    def packets_received(self) -> int:
        """Valid packets received from the far end (RFC 3550 A.1), over all its SSRCs."""
        return self._received_before + (self.source.total_received if self.source else 0)

    @property
    def jitter(self) -> float:
        """Interarrival jitter of the far end's current stream, in seconds."""
        return self.source.jitter_seconds if self.source is not None else 0.0

    def quality(self) -> dict[str, Any]:
        """The leg's media quality as JSON-ready figures: what we measured on the far end's
        stream, and what the far end reported about ours (None when it sent no report)."""
        remote = self.remote
        return {
            "packets_received": self.packets_received,
            "packets_lost": self.packets_lost,
            "jitter_ms": round(self.jitter * 1000, 2),
            "packets_sent": self.packets_sent,
            "rtcp_sent": self.reports_sent,
            "rtcp_received": self.reports_received,
            "far_end": None
            if remote is None
            else {
                "fraction_lost": round(remote.fraction_lost, 4),
                "packets_lost": remote.packets_lost,
                "jitter_ms": round(remote.jitter * 1000, 2),
                "round_trip_ms": None
                if remote.round_trip is None
                else round(remote.round_trip * 1000, 2),
            },
        }

    # -- RTCP received ----------------------------------------------------------------------------

    def rtcp_received(self, data: bytes, now: float, wall: float) -> None:
        """A compound RTCP packet from the far end; a malformed one is counted and dropped."""
        try:
            packets = parse_rtcp(data)
        except RtcpError:
            self.bad_reports += 1
            return
        self.reports_received += 1
        ours = {self.own_ssrc} if self.sent_ssrc is None else {self.own_ssrc, self.sent_ssrc}
        for packet in packets:
            if isinstance(packet, SenderReport):
                if self.source is not None and packet.ssrc == self.source.ssrc:
                    self.source.on_sender_report(packet.ntp_timestamp, now=now)
                blocks = packet.reports
            elif isinstance(packet, ReceiverReport):
                blocks = packet.reports
            else:
                continue
            for block in blocks:
                if block.ssrc in ours:
                    self.remote = self._remote(block, now, wall)

    def _remote(self, block: ReportBlock, now: float, wall: float) -> RemoteReport:
        round_trip = None
        if block.lsr and block.lsr in self._sr_sent:
            # A - LSR - DLSR in 1/65536 s (RFC 3550 6.4.1), A = arrival in NTP middle bits.
            arrival = ntp_middle(ntp_from_unix(wall))
            units = (arrival - block.lsr - block.dlsr) & 0xFFFF_FFFF
            if units < 0x8000_0000:  # a negative result (clock steps) means no estimate
                round_trip = units / 65536
        return RemoteReport(
            fraction_lost=block.fraction_lost / 256,
            packets_lost=block.packets_lost,
            jitter=block.jitter / self.clock_rate,
            round_trip=round_trip,
            at=now,
        )

    # -- RTCP to send -----------------------------------------------------------------------------

    def due(self, now: float) -> bool:
        return now >= self._next

    def report(self, now: float, wall: float) -> bytes:
        """The compound report owed now (SR if we sent since the last one, else RR; then SDES
        with our CNAME); schedules the next one."""
        self._next = now + REPORT_INTERVAL * (0.5 + self._rng.random())
        blocks = (self.source.report_block(now=now),) if self.source is not None else ()
        if self._sent_since_report and self._last_sent is not None:
            last_ts, ssrc = _TS_SSRC.unpack_from(self._last_sent, 4)
            ntp = ntp_from_unix(wall)
            # The RTP timestamp of this instant on the sent stream's clock (6.4.1).
            elapsed = int((now - self._last_sent_at) * self.clock_rate)
            rtp_ts = (last_ts + elapsed) & 0xFFFF_FFFF
            first: SenderReport | ReceiverReport = SenderReport(
                ssrc,
                ntp,
                rtp_ts,
                self.packets_sent & 0xFFFF_FFFF,
                self.octets_sent & 0xFFFF_FFFF,
                blocks,
            )
            self._remember_sr(ntp_middle(ntp), now)
        else:
            ssrc = self.own_ssrc
            first = ReceiverReport(ssrc, blocks)
        self._sent_since_report = False
        self.reports_sent += 1
        sdes = SourceDescription((SdesChunk(ssrc, ((SDES_CNAME, self.cname.encode()),)),))
        return serialize_rtcp([first, sdes])

    def _remember_sr(self, middle: int, now: float) -> None:
        self._sr_sent[middle] = now
        if len(self._sr_sent) > 8:
            del self._sr_sent[next(iter(self._sr_sent))]

    def bye(self) -> bytes:
        """A last RR + BYE when the leg ends (RFC 3550 6.6)."""
        ssrc = self.sent_ssrc if self.sent_ssrc is not None else self.own_ssrc
        sdes = SourceDescription((SdesChunk(ssrc, ((SDES_CNAME, self.cname.encode()),)),))
        return serialize_rtcp([ReceiverReport(ssrc), sdes, Bye((ssrc,))])
