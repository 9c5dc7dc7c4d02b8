from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telephony.rtp import RtpError, RtpPacket, StreamRewriter


def pkt(seq: int, ts: int, ssrc: int, *, pt: int = 0, marker: bool = False) -> bytes:
    return bytes(RtpPacket(pt, seq & 0xFFFF, ts % 2**32, ssrc, b"\xff" * 160, marker))


def out(rw: StreamRewriter, data: bytes, now: float | None = None) -> RtpPacket:
    return RtpPacket.parse(rw.rewrite(data, now=now))


def test_first_packet_takes_the_initial_numbers() -> None:
    rw = StreamRewriter(ssrc=0xAAAA, sequence_number=500, timestamp=16000)
    p = out(rw, pkt(9000, 123456, 0x1111))
    assert (p.ssrc, p.sequence_number, p.timestamp, p.marker) == (0xAAAA, 500, 16000, True)
    assert p.payload == b"\xff" * 160
    q = out(rw, pkt(9001, 123456 + 160, 0x1111))
    assert (q.sequence_number, q.timestamp, q.marker) == (501, 16160, False)
    assert (rw.last_sequence_number, rw.last_timestamp) == (501, 16160)


def test_loss_and_reordering_pass_through() -> None:
    rw = StreamRewriter(ssrc=1, sequence_number=0, timestamp=0)
    got = [out(rw, pkt(s, s * 160, 7)).sequence_number for s in (100, 101, 103, 102, 104)]
    assert got == [0, 1, 3, 2, 4]
    assert rw.last_sequence_number == 4


def test_source_switch_keeps_stream_continuous() -> None:
    rw = StreamRewriter(ssrc=0xBEEF, sequence_number=65534, timestamp=2**32 - 160)
    prompt = [out(rw, pkt(10 + i, 5000 + 160 * i, 0x1111)) for i in range(3)]
    assert [p.sequence_number for p in prompt] == [65534, 65535, 0]
    assert [p.timestamp for p in prompt] == [2**32 - 160, 0, 160]
    peer = [out(rw, pkt(40000 + i, 999_999 + 160 * i, 0x2222)) for i in range(2)]
    assert [p.sequence_number for p in peer] == [1, 2]
    assert [p.timestamp for p in peer] == [320, 480]
    assert [p.marker for p in peer] == [True, False]
    assert {p.ssrc for p in prompt + peer} == {0xBEEF}


def test_switch_timestamp_follows_elapsed_time() -> None:
    rw = StreamRewriter(ssrc=1, sequence_number=0, timestamp=0)
    out(rw, pkt(1, 0, 0x1111), now=10.0)
    out(rw, pkt(2, 160, 0x1111), now=10.02)
    # 1 s of silence before the peer's first packet.
    p = out(rw, pkt(77, 4242, 0x2222), now=11.02)
    assert p.sequence_number == 2
    assert p.timestamp == 160 + 8000
    assert p.marker


def test_same_source_restart_is_treated_as_a_switch() -> None:
    rw = StreamRewriter(ssrc=1, sequence_number=0, timestamp=0)
    out(rw, pkt(100, 1000, 5))
    out(rw, pkt(101, 1160, 5))
    p = out(rw, pkt(30000, 77, 5))
    assert (p.sequence_number, p.timestamp, p.marker) == (2, 320, True)
    # A small gap is loss, passed through.
    q = out(rw, pkt(30003, 77 + 3 * 160, 5))
    assert (q.sequence_number, q.timestamp, q.marker) == (5, 320 + 480, False)


def test_payload_type_renumbering_keeps_marker() -> None:
    rw = StreamRewriter(ssrc=1, payload_types={101: 96})
    p = out(rw, pkt(1, 0, 5, pt=101, marker=True))
    assert (p.payload_type, p.marker) == (96, True)
    q = out(rw, pkt(2, 0, 5, pt=101))
    assert (q.payload_type, q.marker) == (96, False)
    r = out(rw, pkt(3, 160, 5, pt=0))
    assert r.payload_type == 0


def test_counts_for_sender_reports() -> None:
    rw = StreamRewriter(ssrc=1)
    for i in range(5):
        rw.rewrite(pkt(i, i * 160, 5))
    data = bytes(RtpPacket(0, 5, 800, 5, b"\x00" * 10, csrc=(1, 2)))
    rw.rewrite(data)
    assert rw.packet_count == 6
    assert rw.octet_count == 5 * 160 + 10


def test_header_fields_beyond_numbers_are_untouched() -> None:
    rw = StreamRewriter(ssrc=0x99)
    original = RtpPacket(8, 1, 2, 3, b"abc", csrc=(7,), extension_profile=0xBEDE)
    original.extension, original.padding = b"\x01\x02\x03\x04", 2
    p = RtpPacket.parse(rw.rewrite(bytes(original)))
    assert (p.csrc, p.extension_profile, p.extension, p.padding, p.payload) == (
        (7,),
        0xBEDE,
        b"\x01\x02\x03\x04",
        2,
        b"abc",
    )


@pytest.mark.parametrize("data", [b"", b"\x80\x00", bytes(12), b"\x40" + bytes(11)])
def test_non_rtp_is_refused(data: bytes) -> None:
    with pytest.raises(RtpError):
        StreamRewriter(ssrc=1).rewrite(data)


@given(
    runs=st.lists(
        st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1)),
        min_size=1,
        max_size=6,
    ),
    lengths=st.lists(st.integers(1, 20), min_size=6, max_size=6),
    seq0=st.integers(0, 0xFFFF),
    ts0=st.integers(0, 2**32 - 1),
)
def test_in_order_sources_give_one_gapless_stream(
    runs: list[tuple[int, int, int]], lengths: list[int], seq0: int, ts0: int
) -> None:
    rw = StreamRewriter(ssrc=0x5EED, sequence_number=seq0, timestamp=ts0)
    got = []
    previous_ssrc = None
    for (ssrc, seq, ts), n in zip(runs, lengths, strict=False):
        if ssrc == previous_ssrc:
            continue
        previous_ssrc = ssrc
        for i in range(n):
            got.append(out(rw, pkt(seq + i, ts + 160 * i, ssrc)))
    seqs = [p.sequence_number for p in got]
    assert seqs == [(seq0 + i) & 0xFFFF for i in range(len(got))]
    stamps = [p.timestamp for p in got]
    assert stamps == [(ts0 + 160 * i) % 2**32 for i in range(len(got))]
    assert {p.ssrc for p in got} == {0x5EED}
