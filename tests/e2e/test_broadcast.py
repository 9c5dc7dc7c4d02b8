"""A broadcast campaign end to end: ten scripted customers on the fake carrier hear a recorded
message with "press 1 to talk to a manager, press 9 to opt out"; two baresip managers.

Press 1 while a manager is free: connected (audio both ways). Press 1 while both are busy: the
"a manager will call you back" prompt and a callback task for the customer's own manager. Press
9: on the do-not-call list. Silence: the message to the end, then goodbye. Machines: the message
left after the beep. Keys arrive as RFC 4733, SIP INFO and in-band tones.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, time
from pathlib import Path

import aiohttp
import asyncpg
import numpy as np
import pytest

from callcenter.campaign_cli import progress_line
from callcenter.runtime import start_engine
from dialer import Campaign, NewLead, PgLeadStore
from sip_test_env import tools
from sip_test_env.audio import (
    band_energy_db,
    first_tone_time,
    normalized_xcorr,
    read_wav,
    write_tone_wav,
)
from sip_test_env.baresip import BaresipPeer
from sip_test_env.scripted_carrier import Customer, ScriptedCarrier
from sip_test_env.voices import person_wav, speak

from .callfloor import floor_config, phone, wait_for
from .conftest import api_url, bearer, engine_config, registrar_of

pytestmark = [
    pytest.mark.peers,
    tools.needs("espeak-ng", "sox"),
]

ROOT = Path(__file__).resolve().parents[2]
VOICEMAIL = ROOT / "callcenter" / "prompts" / "we-will-call-you-back.wav"
# Prompt tones, far from the DTMF frequencies and from the people's and agents' tones.
MESSAGE_HZ, CALLBACK_HZ, OPTOUT_HZ = 400, 2200, 2600
TALK_HZ = 500
AGENT_HZ = {"101": 1000, "102": 1300}

FLOW = """\
start = "message"

[nodes.message]
kind = "menu"
prompts = ["message.wav"]
choices = { "1" = "manager", "9" = "optout" }
timeout = 4
retries = 0
fallback = "bye"

[nodes.manager]
kind = "transfer"
target = "agent:{responsible}"
timeout = 6
fallback = "anyone"

[nodes.anyone]
kind = "transfer"
target = "ringgroup:managers"
timeout = 6
fallback = "later"

[nodes.later]
kind = "callback"
assignee = "{responsible}"
due_minutes = 60
prompts = ["callback.wav"]
next = "bye"

[nodes.optout]
kind = "opt-out"
prompts = ["optout.wav"]
next = "bye"

[nodes.bye]
kind = "hangup"
"""


def person(tmp_path: Path) -> Path:
    """ "Hello?", a pause (AMD hears a person), then the person talks (a 500 Hz tone)."""
    hello = speak("Hello?", tmp_path / "hello.wav")
    return person_wav(tmp_path / "person.wav", hello, talk_hz=TALK_HZ, talk_seconds=12.0,
                      level_dbfs=-14.0)  # fmt: skip


async def test_broadcast_press_one_press_nine_and_machines(pg_url: str, tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    write_tone_wav(flows / "message.wav", MESSAGE_HZ, 3.0)
    write_tone_wav(flows / "callback.wav", CALLBACK_HZ, 1.0)
    write_tone_wav(flows / "optout.wav", OPTOUT_HZ, 0.6)
    (flows / "promo.toml").write_text(FLOW)
    greeting = speak("Hi, this is Anna. Leave a message after the tone.", tmp_path / "vm.wav")
    talker = person(tmp_path)

    def human(**script: object) -> Customer:
        return Customer("human", answer_after=1.0, speech=talker, **script)  # type: ignore[arg-type]

    # number -> (script, responsible manager)
    plan = {
        "12125550201": (human(press="1", press_after=5.0, hang_up_after=14), "101"),
        "12125550202": (human(press="1", press_after=5.0, dtmf="info", hang_up_after=14), "102"),
        # Both managers are talking by now: callbacks for each customer's own manager.
        "12125550203": (human(press="1", press_after=6.5, dtmf="inband", hang_up_after=16), "101"),
        "12125550204": (human(press="1", press_after=7.0, hang_up_after=16), "102"),
        "12125550205": (human(press="9", press_after=5.0, hang_up_after=14), "101"),
        "12125550206": (human(hang_up_after=20), "101"),
        "12125550207": (human(hang_up_after=20), "102"),
        "12125550208": (Customer("machine", speech=greeting, hang_up_after=25), "101"),
        "12125550209": (Customer("machine", speech=greeting, hang_up_after=25), "102"),
        "12125550210": (human(hang_up_after=3.5), "101"),  # hangs up during the message
    }
    async with ScriptedCarrier({n: s for n, (s, _) in plan.items()}) as carrier:
        host, port = carrier.address
        config = (
            f'[ivr]\nflows_dir = "{flows}"\nprompt_cache = "{tmp_path / "cache"}"\n\n'
            f'[[trunks]]\nname = "carrier"\noutbound = "{host}:{port}"\ncaller_id = "12125550100"\n'
            '\n[[ring_groups]]\nname = "managers"\nmembers = ["101", "102"]\n'
            "\n[presence]\nwrap_up_seconds = 1\n"
        )
        engine = await start_engine(
            engine_config(extra=config), database_url=pg_url, data_dir=tmp_path
        )
        assert engine.database is not None
        store = PgLeadStore(engine.database.pool)
        now = datetime.now(UTC)
        campaign = await store.create_campaign(
            Campaign(
                name=f"store-opening-{now.timestamp():.0f}", caller_id="12125550100",
                trunk="carrier", mode="broadcast", flow="promo", lines=10, max_attempts=1,
                window_start=time(0, 0), window_end=time(23, 59), tz_default="UTC",
                max_ring_seconds=15, voicemail_prompt=str(VOICEMAIL),
            ),
            now=now,
        )  # fmt: skip
        await store.import_leads(
            campaign.id,
            [NewLead(f"+{n}", "UTC", responsible=manager) for n, (_, manager) in plan.items()],
            now=now,
        )
        try:
            async with contextlib.AsyncExitStack() as stack:
                agents = {}
                for ext, hz in AGENT_HZ.items():
                    agents[ext] = await stack.enter_async_context(
                        BaresipPeer(ext, workdir=tmp_path, registrar=registrar_of(engine),
                                    password=f"pass{ext}", answermode="auto",
                                    audio_source=write_tone_wav(tmp_path / f"{ext}.wav", hz, 60))
                    )  # fmt: skip
                    await agents[ext].wait_registered()
                await store.set_state(campaign.id, "start", now=datetime.now(UTC))
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 90
                while True:
                    progress = await store.campaign_progress(campaign.id)
                    if not progress.remaining and not progress.in_flight:
                        break
                    assert loop.time() < deadline, progress
                    await asyncio.sleep(0.5)
                heard_by = {
                    e: [read_wav(w)[1] for w in a.recorded_wavs()] for e, a in agents.items()
                }
                async with aiohttp.ClientSession(headers=bearer()) as http:
                    async with http.get(api_url(engine, f"/campaigns/{campaign.id}")) as r:
                        status = await r.json()
                    async with http.get(api_url(engine, f"/campaigns/{campaign.id}/results")) as r:
                        results = {row["phone"]: row for row in (await r.json())["results"]}
                # A later campaign with the opted-out number never dials it.
                later = await store.create_campaign(
                    Campaign(name=f"again-{now.timestamp():.0f}", agents=("101",),
                             window_start=time(0, 0), window_end=time(23, 59)),
                    now=datetime.now(UTC),
                )  # fmt: skip
                await store.import_leads(later.id, [NewLead("+12125550205", "UTC")], now=now)
                await store.set_state(later.id, "start", now=datetime.now(UTC))
                unclaimed = await store.claim_next_leads(
                    later.id, 5, now=datetime.now(UTC), node="test"
                )
                await store.set_state(later.id, "stop", now=datetime.now(UTC))
        finally:
            await engine.stop()

    def heard(number: str) -> np.ndarray:
        return carrier.record(number).heard_samples()

    # Press 1 with a manager free: the customer's own manager, audio both ways.
    for number, ext in (("12125550201", "101"), ("12125550202", "102")):
        row = results[f"+{number}"]
        assert row["outcome"] == "transferred" and row["agent"] == ext, row
        assert first_tone_time(heard(number), AGENT_HZ[ext], 8000) is not None, number
    for ext in AGENT_HZ:  # and each manager heard their customer talk
        assert [first_tone_time(s, TALK_HZ, 8000) is not None for s in heard_by[ext]] == [True]
    # Press 1 with both busy: the confirmation prompt and a task for the right manager.
    conn = await asyncpg.connect(pg_url)
    try:
        tasks = await conn.fetch(
            "SELECT c.phone, t.assignee FROM tasks t JOIN contacts c ON c.id = t.contact_id"
            " WHERE c.phone = ANY($1::text[]) AND t.status = 'open'",
            ["+12125550203", "+12125550204"],
        )
        # Press 9: on the do-not-call list, and never dialled again by any campaign.
        barred = await conn.fetchval("SELECT count(*) FROM dnc WHERE phone = '+12125550205'")
    finally:
        await conn.close()
    assert sorted((t["phone"], t["assignee"]) for t in tasks) == [
        ("+12125550203", "101"), ("+12125550204", "102")
    ]  # fmt: skip
    for number in ("12125550203", "12125550204"):
        assert results[f"+{number}"]["callback_created"], results[f"+{number}"]
        assert first_tone_time(heard(number), CALLBACK_HZ, 8000) is not None, number
        assert first_tone_time(heard(number), AGENT_HZ["101"], 8000) is None  # never connected
    assert results["+12125550205"]["opted_out"] and barred == 1 and unclaimed == []
    assert first_tone_time(heard("12125550205"), OPTOUT_HZ, 8000) is not None
    # Each key was recognised once, however it travelled.
    assert {results[f"+1212555020{n}"]["digits"] for n in (1, 2, 3, 4)} == {"1"}
    assert results["+12125550205"]["digits"] == "9"
    # Silence: the whole message, then goodbye; the early hang-up did not hear it to the end.
    for number in ("12125550206", "12125550207"):
        row = results[f"+{number}"]
        assert row["listened_to_end"] and row["digits"] == "" and row["path"] == ["message", "bye"]
    assert not results["+12125550210"]["listened_to_end"]
    # Machines: the voicemail message after the beep.
    _, message, _ = read_wav(VOICEMAIL)
    for number in ("12125550208", "12125550209"):
        assert results[f"+{number}"]["voicemail_left"]
        assert normalized_xcorr(heard(number), message)[0] > 0.8, number
    # The campaign's results, as the API and the CLI's status line give them.
    assert status["broadcast"] == {
        "reached": 8, "listened_to_end": 7, "pressed_1": 4, "connected": 2,
        "callbacks_created": 2, "callbacks_completed": 0, "opted_out": 1, "voicemails_left": 2,
    }  # fmt: skip
    assert "pressed-1 4 connected 2 callbacks 2 (0 done) opted-out 1" in progress_line(status)
    # One INVITE per number.
    assert {n: carrier.record(n).invites for n in plan} == dict.fromkeys(plan, 1)


PICKUP_FLOW = """\
start = "message"

[nodes.message]
kind = "menu"
prompts = ["message.wav"]
choices = { "1" = "manager" }
timeout = 4
retries = 0

[nodes.manager]
kind = "transfer"
target = "agent:103"
timeout = 15
"""


async def test_pickup_and_listen_on_a_broadcast_call(pg_url: str, tmp_path: Path, db) -> None:
    """A broadcast customer presses 1; the flow rings 103, who is away from the desk; 104 (same
    pickup group) takes it with *8, and supervisor 191 listens in with *1104."""
    flows = tmp_path / "flows"
    flows.mkdir()
    write_tone_wav(flows / "message.wav", MESSAGE_HZ, 2.0)
    (flows / "promo.toml").write_text(PICKUP_FLOW)
    number = "12125550251"
    script = Customer("human", answer_after=1.0, speech=person(tmp_path), press="1",
                      press_after=4.0, hang_up_after=16)  # fmt: skip
    async with ScriptedCarrier({number: script}) as carrier:
        host, port = carrier.address
        ivr = f'[ivr]\nflows_dir = "{flows}"\nprompt_cache = "{tmp_path / "cache"}"\n'
        config = engine_config(extra=floor_config(outbound=f"{host}:{port}") + ivr)
        engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
        try:
            assert engine.database is not None
            store = PgLeadStore(engine.database.pool)
            now = datetime.now(UTC)
            campaign = await store.create_campaign(
                Campaign(name=f"pickup-{now.timestamp():.0f}", trunk="carrier", mode="broadcast",
                         flow="promo", lines=1, max_attempts=1, window_start=time(0, 0),
                         window_end=time(23, 59), max_ring_seconds=15),
                now=now,
            )  # fmt: skip
            await store.import_leads(campaign.id, [NewLead(f"+{number}", "UTC")], now=now)
            async with (
                phone("103", engine, tmp_path) as a103,
                phone(
                    "104", engine, tmp_path, write_tone_wav(tmp_path / "p.wav", 1000, 30)
                ) as a104,
                phone("191", engine, tmp_path) as sup,
            ):
                for p in (a103, a104, sup):
                    await p.wait_registered()
                await store.set_state(campaign.id, "start", now=datetime.now(UTC))
                await a103.wait_event("CALL_INCOMING", timeout=20)  # the flow's transfer rings
                await a104.dial("*8")
                await a104.wait_event("CALL_ESTABLISHED", timeout=5)
                await a103.wait_event("CALL_CLOSED", timeout=5)
                await asyncio.sleep(1.5)
                await sup.dial("*1104")
                await sup.wait_event("CALL_ESTABLISHED", timeout=5)
                await asyncio.sleep(2.5)
                await sup.hangup()
                await a104.hangup()
                await wait_for(lambda: not engine.switchboard.active, 10, "the call's end")
                heard_by_sup = read_wav(sup.recorded_wav())[1]
                results = await store.broadcast_results(campaign.id)
        finally:
            await engine.stop()
    assert first_tone_time(carrier.record(number).heard_samples(), 1000, 8000) is not None
    assert band_energy_db(heard_by_sup, TALK_HZ, 8000) > -30  # listening: the customer talks
    assert [(r["outcome"], r["agent"]) for r in results] == [("transferred", "104")]
    row = await db.fetchrow("SELECT * FROM calls WHERE campaign_id = $1", campaign.id)
    assert (row["agent"], row["outcome"], row["direction"]) == ("104", "answered", "outbound")
    audit = await db.fetch(
        "SELECT action, mode FROM monitor_audit WHERE call_id = $1 ORDER BY id", row["call_id"]
    )
    assert [tuple(r) for r in audit] == [("started", "listen"), ("ended", "listen")]
