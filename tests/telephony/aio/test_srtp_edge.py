"""The SRTP edge of one RTP port on a virtual clock: packets before the keys are dropped on a
leg that requires SRTP; a packet that fails authentication neither reaches the media plane nor
moves the latched source; what does arrive is handed up as plain RTP."""

from __future__ import annotations

import struct
from typing import Any, cast

from telephony.aio.rtp import RtpEndpoint, RtpTotals
from telephony.rtp.srtp import SrtpContext
from telephony.sdp.crypto import SrtpKeys, new_master_key

PHONE = ("127.0.0.1", 40000)
ATTACKER = ("127.0.0.1", 40100)
SUITE = "AES_CM_128_HMAC_SHA1_80"


class _Clock:
    now = 1000.0

    def time(self) -> float:
        return self.now


def _rtp(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, 160 * seq, 0x4242) + bytes([seq]) * 160


def test_required_leg_drops_until_keys_then_takes_only_authentic_packets() -> None:
    clock = _Clock()
    leg = RtpEndpoint(20000, cast(Any, clock), "test@127.0.0.1")
    leg.srtp_required = True
    heard: list[bytes] = []
    leg.on_packet = heard.append

    leg.datagram_received(_rtp(1), PHONE)  # before the answer brought the keys
    assert heard == [] and leg.early_dropped == 1 and not leg.latched

    ours, theirs = new_master_key(), new_master_key()
    leg.set_srtp(SrtpKeys(SUITE, local=ours, remote=theirs))
    phone = SrtpContext(SUITE, theirs, ours)
    leg.datagram_received(phone.protect(_rtp(2)) or b"", PHONE)
    assert heard == [_rtp(2)] and leg.remote == PHONE and leg.latched

    # Ours stays latched for a while: a forged packet from elsewhere is ignored outright; after
    # the phone falls silent, one from elsewhere still has to authenticate to take over.
    forged = _rtp(3) + bytes(10)
    leg.datagram_received(forged, ATTACKER)
    clock.now += 5
    leg.datagram_received(forged, ATTACKER)
    assert heard == [_rtp(2)] and leg.remote == PHONE
    assert leg.srtp is not None and leg.srtp.rejected == 1

    # The same keys again (a re-INVITE that changed nothing) keep the context and its state.
    context = leg.srtp
    leg.set_srtp(SrtpKeys(SUITE, local=ours, remote=theirs))
    assert leg.srtp is context
    leg.datagram_received(phone.protect(_rtp(4)) or b"", PHONE)
    assert heard[-1] == _rtp(4)

    # /metrics counts both kinds of drop (callcenter_srtp_dropped_total).
    totals = RtpTotals()
    totals.add(leg)
    assert totals.srtp_dropped == 2
