"""CRM delivery through the whole engine: the CRM is down while calls happen and the engine is
restarted before it comes back; then every event arrives exactly once, in order per call."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from callcenter.runtime import start_engine
from sip_test_env.baresip import BaresipPeer
from sip_test_env.crm import WebhookReceiver

from .conftest import connect, engine_config, registrar_of

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
    assert by_call[answered] == ["call.started", "call.ended"]
    refused = [events for call_id, events in by_call.items() if call_id != answered]
    assert refused == [["call.ended"]]
    assert crm.bad_signatures == 0
