"""Signed recording links through the whole engine: a recorded call reaches the CRM with a
link that plays without an API key (WAV master, MP3 made on request) until it expires; a
tampered link is refused."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import urllib.parse
from pathlib import Path

import aiohttp
import pytest

from callcenter.runtime import start_engine
from crm_bridge.links import link_signature
from sip_test_env.audio import mp3_frames, read_wav, tone_present, write_tone_wav
from sip_test_env.baresip import BaresipPeer
from sip_test_env.crm import WebhookReceiver

from .conftest import api_url, connect, engine_config, registrar_of

pytestmark = pytest.mark.peers

LINK_SECRET = "links-0123456789abcdef"


async def test_recording_link_plays_without_a_key_until_it_expires(
    pg_url: str, tmp_path: Path
) -> None:
    crm = WebhookReceiver(secret="hook-secret")
    await crm.start()
    tone = write_tone_wav(tmp_path / "tone.wav", 440.0, 30.0)  # baresip hangs up at its end
    config = engine_config(
        crm=f'link_secret = "{LINK_SECRET}"\nlink_ttl_days = 1\n'
        + crm.config()
        + 'recording_format = "mp3"\nrecording_link = "BASE/recordings/{id}.{format}'
        '?expires={expires}&signature={signature}"\n'
    )
    base = f"http://{config.http_listen.host}:{config.http_listen.port}"
    (endpoint,) = config.crm.endpoints
    assert endpoint.recording_link is not None
    link_template = endpoint.recording_link.replace("BASE", base)
    endpoint = dataclasses.replace(endpoint, recording_link=link_template)
    config = dataclasses.replace(config, crm=dataclasses.replace(config.crm, endpoints=(endpoint,)))
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        registrar = registrar_of(engine)
        async with (
            BaresipPeer("101", workdir=tmp_path, registrar=registrar, password="pass101",
                        audio_source=tone) as a,
            BaresipPeer("102", workdir=tmp_path, registrar=registrar, password="pass102") as b,
        ):  # fmt: skip
            await connect(a, b)
            await asyncio.sleep(2.0)  # two seconds of tone into the recording
            await a.hangup()
            await b.wait_event("CALL_CLOSED", timeout=5)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while not [d for d in crm.received if d.event == "call.ended"]:
            assert loop.time() < deadline, "call.ended never reached the CRM"
            await asyncio.sleep(0.05)
        (ended,) = [d for d in crm.received if d.event == "call.ended"]
        link = ended.data["recording_url"]
        parts = urllib.parse.urlsplit(link)
        query = dict(urllib.parse.parse_qsl(parts.query))
        row = ended.data["id"]
        assert parts.path == f"/recordings/{row}.mp3"
        wav_link = api_url(
            engine,
            f"/recordings/{row}.wav?expires={query['expires']}"
            f"&signature={link_signature(LINK_SECRET, row, 'wav', int(query['expires']))}",
        )
        async with aiohttp.ClientSession() as http:  # no Authorization header anywhere
            async with http.get(wav_link) as r:
                assert r.status == 200 and r.content_type == "audio/wav"
                wav = await r.read()
            async with http.get(link) as r:
                assert r.status == 200 and r.content_type == "audio/mpeg"
                mp3 = await r.read()
            tampered = link.replace(f"/{row}.mp3", f"/{row + 1}.mp3")
            async with http.get(tampered) as r:
                assert r.status == 403
            async with http.get(api_url(engine, f"/calls/{row}/recording")) as r:
                assert r.status == 401  # the keyed route still wants a key
            # The link stops working when it expires: the same link, signed as the engine
            # signs, with its expiry a second in the past (no test waits out a TTL).
            expired_at = int(time.time()) - 1
            expired = api_url(
                engine,
                f"/recordings/{row}.mp3?expires={expired_at}"
                f"&signature={link_signature(LINK_SECRET, row, 'mp3', expired_at)}",
            )
            async with http.get(expired) as r:
                assert r.status == 410
            assert int(query["expires"]) > time.time() + 86400 - 600  # the TTL configured
    finally:
        await engine.stop()
        await crm.stop()
    (tmp_path / "got.wav").write_bytes(wav)
    rate, samples, channels = read_wav(tmp_path / "got.wav")
    assert channels == 2
    # The caller's side of the stereo master carries the tone.
    assert any(tone_present(samples[:, ch], 440.0, rate, 1.0) for ch in range(channels))
    frames, mp3_rate, seconds = mp3_frames(mp3)
    wav_seconds = len(samples) / rate
    assert mp3_rate == rate and frames > 10
    # The MP3 holds the whole WAV plus what a LAME stream adds: its encoder delay (576 + 529
    # samples) and the padding of the last 576-sample frame, and one frame more at the flush.
    extra = seconds - wav_seconds
    assert 0 <= extra <= (1105 + 2 * 576) / rate, (seconds, wav_seconds)
