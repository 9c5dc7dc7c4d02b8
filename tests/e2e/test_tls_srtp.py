"""Acceptance of issue 13's TLS and SRTP part with real phones: baresip over SIP/TLS with SDES
SRTP (its srtp module, `mediaenc=srtp-mand`) registers and calls another such phone through the
engine; a loopback capture of everything between them holds no cleartext SIP and no RTP whose
payload decodes to the audio (each payload carries the SRTP tag and decodes to noise), while
each phone hears the other's tone; a phone that offers plain RTP to an account with
`srtp = "required"` gets 488."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from callcenter.config import parse_config
from callcenter.runtime import Engine, start_engine
from callcenter.tls import make_self_signed
from sip_test_env.audio import (
    band_energy_db,
    first_tone_time,
    read_wav,
    tone_present,
    write_tone_wav,
)
from sip_test_env.baresip import BaresipPeer
from sip_test_env.capture import loopback_capture
from sip_test_env.ports import free_port
from sip_test_env.tools import needs
from telephony.media import CODECS

from .conftest import assert_no_state_left, engine_config_text

pytestmark = [pytest.mark.peers, needs("baresip", "dumpcap", "tshark")]

REQUIRED = ("101", "102", "103")


async def _secure_engine(pg_url: str, tmp_path: Path) -> tuple[Engine, Path]:
    cert, key = make_self_signed(tmp_path / "tls", ["127.0.0.1"])
    text = engine_config_text(
        extra_sip=f'tls_listen = "127.0.0.1:{free_port("tcp")}"\n'
        f'tls_certificate = "{cert}"\ntls_key = "{key}"\n'
    )
    for ext in REQUIRED:
        account = f'extension = "{ext}"\npassword = "pass{ext}"\n'
        text = text.replace(account, account + 'srtp = "required"\n', 1)
    # Supervisor 190 (a plain phone) coaches agent 102.
    supervisor = 'extension = "190"\npassword = "pass190"\nrole = "supervisor"\n'
    text = text.replace(supervisor, supervisor + 'team = ["102"]\n', 1)
    config = parse_config(text, source="test.toml")
    assert [a.srtp for a in config.accounts if a.extension in REQUIRED] == ["required"] * 3
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    return engine, cert


def _tls_phone(user: str, engine: Engine, cert: Path, workdir: Path, audio: Path) -> BaresipPeer:
    tls_port = engine.ua.endpoint.config.tls_port
    return BaresipPeer(
        user, workdir=workdir, registrar=f"127.0.0.1:{tls_port}", password=f"pass{user}",
        audio_source=audio, transport="tls", tls_ca=cert, mediaenc="srtp-mand",
    )  # fmt: skip


async def test_baresip_over_tls_with_srtp_leaves_nothing_in_clear(
    pg_url: str, tmp_path: Path
) -> None:
    engine, cert = await _secure_engine(pg_url, tmp_path)
    try:
        a_tone = write_tone_wav(tmp_path / "600.wav", 600, 8.0)
        b_tone = write_tone_wav(tmp_path / "1k.wav", 1000, 8.0)
        caller = _tls_phone("101", engine, cert, tmp_path, a_tone)
        callee = _tls_phone("102", engine, cert, tmp_path, b_tone)
        tls_port = engine.ua.endpoint.config.tls_port
        # Everything either phone sends or receives: its SIP (to the engine's TLS port and
        # plain SIP port), its RTP and RTCP ports.
        ports = " or ".join(
            [f"port {tls_port}", f"port {engine.sip_port}"]
            + [f"udp portrange {p.rtp_ports[0]}-{p.rtp_ports[1]}" for p in (caller, callee)]
        )
        async with loopback_capture(tmp_path / "call.pcapng", ports) as capture:
            async with caller, callee:
                await caller.wait_registered()
                await callee.wait_registered()
                await caller.dial(f"sip:102@127.0.0.1:{tls_port};transport=tls")
                await callee.wait_event("CALL_INCOMING", timeout=5)
                await callee.accept()
                await caller.wait_event("CALL_ESTABLISHED", timeout=5)
                bridged = next(iter(engine.switchboard.active.values()))
                assert bridged.b is not None
                for leg in (bridged.a, bridged.b):
                    assert leg.peer[0] == "tls"
                    assert leg.media is not None and leg.media.secure
                # Three seconds of audio both ways: the phones' players pace it.
                await asyncio.sleep(3.0)
                await caller.hangup()
                await callee.wait_event("CALL_CLOSED", timeout=5)
                for leg in (bridged.a, bridged.b):
                    assert leg.media is not None and leg.media.rtp.srtp is not None
                    # Every RTP packet authenticated; nothing undecrypted was read as RTCP
                    # (baresip's first RTCP, an APP "PING", goes out in clear: dropped).
                    assert leg.media.rtp.srtp.rejected == 0
                    assert leg.media.rtp.rtcp_session.bad_reports == 0
                    assert leg.media.rtp.packets_in > 100
                rate, heard_by_caller, _ = read_wav(caller.recorded_wav())
                _, heard_by_callee, _ = read_wav(callee.recorded_wav())

        # The engine recorded the call from the decrypted media, as any other: the caller on
        # the left, the callee on the right, nothing crossed.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while engine.switchboard.active or bridged.summary.recording is None:
            assert loop.time() < deadline, "the call's recording was not concluded"
            await asyncio.sleep(0.05)
        assert_no_state_left(engine)
        rate, stereo, channels = read_wav(Path(bridged.summary.recording))
        assert channels == 2
        left, right = stereo[:, 0].copy(), stereo[:, 1].copy()
        assert tone_present(left, 600, rate) and not tone_present(left, 1000, rate)
        assert tone_present(right, 1000, rate) and not tone_present(right, 600, rate)

        # Audio both ways, by analysis of what each phone heard.
        at = first_tone_time(heard_by_caller, 1000, rate)
        assert at is not None and at < 1.0, f"1 kHz reached 101 at {at}"
        at = first_tone_time(heard_by_callee, 600, rate)
        assert at is not None and at < 1.0, f"600 Hz reached 102 at {at}"

        # No cleartext SIP anywhere in the capture, and the signalling was TLS.
        raw = capture.raw()
        for marker in (b"SIP/2.0", b"REGISTER sip:", b"INVITE sip:", b"a=crypto", b"inline:"):
            assert marker not in raw, marker
        hellos = await capture.fields("tcp.dstport", display="tls.handshake.type == 1")
        # (One ClientHello per phone is usual; under load dumpcap has been seen to miss one of
        # them, so the count is not the check: no cleartext above and TLS to our port is.)
        assert hellos and all(int(port) == tls_port for (port,) in hellos)
        assert await capture.fields("frame.number", display="sip") == []

        # Every UDP packet read as RTP: PCMU with an SRTP tag after the 160 payload bytes, and
        # the payload decodes to noise with neither tone in it.
        rtp = await capture.fields(
            "rtp.payload",
            display="rtp.version == 2 && rtp.p_type == 0",
            options=("rtp.heuristic_rtp:TRUE",),
        )
        assert len(rtp) > 200, len(rtp)
        payloads = [bytes.fromhex(value.replace(":", "")) for (value,) in rtp]
        assert {len(p) for p in payloads} <= {164, 170}, {len(p) for p in payloads}
        decoded = np.concatenate([CODECS["PCMU"].decode(p[:160]) for p in payloads])
        assert not tone_present(decoded, 600, 8000) and not tone_present(decoded, 1000, 8000)
        # Cipher text decodes to loud white noise, not to the two tones' -12 dBFS.
        assert float(np.sqrt(np.mean(decoded.astype(np.float64) ** 2))) > 5000
    finally:
        await engine.stop()


async def test_plain_rtp_offer_to_a_required_account_gets_488(pg_url: str, tmp_path: Path) -> None:
    engine, cert = await _secure_engine(pg_url, tmp_path)
    try:
        silence = write_tone_wav(tmp_path / "t.wav", 600, 1.0)
        plain = BaresipPeer(
            "103", workdir=tmp_path, registrar=f"127.0.0.1:{engine.sip_port}",
            password="pass103", audio_source=silence,
        )  # fmt: skip
        callee = _tls_phone("102", engine, cert, tmp_path, silence)
        async with plain, callee:
            await plain.wait_registered()
            await callee.wait_registered()
            await plain.dial("102")
            closed = await plain.wait_event("CALL_CLOSED", timeout=5)
            assert "488" in str(closed.get("param", "")), closed
            assert not callee.events_of("CALL_INCOMING")  # the callee never rang
    finally:
        await engine.stop()


async def test_whisper_to_an_agent_on_an_srtp_call(pg_url: str, tmp_path: Path) -> None:
    """A plain-RTP supervisor whispers to agent 102 on an SRTP call: the monitor mixes the
    decrypted audio and the mix is encrypted on the way out, as on any call. The agent hears
    the caller and the supervisor; the caller hears the agent and no trace of the supervisor."""
    engine, cert = await _secure_engine(pg_url, tmp_path)
    try:
        tones = [write_tone_wav(tmp_path / f"{f}.wav", f, 20.0) for f in (600, 1000, 1500)]
        caller = _tls_phone("101", engine, cert, tmp_path, tones[0])
        agent = _tls_phone("102", engine, cert, tmp_path, tones[1])
        sup = BaresipPeer(
            "190", workdir=tmp_path, registrar=f"127.0.0.1:{engine.sip_port}",
            password="pass190", audio_source=tones[2],
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        async with caller, agent, sup:
            for phone in (caller, agent, sup):
                await phone.wait_registered()
            await caller.dial("102")
            await agent.wait_event("CALL_INCOMING", timeout=5)
            await agent.accept()
            started = loop.time()
            await caller.wait_event("CALL_ESTABLISHED", timeout=5)
            await sup.dial("*2102")
            await sup.wait_event("CALL_ESTABLISHED", timeout=5)
            deadline = loop.time() + 5
            while not engine.switchboard.monitors:
                assert loop.time() < deadline, "no monitor session"
                await asyncio.sleep(0.02)
            joined = loop.time() - started
            await asyncio.sleep(3.0)  # three seconds of whisper, heard by the phones
            await sup.hangup()
            await caller.hangup()
            await agent.wait_event("CALL_CLOSED", timeout=5)
            rate, heard_by_agent, _ = read_wav(agent.recorded_wav())
            _, heard_by_caller, _ = read_wav(caller.recorded_wav())
        a, b = round((joined + 0.7) * rate), round((joined + 2.5) * rate)
        agent_window, caller_window = heard_by_agent[a:b], heard_by_caller[a:b]
        assert band_energy_db(agent_window, 600, rate) > -30
        assert band_energy_db(agent_window, 1500, rate) > -30
        assert band_energy_db(caller_window, 1000, rate) > -30
        assert band_energy_db(caller_window, 1500, rate, relative_to=1000) < -40
    finally:
        await engine.stop()
