"""CRM delivery through the whole engine: the CRM is down while calls happen and the engine is
restarted before it comes back; then every event arrives exactly once, in order per call."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from callcenter.runtime import start_engine
from sip_test_env.baresip import BaresipPeer
from sip_test_env.crm import WebhookReceiver

from .conftest import AGENT_KEY, api_url, bearer, connect, engine_config, registrar_of

pytestmark = pytest.mark.peers


async def test_crm_down_then_engine_restart_then_crm_up(pg_url: str, tmp_path: Path) -> None:
    crm = WebhookReceiver(secret="hook-secret")  # not started: connections are refused
    config = engine_config(crm=crm.config() + "[crm.retry]\nbase_delay = 0.2\nmax_delay = 0.5\n")
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        registrar = registrar_of(engine)
        async with (
            BaresipPeer("101", workdir=tmp_path, registrar=registrar, password="pass101") as a,
            BaresipPeer("102", workdir=tmp_path, registrar=registrar, password="pass102") as b,
        ):
            await connect(a, b)
            answered = next(iter(engine.switchboard.active))
            await asyncio.sleep(0.5)
            await a.hangup()
            await b.wait_event("CALL_CLOSED", timeout=5)
            await a.dial("104")  # registered nowhere: refused, still a call in the CRM
            await a.wait_event("CALL_CLOSED", timeout=5)
        await asyncio.sleep(1.0)  # a few failed delivery attempts
    finally:
        await engine.stop()
    assert not crm.received

    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    await crm.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while len([d for d in crm.received if d.event == "call.ended"]) < 2:
            assert loop.time() < deadline, [(d.event, d.data.get("call_id")) for d in crm.received]
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # anything else (duplicates) would arrive now
    finally:
        await engine.stop()
        await crm.stop()
    assert len(crm.received) == len(crm.unique()), "an event arrived twice"
    by_call: dict[str, list[str]] = {}
    for delivery in crm.received:
        by_call.setdefault(delivery.data["call_id"], []).append(delivery.event)
    assert by_call[answered] == ["call.started", "call.ringing", "call.answered", "call.ended"]
    refused = [events for call_id, events in by_call.items() if call_id != answered]
    assert refused == [["call.ended"]]
    assert crm.bad_signatures == 0


async def test_dead_letters_are_listed_and_requeued_over_the_api(
    pg_url: str, tmp_path: Path
) -> None:
    """A CRM that refuses an event (422) dead-letters it at once; once the CRM is fixed, the
    admin requeues it over the API and it arrives."""
    crm = WebhookReceiver(secret="hook-secret", fail_first=1, fail_status=422)
    await crm.start()
    config = engine_config(crm=crm.config("refusing-crm"))
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        assert engine.store is not None
        task = await engine.store.open_callback_task(
            "+12125550777", assignee="101", due_at=datetime.now(UTC), call_row_id=None
        )
        async with aiohttp.ClientSession(headers=bearer()) as http:
            dead: list[dict[str, object]] = []
            for _ in range(100):
                async with http.get(api_url(engine, "/outbox/dead?endpoint=refusing-crm")) as r:
                    dead = (await r.json())["dead"]
                if dead:
                    break
                await asyncio.sleep(0.05)
            assert [(d["aggregate"], d["event_type"]) for d in dead] == [
                (f"task/{task.id}", "task.created")
            ]
            async with http.post(
                api_url(engine, "/outbox/dead/requeue"), json={}, headers=bearer(AGENT_KEY)
            ) as r:
                assert r.status == 403  # admins only
            async with http.post(
                api_url(engine, "/outbox/dead/requeue"), json={"endpoint": "refusing-crm"}
            ) as r:
                assert (await r.json())["requeued"] == 1
            for _ in range(100):
                if crm.unique():
                    break
                await asyncio.sleep(0.05)
            async with http.get(api_url(engine, "/outbox")) as r:
                backlog = await r.json()
    finally:
        await engine.stop()
        await crm.stop()
    assert [(d.event, d.data["id"]) for d in crm.unique()] == [("task.created", task.id)]
    assert backlog.get("refusing-crm", {}).get("dead", 0) == 0
