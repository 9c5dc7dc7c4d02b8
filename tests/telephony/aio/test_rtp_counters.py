"""RTP receive counters on a virtual clock: loss from sequence gaps (with wrap and a restarted
stream), RFC 3550 A.8 interarrival jitter, and pool totals that outlive released ports.

Counting follows RFC 3550 A.1: a new source is on probation until two packets arrive in
sequence, and the first of them is not counted (it is neither expected nor received)."""

from __future__ import annotations

import asyncio
import struct
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st

from telephony.aio.rtp import RtpEndpoint, RtpPortPool
from tests.e2e.conftest import ENGINE_RTP_PORTS

PEER = ("127.0.0.1", 40000)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now


def _packet(seq: int, timestamp: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, timestamp & 0xFFFFFFFF, 0x1234) + bytes(160)


def _leg() -> tuple[RtpEndpoint, _Clock]:
    clock = _Clock()
    return RtpEndpoint(20000, cast(Any, clock), "test@127.0.0.1"), clock


def _feed(leg: RtpEndpoint, clock: _Clock, seqs: list[int], *, start_ts: int = 0) -> None:
    """Packets `seqs` (unwrapped; missing ones were lost), paced exactly 20 ms apart."""
    start = clock.now
    for seq in seqs:
        clock.now = start + 0.02 * (seq - seqs[0])
        leg.datagram_received(_packet(seq, start_ts + 160 * (seq - seqs[0])), PEER)
    clock.now += 0.02


def test_gaps_count_as_lost_across_the_wrap() -> None:
    leg, clock = _leg()
    seqs = [s for s in range(65530, 65550) if s not in (65534, 65536, 65540)]
    _feed(leg, clock, seqs)
    assert leg.packets_expected == 19 and leg.packets_lost == 3  # 65530 was probation
    assert leg.jitter < 1e-9  # perfectly paced


def test_a_restarted_stream_is_not_counted_as_loss() -> None:
    leg, clock = _leg()
    _feed(leg, clock, list(range(100, 110)))
    _feed(leg, clock, list(range(40000, 40010)), start_ts=999_999)
    # Each run's first packet: probation, then the jump awaiting confirmation (A.1).
    assert leg.packets_expected == 18 and leg.packets_lost == 0


@given(st.lists(st.integers(0, 5), min_size=2, max_size=60))
def test_jitter_follows_rfc3550(delays_ms: list[int]) -> None:
    leg, clock = _leg()
    expected = 0.0
    previous = None
    for index, delay in enumerate(delays_ms):
        clock.now = 1000.0 + index * 0.02 + delay / 1000
        leg.datagram_received(_packet(index, index * 160), PEER)
        if index == 0:
            continue  # probation: the first packet of a source does not count
        transit = clock.now * 8000 - index * 160
        if previous is not None:
            expected += (abs(transit - previous) - expected) / 16
        previous = transit
    assert abs(leg.jitter - expected / 8000) < 1e-9
    assert leg.packets_lost == 0


async def test_pool_totals_keep_released_legs() -> None:
    pool = RtpPortPool("127.0.0.1", *ENGINE_RTP_PORTS)
    leg = await pool.open()
    try:
        for seq in (1, 2, 3, 5):
            leg.datagram_received(_packet(seq, seq * 160), PEER)
        leg.send(b"x")
        totals = pool.totals()
        assert (totals.packets_in, totals.packets_out, totals.packets_lost) == (4, 1, 1)
    finally:
        pool.release(leg)
    await asyncio.sleep(0)
    totals = pool.totals()
    assert (totals.packets_in, totals.packets_out, totals.packets_lost) == (4, 1, 1)
    assert totals.max_jitter == 0.0  # no live leg
