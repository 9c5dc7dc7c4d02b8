"""Reception state of one RTP source: RFC 3550 appendix A.1 (sequence validation), A.3 (loss)
and A.8 (interarrival jitter). It feeds RTCP receiver reports and call-quality metrics.
"""

from __future__ import annotations

import logging
from typing import Final

from .rtcp import ReportBlock, dlsr_from_seconds, ntp_middle

logger = logging.getLogger(__name__)

__all__ = ["MAX_DROPOUT", "MAX_MISORDER", "MIN_SEQUENTIAL", "RtpSource"]

RTP_SEQ_MOD: Final = 1 << 16
#: A forward jump of at least this many sequence numbers is not a loss but a suspect restart.
MAX_DROPOUT: Final = 3000
#: A backward step of at most this many is a late (reordered or duplicate) packet.
MAX_MISORDER: Final = 100
#: In-sequence packets needed before a new source counts as valid (probation).
MIN_SEQUENTIAL: Final = 2
_TS_MOD: Final = 1 << 32


class RtpSource:
    """Per-source reception statistics, fed with every RTP packet of one SSRC.

    ``receive`` returns whether the packet is valid in sequence terms; packets from a source
    still on probation, or after a big jump until the next one confirms it, return False.
    """

    __slots__ = (
        "_last_sr",
        "_last_sr_at",
        "_started",
        "_transit",
        "bad_seq",
        "base_seq",
        "clock_rate",
        "cycles",
        "expected_before_restart",
        "expected_prior",
        "jitter",
        "max_seq",
        "probation",
        "received",
        "received_before_restart",
        "received_prior",
        "ssrc",
    )

    def __init__(self, ssrc: int, *, clock_rate: int = 8000) -> None:
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.max_seq = 0
        self.cycles = 0
        self.base_seq = 0
        self.bad_seq = RTP_SEQ_MOD + 1
        self.probation = MIN_SEQUENTIAL
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        #: What the source had counted before it restarted its sequence (A.1 resync), so totals
        #: over the source's life never go backwards.
        self.expected_before_restart = 0
        self.received_before_restart = 0
        #: Interarrival jitter estimate, in timestamp units (A.8).
        self.jitter = 0.0
        self._transit: float | None = None
        self._started = False
        self._last_sr: int | None = None
        self._last_sr_at = 0.0

    # -- A.1 -----------------------------------------------------------------------------------

    def init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1  # so seq == bad_seq is false
        self.cycles = 0
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0

    def update_seq(self, seq: int) -> bool:
        """RFC 3550 A.1 ``update_seq``; the first call also does the new-source set-up."""
        if not self._started:
            self._started = True
            self.init_seq(seq)
            self.max_seq = (seq - 1) % RTP_SEQ_MOD
            self.probation = MIN_SEQUENTIAL
        udelta = (seq - self.max_seq) % RTP_SEQ_MOD
        if self.probation:
            # Unlike the C original, max_seq + 1 wraps: 65535 is followed by 0.
            if seq == (self.max_seq + 1) % RTP_SEQ_MOD:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self.init_seq(seq)
                    self.received += 1
                    return True
            else:
                self.probation = MIN_SEQUENTIAL - 1
                self.max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            # In order, with a permissible gap.
            if seq < self.max_seq:
                self.cycles += RTP_SEQ_MOD
            self.max_seq = seq
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            # A very large jump: accept it only when the next packet follows it (restart).
            if seq == self.bad_seq:
                logger.debug("RTP source %08x resynchronised at seq %d", self.ssrc, seq)
                self.expected_before_restart += self.expected
                self.received_before_restart += self.received
                self.init_seq(seq)
            else:
                self.bad_seq = (seq + 1) % RTP_SEQ_MOD
                return False
        # else: duplicate or reordered packet, counted but max_seq unchanged.
        self.received += 1
        return True

    # -- per packet ----------------------------------------------------------------------------

    def receive(self, sequence_number: int, timestamp: int, *, now: float) -> bool:
        """Account one packet arriving at ``now`` (seconds); update jitter if it is valid."""
        valid = self.update_seq(sequence_number)
        if valid:
            self._update_jitter(timestamp, now)
        return valid

    def _update_jitter(self, timestamp: int, now: float) -> None:
        # A.8: transit time in timestamp units; its absolute value is meaningless, only changes.
        transit = now * self.clock_rate - timestamp
        if self._transit is not None:
            d = abs(transit - self._transit)
            if d >= _TS_MOD // 2:  # the RTP timestamp wrapped between the two packets
                d = abs(d - _TS_MOD)
            self.jitter += (d - self.jitter) / 16.0
        self._transit = transit

    @property
    def transit(self) -> float | None:
        """The last valid packet's relative transit time (A.8), None before the first."""
        return self._transit

    @property
    def validated(self) -> bool:
        """Past probation: the source's packets count (A.1)."""
        return self._started and not self.probation

    def went_on(self, *, max_seq: int, cycles: int, received: int, jitter: float,
                transit: float | None) -> None:  # fmt: skip
        """Take the counters of packets counted elsewhere (the native relay,
        telephony.rtp._relay) for a validated source: in sequence or late, no restart."""
        self.max_seq, self.cycles, self.received = max_seq, cycles, received
        self.jitter, self._transit = jitter, transit

    # -- A.3 -----------------------------------------------------------------------------------

    @property
    def extended_max_seq(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        if self.received == 0 and self.probation:
            return 0
        return self.extended_max_seq - self.base_seq + 1

    @property
    def total_expected(self) -> int:
        """Packets expected over the source's life, across sequence restarts."""
        return self.expected_before_restart + self.expected

    @property
    def total_received(self) -> int:
        return self.received_before_restart + self.received

    @property
    def lost(self) -> int:
        """Cumulative packets lost, clamped to the signed 24 bits of a report block."""
        return max(-0x800000, min(0x7FFFFF, self.expected - self.received))

    @property
    def jitter_seconds(self) -> float:
        return self.jitter / self.clock_rate

    def fraction_lost(self) -> int:
        """Loss since the previous call, as n/256; starts the next reporting interval."""
        expected = self.expected
        expected_interval = expected - self.expected_prior
        self.expected_prior = expected
        received_interval = self.received - self.received_prior
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            return 0
        return min(255, (lost_interval << 8) // expected_interval)

    # -- RTCP ----------------------------------------------------------------------------------

    def on_sender_report(self, ntp_timestamp: int, *, now: float) -> None:
        """Remember an SR from this source so the next report block carries LSR/DLSR."""
        self._last_sr = ntp_middle(ntp_timestamp)
        self._last_sr_at = now

    def report_block(self, *, now: float) -> ReportBlock:
        """A reception report block for this source; starts the next reporting interval."""
        lsr = 0 if self._last_sr is None else self._last_sr
        dlsr = 0 if self._last_sr is None else dlsr_from_seconds(now - self._last_sr_at)
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=self.fraction_lost(),
            packets_lost=self.lost,
            highest_sequence=self.extended_max_seq & 0xFFFF_FFFF,
            jitter=int(self.jitter),
            lsr=lsr,
            dlsr=dlsr,
        )
