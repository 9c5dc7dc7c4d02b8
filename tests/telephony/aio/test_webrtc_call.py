"""WebRTC legs between two of our UserAgents on loopback, without a browser: the caller offers
UDP/TLS/RTP/SAVPF (policy dtls) and stands in for the browser (controlling, DTLS client), the
callee answers ICE-lite, passive; audio arrives as plain frames above the RTP edge both ways,
RTCP is muxed on the RTP port; a certificate other than the SDP's fingerprint ends the call."""

from __future__ import annotations

import asyncio

from sip_test_env.audio import tone_present
from telephony.aio import Call, UserAgent
from telephony.aio.webrtc import new_certificate
from telephony.call import Answered, Ended
from telephony.media import ToneSource
from telephony.rtp.dtls import DtlsSrtp
from telephony.sip import NameAddr

from .conftest import heard, sip_uri


async def _webrtc_call(caller_ua: UserAgent, callee_ua: UserAgent) -> tuple[Call, Call]:
    incoming: asyncio.Future[Call] = asyncio.get_running_loop().create_future()

    async def on_incoming(call: Call) -> None:
        await call.answer()
        incoming.set_result(call)

    callee_ua.on_incoming = on_incoming
    port = callee_ua.endpoint.port
    caller = await caller_ua.dial(
        sip_uri("callee", port),
        ("udp", "127.0.0.1", port),
        from_=NameAddr(None, sip_uri("caller", caller_ua.endpoint.port), {}),
        srtp="dtls",
    )
    callee = await asyncio.wait_for(incoming, 5)
    assert isinstance(await caller.next_event(5), Answered)
    assert isinstance(await callee.next_event(5), Answered)
    return caller, callee


async def test_webrtc_legs_carry_audio_both_ways(
    user_agents: tuple[UserAgent, UserAgent],
) -> None:
    caller, callee = await _webrtc_call(*user_agents)
    assert caller.media is not None and callee.media is not None
    a, b = caller.media.webrtc, callee.media.webrtc
    assert a is not None and b is not None
    assert not a.dtls.server and b.dtls.server  # the answer said passive
    assert caller.media.sdp.remote is not None
    a.connect_to(caller.media.sdp.remote)  # the browser's part: check, then ClientHello
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while a.connected_at is None or b.connected_at is None:
        assert loop.time() < deadline, "DTLS-SRTP did not come up"
        await asyncio.sleep(0.01)
    assert b.ice.selected == ("127.0.0.1", caller.media.rtp.port)
    assert a.dtls.keys is not None and b.dtls.keys is not None
    assert a.dtls.keys.local == b.dtls.keys.remote
    playing = [
        asyncio.ensure_future(caller.play(ToneSource([700.0], duration=1.5))),
        asyncio.ensure_future(callee.play(ToneSource([1100.0], duration=1.5))),
    ]
    heard_by_callee, heard_by_caller = await asyncio.gather(heard(callee, 40), heard(caller, 40))
    assert tone_present(heard_by_callee, 700) and not tone_present(heard_by_callee, 1100)
    assert tone_present(heard_by_caller, 1100) and not tone_present(heard_by_caller, 700)
    await asyncio.gather(*playing)
    for leg in (caller, callee):
        assert leg.media is not None and leg.media.rtp.srtp is not None
        assert leg.media.rtp.srtp.rejected == 0 and leg.media.rtp.rtcp_mux
    await caller.hangup()
    assert isinstance(await callee.next_event(5), Ended)


async def test_a_certificate_other_than_the_fingerprint_ends_the_call(
    user_agents: tuple[UserAgent, UserAgent],
) -> None:
    caller, callee = await _webrtc_call(*user_agents)
    assert caller.media is not None and callee.media is not None
    a, b = caller.media.webrtc, callee.media.webrtc
    assert a is not None and b is not None and caller.media.sdp.remote is not None
    # An impostor who learnt the ICE credentials but holds another certificate than the one
    # whose fingerprint the caller's SDP carried.
    a.dtls = DtlsSrtp(
        new_certificate(),
        server=False,
        remote_fingerprint=(a.remote.fingerprint_alg, a.remote.fingerprint),
    )
    a.connect_to(caller.media.sdp.remote)
    ended = await callee.next_event(5)  # the callee's watchdog hangs up within a second
    assert isinstance(ended, Ended)
    assert b.dtls.failed is not None and "fingerprint" in b.dtls.failed
    assert b.dtls.keys is None and callee.media.rtp.srtp is None
