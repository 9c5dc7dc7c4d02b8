"""RTCP of one leg, in memory: two sessions facing each other, a virtual clock, lost packets."""

from __future__ import annotations

import itertools
import random
import struct

from telephony.rtp import RtpPacket, parse_rtcp
from telephony.rtp.rtcp import Bye, ReceiverReport, SenderReport, SourceDescription
from telephony.rtp.rtcp_session import REPORT_INTERVAL, RtcpSession

WALL0 = 1_800_000_000.0  # Unix time at now == 0


def packet(ssrc: int, seq: int, ts: int) -> bytes:
    return bytes(
        RtpPacket(payload_type=0, sequence_number=seq, timestamp=ts, ssrc=ssrc, payload=bytes(160))
    )


def pair() -> tuple[RtcpSession, RtcpSession]:
    a = RtcpSession(cname="engine@127.0.0.1", now=0.0, rng=random.Random(1))
    b = RtcpSession(cname="phone@127.0.0.1", now=0.0, rng=random.Random(2))
    return a, b


def stream(
    sender: RtcpSession,
    receiver: RtcpSession,
    *,
    ssrc: int,
    start: float,
    count: int,
    drop: set[int] = frozenset(),
    seq0: int = 100,
) -> float:
    """`count` packets of 20 ms from sender to receiver; the ones in `drop` are lost."""
    now = start
    for i in range(count):
        data = packet(ssrc, (seq0 + i) & 0xFFFF, 160 * i)
        sender.rtp_sent(data, now)
        if i not in drop:
            receiver.rtp_received(data, now + 0.010)
        now += 0.020
    return now


def test_a_sender_reports_counts_and_the_receiver_measures_loss() -> None:
    a, b = pair()
    lost = {10, 11, 50}
    now = stream(a, b, ssrc=0xAAAA, start=0.0, count=250, drop=lost)
    assert b.packets_expected == 249  # the first packet is RTP probation (RFC 3550 A.1)
    assert b.packets_lost == 3
    report = a.report(now, WALL0 + now)
    sr, sdes = parse_rtcp(report)
    assert isinstance(sr, SenderReport) and sr.ssrc == 0xAAAA
    assert (sr.packet_count, sr.octet_count) == (250, 250 * 160)
    assert isinstance(sdes, SourceDescription) and sdes.chunks[0].cname == "engine@127.0.0.1"


def test_the_far_ends_report_gives_loss_jitter_and_round_trip() -> None:
    a, b = pair()
    now = stream(a, b, ssrc=0xAAAA, start=0.0, count=250, drop={5, 6, 7, 8})
    sr = a.report(now, WALL0 + now)
    b.rtcp_received(sr, now + 0.015, WALL0 + now + 0.015)  # 15 ms one way
    # b answers 0.5 s later with a receiver report about a's stream (b sent nothing).
    later = now + 0.515
    rr = b.report(later, WALL0 + later)
    first = parse_rtcp(rr)[0]
    assert isinstance(first, ReceiverReport) and first.reports[0].ssrc == 0xAAAA
    a.rtcp_received(rr, later + 0.015, WALL0 + later + 0.015)
    assert a.remote is not None
    assert a.remote.packets_lost == 4
    assert abs(a.remote.fraction_lost - 4 / 249) < 1 / 256
    assert a.remote.round_trip is not None and abs(a.remote.round_trip - 0.030) < 0.001
    assert a.remote.jitter < 0.001  # packets arrived evenly
    assert a.reports_received == 1 and b.reports_received == 1


def test_a_new_far_end_ssrc_keeps_the_totals() -> None:
    a, b = pair()
    stream(b, a, ssrc=1, start=0.0, count=50, drop={20})
    stream(b, a, ssrc=2, start=1.0, count=50, drop={30, 31}, seq0=9000)
    assert a.source is not None and a.source.ssrc == 2
    assert a.packets_lost == 3
    assert a.packets_expected == 98


def test_reports_come_at_randomised_intervals_around_five_seconds() -> None:
    a, _ = pair()
    times = []
    now = 0.0
    while len(times) < 40:
        if a.due(now):
            a.report(now, WALL0 + now)
            times.append(now)
        now += 0.05
    gaps = [t2 - t1 for t1, t2 in itertools.pairwise(times)]
    assert times[0] <= REPORT_INTERVAL * 0.75 + 0.05
    assert all(REPORT_INTERVAL * 0.5 <= g <= REPORT_INTERVAL * 1.5 + 0.05 for g in gaps)
    assert len({round(g, 2) for g in gaps}) > 5  # randomised, not a fixed period


def test_without_sending_the_leg_reports_with_its_own_ssrc() -> None:
    a, b = pair()
    stream(b, a, ssrc=7, start=0.0, count=10)
    rr, sdes = parse_rtcp(a.report(1.0, WALL0 + 1.0))
    assert isinstance(rr, ReceiverReport) and rr.ssrc == a.own_ssrc
    assert rr.reports[0].ssrc == 7
    assert isinstance(sdes, SourceDescription)


def test_malformed_rtcp_is_counted_and_ignored() -> None:
    a, _ = pair()
    for junk in (
        b"",
        b"\x00" * 3,
        b"\x80\xc8\x00\x40" + bytes(8),
        struct.pack("!BBH", 0x40, 201, 1),
    ):
        a.rtcp_received(junk, 1.0, WALL0)
    assert a.bad_reports == 4 and a.reports_received == 0 and a.remote is None


def test_a_report_about_someone_else_is_not_taken_as_ours() -> None:
    a, b = pair()
    now = stream(b, a, ssrc=0xB, start=0.0, count=60)  # a receives, b sends
    # b's SR carries no block about a (b received nothing): a learns nothing about its stream.
    a.rtcp_received(b.report(now, WALL0 + now), now, WALL0 + now)
    assert a.remote is None and a.reports_received == 1


def test_bye_names_the_leg() -> None:
    a, _ = pair()
    *_, bye = parse_rtcp(a.bye())
    assert isinstance(bye, Bye) and bye.sources == (a.own_ssrc,)
