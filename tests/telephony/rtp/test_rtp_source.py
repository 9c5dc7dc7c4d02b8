from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from telephony.rtp import MAX_DROPOUT, MAX_MISORDER, ReportBlock, RtpSource, ntp_from_unix


def feed(src: RtpSource, seqs: list[int]) -> list[bool]:
    return [src.update_seq(s & 0xFFFF) for s in seqs]


def test_probation_needs_two_sequential_packets() -> None:
    src = RtpSource(1)
    assert feed(src, [100]) == [False]
    assert src.expected == 0 and src.lost == 0
    assert feed(src, [101, 102]) == [True, True]
    assert (src.base_seq, src.max_seq, src.received) == (101, 102, 2)
    assert src.expected == 2 and src.lost == 0


def test_probation_restarts_on_a_gap() -> None:
    src = RtpSource(1)
    assert feed(src, [100, 105, 106, 107]) == [False, False, True, True]
    assert src.base_seq == 106


def test_probation_across_the_wrap() -> None:
    src = RtpSource(1)
    assert feed(src, [65535, 0, 1]) == [False, True, True]
    assert src.cycles == 0 and src.extended_max_seq == 1


def test_sequence_wraparound_counts_cycles() -> None:
    src = RtpSource(1)
    feed(src, [65530, 65531])
    assert all(feed(src, list(range(65532, 65536 + 10))))
    assert src.cycles == 65536
    assert src.max_seq == 9
    assert src.extended_max_seq == 65536 + 9
    assert src.expected == 65536 + 9 - 65531 + 1 == src.received
    assert src.lost == 0


def test_loss_and_fraction() -> None:
    src = RtpSource(1)
    feed(src, [0, 1])
    # 101 expected from base 1 to 101; 10, 20 ... 100 missing.
    received = [s for s in range(2, 102) if s % 10 != 0]
    feed(src, received)
    assert src.expected == 101
    assert src.received == 1 + len(received) == 91
    assert src.lost == 10
    assert src.fraction_lost() == (10 << 8) // 101 == 25
    # Next interval: nothing lost.
    feed(src, list(range(102, 151)))
    assert src.fraction_lost() == 0
    assert src.lost == 10
    # Nothing received at all: still 0 (expected_interval 0).
    assert src.fraction_lost() == 0


def test_duplicates_make_loss_negative() -> None:
    src = RtpSource(1)
    feed(src, [0, 1, 2, 3, 3, 3])
    assert src.received == 5 and src.expected == 3
    assert src.lost == -2
    assert src.fraction_lost() == 0


def test_misordered_packet_is_counted_without_moving_max() -> None:
    src = RtpSource(1)
    feed(src, [0, 1, 2, 4])
    assert feed(src, [3]) == [True]
    assert src.max_seq == 4 and src.received == 4 and src.lost == 0
    # Up to MAX_MISORDER - 1 behind is "late"; MAX_MISORDER behind is a suspect jump.
    assert feed(src, [4 - (MAX_MISORDER - 1)]) == [True]
    assert feed(src, [4 - MAX_MISORDER]) == [False]
    assert src.max_seq == 4


def test_big_jump_needs_confirmation_then_resyncs() -> None:
    src = RtpSource(1)
    feed(src, [0, 1, 2])
    jump = 2 + MAX_DROPOUT
    assert feed(src, [jump]) == [False]
    assert src.max_seq == 2
    assert feed(src, [3]) == [True]  # the old stream goes on: the jump was a stray
    assert feed(src, [jump + 10]) == [False]
    assert feed(src, [jump + 11]) == [True]  # two in a row: the source restarted
    assert (src.base_seq, src.max_seq, src.received, src.cycles) == (jump + 11, jump + 11, 1, 0)
    assert src.lost == 0


def test_just_below_max_dropout_is_a_gap() -> None:
    src = RtpSource(1)
    feed(src, [0, 1])
    assert feed(src, [1 + MAX_DROPOUT - 1]) == [True]
    assert src.lost == MAX_DROPOUT - 2


def test_jitter_rfc3550_a8() -> None:
    src = RtpSource(1, clock_rate=8000)
    # Packets every 20 ms, timestamps every 160: transit constant, jitter 0.
    for i in range(10):
        src.receive(i, 160 * i, now=100.0 + 0.02 * i)
    assert src.jitter < 1e-9
    # One packet 10 ms late: D = 80, then the next is on time again: D = 80.
    src.receive(10, 1600, now=100.0 + 0.2 + 0.01)
    assert abs(src.jitter - 5.0) < 1e-6
    src.receive(11, 1760, now=100.0 + 0.22)
    assert abs(src.jitter - (5.0 + (80 - 5.0) / 16)) < 1e-6
    assert abs(src.jitter_seconds - src.jitter / 8000) < 1e-12


def test_jitter_survives_timestamp_wrap() -> None:
    src = RtpSource(1)
    base = 2**32 - 320
    for i in range(6):
        src.receive(i, (base + 160 * i) % 2**32, now=0.02 * i)
    assert src.jitter < 1e-6


def test_report_block_with_lsr_and_dlsr() -> None:
    src = RtpSource(0x1234)
    feed(src, [0, 1, 2, 4])
    assert src.report_block(now=5.0) == ReportBlock(
        ssrc=0x1234,
        fraction_lost=(1 << 8) // 4,
        packets_lost=1,
        highest_sequence=4,
        jitter=0,
        lsr=0,
        dlsr=0,
    )
    ntp = ntp_from_unix(1_700_000_000.25)
    src.on_sender_report(ntp, now=10.0)
    block = src.report_block(now=10.5)
    assert block.lsr == (ntp >> 16) & 0xFFFFFFFF
    assert block.dlsr == 32768
    assert block.fraction_lost == 0


@given(
    start=st.integers(0, 0xFFFF),
    gaps=st.lists(st.integers(1, 50), min_size=2, max_size=300),
)
def test_in_order_stream_with_gaps(start: int, gaps: list[int]) -> None:
    src = RtpSource(1)
    seq = start
    seqs = [seq, seq + 1]
    for g in gaps:
        seq = seqs[-1] + g
        seqs.append(seq)
    assert feed(src, seqs)[1:] == [True] * (len(seqs) - 1)
    # Counting starts at the packet that ended probation.
    assert src.base_seq == (start + 1) & 0xFFFF
    assert src.extended_max_seq - src.base_seq == seqs[-1] - seqs[1]
    assert src.expected == seqs[-1] - seqs[1] + 1
    assert src.lost == sum(g - 1 for g in gaps)


@given(
    start=st.integers(0, 0xFFFF),
    n=st.integers(3, 200),
    swaps=st.lists(st.integers(2, 198), max_size=20),
)
def test_reordering_loses_nothing(start: int, n: int, swaps: list[int]) -> None:
    seqs = [start + i for i in range(n)]
    for i in swaps:
        if i + 1 < n:
            seqs[i], seqs[i + 1] = seqs[i + 1], seqs[i]
    src = RtpSource(1)
    feed(src, seqs)
    assert src.lost == 0
    assert src.extended_max_seq - src.base_seq == n - 2
