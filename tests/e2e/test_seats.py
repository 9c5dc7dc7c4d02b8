"""Seats (nailed-up agent lines) in a power campaign: two agents dial *55 once and stay on it;
each person the dialer reaches is bridged to a seat with no ringing. How soon they hear the agent
after the AMD verdict is measured on the customer's side (the answer time plus the verdict's
audio seconds, against the first frame of the agent's tone the customer heard)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from callcenter.runtime import Engine
from dialer import Campaign, NewLead
from pbx.events import CallAnswered
from sip_test_env import tools
from sip_test_env.audio import first_tone_time, read_wav
from sip_test_env.baresip import BaresipPeer
from sip_test_env.scripted_carrier import Customer, ScriptedCarrier
from sip_test_env.voices import person_wav, speak

from .callfloor import available, wait_for
from .conftest import api_url, bearer, registrar_of
from .test_campaign import (
    agent_phones,
    calling_hours_around_now,
    engine_on_carrier,
    run_to_the_end,
)

pytestmark = [pytest.mark.peers, tools.needs("espeak-ng", "sox")]

ROOT = Path(__file__).resolve().parents[2]
PROMPT = ROOT / "callcenter" / "prompts" / "we-will-call-you-back.wav"
FRAME = 0.02


@dataclass
class SeatRun:
    """What a power campaign with seated agents did (seated_campaign)."""

    progress: Any
    served: dict[str, int]
    """Customers each seat's one call carried."""
    incoming: dict[str, list[Any]]
    """Incoming-call events each agent's phone saw (none: no phone rang)."""
    heard_by_agent: dict[str, list[Path]]
    delays: dict[str, float]
    """Per person: seconds from the AMD verdict to their agent's voice (connect_delays)."""


async def seated_campaign(pg_url: str, tmp_path: Path, people: int) -> SeatRun:
    """Agents 101 and 102 take a seat (*55) with manual-answer phones; a power campaign calls
    `people` people who answer a third of a second apart, say "Hello?" and hang up 5 s later."""
    hello = speak("Hello?", tmp_path / "hello.wav")
    person = person_wav(tmp_path / "person.wav", hello)
    numbers = [f"12125550{n:03d}" for n in range(401, 401 + people)]
    customers = {
        n: Customer("human", answer_after=0.5 + i / 3, speech=person, hang_up_after=5)
        for i, n in enumerate(numbers)
    }
    opens, closes = calling_hours_around_now()
    tones = {"101": 1000, "102": 1300}
    async with ScriptedCarrier(customers) as carrier:
        engine, store = await engine_on_carrier(carrier, pg_url, tmp_path)
        now = datetime.now(UTC)
        campaign = await store.create_campaign(
            Campaign(
                name=f"seats-{now.timestamp():.0f}", caller_id="12125550100", trunk="carrier",
                agents=tuple(tones), mode="power", ratio=1.0, max_attempts=1,
                window_start=opens, window_end=closes, tz_default="UTC", max_ring_seconds=15,
                voicemail_prompt=str(PROMPT), safe_harbor_prompt=str(PROMPT),
            ),
            now=now,
        )  # fmt: skip
        await store.import_leads(campaign.id, [NewLead(f"+{n}", "UTC") for n in numbers], now=now)
        try:
            async with contextlib.AsyncExitStack() as stack:
                agents = await agent_phones(stack, engine, tmp_path, tones, answermode="manual")
                for ext, agent in agents.items():
                    await agent.dial("*55")
                    await agent.wait_event("CALL_ESTABLISHED", timeout=5)
                    seat = engine.switchboard.seats.get(ext)
                    assert seat is not None
                # A seated agent is no ringing phone for anyone else.
                assert all(engine.switchboard.busy(ext) for ext in tones)
                await store.set_state(campaign.id, "start", now=datetime.now(UTC))
                progress = await run_to_the_end(store, campaign.id, left=0, timeout=20 * people)
                await store.set_state(campaign.id, "stop", now=datetime.now(UTC))
                # Both seats are still up after all those customers.
                seats = {ext: engine.switchboard.seats.get(ext) for ext in tones}
                assert all(s is not None and not s.leg.ended.done() for s in seats.values())
                served = {ext: s.calls for ext, s in seats.items() if s is not None}
                incoming = {ext: a.events_of("CALL_INCOMING") for ext, a in agents.items()}
                for agent in agents.values():
                    await agent.hangup()
                    await agent.wait_event("CALL_CLOSED", timeout=5)
                heard_by_agent = {ext: a.recorded_wavs() for ext, a in agents.items()}
        finally:
            await engine.stop()
    delays = await connect_delays(pg_url, carrier, campaign.id, tones)
    return SeatRun(progress, served, incoming, heard_by_agent, delays)


@pytest.mark.slow
async def test_seated_agents_take_people_with_no_ringing(pg_url: str, tmp_path: Path) -> None:
    people = 6
    run = await seated_campaign(pg_url, tmp_path, people)
    assert run.progress.connected == people and run.progress.abandoned == 0
    assert sum(run.served.values()) == people and all(run.served.values()), run.served
    assert run.incoming == {ext: [] for ext in run.served}  # no agent's phone ever rang
    assert len(run.delays) == people
    # How soon each person heard their agent after the verdict is a figure, not an assert (a
    # loaded test box stalls any event loop): bench/bench_seat_connect.py prints it on a quiet
    # one against the 300 ms goal. What the test holds is that no phone had to ring for it.
    print("seat connect delays after the verdict, s:",
          " ".join(f"{d:.3f}" for d in run.delays.values()))  # fmt: skip
    # Each seat's one call holds its customers' voices, one after the other.
    for ext, wavs in run.heard_by_agent.items():
        assert len(wavs) == 1, (ext, wavs)
        _, samples, _ = read_wav(wavs[0])
        assert samples.size / 8000 > 5.0


async def connect_delays(
    pg_url: str, carrier: ScriptedCarrier, campaign_id: int | None, tones: dict[str, int]
) -> dict[str, float]:
    """Per person the dialer reached: seconds from the AMD verdict (the answer time plus the
    verdict's audio seconds) to the first frame of their agent's tone (`tones`: agent ->
    Hz) the customer heard, on the carrier's frame clock."""
    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch(
            "SELECT l.phone, a.agent, a.amd_seconds FROM attempts a JOIN leads l"
            " ON l.id = a.lead_id WHERE a.campaign_id = $1 AND a.outcome = 'answered-human'",
            campaign_id,
        )
    finally:
        await conn.close()
    delays = {}
    for row in rows:
        record = carrier.record(row["phone"].lstrip("+"))
        assert record.answered_at is not None and row["amd_seconds"] is not None
        onset = first_tone_time(record.heard_samples(), tones[row["agent"]], 8000)
        assert onset is not None, row
        heard_at = record.heard_at[min(int(onset / FRAME), len(record.heard_at) - 1)]
        delays[row["phone"]] = heard_at - (record.answered_at + row["amd_seconds"])
    return delays


async def test_a_phone_not_on_a_seat_gets_auto_answer_hints(pg_url: str, tmp_path: Path) -> None:
    """Without a seat the agent's phone is rung, asked to answer by itself (Call-Info
    answer-after, Polycom's Alert-Info); calls between agents carry no such hint. The
    campaign's own connect deadline is stored with it."""
    hello = speak("Hello?", tmp_path / "hello.wav")
    person = person_wav(tmp_path / "person.wav", hello)
    number = "12125550431"
    customers = {number: Customer("human", answer_after=0.5, speech=person, hang_up_after=4)}
    opens, closes = calling_hours_around_now()
    answered: list[CallAnswered] = []
    async with ScriptedCarrier(customers) as carrier:
        engine, store = await engine_on_carrier(carrier, pg_url, tmp_path)
        engine.switchboard.events.subscribe(CallAnswered, answered.append)
        now = datetime.now(UTC)
        campaign = await store.create_campaign(
            Campaign(
                name=f"hints-{now.timestamp():.0f}", caller_id="12125550100", trunk="carrier",
                agents=("101",), mode="power", ratio=1.0, max_attempts=1, connect_seconds=4.0,
                window_start=opens, window_end=closes, tz_default="UTC", max_ring_seconds=15,
                voicemail_prompt=str(PROMPT), safe_harbor_prompt=str(PROMPT),
            ),
            now=now,
        )  # fmt: skip
        assert campaign.id is not None
        assert (await store.get_campaign(campaign.id)).connect_seconds == 4.0
        await store.import_leads(campaign.id, [NewLead(f"+{number}", "UTC")], now=now)
        try:
            async with (
                BaresipPeer(
                    "101", workdir=tmp_path, registrar=registrar_of(engine), password="pass101",
                    answermode="auto",
                ) as a101,
                BaresipPeer(
                    "102", workdir=tmp_path, registrar=registrar_of(engine), password="pass102",
                    answermode="auto",
                ) as a102,
            ):  # fmt: skip
                await a101.wait_registered()
                await a102.wait_registered()
                await store.set_state(campaign.id, "start", now=datetime.now(UTC))
                progress = await run_to_the_end(store, campaign.id, left=0, timeout=60)
                await store.set_state(campaign.id, "stop", now=datetime.now(UTC))
                await available(engine, "101")  # the call's wrap-up ends
                await a102.dial("101")  # an agent's own call: no hint
                await a102.wait_event("CALL_ESTABLISHED", timeout=10)
                await a102.hangup()
                await a102.wait_event("CALL_CLOSED", timeout=5)
        finally:
            await engine.stop()
    assert progress.connected == 1
    dialer_call, agents_call = (event.bridged for event in answered)
    assert dialer_call.b is not None and agents_call.b is not None
    hints = dialer_call.b.invite.headers
    assert (hints.get("Call-Info") or "").endswith(";answer-after=0")
    assert "info=alert-autoanswer" in (hints.get("Alert-Info") or "")
    assert "Call-Info" not in agents_call.b.invite.headers


async def test_the_api_seats_an_agent_by_ringing_their_phone(pg_url: str, tmp_path: Path) -> None:
    """POST /agents/{ext}/seat rings the phone (auto-answer hints); once answered the call is
    the seat and the next person goes to it; the agent transfers that person to a colleague and
    keeps the seat; DELETE stands the agent up. Refusals say why."""
    hello = speak("Hello?", tmp_path / "hello.wav")
    person = person_wav(tmp_path / "person.wav", hello)
    number = "12125550441"
    customers = {number: Customer("human", answer_after=0.5, speech=person, hang_up_after=8)}
    opens, closes = calling_hours_around_now()
    async with ScriptedCarrier(customers) as carrier:
        engine, store = await engine_on_carrier(carrier, pg_url, tmp_path)
        url = api_url(engine, "/agents/101/seat")
        try:
            async with (
                aiohttp.ClientSession(headers=bearer()) as http,
                contextlib.AsyncExitStack() as stack,
                BaresipPeer(
                    "101", workdir=tmp_path, registrar=registrar_of(engine), password="pass101",
                    answermode="auto",
                ) as a101,
            ):  # fmt: skip
                async with http.post(api_url(engine, "/agents/102/seat")) as resp:
                    assert resp.status == 409  # 102's phone is not registered
                    assert "not registered" in (await resp.json())["error"]["reason"]
                a102 = await stack.enter_async_context(
                    BaresipPeer(
                        "102", workdir=tmp_path, registrar=registrar_of(engine),
                        password="pass102", answermode="auto",
                    )
                )  # fmt: skip
                async with http.post(api_url(engine, "/agents/999/seat")) as resp:
                    assert resp.status == 404
                await a101.wait_registered()
                async with http.post(url) as resp:
                    assert resp.status == 202, await resp.text()
                    assert (await resp.json())["ringing"] is True
                await a101.wait_event("CALL_ESTABLISHED", timeout=10)
                seat = await _seated(http, url)
                assert seat["calls"] == 0
                async with http.post(url) as resp:
                    assert resp.status == 409  # seated already
                now = datetime.now(UTC)
                campaign = await store.create_campaign(
                    Campaign(
                        name=f"api-seat-{now.timestamp():.0f}", caller_id="12125550100",
                        trunk="carrier", agents=("101",), mode="power", max_attempts=1,
                        window_start=opens, window_end=closes, tz_default="UTC",
                        voicemail_prompt=str(PROMPT), safe_harbor_prompt=str(PROMPT),
                    ),
                    now=now,
                )  # fmt: skip
                assert campaign.id is not None
                await store.import_leads(campaign.id, [NewLead(f"+{number}", "UTC")], now=now)
                await a102.wait_registered()
                await store.set_state(campaign.id, "start", now=datetime.now(UTC))
                seat_of_101 = engine.switchboard.seats.get("101")
                assert seat_of_101 is not None
                await wait_for(lambda: seat_of_101.on_call, timeout=30, what="the person")
                (person_call,) = [
                    b for b in engine.switchboard.active.values() if b.callee == "101"
                ]
                transfer = api_url(engine, f"/calls/{person_call.call_id}/transfer")
                async with http.post(transfer, json={"to": "102"}) as resp:
                    assert resp.status == 202, await resp.text()
                await a102.wait_event("CALL_ESTABLISHED", timeout=10)
                # The person talks to 102 now; 101's seat is free and still up.
                await wait_for(lambda: not seat_of_101.on_call, what="the seat free")
                assert person_call.callee == "102" and not seat_of_101.leg.ended.done()
                assert engine.switchboard.seats.get("101") is seat_of_101
                progress = await run_to_the_end(store, campaign.id, left=0, timeout=60)
                await store.set_state(campaign.id, "stop", now=datetime.now(UTC))
                await a102.wait_event("CALL_CLOSED", timeout=15)  # the person hung up
                assert (await _seated(http, url))["calls"] == 1
                async with http.delete(url) as resp:
                    assert resp.status == 200 and (await resp.json())["seated"] is False
                await a101.wait_event("CALL_CLOSED", timeout=5)
                async with http.delete(url) as resp:
                    assert resp.status == 404  # no seat
                answered = a101.events_of("CALL_ESTABLISHED")
        finally:
            await engine.stop()
    assert progress.connected == 1
    assert len(answered) == 1  # the seat's call; the person came to it, not as a new call


async def _seated(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """The seat once the engine has it (the phone answered a moment ago)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while True:
        async with http.get(url) as resp:
            seat = await resp.json()
        if seat["seated"] or loop.time() > deadline:
            assert seat["seated"], seat
            return dict(seat)
        await asyncio.sleep(0.05)


async def test_the_api_seat_rings_every_phone_of_the_agent(engine: Engine, tmp_path: Path) -> None:
    """Agent 101 on two phones: POST /agents/101/seat rings both; the one that answers by
    itself becomes the seat and the other stops ringing (CANCEL)."""
    registrar = registrar_of(engine)
    async with (
        aiohttp.ClientSession(headers=bearer()) as http,
        BaresipPeer("101", workdir=tmp_path / "desk", registrar=registrar,
                    password="pass101") as desk,
        BaresipPeer("101", workdir=tmp_path / "browser", registrar=registrar,
                    password="pass101", answermode="auto") as browser,
    ):  # fmt: skip
        await desk.wait_registered()
        await browser.wait_registered()
        url = api_url(engine, "/agents/101/seat")
        async with http.post(url) as resp:
            assert resp.status == 202, await resp.text()
        await desk.wait_event("CALL_INCOMING", timeout=5)
        await browser.wait_event("CALL_ESTABLISHED", timeout=10)
        await desk.wait_event("CALL_CLOSED", timeout=5)  # cancelled: answered elsewhere
        await _seated(http, url)
        seat = engine.switchboard.seats.get("101")
        assert seat is not None and not seat.leg.ended.done()
        async with http.delete(url) as resp:
            assert resp.status == 200, await resp.text()
        await browser.wait_event("CALL_CLOSED", timeout=5)
