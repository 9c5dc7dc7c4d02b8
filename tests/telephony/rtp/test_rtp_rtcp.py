from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.rtp import (
    SDES_CNAME,
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    RtcpPacket,
    RtcpUnknown,
    RtpError,
    SdesChunk,
    SenderReport,
    SourceDescription,
    dlsr_from_seconds,
    is_rtcp,
    ntp_from_unix,
    ntp_middle,
    parse_rtcp,
    serialize_rtcp,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# RFC 3550 6.4.1 / 6.4.2 / 6.5 / 6.6 layouts, assembled by hand.
SR = h(
    "81c8000c 11223344 e0000000 80000000 00001f40 00000064 00003e80"
    " 55667788 40000005 00010010 00000020 12345678 00010000"
)
SR_PACKET = SenderReport(
    ssrc=0x11223344,
    ntp_timestamp=0xE0000000_80000000,
    rtp_timestamp=8000,
    packet_count=100,
    octet_count=16000,
    reports=(
        ReportBlock(
            ssrc=0x55667788,
            fraction_lost=64,
            packets_lost=5,
            highest_sequence=0x10010,
            jitter=32,
            lsr=0x12345678,
            dlsr=0x10000,
        ),
    ),
)
RR_EMPTY = h("80c90001 11223344")
SDES_2 = h("81ca0003 11223344 01026162 00000000")
SDES_4 = h("81ca0003 11223344 01046162 63640000")
SDES_6 = h("81ca0004 11223344 01066162 63646566 00000000")
BYE_REASON = h("81cb0002 11223344 03627965")
BYE_PLAIN = h("81cb0001 11223344")
APP = h("80cc0002 11223344 6e616d65")


@pytest.mark.parametrize(
    ("wire", "packet"),
    [
        (SR, SR_PACKET),
        (RR_EMPTY, ReceiverReport(0x11223344)),
        (SDES_2, SourceDescription((SdesChunk(0x11223344, ((SDES_CNAME, b"ab"),)),))),
        (SDES_4, SourceDescription((SdesChunk(0x11223344, ((SDES_CNAME, b"abcd"),)),))),
        (SDES_6, SourceDescription((SdesChunk(0x11223344, ((SDES_CNAME, b"abcdef"),)),))),
        (BYE_REASON, Bye((0x11223344,), "bye")),
        (BYE_PLAIN, Bye((0x11223344,))),
        (APP, RtcpUnknown(204, 0, h("11223344 6e616d65"))),
    ],
)
def test_golden_packets(wire: bytes, packet: RtcpPacket) -> None:
    assert parse_rtcp(wire) == [packet]
    assert bytes(packet) == wire
    assert is_rtcp(wire)


def test_negative_cumulative_loss() -> None:
    block = ReportBlock(ssrc=1, packets_lost=-3)
    wire = bytes(ReceiverReport(2, (block,)))
    assert wire[8 + 5 : 8 + 8] == b"\xff\xff\xfd"
    assert parse_rtcp(wire) == [ReceiverReport(2, (block,))]
    # Out-of-range counts are clamped to 24 bits, not wrapped.
    assert ReportBlock.parse(bytes(ReportBlock(1, packets_lost=10**9))).packets_lost == 0x7FFFFF


def test_compound_packet() -> None:
    wire = SR + SDES_4 + BYE_REASON
    packets = parse_rtcp(wire)
    assert [type(p) for p in packets] == [SenderReport, SourceDescription, Bye]
    assert serialize_rtcp(packets) == wire
    sdes = packets[1]
    assert isinstance(sdes, SourceDescription)
    assert sdes.chunks[0].cname == "abcd"


def test_padding_on_the_last_packet_is_dropped() -> None:
    padded = h("a0c90002 11223344 00000004")
    assert parse_rtcp(RR_EMPTY + padded) == [ReceiverReport(0x11223344)] * 2
    with pytest.raises(RtcpError, match="only in the last"):
        parse_rtcp(padded + RR_EMPTY)


def test_unknown_packet_with_padding_is_rebuilt() -> None:
    padded = h("a0cc0002 11223344 6e610002")  # two bytes of body, then padding of 2
    (packet,) = parse_rtcp(padded)
    assert packet == RtcpUnknown(204, 0, h("11223344 6e61"))
    assert bytes(packet) == h("a0cc0002 11223344 6e610002")


def test_sdes_with_several_items_and_chunks() -> None:
    chunks = (
        SdesChunk(1, ((SDES_CNAME, b"user@host"), (2, b"Alice"), (8, b"\x00priv"))),
        SdesChunk(2, ()),
    )
    wire = bytes(SourceDescription(chunks))
    assert len(wire) % 4 == 0
    (parsed,) = parse_rtcp(wire)
    assert parsed == SourceDescription(chunks)
    assert chunks[1].cname is None


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        h("81c9"),
        h("41c90001 11223344"),  # version 1
        h("80c90002 11223344"),  # length beyond the datagram
        h("81c90001 11223344"),  # one report block announced, none present
        h("80c80001 11223344"),  # SR without sender info
        h("80c90000"),  # RR without SSRC
        h("81ca0002 11223344 01096162"),  # SDES item longer than the packet
        h("81ca0002 11223344 01026162"),  # SDES items not terminated
        h("82cb0001 11223344"),  # BYE with two SSRC announced
        h("81cb0002 11223344 09627965"),  # BYE reason overrun
        h("a0c90002 11223344 00000009"),  # padding count too large
        RR_EMPTY + h("80"),  # trailing garbage
    ],
)
def test_malformed_rtcp_raises(wire: bytes) -> None:
    with pytest.raises(RtcpError):
        parse_rtcp(wire)


def test_rtcp_error_is_an_rtp_error() -> None:
    assert issubclass(RtcpError, RtpError)
    with pytest.raises(RtcpError):
        bytes(SdesChunk(1, ((SDES_CNAME, b"x" * 256),)))


def test_ntp_helpers() -> None:
    assert ntp_from_unix(0.0) == 2_208_988_800 << 32
    assert ntp_from_unix(1.5) == ((2_208_988_801 << 32) | 0x8000_0000)
    assert ntp_middle(0x0123_4567_89AB_CDEF) == 0x4567_89AB
    assert dlsr_from_seconds(1.0) == 65536
    assert dlsr_from_seconds(0.5) == 32768
    assert dlsr_from_seconds(-1.0) == 0


_u32 = st.integers(0, 0xFFFFFFFF)
_block = st.builds(
    ReportBlock,
    _u32,
    st.integers(0, 255),
    st.integers(-0x800000, 0x7FFFFF),
    _u32,
    _u32,
    _u32,
    _u32,
)
_words = st.binary(max_size=12).map(lambda b: b + bytes(-len(b) % 4))
_packet = st.one_of(
    st.builds(
        SenderReport,
        _u32,
        st.integers(0, 2**64 - 1),
        _u32,
        _u32,
        _u32,
        st.lists(_block, max_size=3).map(tuple),
        _words,
    ),
    st.builds(ReceiverReport, _u32, st.lists(_block, max_size=31).map(tuple), _words),
    st.builds(
        SourceDescription,
        st.lists(
            st.builds(
                SdesChunk,
                _u32,
                st.lists(st.tuples(st.integers(1, 8), st.binary(max_size=40)), max_size=3).map(
                    tuple
                ),
            ),
            max_size=3,
        ).map(tuple),
    ),
    st.builds(
        Bye,
        st.lists(_u32, max_size=4).map(tuple),
        st.none() | st.text(alphabet="abcdefgh xyz", max_size=30),
    ),
    st.builds(RtcpUnknown, st.integers(204, 223), st.integers(0, 31), _words),
)


@given(st.lists(_packet, min_size=1, max_size=4))
@settings(max_examples=200)
def test_compound_round_trip(packets: list[RtcpPacket]) -> None:
    wire = serialize_rtcp(packets)
    assert parse_rtcp(wire) == packets


@given(st.binary(max_size=80))
def test_arbitrary_bytes_parse_or_raise(data: bytes) -> None:
    try:
        packets = parse_rtcp(data)
    except RtcpError:
        return
    assert packets
