"""Rewrite relayed RTP so one outgoing stream stays continuous whatever feeds it.

A B2BUA leg sends one RTP stream, but what feeds it changes: a prompt, then the other party,
then music on hold. Each source has its own SSRC, sequence numbers and timestamps; the peer must
see one SSRC whose sequence numbers go up by one and whose timestamps move on with time, with the
marker bit at each switch (RFC 3550 5.1: timestamps jump, the marker flags a talkspurt).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping
from typing import Final

from .errors import RtpError
from .source import MAX_DROPOUT, MAX_MISORDER

logger = logging.getLogger(__name__)

__all__ = ["StreamRewriter"]

_SEQ_TS_SSRC: Final = struct.Struct("!HII")
_SEQ_MOD: Final = 1 << 16
_TS_MOD: Final = 1 << 32


class StreamRewriter:
    """Maps incoming RTP packets onto one outgoing SSRC/sequence/timestamp space.

    While one source feeds the stream, numbers pass through with fixed offsets (loss and
    reordering stay visible to the receiver). When the source changes (new SSRC, or the same SSRC
    jumping by more than 3000 sequence numbers) the next packet continues the outgoing sequence
    at +1, its timestamp continues at + the elapsed time (``now``; one frame when not given) and
    it carries the marker bit.
    """

    def __init__(
        self,
        *,
        ssrc: int,
        sequence_number: int = 0,
        timestamp: int = 0,
        clock_rate: int = 8000,
        frame_samples: int = 160,
        payload_types: Mapping[int, int] | None = None,
    ) -> None:
        #: Outgoing SSRC.
        self.ssrc = ssrc & 0xFFFF_FFFF
        self.clock_rate = clock_rate
        self.frame_samples = frame_samples
        #: Payload type renumbering (e.g. telephone-event 101 on one leg, 96 on the other).
        self.payload_types = dict(payload_types or {})
        #: Packets and payload octets sent: the counts of an RTCP sender report.
        self.packet_count = 0
        self.octet_count = 0
        self._source: int | None = None
        self._seq_offset = 0
        self._ts_offset = 0
        self._last_in_seq = 0
        # The highest outgoing numbers so far; a new source continues from them.
        self._out_seq = (sequence_number - 1) % _SEQ_MOD
        self._out_ts = timestamp % _TS_MOD
        self._last_now: float | None = None
        self._started = False

    @property
    def last_sequence_number(self) -> int:
        return self._out_seq

    @property
    def last_timestamp(self) -> int:
        return self._out_ts

    @property
    def steady(self) -> bool:
        """One source feeds the stream with fixed offsets (what another relay may carry on:
        the native one, telephony.rtp._relay), and no payload type is renumbered."""
        return self._started and self._source is not None and not self.payload_types

    def offsets(self) -> tuple[int, int, int, int, int, int]:
        """The steady state: source SSRC, sequence and timestamp offsets, last incoming
        sequence number, last outgoing sequence number and timestamp."""
        assert self._source is not None
        return (
            self._source,
            self._seq_offset,
            self._ts_offset,
            self._last_in_seq,
            self._out_seq,
            self._out_ts,
        )

    def went_on(self, *, last_in_seq: int, out_seq: int, out_ts: int, packets: int,
                octets: int) -> None:  # fmt: skip
        """Take what another relay did with the same offsets (the native one)."""
        self._last_in_seq, self._out_seq, self._out_ts = last_in_seq, out_seq, out_ts
        self.packet_count, self.octet_count = packets, octets

    def rewrite(self, packet: bytes, *, now: float | None = None) -> bytes:
        """The packet renumbered for the outgoing stream (raises RtpError if not RTP)."""
        if len(packet) < 12 or packet[0] >> 6 != 2:
            raise RtpError("not an RTP packet")
        seq, ts, ssrc = _SEQ_TS_SSRC.unpack_from(packet, 2)
        b1 = packet[1]
        if ssrc != self._source or self._jumped(seq):
            self._switch(seq, ts, ssrc, now)
            b1 |= 0x80
        self._last_in_seq = seq
        out_seq = (seq + self._seq_offset) % _SEQ_MOD
        out_ts = (ts + self._ts_offset) % _TS_MOD
        if (out_seq - self._out_seq) % _SEQ_MOD < 0x8000:
            self._out_seq = out_seq
            self._out_ts = out_ts
        if now is not None:
            self._last_now = now
        pt = b1 & 0x7F
        if pt in self.payload_types:
            b1 = (b1 & 0x80) | self.payload_types[pt]
        out = bytearray(packet)
        out[1] = b1
        _SEQ_TS_SSRC.pack_into(out, 2, out_seq, out_ts, self.ssrc)
        self.packet_count += 1
        self.octet_count += len(packet) - 12 - 4 * (packet[0] & 0x0F)
        return bytes(out)

    def _jumped(self, seq: int) -> bool:
        delta = (seq - self._last_in_seq) % _SEQ_MOD
        return MAX_DROPOUT <= delta <= _SEQ_MOD - MAX_MISORDER

    def _switch(self, seq: int, ts: int, ssrc: int, now: float | None) -> None:
        if not self._started:
            next_ts = self._out_ts
            self._started = True
        else:
            gap = self.frame_samples
            if now is not None and self._last_now is not None:
                gap = max(gap, round((now - self._last_now) * self.clock_rate))
            next_ts = (self._out_ts + gap) % _TS_MOD
        next_seq = (self._out_seq + 1) % _SEQ_MOD
        self._seq_offset = (next_seq - seq) % _SEQ_MOD
        self._ts_offset = (next_ts - ts) % _TS_MOD
        logger.debug(
            "RTP stream %08x now fed by %08x (seq %d -> %d)", self.ssrc, ssrc, seq, next_seq
        )
        self._source = ssrc
