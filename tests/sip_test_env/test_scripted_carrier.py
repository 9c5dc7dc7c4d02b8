"""The scripted carrier answers, speaks, beeps, is busy, rejects or rings, per number."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from sip_test_env.audio import first_tone_time
from sip_test_env.ports import free_port
from sip_test_env.scripted_carrier import Customer, ScriptedCarrier
from telephony.aio import EndpointConfig, UserAgent, UserAgentConfig
from telephony.call import Answered, Ended, Ringing
from telephony.media import tone_samples
from telephony.sip import NameAddr, SipUri
from tests.e2e.conftest import ENGINE_RTP_PORTS

pytestmark = pytest.mark.peers


def _tone_wav(path: Path, hz: float, seconds: float) -> Path:
    import wave

    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(tone_samples([hz], seconds, level_dbfs=-12.0).astype("<i2").tobytes())
    return path


async def test_each_number_follows_its_script(tmp_path: Path) -> None:
    greeting = _tone_wav(tmp_path / "greeting.wav", 500, 1.0)
    hello = _tone_wav(tmp_path / "hello.wav", 700, 0.6)
    customers = {
        "12125550001": Customer("human", answer_after=0.3, speech=hello, hang_up_after=2),
        "12125550002": Customer("machine", answer_after=0.3, speech=greeting, hang_up_after=3),
        "12125550003": Customer("busy"),
        "12125550004": Customer("reject"),
        "12125550005": Customer("no-answer"),
    }
    low, high = ENGINE_RTP_PORTS  # this UA stands in for the engine
    caller = UserAgent(
        UserAgentConfig(endpoint=EndpointConfig(port=free_port("both")), rtp_ports=(low, high))
    )
    await caller.start()
    try:
        async with ScriptedCarrier(customers) as carrier:
            host, port = carrier.address
            me = NameAddr(None, SipUri.parse(f"sip:dialer@127.0.0.1:{caller.endpoint.port}"), {})

            async def dial(number: str):
                uri = SipUri.parse(f"sip:{number}@{host}:{port}")
                return await caller.dial(uri, ("udp", host, port), from_=me)

            results: dict[str, object] = {}
            for number in ("12125550003", "12125550004"):
                call = await dial(number)
                event = await call.next_event(timeout=5)
                assert isinstance(event, Ended)
                results[number] = event.sip_status
            assert results == {"12125550003": 486, "12125550004": 603}

            ringing = await dial("12125550005")
            assert isinstance(await ringing.next_event(timeout=5), Ringing)
            await asyncio.sleep(0.5)
            ringing.cancel()
            assert isinstance(await ringing.next_event(timeout=5), Ended)

            for number, hz in (("12125550001", 700), ("12125550002", 1000)):
                call = await dial(number)
                heard: list[np.ndarray] = []
                while not isinstance(event := await call.next_event(timeout=5), Answered):
                    pass
                assert call.media is not None
                call.media.listen(heard.append)
                ended = await call.next_event(timeout=8)
                assert isinstance(ended, Ended) and ended.reason == "remote-bye"
                samples = np.concatenate(heard)
                assert first_tone_time(samples, hz, 8000) is not None, number
            assert carrier.record("12125550001").answered
            assert {n: carrier.record(n).invites for n in customers} == dict.fromkeys(customers, 1)
    finally:
        await caller.close()
