"""SRTP legs between two of our UserAgents on loopback: SDES keys agreed in the INVITE and its
200, audio that arrives as plain frames above the RTP edge (what recording and mixing see),
RFC 4733 digits through SRTP, SRTCP reports, and a plain offer refused with 488 under
`required`."""

from __future__ import annotations

import asyncio
import base64
import logging

import pytest

from sip_test_env.audio import tone_present
from telephony.aio import Call, UserAgent
from telephony.call import Answered, Dtmf, Ended
from telephony.media import ToneSource
from telephony.sip import NameAddr

from .conftest import heard, sip_uri


async def _call(
    caller_ua: UserAgent, callee_ua: UserAgent, *, caller: str, callee: str
) -> tuple[Call, asyncio.Future[Call]]:
    incoming: asyncio.Future[Call] = asyncio.get_running_loop().create_future()

    async def on_incoming(call: Call) -> None:
        call.set_srtp(callee)
        if call.offer_error is not None:
            call.refuse_offer()
        else:
            await call.answer()
        incoming.set_result(call)

    callee_ua.on_incoming = on_incoming
    port = callee_ua.endpoint.port
    leg = await caller_ua.dial(
        sip_uri("callee", port),
        ("udp", "127.0.0.1", port),
        from_=NameAddr(None, sip_uri("caller", caller_ua.endpoint.port), {}),
        srtp=caller,
    )
    return leg, incoming


async def test_srtp_call_carries_audio_and_digits_both_ways(
    user_agents: tuple[UserAgent, UserAgent], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caller_ua, callee_ua = user_agents
    caller, incoming = await _call(caller_ua, callee_ua, caller="required", callee="optional")
    callee = await asyncio.wait_for(incoming, 5)
    assert isinstance(await caller.next_event(5), Answered)
    assert isinstance(await callee.next_event(5), Answered)
    assert caller.media is not None and callee.media is not None
    assert caller.media.secure and callee.media.secure
    a, b = caller.media.rtp.srtp, callee.media.rtp.srtp
    assert a is not None and b is not None

    play_a = asyncio.ensure_future(caller.play(ToneSource([700.0], duration=1.5)))
    play_b = asyncio.ensure_future(callee.play(ToneSource([1300.0], duration=1.5)))
    heard_by_callee, heard_by_caller = await asyncio.gather(heard(callee, 50), heard(caller, 50))
    await asyncio.gather(play_a, play_b)
    assert tone_present(heard_by_callee, 700.0) and not tone_present(heard_by_callee, 1300.0)
    assert tone_present(heard_by_caller, 1300.0) and not tone_present(heard_by_caller, 700.0)

    await caller.send_dtmf("7")
    event = await callee.next_event(5)
    assert isinstance(event, Dtmf) and (event.digit, event.method) == ("7", "rfc4733")
    assert a.rejected == b.rejected == 0

    # SRTCP: the sender reports of each side arrive and authenticate.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while callee.media.rtp.rtcp_session.reports_received == 0 and loop.time() < deadline:
        await asyncio.sleep(0.2)  # reports go out on the RTP watchdog's tick
    assert callee.media.rtp.rtcp_session.reports_received > 0
    assert callee.media.rtp.rtcp_session.bad_reports == 0
    await caller.hangup()
    assert isinstance(await callee.next_event(5), Ended)
    # Keys stay out of the logs, even at DEBUG.
    keys = caller.media.sdp.keys
    assert keys is not None
    for key in (keys.local, keys.remote):
        encoded = base64.b64encode(key).decode()
        assert not any(encoded in r.getMessage() for r in caplog.records)


async def test_plain_offer_to_a_required_leg_gets_488(
    user_agents: tuple[UserAgent, UserAgent],
) -> None:
    caller_ua, callee_ua = user_agents
    caller, incoming = await _call(caller_ua, callee_ua, caller="off", callee="required")
    callee = await asyncio.wait_for(incoming, 5)
    assert callee.offer_error is not None and callee.offer_error.status_code == 488
    ended = await caller.next_event(5)
    assert isinstance(ended, Ended) and caller.final_status == 488


async def test_optional_meets_off_in_plain_rtp(user_agents: tuple[UserAgent, UserAgent]) -> None:
    caller_ua, callee_ua = user_agents
    caller, incoming = await _call(caller_ua, callee_ua, caller="optional", callee="off")
    callee = await asyncio.wait_for(incoming, 5)
    assert isinstance(await caller.next_event(5), Answered)
    assert caller.media is not None and callee.media is not None
    assert not caller.media.secure and not callee.media.secure
    assert caller.media.rtp.srtp is None
    await caller.hangup()
