"""A small power campaign end to end: leads in PostgreSQL, the real pacing, AMD and PBX, a
scripted carrier whose customers are a person, an answering machine, busy and rejecting."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import wave
from datetime import UTC, datetime, time
from pathlib import Path
from time import time as time_now

import numpy as np
import pytest

from callcenter.dialing import PbxLines
from callcenter.runtime import start_engine
from crm_bridge import PgLeadStore
from dialer import (
    AbandonLedger,
    AbandonPolicy,
    Campaign,
    CampaignRunner,
    NewLead,
    PowerPacer,
    RunnerConfig,
    TokenBucket,
)
from sip_test_env.audio import first_tone_time, normalized_xcorr, read_wav, write_tone_wav
from sip_test_env.baresip import BaresipPeer
from sip_test_env.scripted_carrier import Customer, ScriptedCarrier
from telephony.media import tone_samples

from .conftest import engine_config, registrar_of

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng for voices"),
]

ROOT = Path(__file__).resolve().parents[2]
PROMPT = ROOT / "callcenter" / "prompts" / "we-will-call-you-back.wav"


def speak(text: str, path: Path) -> Path:
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(path)], check=True)
    return path


def person_wav(path: Path, hello: Path) -> Path:
    """ "Hello?", a pause (AMD hears a person, the agent is connected), then the customer talks
    (a 700 Hz tone stands for the rest of the conversation, easy to find at the agent)."""
    _, said, _ = read_wav(hello)
    talk = tone_samples([700.0], 3.0, level_dbfs=-12.0)
    audio = np.concatenate([said, np.zeros(int(8000 * 3.0), dtype=np.int16), talk])
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(audio.astype("<i2").tobytes())
    return path


async def test_power_campaign_reaches_people_and_leaves_voicemails(
    pg_url: str, tmp_path: Path
) -> None:
    hello = speak("Hello?", tmp_path / "hello.wav")
    greeting = speak(
        "Hi, you have reached the voicemail of John Smith. I can not take your call right now,"
        " please leave your name and number after the tone.", tmp_path / "greeting.wav",
    )  # fmt: skip
    customers = {
        "12125550001": Customer(
            "human",
            answer_after=1.0,
            speech=person_wav(tmp_path / "person.wav", hello),
            hang_up_after=9,
        ),
        "12125550002": Customer("machine", answer_after=1.0, speech=greeting, hang_up_after=25),
        "12125550003": Customer("busy"),
        "12125550004": Customer("reject"),
    }
    async with ScriptedCarrier(customers) as carrier:
        host, port = carrier.address
        trunk = (
            f'[[trunks]]\nname = "carrier"\noutbound = "{host}:{port}"\ncaller_id = "12125550100"\n'
        )
        engine = await start_engine(
            engine_config(extra=trunk), database_url=pg_url, data_dir=tmp_path
        )
        assert engine.database is not None
        store = PgLeadStore(engine.database.pool)
        now = datetime.now(UTC)
        campaign = await store.create_campaign(
            Campaign(
                name=f"spring-{now.timestamp():.0f}", caller_id="12125550100", trunk="carrier",
                agents=("101",), mode="power", ratio=1.0, max_attempts=1,
                window_start=time(0, 0), window_end=time(23, 59), tz_default="UTC",
                max_ring_seconds=15, voicemail_prompt=str(PROMPT), safe_harbor_prompt=str(PROMPT),
            ),
            now=now,
        )  # fmt: skip
        await store.import_leads(campaign.id, [NewLead(f"+{n}", "UTC") for n in customers], now=now)
        await store.set_state(campaign.id, "start", now=now)
        agent_tone = write_tone_wav(tmp_path / "agent.wav", 1000, 60.0)
        runner = None
        try:
            async with BaresipPeer("101", workdir=tmp_path, registrar=registrar_of(engine),
                                   password="pass101", answermode="auto",
                                   audio_source=agent_tone) as agent:  # fmt: skip
                await agent.wait_registered()
                loop = asyncio.get_running_loop()
                runner = CampaignRunner(
                    Campaign.from_record(await store.get_campaign(campaign.id)), store,
                    PbxLines(engine.switchboard), pacer=PowerPacer(1.0),
                    ledger=AbandonLedger(AbandonPolicy()), bucket=TokenBucket(5, now=time_now()),
                    config=RunnerConfig(node="test-node"),
                )  # fmt: skip
                runner.start()
                deadline = loop.time() + 90
                while (await store.campaign_progress(campaign.id)).remaining:
                    assert loop.time() < deadline, await store.campaign_progress(campaign.id)
                    await asyncio.sleep(0.5)
                await runner.stop()
                heard_by_agent = (
                    read_wav(agent.recorded_wavs()[0])[1] if agent.recorded_wavs() else None
                )
        finally:
            if runner is not None:
                await runner.stop(hang_up=True)
            await engine.stop()

    outcomes = {}
    for lead in await store_leads(pg_url, campaign.id):
        outcomes[lead["phone"]] = lead["outcome"]
    assert outcomes == {
        "+12125550001": "answered-human",
        "+12125550002": "answered-machine",
        "+12125550003": "busy",
        "+12125550004": "rejected",
    }
    # The person and the agent heard each other.
    person = carrier.record("12125550001")
    assert first_tone_time(person.heard_samples(), 1000, 8000) is not None
    assert heard_by_agent is not None and first_tone_time(heard_by_agent, 700, 8000) is not None
    # The machine got the voicemail message after its beep.
    _, prompt, _ = read_wav(PROMPT)
    assert normalized_xcorr(carrier.record("12125550002").heard_samples(), prompt)[0] > 0.8
    # Every attempt is a calls row carrying its campaign and lead (and goes to the CRMs).
    calls = await store_calls(pg_url, campaign.id)
    assert sorted((c["to_number"], c["outcome"]) for c in calls) == [
        ("+12125550001", "answered"), ("+12125550002", "voicemail"),
        ("+12125550003", "busy"), ("+12125550004", "rejected"),
    ]  # fmt: skip
    assert all(c["lead_id"] is not None for c in calls)
    assert [c["agent"] for c in calls if c["outcome"] == "answered"] == ["101"]
    # One INVITE per lead: nothing dialled twice.
    assert {n: carrier.record(n).invites for n in customers} == dict.fromkeys(customers, 1)


async def store_leads(pg_url: str, campaign_id: int) -> list[dict[str, object]]:
    import asyncpg

    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch(
            "SELECT l.phone, a.outcome FROM leads l JOIN attempts a ON a.lead_id = l.id"
            " WHERE l.campaign_id = $1 ORDER BY l.id",
            campaign_id,
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


async def store_calls(pg_url: str, campaign_id: int) -> list[dict[str, object]]:
    import asyncpg

    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch("SELECT * FROM calls WHERE campaign_id = $1", campaign_id)
    finally:
        await conn.close()
    return [dict(r) for r in rows]
