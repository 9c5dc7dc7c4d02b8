from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telephony.rtp import (
    DTMF_DIGITS,
    DtmfReceiver,
    DtmfSender,
    RtpError,
    RtpPacket,
    TelephoneEvent,
    digit_to_event,
    event_to_digit,
)

from ._pcap import SIPP_PCAPS, udp_payloads


def test_event_payload_layout() -> None:
    # RFC 4733 2.3: event | E R volume | duration
    assert bytes(TelephoneEvent(5, end=False, volume=10, duration=160)) == b"\x05\x0a\x00\xa0"
    assert bytes(TelephoneEvent(11, end=True, volume=63, duration=0xFFFF)) == b"\x0b\xbf\xff\xff"
    ev = TelephoneEvent.parse(b"\x0b\xbf\xff\xff")
    assert ev == TelephoneEvent(11, end=True, volume=63, duration=0xFFFF)
    assert ev.digit == "#"
    # The reserved bit is ignored.
    assert TelephoneEvent.parse(b"\x01\x4a\x00\x00") == TelephoneEvent(1, False, 10, 0)
    with pytest.raises(RtpError):
        TelephoneEvent.parse(b"\x01\x0a\x00")
    with pytest.raises(RtpError):
        bytes(TelephoneEvent(1, volume=64))


def test_digit_mapping() -> None:
    assert [event_to_digit(e) for e in range(16)] == list(DTMF_DIGITS)
    assert event_to_digit(16) is None
    assert digit_to_event("*") == 10 and digit_to_event("#") == 11
    assert digit_to_event("d") == 15
    for bad in ("", "E", "12", " "):
        with pytest.raises(RtpError):
            digit_to_event(bad)


def press(
    digit: str, *, ts: int, seq: int, updates: int = 4, ends: int = 3, ssrc: int = 7
) -> list[RtpPacket]:
    """A key press as a sender writes it: marker start, updates, repeated end packets."""
    event = digit_to_event(digit)
    packets = []
    for i in range(updates + 1):
        payload = bytes(TelephoneEvent(event, duration=160 * i))
        packets.append(RtpPacket(101, seq + i, ts, ssrc, payload, marker=i == 0))
    for j in range(ends):
        payload = bytes(TelephoneEvent(event, end=True, duration=160 * (updates + 1)))
        packets.append(RtpPacket(101, seq + updates + 1 + j, ts, ssrc, payload))
    return packets


def feed_all(receiver: DtmfReceiver, packets: list[RtpPacket]) -> str:
    return "".join(d for p in packets if (d := receiver.feed(p)) is not None)


def test_one_press_one_digit_despite_three_end_packets() -> None:
    rx = DtmfReceiver()
    packets = press("5", ts=1000, seq=10)
    assert rx.feed(packets[0]) == "5"
    assert feed_all(rx, packets[1:]) == ""


def test_digit_reported_when_start_packet_is_lost() -> None:
    rx = DtmfReceiver()
    assert feed_all(rx, press("9", ts=1000, seq=10)[2:]) == "9"


def test_same_key_twice_is_two_digits() -> None:
    rx = DtmfReceiver()
    packets = press("1", ts=1000, seq=10) + press("1", ts=3000, seq=20)
    assert feed_all(rx, packets) == "11"


def test_sequence_of_keys_and_late_duplicates() -> None:
    rx = DtmfReceiver()
    first = press("1", ts=1000, seq=10)
    second = press("2", ts=3000, seq=20)
    # A late retransmitted end of "1" arrives after "2" started.
    stream = first + second[:2] + [first[-1]] + second[2:]
    assert feed_all(rx, stream) == "12"


def test_all_sixteen_keys() -> None:
    rx = DtmfReceiver()
    packets = [p for i, d in enumerate(DTMF_DIGITS) for p in press(d, ts=i * 4000, seq=i * 10)]
    assert feed_all(rx, packets) == DTMF_DIGITS


def test_long_press_split_into_segments_is_one_digit() -> None:
    # RFC 4733 2.5.2.3: past 0xFFFF samples the sender starts a new segment: new timestamp,
    # no marker, same event.
    rx = DtmfReceiver()
    first = RtpPacket(101, 1, 1000, 7, bytes(TelephoneEvent(0, duration=0xFFFF)), marker=True)
    segment = RtpPacket(101, 2, 1000 + 0xFFFF, 7, bytes(TelephoneEvent(0, duration=800)))
    end = RtpPacket(101, 3, 1000 + 0xFFFF, 7, bytes(TelephoneEvent(0, True, 10, 1600)))
    assert feed_all(rx, [first, segment, end, end]) == "0"


def test_non_dtmf_events_yield_nothing() -> None:
    rx = DtmfReceiver()
    flash = RtpPacket(101, 1, 1000, 7, bytes(TelephoneEvent(16)), marker=True)
    assert rx.feed(flash) is None


def test_timestamps_of_different_sources_do_not_collide() -> None:
    rx = DtmfReceiver()
    both = press("3", ts=500, seq=1, ssrc=1) + press("4", ts=500, seq=1, ssrc=2)
    assert feed_all(rx, both) == "34"
    assert feed_all(rx, press("4", ts=500, seq=1, ssrc=2)) == ""


@pytest.mark.parametrize(
    ("name", "digit"), [*((str(d), str(d)) for d in range(10)), ("star", "*"), ("pound", "#")]
)
def test_sipp_dtmf_pcaps(name: str, digit: str) -> None:
    path = SIPP_PCAPS / f"dtmf_2833_{name}.pcap"
    if not path.exists():
        pytest.skip("SIPp (sip-tester) pcaps not installed")
    packets = [RtpPacket.parse(raw) for raw in udp_payloads(path)]
    # SIPp starts with duration 0 and repeats the end packet with the same sequence number.
    assert packets[0].marker and TelephoneEvent.parse(packets[0].payload).duration == 0
    assert sum(TelephoneEvent.parse(p.payload).end for p in packets) == 3
    rx = DtmfReceiver()
    assert feed_all(rx, packets) == digit


def test_sender_packet_sequence() -> None:
    tx = DtmfSender("7", payload_type=101, ssrc=0xABCD, timestamp=48000, duration_ms=100)
    packets = []
    seq = 65533
    while (p := tx.next_packet(seq)) is not None:
        packets.append(p)
        seq += 1
    assert tx.done and tx.next_packet(seq) is None
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    assert [e.duration for e in events] == [0, 160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 5 + [True] * 3
    assert [p.marker for p in packets] == [True] + [False] * 7
    assert {p.timestamp for p in packets} == {48000}
    assert {p.ssrc for p in packets} == {0xABCD}
    assert [p.sequence_number for p in packets] == [65533, 65534, 65535, 0, 1, 2, 3, 4]
    assert {e.event for e in events} == {7} and {e.volume for e in events} == {10}
    assert tx.duration_samples == 800
    # Golden first packet.
    assert bytes(packets[0]) == bytes.fromhex("80e5fffd0000bb800000abcd") + b"\x07\x0a\x00\x00"


def test_sender_clock_rate_and_ptime() -> None:
    tx = DtmfSender(
        "#", payload_type=96, ssrc=1, timestamp=0, duration_ms=60, clock_rate=16000, ptime_ms=30
    )
    durations = []
    while (p := tx.next_packet(0)) is not None:
        durations.append(TelephoneEvent.parse(p.payload).duration)
    assert durations == [0, 480, 960, 960, 960]


@given(
    digits=st.text(alphabet=DTMF_DIGITS, min_size=1, max_size=6),
    duration_ms=st.integers(40, 500),
    start=st.integers(0, 2**32 - 1),
)
def test_sender_to_receiver(digits: str, duration_ms: int, start: int) -> None:
    rx = DtmfReceiver()
    seq, ts, got = 0, start, ""
    for digit in digits:
        tx = DtmfSender(digit, payload_type=101, ssrc=9, timestamp=ts, duration_ms=duration_ms)
        while (p := tx.next_packet(seq)) is not None:
            seq += 1
            got += rx.feed(p) or ""
        ts = (ts + tx.duration_samples + 800) % 2**32
    assert got == digits
