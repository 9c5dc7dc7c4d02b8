"""Campaigns over the REST API on a running engine: create, upload a CSV (bad rows reported by
line), start, watch it finish; roles and state transitions are enforced."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from callcenter.runtime import start_engine
from dialer import AbandonLedger, AbandonPolicy
from sip_test_env.baresip import BaresipPeer
from sip_test_env.crm import WebhookReceiver
from sip_test_env.scripted_carrier import Customer, ScriptedCarrier

from .conftest import (
    ADMIN_KEY,
    AGENT_101_KEY,
    AGENT_KEY,
    api_url,
    bearer,
    engine_config,
    registrar_of,
)

pytestmark = pytest.mark.peers

CSV = (
    "\ufeffphone;name;tz;plan\n"
    "+1 212 555 0003;Busy Bee;America/New_York;gold\n"
    "call me maybe;Junk;UTC;none\n"
    "(212) 555-0004;Reject Rex;;silver\n"
    "+12125550003;Busy Again;UTC;gold\n"
)


async def test_campaign_lifecycle_over_the_api(pg_url: str, tmp_path: Path) -> None:
    customers = {"12125550003": Customer("busy"), "12125550004": Customer("reject")}
    async with ScriptedCarrier(customers) as carrier:
        host, port = carrier.address
        trunk = f'[[trunks]]\nname = "carrier"\noutbound = "{host}:{port}"\n'
        config = engine_config(extra=trunk)
        engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
        agent = BaresipPeer(
            "101",
            workdir=tmp_path,
            registrar=registrar_of(engine),
            password="pass101",
            answermode="auto",
        )
        try:
            # Power dialing paces by idle agents: one must be logged in.
            async with agent, aiohttp.ClientSession() as http:
                await agent.wait_registered()

                async def call(method: str, path: str, key: str | None = None, **kw: Any) -> Any:
                    headers = {**bearer(key or ADMIN_KEY), **kw.pop("headers", {})}
                    url = api_url(engine, path)
                    async with http.request(method, url, headers=headers, **kw) as r:
                        return r.status, await r.json()

                settings = {
                    "name": f"api-{tmp_path.name}",
                    "caller_id": "12125550100",
                    "agents": ["101"],
                    "mode": "power",
                    "ratio": 1.0,
                    "max_attempts": 1,
                    "window_start": "00:00",
                    "window_end": "23:59",
                    "max_ring_seconds": 15,
                }
                status, body = await call("POST", "/campaigns", json={**settings, "ratio": 9})
                assert status == 400 and "ratio" in body["error"]["reason"]
                for wrong in ({"name": 0}, {"amd": {}}, {"ratio": True}, {"lines": 2.5}):
                    status, body = await call("POST", "/campaigns", json={**settings, **wrong})
                    (field,) = wrong
                    assert status == 400 and field in body["error"]["reason"], body
                status, body = await call("POST", "/campaigns", key=AGENT_KEY, json=settings)
                assert status == 403
                status, created = await call("POST", "/campaigns", json=settings)
                assert status == 201 and created["state"] == "draft"
                cid = created["id"]

                status, imported = await call(
                    "POST",
                    f"/campaigns/{cid}/leads",
                    data=CSV.encode(),
                    headers={"Content-Type": "text/csv"},
                )
                assert status == 200
                assert imported["imported"] == 2
                assert [e["line"] for e in imported["errors"]] == [3]
                assert imported["duplicates"][0]["lines"] == [2, 5]

                status, body = await call("POST", f"/campaigns/{cid}/resume")
                assert status == 409  # a draft cannot be resumed
                status, body = await call("POST", f"/campaigns/{cid}/start", key=AGENT_KEY)
                assert status == 403
                status, body = await call("POST", f"/campaigns/{cid}/start")
                assert status == 200 and body["state"] == "running"

                loop = asyncio.get_running_loop()
                deadline = loop.time() + 30
                while True:
                    status, body = await call("GET", f"/campaigns/{cid}")
                    if body["progress"]["remaining"] == 0:
                        break
                    assert loop.time() < deadline, body
                    await asyncio.sleep(0.3)
                assert body["progress"]["total"] == 2 and body["progress"]["dialled"] == 2
                status, body = await call("POST", f"/campaigns/{cid}/stop")
                assert status == 200 and body["state"] == "finished"
                status, body = await call("GET", "/campaigns/999999/")
                assert status == 404
        finally:
            await engine.stop()
    assert {n: carrier.record(n).invites for n in customers} == dict.fromkeys(customers, 1)


async def _cli(engine: Any, *args: str) -> tuple[int, str, str]:
    listen = engine.config.http_listen
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callcenter.cli",
        "campaign",
        "--api",
        f"http://{listen.host}:{listen.port}",
        "--key",
        ADMIN_KEY,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_campaign_cli(pg_url: str, tmp_path: Path) -> None:
    customers = {"12125550003": Customer("busy"), "12125550004": Customer("reject")}
    async with ScriptedCarrier(customers) as carrier:
        host, port = carrier.address
        trunk = f'[[trunks]]\nname = "carrier"\noutbound = "{host}:{port}"\n'
        engine = await start_engine(
            engine_config(extra=trunk), database_url=pg_url, data_dir=tmp_path
        )
        leads = tmp_path / "leads.csv"
        leads.write_text(CSV)
        name = f"cli-{tmp_path.name}"
        try:
            async with BaresipPeer(
                "101",
                workdir=tmp_path,
                registrar=registrar_of(engine),
                password="pass101",
                answermode="auto",
            ) as agent:
                await agent.wait_registered()
                code, out, _ = await _cli(
                    engine,
                    "create",
                    name,
                    "--leads",
                    str(leads),
                    "--agents",
                    "101",
                    "--hours",
                    "00:00-23:59",
                    "--max-attempts",
                    "1",
                )
                assert code == 0 and "2 leads imported" in out and f"{leads}:3:" in out
                code, out, _ = await _cli(engine, "start", name)
                assert code == 0 and "running" in out
                code, out, _ = await _cli(engine, "status", name, "--watch")
                assert code == 0 and "100%" in out and "remaining 0" in out
                code, out, err = await _cli(engine, "resume", name)
                assert code == 1 and "409" in err
                code, out, err = await _cli(engine, "status", "no-such-campaign")
                assert code == 1 and "no campaign named" in err
        finally:
            await engine.stop()


async def test_screen_pop_and_disposition(pg_url: str, tmp_path: Path, db) -> None:
    customers = {"12125550007": Customer("human", answer_after=0.5, hang_up_after=4)}
    crm = WebhookReceiver(secret="pop-secret")
    await crm.start()
    async with ScriptedCarrier(customers) as carrier:
        host, port = carrier.address
        trunk = f'[[trunks]]\nname = "carrier"\noutbound = "{host}:{port}"\n'
        engine = await start_engine(
            engine_config(extra=trunk, crm=crm.config()), database_url=pg_url, data_dir=tmp_path
        )
        agent = BaresipPeer(
            "101",
            workdir=tmp_path,
            registrar=registrar_of(engine),
            password="pass101",
            answermode="auto",
        )
        try:
            async with agent, aiohttp.ClientSession(headers=bearer()) as http:
                await agent.wait_registered()
                async with http.get(
                    api_url(engine, "/agents/101/events"), headers=bearer(AGENT_KEY)
                ) as stream:
                    assert stream.headers["Content-Type"].startswith("text/event-stream")
                    settings = {
                        "name": f"pop-{tmp_path.name}",
                        "agents": ["101"],
                        "max_attempts": 1,
                        "window_start": "00:00",
                        "window_end": "23:59",
                    }
                    async with http.post(api_url(engine, "/campaigns"), json=settings) as r:
                        cid = (await r.json())["id"]
                    csv = "phone;name;plan\n+12125550007;Pat Doe;gold\n"
                    async with http.post(
                        api_url(engine, f"/campaigns/{cid}/leads"), data=csv.encode()
                    ):
                        pass
                    async with http.post(api_url(engine, f"/campaigns/{cid}/start")):
                        pass
                    pop = await asyncio.wait_for(_next_event(stream, "screen-pop"), 20)
                assert pop["lead"]["name"] == "Pat Doe" and pop["lead"]["data"] == {"plan": "gold"}
                assert pop["campaign"]["id"] == cid and pop["attempt"]["number"] == 1
                # The whole pop, as every call's: the contact (made by the call) and its calls.
                assert pop["contact"]["phone"] == pop["number"] == "+12125550007"
                assert isinstance(pop["last_calls"], list) and isinstance(pop["tasks"], list)
                await agent.wait_event("CALL_CLOSED", timeout=10)  # the customer hangs up
                now = engine.ua.loop.time()
                assert engine.switchboard.presence.state("101", now=now).value == "wrap-up"
                url = api_url(engine, f"/calls/{pop['call']}/disposition")
                async with http.post(url, json={"disposition": "bought-a-boat"}) as r:
                    assert r.status == 400
                async with http.post(url, json={"disposition": "callback"}) as r:
                    assert r.status == 400  # when?
                later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
                callback = {"disposition": "callback", "callback_at": later, "note": "after lunch"}
                async with http.post(url, json=callback) as r:
                    body = await r.json()
                    # One attempt allowed and used: nothing left to schedule, and it says so.
                    assert r.status == 200 and body["callback_scheduled"] is False
                async with http.post(
                    url,
                    json={"disposition": "sale", "note": "gold plan"},
                    headers=bearer(AGENT_101_KEY),  # 101 took the call: its own key
                ) as r:
                    assert r.status == 200 and (await r.json())["disposition"] == "sale"
                now = engine.ua.loop.time()
                assert engine.switchboard.presence.state("101", now=now).value == "available"
                # The CRM got the screen pop too (webhook), with the lead's data and the agent.
                deadline = asyncio.get_running_loop().time() + 10
                while not [d for d in crm.unique() if d.event == "call.screen-pop"]:
                    assert asyncio.get_running_loop().time() < deadline, crm.unique()
                    await asyncio.sleep(0.1)
        finally:
            await engine.stop()
            await crm.stop()
    (hook,) = [d for d in crm.unique() if d.event == "call.screen-pop"]
    assert hook.data["id"] == pop["call"] and hook.data["agent"] == "101"
    assert hook.data["screen_pop"]["lead"]["data"] == {"plan": "gold"}
    assert hook.data["screen_pop"]["attempt"] == pop["attempt"]
    events = await db.fetch(
        "SELECT event_type FROM outbox WHERE aggregate = $1 ORDER BY id", f"call/{pop['call']}"
    )
    kinds = [e["event_type"] for e in events]
    # The customer's phone rang before anyone answered: the CRM hears it as for inbound calls.
    assert kinds[:2] == ["call.started", "call.ringing"] and kinds.count("call.ringing") == 1
    assert kinds.count("call.answered") == 1 and kinds.index("call.answered") < kinds.index(
        "call.ended"
    )
    assert kinds[-1] == "call.disposition"
    # The live answer is in the campaign's abandon ledger, saved for the next start.
    state = await db.fetchval("SELECT state FROM abandon_ledgers WHERE campaign_id = $1", cid)
    ledger = AbandonLedger.from_dict(json.loads(state), AbandonPolicy())
    assert ledger.window_counts(datetime.now(UTC).timestamp()) == (1, 0)


async def _next_event(stream: aiohttp.ClientResponse, kind: str) -> Any:
    """The data of the next server-sent event of `kind`."""
    current = None
    async for raw in stream.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            current = line[len("event: ") :]
        elif line.startswith("data: ") and current == kind:
            return json.loads(line[len("data: ") :])
    raise AssertionError("stream ended")


async def test_a_campaign_staffed_by_a_ring_group_dials_for_its_members(
    pg_url: str, tmp_path: Path
) -> None:
    group = '[[ring_groups]]\nname = "closers"\nmembers = ["103", "104"]\n'
    engine = await start_engine(engine_config(extra=group), database_url=pg_url, data_dir=tmp_path)
    try:
        assert engine.campaigns is not None
        async with aiohttp.ClientSession(headers=bearer()) as http:
            settings = {"name": f"closers-{tmp_path.name}", "ring_group": "closers"}
            async with http.post(api_url(engine, "/campaigns"), json=settings) as r:
                cid = (await r.json())["id"]
            async with http.post(api_url(engine, f"/campaigns/{cid}/start")) as r:
                assert r.status == 200
        assert engine.campaigns.runners[cid].campaign.agents == ("103", "104")
    finally:
        await engine.stop()
