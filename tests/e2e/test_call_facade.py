"""The Call facade on its own UserAgent (no PBX): a real baresip phone calls it; the engine
answers, plays a tone paced by the media clock, and collects the caller's DTMF digits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sip_test_env.audio import first_tone_time, read_wav
from sip_test_env.baresip import BaresipPeer
from sip_test_env.ports import free_port
from telephony.aio import Call, EndpointConfig, UserAgent, UserAgentConfig
from telephony.call import Ended
from telephony.media import ToneSource

from .conftest import ENGINE_RTP_PORTS

pytestmark = pytest.mark.peers


async def test_answer_play_collect_digits_hangup(tmp_path: Path) -> None:
    ua = UserAgent(
        UserAgentConfig(endpoint=EndpointConfig(port=free_port("both")), rtp_ports=ENGINE_RTP_PORTS)
    )
    await ua.start()
    collected: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def ivr(call: Call) -> None:
        call.ring()
        await call.answer()
        await call.next_event(timeout=5)  # Answered, once the ACK is in
        await call.play(ToneSource([1000.0], duration=1.5))
        collected.set_result(await call.collect_digits(3, timeout=5))
        await call.hangup()

    ua.on_incoming = ivr
    try:
        async with BaresipPeer("caller", workdir=tmp_path) as phone:
            await phone.dial(f"sip:ivr@127.0.0.1:{ua.endpoint.port}")
            await phone.wait_event("CALL_ESTABLISHED", timeout=5)
            await asyncio.sleep(1.8)
            await phone.send_dtmf("42#")
            assert await asyncio.wait_for(collected, 5) == "42"
            await phone.wait_event("CALL_CLOSED", timeout=5)
            rate, heard, _ = read_wav(phone.recorded_wav())
        start = first_tone_time(heard, 1000, rate, min_duration=1.0)
        assert start is not None and start < 1.0
        assert ua.clock.skipped == 0
        assert not ua.calls and ua.ports.in_use == 0 and len(ua.clock) == 0
    finally:
        await ua.close()


async def test_caller_hangs_up_during_a_prompt(tmp_path: Path) -> None:
    ua = UserAgent(
        UserAgentConfig(endpoint=EndpointConfig(port=free_port("both")), rtp_ports=ENGINE_RTP_PORTS)
    )
    await ua.start()
    ended: asyncio.Future[Ended] = asyncio.get_running_loop().create_future()

    async def ivr(call: Call) -> None:
        await call.answer()
        await call.next_event(timeout=5)
        await call.play(ToneSource([440.0]))  # endless: only the hang-up stops it
        async for event in call.events():
            if isinstance(event, Ended):
                ended.set_result(event)

    ua.on_incoming = ivr
    try:
        async with BaresipPeer("caller", workdir=tmp_path) as phone:
            await phone.dial(f"sip:ivr@127.0.0.1:{ua.endpoint.port}")
            await phone.wait_event("CALL_ESTABLISHED", timeout=5)
            await asyncio.sleep(0.5)
            await phone.hangup()
            event = await asyncio.wait_for(ended, 5)
        assert event.reason == "remote-bye"
        assert len(ua.clock) == 0 and ua.ports.in_use == 0
    finally:
        await ua.close()
