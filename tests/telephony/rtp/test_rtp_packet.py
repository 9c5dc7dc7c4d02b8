from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.rtp import RtpError, RtpPacket, RtpSource, is_rtcp

from ._pcap import SIPP_PCAPS, udp_payloads

# RFC 3550 5.1 layouts, assembled by hand.
PCMU_PACKET = bytes.fromhex("80001234deadbeef01020304") + b"\xff\xfe\x7f\x00"
EVENT_PACKET = bytes.fromhex("80e5004d000003c0cafebabe") + bytes.fromhex("050a00a0")
FULL_PACKET = (
    bytes.fromhex("b2080001000000a0cafebabe")  # V=2 P X CC=2, PT 8, seq 1, ts 160
    + bytes.fromhex("1111111122222222")  # two CSRC
    + bytes.fromhex("bede000110aa0000")  # extension: profile 0xBEDE, one word
    + b"\xd5\xd5"  # payload
    + bytes.fromhex("00000004")  # four bytes of padding
)


def test_parse_plain_packet() -> None:
    p = RtpPacket.parse(PCMU_PACKET)
    assert p == RtpPacket(
        payload_type=0,
        sequence_number=0x1234,
        timestamp=0xDEADBEEF,
        ssrc=0x01020304,
        payload=b"\xff\xfe\x7f\x00",
    )
    assert not p.marker and p.csrc == () and p.extension_profile is None and p.padding == 0
    assert bytes(p) == PCMU_PACKET


def test_parse_marker_and_dynamic_type() -> None:
    p = RtpPacket.parse(EVENT_PACKET)
    assert (p.marker, p.payload_type, p.sequence_number, p.timestamp) == (True, 101, 77, 960)
    assert p.ssrc == 0xCAFEBABE
    assert bytes(p) == EVENT_PACKET


def test_parse_csrc_extension_padding() -> None:
    p = RtpPacket.parse(FULL_PACKET)
    assert p.csrc == (0x11111111, 0x22222222)
    assert p.extension_profile == 0xBEDE
    assert p.extension == bytes.fromhex("10aa0000")
    assert p.payload == b"\xd5\xd5"
    assert p.padding == 4
    assert (p.payload_type, p.sequence_number, p.timestamp) == (8, 1, 160)
    assert bytes(p) == FULL_PACKET


def test_build_matches_layout() -> None:
    p = RtpPacket(8, 1, 160, 0xCAFEBABE, b"\xd5\xd5", csrc=(0x11111111, 0x22222222))
    p.extension_profile, p.extension, p.padding = 0xBEDE, bytes.fromhex("10aa0000"), 4
    assert bytes(p) == FULL_PACKET


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "short"),
        (PCMU_PACKET[:11], "short"),
        (bytes([0x40]) + PCMU_PACKET[1:], "version"),
        (bytes([0x83]) + PCMU_PACKET[1:], "CSRC"),  # says 3 CSRC, has 4 bytes
        (bytes([0x90]) + PCMU_PACKET[1:12] + b"\xbe\xde", "extension header"),
        (bytes([0x90]) + PCMU_PACKET[1:12] + b"\xbe\xde\x00\x05" + b"\x00" * 8, "extension"),
        (bytes([0xA0]) + PCMU_PACKET[1:-1] + b"\x00", "padding"),
        (bytes([0xA0]) + PCMU_PACKET[1:-1] + b"\x09", "padding"),
    ],
)
def test_malformed_packets_raise(data: bytes, why: str) -> None:
    with pytest.raises(RtpError, match="(?i)" + why.split()[0]):
        RtpPacket.parse(data)


def test_serialising_bad_fields_raises() -> None:
    with pytest.raises(RtpError):
        bytes(RtpPacket(csrc=tuple(range(16))))
    with pytest.raises(RtpError):
        bytes(RtpPacket(extension_profile=1, extension=b"abc"))
    with pytest.raises(RtpError):
        bytes(RtpPacket(padding=256))


def test_rtcp_demultiplexing() -> None:
    assert not is_rtcp(PCMU_PACKET)
    assert not is_rtcp(EVENT_PACKET)  # 0xE5 = marker + 101: above the RTCP range
    assert is_rtcp(bytes.fromhex("80c80006"))  # SR
    assert is_rtcp(bytes.fromhex("81c90007"))  # RR
    assert is_rtcp(bytes.fromhex("81cb0001"))  # BYE
    assert not is_rtcp(b"\x80")


@given(
    pt=st.integers(0, 127),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    ext=st.none() | st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=12)),
    padding=st.integers(0, 255),
)
@settings(max_examples=300)
def test_round_trip(
    pt: int,
    seq: int,
    ts: int,
    ssrc: int,
    payload: bytes,
    marker: bool,
    csrc: tuple[int, ...],
    ext: tuple[int, bytes] | None,
    padding: int,
) -> None:
    profile, data = (None, b"") if ext is None else (ext[0], ext[1] + bytes(-len(ext[1]) % 4))
    p = RtpPacket(pt, seq, ts, ssrc, payload, marker, csrc, profile, data, padding)
    wire = bytes(p)
    assert RtpPacket.parse(wire) == p
    assert (
        len(wire)
        == 12 + 4 * len(csrc) + (0 if ext is None else 4 + len(data)) + len(payload) + padding
    )


@given(st.binary(max_size=64))
def test_arbitrary_bytes_parse_or_raise_rtp_error(data: bytes) -> None:
    try:
        p = RtpPacket.parse(data)
    except RtpError:
        return
    assert RtpPacket.parse(bytes(p)) == p


def test_sipp_g711a_pcap_round_trips() -> None:
    path = SIPP_PCAPS / "g711a.pcap"
    if not path.exists():
        pytest.skip("SIPp (sip-tester) pcaps not installed")
    payloads = udp_payloads(path)
    assert len(payloads) > 100
    first = RtpPacket.parse(payloads[0])
    source = RtpSource(first.ssrc)
    previous = None
    for i, raw in enumerate(payloads):
        p = RtpPacket.parse(raw)
        assert bytes(p) == raw
        assert p.payload_type == 8 and p.ssrc == first.ssrc
        if previous is not None:
            # 30 ms packets: the timestamp moves by the payload's sample count.
            assert p.sequence_number == (previous.sequence_number + 1) & 0xFFFF
            assert p.timestamp - previous.timestamp == len(previous.payload) == 240
        source.receive(p.sequence_number, p.timestamp, now=i * 0.03)
        previous = p
    assert source.received == len(payloads) - 1  # the first packet is probation
    assert source.lost == 0
    assert source.jitter < 1e-6
