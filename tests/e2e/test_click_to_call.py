"""Click-to-call through the real engine: POST /calls rings the agent's baresip phone first (it
shows the customer's number), and only once the agent picks up does the engine dial the fake
carrier's customer; both hear each other, and the call is journaled as an outbound call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from callcenter.runtime import Engine, start_engine
from dialer import Campaign, NewLead
from sip_test_env.audio import first_tone_time, read_wav, write_tone_wav
from sip_test_env.baresip import BaresipPeer
from sip_test_env.ports import free_port
from sip_test_env.scripted_carrier import Customer, ScriptedCarrier
from telephony.aio import Call
from telephony.sip import SipUri

from .conftest import (
    AGENT_KEY,
    api_url,
    bearer,
    calls_settled,
    engine_config,
    registrar_of,
)

pytestmark = pytest.mark.peers

NUMBER = "12125550001"
TRUNK_CALLER_ID = "12125550100"


async def _engine(pg_url: str, tmp_path: Path, carrier: ScriptedCarrier) -> Engine:
    host, port = carrier.address
    trunk = (
        f'[[trunks]]\nname = "carrier"\noutbound = "{host}:{port}"\n'
        f'caller_id = "{TRUNK_CALLER_ID}"\n'
    )
    return await start_engine(engine_config(extra=trunk), database_url=pg_url, data_dir=tmp_path)


async def _post(engine: Engine, body: Any, key: str | None = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            api_url(engine, "/calls"), json=body, headers=bearer(*([key] if key else []))
        ) as r,
    ):
        return r.status, await r.json()


def _presented_numbers(carrier: ScriptedCarrier) -> list[str]:
    """The caller IDs the carrier's INVITEs carried (what the customer's phone shows)."""
    seen: list[str] = []
    incoming = carrier.ua.on_incoming
    assert incoming is not None

    def spy(call: Call) -> None:
        uri = call.invite.from_.uri
        seen.append(uri.user if isinstance(uri, SipUri) and uri.user else "")
        incoming(call)

    carrier.ua.on_incoming = spy
    return seen


@asynccontextmanager
async def _callback_receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP server that keeps the status callbacks POSTed to it."""
    received: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/status", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port("tcp")
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/status", received
    finally:
        await runner.cleanup()


async def test_click_to_call_rings_the_agent_then_the_customer(pg_url: str, tmp_path: Path) -> None:
    hello = write_tone_wav(tmp_path / "hello.wav", 700, 1.0)
    customers = {NUMBER: Customer("human", answer_after=0.5, speech=hello, hang_up_after=4)}
    async with ScriptedCarrier(customers) as carrier, _callback_receiver() as (url, statuses):
        presented = _presented_numbers(carrier)
        engine = await _engine(pg_url, tmp_path, carrier)
        try:
            agent_tone = write_tone_wav(tmp_path / "agent.wav", 1000, 20.0)
            phone = BaresipPeer(
                "101",
                workdir=tmp_path,
                registrar=registrar_of(engine),
                password="pass101",
                audio_source=agent_tone,
            )
            async with phone as agent:
                await agent.wait_registered()
                # An agent key may place the call (keys carry no extension to check it against).
                status, placed = await _post(
                    engine, {"agent": "101", "number": NUMBER, "status_callback": url}, AGENT_KEY
                )
                assert status == 202, placed
                assert placed["agent"] == "101" and placed["number"] == NUMBER
                incoming = await agent.wait_event("CALL_INCOMING", timeout=5)
                assert NUMBER in str(incoming.get("peeruri", "")), incoming
                # The customer is dialled only once the agent has picked up.
                await asyncio.sleep(0.3)
                assert carrier.record(NUMBER).invites == 0
                # While the phone rings the agent is busy: no second click-to-call, no dialer.
                assert engine.switchboard.busy("101")
                status, refused = await _post(engine, {"agent": "101", "number": NUMBER})
                assert status == 409, refused
                await agent.accept()
                await agent.wait_event("CALL_ESTABLISHED", timeout=5)
                await agent.wait_event("CALL_CLOSED", timeout=15)  # the customer hangs up
                _rate, agent_heard, _ = read_wav(agent.recorded_wav())
            customer = carrier.record(NUMBER)
            assert customer.invites == 1 and customer.answered
            assert presented == ["+" + TRUNK_CALLER_ID]  # E.164: the trunk's default format
            assert first_tone_time(customer.heard_samples(), 1000, 8000) is not None  # the agent
            assert first_tone_time(agent_heard, 700, 8000) is not None  # the customer's "hello"
            row = await _ended_row(engine, placed["id"])
            assert row.direction == "outbound"
            assert row.agent == "101"
            assert row.to_number == NUMBER
            assert row.outcome == "answered"
            assert row.call_id == placed["call_id"]
            assert row.recording_path is not None
            # The status callback heard the call: the customer's phone rang, answered, ended.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while len(statuses) < 3 and loop.time() < deadline:
                await asyncio.sleep(0.05)
            assert [s["status"] for s in statuses] == ["ringing", "answered", "ended"]
            assert {s["call_id"] for s in statuses} == {placed["call_id"]}
            assert statuses[-1]["outcome"] == "answered" and statuses[0]["number"] == NUMBER
            await calls_settled(engine)
        finally:
            await engine.stop()


async def test_click_to_call_refusals(pg_url: str, tmp_path: Path) -> None:
    async with ScriptedCarrier({}) as carrier:
        engine = await _engine(pg_url, tmp_path, carrier)
        try:
            cases = [
                ({"agent": "999", "number": NUMBER}, 404, "no extension 999"),
                ({"agent": "101", "number": "12ab"}, 400, "not a phone number"),
                ({"agent": "101", "number": NUMBER}, 409, "not registered"),
                ({"agent": "101"}, 400, "number"),
                ({"agent": "101", "number": NUMBER, "status_callback": "ftp://x/"}, 400, "URL"),
                ({"agent": "101", "number": NUMBER, "campaign": 999999}, 404, "campaign"),
                ({"agent": "101", "number": NUMBER, "lead": "x"}, 400, "lead"),
            ]
            for body, expected, reason in cases:
                status, answer = await _post(engine, body)
                assert status == expected, (body, answer)
                assert reason in answer["error"]["reason"], (body, answer)
            async with (
                aiohttp.ClientSession() as http,
                http.post(api_url(engine, "/calls"), json={"agent": "101", "number": NUMBER}) as r,
            ):
                assert r.status == 401
        finally:
            await engine.stop()


async def _ended_row(engine: Engine, row_id: int) -> Any:
    assert engine.store is not None
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        row = await engine.store.get_call(row_id)
        if row is not None and row.ended_at is not None:
            return row
        assert asyncio.get_running_loop().time() < deadline, row
        await asyncio.sleep(0.05)


async def test_a_lead_calls_with_its_campaigns_caller_id(pg_url: str, tmp_path: Path) -> None:
    customers = {"12125550002": Customer("human", answer_after=0.2, hang_up_after=1)}
    async with ScriptedCarrier(customers) as carrier:
        presented = _presented_numbers(carrier)
        engine = await _engine(pg_url, tmp_path, carrier)
        try:
            assert engine.campaigns is not None
            store = engine.campaigns.store
            now = datetime.now(UTC)
            campaign = await store.create_campaign(
                Campaign(name="c2c", caller_id="12125550177"), now=now
            )
            await store.import_leads(campaign.id, [NewLead("+12125550002", "UTC")], now=now)
            (lead,) = [stored.id for stored in await store.list_leads(campaign.id)]
            phone = BaresipPeer(
                "102",
                workdir=tmp_path,
                registrar=registrar_of(engine),
                password="pass102",
                answermode="auto",
            )
            async with phone as agent:
                await agent.wait_registered()
                body = {"agent": "102", "number": "1 (212) 555-0002", "lead": lead}
                status, placed = await _post(engine, body)
                assert status == 202, placed
                assert placed["number"] == "12125550002"
                await agent.wait_event("CALL_CLOSED", timeout=15)
            assert presented == ["+12125550177"]
            row = await _ended_row(engine, placed["id"])
            assert (row.campaign_id, row.lead_id, row.agent) == (campaign.id, lead, "102")
            status, answer = await _post(
                engine, {"agent": "102", "number": "12125550002", "lead": lead, "campaign": 999}
            )
            assert status == 400 and "not in campaign" in answer["error"]["reason"]
            await calls_settled(engine)
        finally:
            await engine.stop()


async def test_click_to_call_rings_every_phone_of_the_agent(pg_url: str, tmp_path: Path) -> None:
    """Agent 101 on two phones (a softphone and, say, a browser phone): both ring, the second
    answers, the first stops ringing with CANCEL; the call keeps the key the API gave it."""
    customers = {NUMBER: Customer("human", answer_after=0.3, hang_up_after=60)}
    async with ScriptedCarrier(customers) as carrier:
        engine = await _engine(pg_url, tmp_path, carrier)
        registrar = registrar_of(engine)
        try:
            async with (
                BaresipPeer("101", workdir=tmp_path / "desk", registrar=registrar,
                            password="pass101") as desk,
                BaresipPeer("101", workdir=tmp_path / "browser", registrar=registrar,
                            password="pass101") as browser,
            ):  # fmt: skip
                await desk.wait_registered()
                await browser.wait_registered()
                now = engine.ua.loop.time()
                assert len(engine.switchboard.registrar.lookup("101", now=now)) == 2
                status, placed = await _post(engine, {"agent": "101", "number": NUMBER})
                assert status == 202, placed
                key = placed["call_id"]
                await desk.wait_event("CALL_INCOMING", timeout=5)
                await browser.wait_event("CALL_INCOMING", timeout=5)
                legs = {leg.call_id: leg for leg in engine.ua.calls.values()}
                assert key in legs and len(legs) == 2, legs
                await browser.accept()
                await browser.wait_event("CALL_ESTABLISHED", timeout=5)
                # The desk phone stops ringing: a CANCEL for its INVITE (its leg, 487).
                await desk.wait_event("CALL_CLOSED", timeout=5)
                cancelled = [leg for leg in legs.values() if leg.end_reason is not None]
                assert len(cancelled) == 1 and cancelled[0].session.cancelling, legs
                assert cancelled[0].end_reason == "answered-elsewhere"
                # The customer is dialled and answers: the call is live under the API's key,
                # whichever phone took it.
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 5
                while (bridged := engine.switchboard.active.get(key)) is None or (
                    bridged.media is None
                ):
                    assert loop.time() < deadline, engine.switchboard.active
                    await asyncio.sleep(0.05)
                assert bridged.a is not cancelled[0] and bridged.call_id == key
                async with (
                    aiohttp.ClientSession() as http,
                    http.post(api_url(engine, f"/calls/{key}/hangup"), headers=bearer()) as r,
                ):
                    hung_up = await r.json()
                    assert r.status == 200, hung_up
                assert hung_up["call_id"] == key and hung_up["callee"] == NUMBER, hung_up
                await browser.wait_event("CALL_CLOSED", timeout=5)
            row = await _ended_row(engine, placed["id"])
            assert (row.call_id, row.agent, row.outcome) == (key, "101", "answered")
            assert carrier.record(NUMBER).invites == 1
            await calls_settled(engine)
        finally:
            await engine.stop()
