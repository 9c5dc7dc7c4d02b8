"""A small power campaign end to end: leads in PostgreSQL, the real pacing, AMD and PBX, a
scripted carrier whose customers are a person, an answering machine, busy and rejecting."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Literal

import pytest

from callcenter.runtime import Engine, start_engine
from dialer import (
    Campaign,
    NewLead,
    PgLeadStore,
)
from sip_test_env import tools
from sip_test_env.audio import first_tone_time, normalized_xcorr, read_wav, write_tone_wav
from sip_test_env.baresip import BaresipPeer
from sip_test_env.scripted_carrier import Customer, ScriptedCarrier
from sip_test_env.voices import person_wav, speak

from .conftest import engine_config, registrar_of

pytestmark = [
    pytest.mark.peers,
    tools.needs("espeak-ng", "sox"),
]

ROOT = Path(__file__).resolve().parents[2]
PROMPT = ROOT / "callcenter" / "prompts" / "we-will-call-you-back.wav"


def calling_hours_around_now() -> tuple[time, time]:
    """Calling hours (UTC) that open two hours ago and close in two: a lead in UTC+12 is
    outside them whenever the test runs."""
    now = datetime.now(UTC)
    return (now - timedelta(hours=2)).time().replace(second=0, microsecond=0), (
        now + timedelta(hours=2)
    ).time().replace(second=0, microsecond=0)


async def engine_on_carrier(
    carrier: ScriptedCarrier, pg_url: str, tmp_path: Path
) -> tuple[Engine, PgLeadStore]:
    """The engine with `carrier` as its trunk "carrier" (5 calls a second, caller ID
    12125550100), agents' wrap-up 1 s, and its lead store."""
    host, port = carrier.address
    config = (
        f'[[trunks]]\nname = "carrier"\noutbound = "{host}:{port}"\ncaller_id = "12125550100"\n'
        "cps = 5\n\n[presence]\nwrap_up_seconds = 1\n"
    )
    engine = await start_engine(engine_config(extra=config), database_url=pg_url, data_dir=tmp_path)
    assert engine.database is not None
    return engine, PgLeadStore(engine.database.pool)


async def agent_phones(
    stack: contextlib.AsyncExitStack,
    engine: Engine,
    tmp_path: Path,
    tones: dict[str, int],
    *,
    answermode: Literal["manual", "auto"],
) -> dict[str, BaresipPeer]:
    """A registered baresip phone per agent extension, each sending its own tone (Hz)."""
    agents = {
        ext: await stack.enter_async_context(
            BaresipPeer(
                ext,
                workdir=tmp_path,
                registrar=registrar_of(engine),
                password=f"pass{ext}",
                answermode=answermode,
                audio_source=write_tone_wav(tmp_path / f"{ext}.wav", hz, 120.0),
            )
        )
        for ext, hz in tones.items()
    }
    for agent in agents.values():
        await agent.wait_registered()
    return agents


async def run_to_the_end(store: PgLeadStore, campaign_id: int, *, left: int, timeout: float):
    """Wait until only `left` leads remain (those never dialable) and no attempt is in flight."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        progress = await store.campaign_progress(campaign_id)
        if progress.remaining <= left and progress.in_flight == 0:
            return progress
        assert loop.time() < deadline, progress
        await asyncio.sleep(0.5)


@pytest.mark.slow
async def test_power_campaign_of_twenty_leads(pg_url: str, tmp_path: Path) -> None:
    """The acceptance run: 20 leads through the engine's own campaign manager, two agents."""
    hello = speak("Hello?", tmp_path / "hello.wav")
    greeting = speak(
        "Hi, you have reached John. Please leave a message after the tone.", tmp_path / "vm.wav"
    )
    person = person_wav(tmp_path / "person.wav", hello)
    expected: dict[str, str] = {}
    customers: dict[str, Customer] = {}

    def lead(n: int, script: Customer | None, outcome: str) -> None:
        number = f"1212555{n:04d}"
        if script is not None:
            customers[number] = script
        expected[f"+{number}"] = outcome

    for n in range(1, 7):
        lead(n, Customer("human", answer_after=0.5 + n / 4, speech=person, hang_up_after=8),
             "answered-human")  # fmt: skip
    for n in range(7, 11):
        lead(n, Customer("machine", answer_after=1.0, speech=greeting, hang_up_after=25),
             "answered-machine")  # fmt: skip
    for n in (11, 12):
        lead(n, Customer("busy"), "busy")
    for n in (13, 14):
        lead(n, Customer("reject"), "rejected")
    for n in (15, 16):
        lead(n, Customer("no-answer"), "no-answer")
    barred = ("+12125550017", "+12125550018")  # would answer, but they are on the DNC list
    for n in (17, 18):
        lead(n, Customer("human", answer_after=0.5, speech=person), "never dialled")
    asleep = ("+12125550019", "+12125550020")  # 12 hours ahead: outside the calling hours
    for n in (19, 20):
        lead(n, Customer("human", answer_after=0.5, speech=person), "never dialled")
    opens, closes = calling_hours_around_now()

    async with ScriptedCarrier(customers) as carrier:
        engine, store = await engine_on_carrier(carrier, pg_url, tmp_path)
        now = datetime.now(UTC)
        campaign = await store.create_campaign(
            Campaign(
                name=f"spring-{now.timestamp():.0f}", caller_id="12125550100", trunk="carrier",
                agents=("101", "102"), mode="power", ratio=1.0, max_attempts=1,
                window_start=opens, window_end=closes, tz_default="UTC", max_ring_seconds=15,
                voicemail_prompt=str(PROMPT), safe_harbor_prompt=str(PROMPT),
            ),
            now=now,
        )  # fmt: skip
        await store.dnc_add(list(barred), now=now, reason="asked not to be called")
        await store.import_leads(
            campaign.id,
            [NewLead(phone, "Etc/GMT-12" if phone in asleep else "UTC") for phone in expected],
            now=now,
        )
        tones = {"101": 1000, "102": 1300}
        try:
            async with contextlib.AsyncExitStack() as stack:
                agents = await agent_phones(stack, engine, tmp_path, tones, answermode="auto")
                await store.set_state(campaign.id, "start", now=datetime.now(UTC))
                progress = await run_to_the_end(store, campaign.id, left=2, timeout=150)
                heard = {
                    ext: [read_wav(w)[1] for w in a.recorded_wavs()] for ext, a in agents.items()
                }
                await store.set_state(campaign.id, "stop", now=datetime.now(UTC))
        finally:
            await engine.stop()

    outcomes = {lead["phone"]: lead["outcome"] for lead in await store_leads(pg_url, campaign.id)}
    outcomes |= {phone: "never dialled" for phone in expected if phone not in outcomes}
    assert outcomes == expected
    assert progress.connected == 6 and progress.abandoned == 0
    # Nothing barred or asleep was dialled: the carrier never saw an INVITE for them.
    for phone in barred + asleep:
        assert carrier.record(phone.lstrip("+")).invites == 0, phone
    # One INVITE per dialled lead.
    assert all(carrier.record(n).invites == 1 for n in customers if f"+{n}" not in barred + asleep)
    # Every person and their agent heard each other.
    calls = {c["to_number"]: c for c in await store_calls(pg_url, campaign.id)}
    for phone, outcome in expected.items():
        if outcome != "answered-human":
            continue
        agent = calls[phone]["agent"]
        assert agent in tones, calls[phone]
        said = carrier.record(phone.lstrip("+")).heard_samples()
        assert first_tone_time(said, tones[agent], 8000) is not None, phone
    assert sum(len(wavs) for wavs in heard.values()) == 6
    for ext, wavs in heard.items():
        for samples in wavs:
            assert first_tone_time(samples, 700, 8000) is not None, ext
    # Machines got the voicemail message after their beep.
    _, prompt, _ = read_wav(PROMPT)
    for phone, outcome in expected.items():
        if outcome == "answered-machine":
            said = carrier.record(phone.lstrip("+")).heard_samples()
            assert normalized_xcorr(said, prompt)[0] > 0.8, phone
    # Calls nobody of ours took name no agent (not the campaign's caller ID).
    for phone, outcome in expected.items():
        if outcome in ("busy", "rejected", "no-answer", "answered-machine"):
            assert calls[phone]["agent"] is None, calls[phone]
    # Every attempt is a calls row with its campaign and lead (delivered to the CRMs).
    assert sorted(calls) == sorted(p for p, o in expected.items() if o != "never dialled")
    assert all(c["lead_id"] is not None for c in calls.values())
    reached = {
        p: c["outcome"] for p, c in calls.items() if c["outcome"] in ("answered", "voicemail")
    }
    assert reached == {
        p: "answered" if o == "answered-human" else "voicemail"
        for p, o in expected.items()
        if o.startswith("answered")
    }


@pytest.mark.slow
async def test_all_agents_busy_safe_harbor_then_pacing_slows(pg_url: str, tmp_path: Path) -> None:
    """Power ratio 3 with one agent: three people answer at once, one reaches the agent, two
    hear the safe-harbor message and count as abandoned; the ledger is then over its cap and
    the campaign dials one line per idle agent, so no one else is abandoned."""
    hello = speak("Hello?", tmp_path / "hello.wav")
    person = person_wav(tmp_path / "person.wav", hello)
    # The first wave stays on the line long enough to hear the whole safe-harbor message.
    customers = {
        f"121255501{n:02d}": Customer(
            "human", answer_after=1.0, speech=person, hang_up_after=9 if n <= 3 else 4
        )
        for n in range(1, 7)
    }
    async with ScriptedCarrier(customers) as carrier:
        host, port = carrier.address
        config = (
            f'[[trunks]]\nname = "carrier"\noutbound = "{host}:{port}"\n\n'
            "[presence]\nwrap_up_seconds = 1\n"
        )
        engine = await start_engine(
            engine_config(extra=config), database_url=pg_url, data_dir=tmp_path
        )
        assert engine.database is not None
        store = PgLeadStore(engine.database.pool)
        now = datetime.now(UTC)
        campaign = await store.create_campaign(
            Campaign(
                name=f"busy-{now.timestamp():.0f}", trunk="carrier", agents=("101",),
                mode="power", ratio=3.0, max_attempts=1, window_start=time(0, 0),
                window_end=time(23, 59), tz_default="UTC", max_ring_seconds=15,
                safe_harbor_prompt=str(PROMPT),
            ),
            now=now,
        )  # fmt: skip
        # The first three are claimed together (same due time, in id order).
        await store.import_leads(campaign.id, [NewLead(f"+{n}", "UTC") for n in customers], now=now)
        try:
            async with BaresipPeer("101", workdir=tmp_path, registrar=registrar_of(engine),
                                   password="pass101", answermode="auto",
                                   audio_source=write_tone_wav(tmp_path / "a.wav", 1000, 60.0)
                                   ) as agent:  # fmt: skip
                await agent.wait_registered()
                await store.set_state(campaign.id, "start", now=datetime.now(UTC))
                progress = await run_to_the_end(store, campaign.id, left=0, timeout=90)
        finally:
            await engine.stop()
    leads = await store_leads(pg_url, campaign.id)
    first_wave, rest = leads[:3], leads[3:]
    assert sorted(lead["outcome"] for lead in first_wave) == [
        "abandoned", "abandoned", "answered-human"
    ]  # fmt: skip
    assert [lead["outcome"] for lead in rest] == ["answered-human"] * 3
    assert progress.abandoned == 2 and progress.connected == 4
    # The abandoned people heard the safe-harbor message, not silence.
    _, prompt, _ = read_wav(PROMPT)
    for lead in first_wave:
        said = carrier.record(lead["phone"].lstrip("+")).heard_samples()
        if lead["outcome"] == "abandoned":
            assert normalized_xcorr(said, prompt)[0] > 0.8, lead["phone"]
    # After the first wave, one line at a time (one idle agent, ratio back to 1.0).
    second_wave_began = min(carrier.record(lead["phone"].lstrip("+")).spans[0][0] for lead in rest)
    assert carrier.most_at_once(since=second_wave_began) == 1
    # The calls rows say so too, and the ledger the engine saved holds the two abandons.
    calls = await store_calls(pg_url, campaign.id)
    assert sorted(c["outcome"] for c in calls).count("abandoned") == 2


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


@pytest.mark.slow
async def test_predictive_campaign_overdials_and_connects_everyone(
    pg_url: str, tmp_path: Path
) -> None:
    """Predictive mode on real peers: with few live answers expected it dials more lines than
    there are agents, and people answering at different moments all reach an agent."""
    hello = speak("Hello?", tmp_path / "hello.wav")
    person = person_wav(tmp_path / "person.wav", hello)
    customers = {
        "12125550301": Customer("human", answer_after=1.0, speech=person, hang_up_after=5),
        "12125550302": Customer("human", answer_after=7.0, speech=person, hang_up_after=5),
        "12125550303": Customer("human", answer_after=13.0, speech=person, hang_up_after=5),
        **{f"121255503{n}": Customer("no-answer") for n in range(10, 16)},
        "12125550320": Customer("busy"),
        "12125550321": Customer("reject"),
    }
    async with ScriptedCarrier(customers) as carrier:
        host, port = carrier.address
        config = (
            f'[[trunks]]\nname = "carrier"\noutbound = "{host}:{port}"\n\n'
            "[presence]\nwrap_up_seconds = 1\n"
        )
        engine = await start_engine(
            engine_config(extra=config), database_url=pg_url, data_dir=tmp_path
        )
        assert engine.database is not None
        store = PgLeadStore(engine.database.pool)
        now = datetime.now(UTC)
        campaign = await store.create_campaign(
            Campaign(
                name=f"predict-{now.timestamp():.0f}", trunk="carrier", agents=("101", "102"),
                mode="predictive", max_attempts=1, window_start=time(0, 0),
                window_end=time(23, 59), tz_default="UTC", max_ring_seconds=15,
                safe_harbor_prompt=str(PROMPT),
            ),
            now=now,
        )  # fmt: skip
        await store.import_leads(campaign.id, [NewLead(f"+{n}", "UTC") for n in customers], now=now)
        try:
            async with contextlib.AsyncExitStack() as stack:
                for ext, hz in (("101", 1000), ("102", 1300)):
                    agent = await stack.enter_async_context(
                        BaresipPeer(ext, workdir=tmp_path, registrar=registrar_of(engine),
                                    password=f"pass{ext}", answermode="auto",
                                    audio_source=write_tone_wav(tmp_path / f"{ext}.wav", hz, 60))
                    )  # fmt: skip
                    await agent.wait_registered()
                await store.set_state(campaign.id, "start", now=datetime.now(UTC))
                progress = await run_to_the_end(store, campaign.id, left=0, timeout=90)
        finally:
            await engine.stop()
    outcomes = {lead["phone"]: lead["outcome"] for lead in await store_leads(pg_url, campaign.id)}
    assert outcomes == {
        f"+{n}": {"human": "answered-human", "no-answer": "no-answer", "busy": "busy",
                  "reject": "rejected"}[c.behaviour]
        for n, c in customers.items()
    }  # fmt: skip
    assert progress.connected == 3 and progress.abandoned == 0
    # More lines than agents at once: the pacer expected few of them to be answered.
    assert carrier.most_at_once() > 2
    assert all(carrier.record(n).invites == 1 for n in customers)
