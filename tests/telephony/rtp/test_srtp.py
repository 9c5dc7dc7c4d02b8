"""SRTP/SRTCP through libsrtp: what one side protects the other unprotects (both suites); a
forged, tampered or replayed packet is dropped and counted; a re-key keeps the unchanged side."""

from __future__ import annotations

import pytest

from telephony.rtp import RtpPacket
from telephony.rtp.rtcp import ReceiverReport, serialize_rtcp
from telephony.rtp.srtp import PROFILES, SrtpContext
from telephony.sdp.crypto import SUITES, new_master_key

TAG_BYTES = {"AES_CM_128_HMAC_SHA1_80": 10, "AES_CM_128_HMAC_SHA1_32": 4}


def _pair(suite: str) -> tuple[SrtpContext, SrtpContext]:
    a_key, b_key = new_master_key(), new_master_key()
    return SrtpContext(suite, a_key, b_key), SrtpContext(suite, b_key, a_key)


def _rtp(seq: int) -> bytes:
    return bytes(RtpPacket(payload_type=0, sequence_number=seq, timestamp=160 * seq,
                           ssrc=0x1234, payload=bytes([seq % 256]) * 160))  # fmt: skip


def test_every_suite_we_offer_has_a_libsrtp_profile() -> None:
    assert set(SUITES) == set(PROFILES)


@pytest.mark.parametrize("suite", SUITES)
def test_round_trip_both_ways_with_the_suite_tag(suite: str) -> None:
    a, b = _pair(suite)
    for seq in range(1, 50):
        plain = _rtp(seq)
        wire = a.protect(plain)
        assert wire is not None and len(wire) == len(plain) + TAG_BYTES[suite]
        assert wire[12:172] != plain[12:172]  # the payload is encrypted, the header is not
        assert b.unprotect(wire) == plain
        back = b.protect(plain)
        assert back is not None and a.unprotect(back) == plain
    assert a.rejected == b.rejected == 0


@pytest.mark.parametrize("suite", SUITES)
def test_srtcp_round_trip(suite: str) -> None:
    a, b = _pair(suite)
    report = serialize_rtcp([ReceiverReport(ssrc=0x1234, reports=[])])
    wire = a.protect_rtcp(report)
    assert wire is not None and wire != report
    assert b.unprotect_rtcp(wire) == report


def test_tampered_forged_and_replayed_packets_are_dropped() -> None:
    a, b = _pair("AES_CM_128_HMAC_SHA1_80")
    wire = a.protect(_rtp(1))
    assert wire is not None
    tampered = wire[:20] + bytes([wire[20] ^ 1]) + wire[21:]
    assert b.unprotect(tampered) is None
    assert b.unprotect(_rtp(2) + bytes(10)) is None  # plain RTP with a made-up tag
    assert b.unprotect(wire) is not None
    assert b.unprotect(wire) is None  # the same packet again: a replay
    assert b.rejected == 3
    assert b.unprotect_rtcp(b"\x81\xc9\x00\x01" + bytes(4)) is None
    assert b.rejected_rtcp == 1


def test_rekey_changes_only_the_direction_whose_key_changed() -> None:
    a_key, b_key, b_new = new_master_key(), new_master_key(), new_master_key()
    suite = "AES_CM_128_HMAC_SHA1_80"
    a, b = SrtpContext(suite, a_key, b_key), SrtpContext(suite, b_key, a_key)
    for seq in range(1, 5):
        assert b.unprotect(a.protect(_rtp(seq)) or b"") is not None
    # The far end changes its key in a re-INVITE: our sending side goes on where it was.
    a.rekey(suite, a_key, b_new)
    b = SrtpContext(suite, b_new, a_key)  # b's receiving side starts afresh, as its new session
    for seq in range(5, 9):
        assert b.unprotect(a.protect(_rtp(seq)) or b"") is not None
        assert a.unprotect(b.protect(_rtp(seq)) or b"") is not None
    assert a.same_keys(suite, a_key, b_new) and not a.same_keys(suite, a_key, b_key)
