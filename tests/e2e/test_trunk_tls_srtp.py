"""A provider trunk over TLS with SRTP required (`transport = "tls"`, `srtp = "required"`):
an agent on a plain-RTP phone dials out; the engine connects to the provider over TLS, checks
its certificate against `[sip] tls_ca_file`, offers RTP/SAVP with keys, and relays between the
plain leg and the SRTP leg (each decrypted or encrypted at its own edge): audio both ways. The
provider is one of our own UserAgents with a TLS listener, so the test sees its leg's keys."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import numpy as np
import pytest

from callcenter.config import parse_config
from callcenter.runtime import start_engine
from callcenter.tls import make_self_signed
from sip_test_env.audio import first_tone_time, read_wav, tone_present, write_tone_wav
from sip_test_env.baresip import BaresipPeer
from sip_test_env.ports import free_port, free_port_range
from sip_test_env.tools import needs
from telephony.aio import Call, EndpointConfig, UserAgent, UserAgentConfig
from telephony.media import Frame, ToneSource

from .conftest import engine_config_text, registrar_of

pytestmark = [pytest.mark.peers, needs("baresip")]


async def test_agent_calls_out_through_a_tls_srtp_trunk(pg_url: str, tmp_path: Path) -> None:
    cert, key = make_self_signed(tmp_path / "provider", ["127.0.0.1"])
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    provider = UserAgent(
        UserAgentConfig(
            endpoint=EndpointConfig(port=free_port("both"), tls_port=0, tls_server=server),
            rtp_ports=free_port_range(20, "udp"),
        )
    )
    await provider.start()
    answered: asyncio.Future[Call] = asyncio.get_running_loop().create_future()
    heard: list[Frame] = []

    async def take(call: Call) -> None:
        call.set_srtp("required")
        if call.offer_error is not None:
            call.refuse_offer()
            answered.set_exception(AssertionError(f"offer refused: {call.offer_error}"))
            return
        await call.answer()
        assert call.media is not None
        call.listen(heard.append)
        answered.set_result(call)
        await call.next_event(5)  # the ACK
        await call.play(ToneSource([1000.0], duration=6.0))

    provider.on_incoming = take
    text = engine_config_text(
        extra_sip=f'tls_ca_file = "{cert}"\n',
        extra=f'[[trunks]]\nname = "provider"\n'
        f'outbound = "127.0.0.1:{provider.endpoint.config.tls_port}"\n'
        'transport = "tls"\nsrtp = "required"\n',
    )
    engine = await start_engine(
        parse_config(text, source="test.toml"), database_url=pg_url, data_dir=tmp_path
    )
    try:
        tone = write_tone_wav(tmp_path / "600.wav", 600, 8.0)
        async with BaresipPeer(
            "101", workdir=tmp_path, registrar=registrar_of(engine), password="pass101",
            audio_source=tone,
        ) as agent:  # fmt: skip
            await agent.wait_registered()
            await agent.dial("15557654321")
            far = await asyncio.wait_for(answered, 10)
            await agent.wait_event("CALL_ESTABLISHED", timeout=5)
            assert far.peer[0] == "tls" and far.media is not None and far.media.secure
            bridged = next(iter(engine.switchboard.active.values()))
            assert bridged.b is not None and bridged.b.media is not None
            assert bridged.b.peer[0] == "tls" and bridged.b.media.secure
            assert bridged.a.media is not None and not bridged.a.media.secure
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while len(heard) < 100:  # 2 s of the agent's audio at the provider
                assert loop.time() < deadline, len(heard)
                await asyncio.sleep(0.05)
            await agent.hangup()
            await asyncio.wait_for(far.ended, 5)
            rate, heard_by_agent, _ = read_wav(agent.recorded_wav())
        assert tone_present(np.concatenate(heard), 600, 8000)
        at = first_tone_time(heard_by_agent, 1000, rate)
        assert at is not None and at < 1.5, f"1 kHz reached the agent at {at}"
    finally:
        await engine.stop()
        await provider.close()
