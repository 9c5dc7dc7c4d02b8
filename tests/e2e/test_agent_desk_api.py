"""The agent page's API over the real engine and PostgreSQL: login tokens (single use) and
agent sessions that act as the agent's bound key, the server-side scoping of calls and tasks
to the agent, the desk, a call's screen pop on its own (contact, manager, last calls with
signed links, open tasks), the keypad's validation, a disposition's callback time becoming a
callback task, and click-to-call's `task` checks."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from callcenter.api.security import LOGIN_SECONDS, SESSION_SECONDS, AgentSessions
from callcenter.runtime import Engine, start_engine
from crm_bridge import CallEnded, CallStarted
from sip_test_env import carrier
from sip_test_env.baresip import BaresipPeer
from sip_test_env.scripted_carrier import Customer, ScriptedCarrier

from .callfloor import wait_for
from .conftest import (
    ADMIN_KEY,
    AGENT_101_KEY,
    api_url,
    bearer,
    crm_taking,
    engine_config,
    registrar_of,
)
from .test_campaign_api import _next_event


@pytest.fixture
async def engine(pg_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    """The test engine, with a CRM taking what these tests read from the outbox."""
    config = engine_config(crm=crm_taking("call.disposition", "task.created"))
    running = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        yield running
    finally:
        await running.stop()


def _number() -> str:
    return "+1212" + "".join(secrets.choice("23456789") for _ in range(7))


async def _answered(engine: Engine, number: str, agent: str, *, ago: float = 3600) -> int:
    assert engine.store is not None
    at = datetime.now(UTC) - timedelta(seconds=ago)
    started = CallStarted(
        call_id=f"desk-{secrets.token_hex(6)}", direction="inbound", from_number=number,
        to_number="+12025550100", started_at=at, agent=agent, customer_phone=number,
    )  # fmt: skip
    ended = CallEnded(ended_at=at + timedelta(seconds=60), outcome="answered",
                      answered_at=at + timedelta(seconds=3), agent=agent)  # fmt: skip
    return await engine.store.record_call(started, ended)


async def test_login_token_opens_one_session_that_acts_for_its_agent_only(engine: Engine) -> None:
    async with aiohttp.ClientSession() as http:
        url = api_url(engine, "/agents/101/login-token")
        # Another agent's key cannot log in as 101.
        async with http.post(api_url(engine, "/agents/102/login-token"),
                             headers=bearer(AGENT_101_KEY)) as r:  # fmt: skip
            assert r.status == 403
        async with http.post(url, headers=bearer(ADMIN_KEY)) as r:
            assert r.status == 201
            login = await r.json()
        assert login["url"] == f"/agent#login={login['token']}" and login["extension"] == "101"
        session_url = api_url(engine, "/agent/session")
        async with http.post(session_url, json={"login": login["token"]}) as r:
            assert r.status == 201
            opened = await r.json()
        assert opened["extension"] == "101" and opened["display_name"] == "Agent 101"
        # Spent: a second use (a replayed link) is refused.
        async with http.post(session_url, json={"login": login["token"]}) as r:
            assert r.status == 401
        async with http.post(session_url, json={"login": 5}) as r:
            assert r.status == 400
        session = bearer(opened["session"])
        async with http.get(api_url(engine, "/agent/me"), headers=session) as r:
            assert (await r.json()) == {"extension": "101", "display_name": "Agent 101",
                                        "session": True}  # fmt: skip
        async with http.put(api_url(engine, "/agents/102/presence"), json={"state": "away"},
                            headers=session) as r:  # fmt: skip
            assert r.status == 403
        async with http.get(api_url(engine, "/agents/102/desk"), headers=session) as r:
            assert r.status == 403
        async with http.get(api_url(engine, "/api/live/snapshot"), headers=session) as r:
            assert r.status == 403  # an agent, not a supervisor
        async with http.post(url, headers=session) as r:
            assert r.status == 403  # a session does not mint further logins
        async with http.get(api_url(engine, "/agents/101/desk"), headers=session) as r:
            assert r.status == 200
            desk = await r.json()
        assert desk["state"] == "available" and desk["call"] is None
        async with http.delete(session_url, headers=session) as r:
            assert r.status == 204
        async with http.get(api_url(engine, "/agent/me"), headers=session) as r:
            assert r.status == 401
        # The page needs a key bound to an extension.
        async with http.get(api_url(engine, "/agent/me"), headers=bearer(ADMIN_KEY)) as r:
            assert r.status == 403
        for path in ("/agent", "/web/agent.js", "/web/phone.js", "/web/agent.css"):
            async with http.get(api_url(engine, path)) as r:
                assert r.status == 200, path


async def test_login_tokens_and_sessions_expire() -> None:
    """Without a database (sessions in the process's memory)."""
    sessions = AgentSessions()
    late = await sessions.issue_login("101", by="admin", now=0.0)
    assert await sessions.redeem(late, now=LOGIN_SECONDS + 1) is None
    login = await sessions.issue_login("101", by="admin", now=0.0)
    opened = await sessions.redeem(login, now=1.0)
    assert opened is not None
    token, key = opened
    assert (key.role, key.extension) == ("agent", "101")
    assert await sessions.find(token, now=2.0) == key
    assert await sessions.find(token, now=1.0 + SESSION_SECONDS) is None
    assert await sessions.find("forged", now=2.0) is None


async def test_agent_sessions_live_in_the_database_for_every_node(
    pg_url: str, tmp_path: Path, db: Any
) -> None:
    """A login issued on one node opens a session on another, which works on both and
    outlives the node that opened it; one logout ends it everywhere. Only digests are
    stored, and an expired session is refused."""
    one = await start_engine(engine_config(), database_url=pg_url, data_dir=tmp_path / "one")
    two = await start_engine(engine_config(), database_url=pg_url, data_dir=tmp_path / "two")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                api_url(one, "/agents/101/login-token"), headers=bearer(ADMIN_KEY)
            ) as r:
                login = (await r.json())["token"]
            async with http.post(api_url(two, "/agent/session"), json={"login": login}) as r:
                assert r.status == 201, await r.text()
                session = (await r.json())["session"]
            async with http.post(api_url(one, "/agent/session"), json={"login": login}) as r:
                assert r.status == 401  # spent, on every node
            digest = hashlib.sha256(session.encode()).hexdigest()
            stored = await db.fetchrow(
                "SELECT extension, expires_at - created_at AS lasts FROM agent_sessions"
                " WHERE digest = $1",
                digest,
            )
            assert stored["extension"] == "101"
            assert stored["lasts"] == timedelta(seconds=SESSION_SECONDS)
            assert await db.fetchval(
                "SELECT count(*) FROM agent_sessions WHERE digest = $1 OR digest = $2",
                session,
                login,
            ) == 0  # fmt: skip
            await two.stop()  # the node that opened it goes; the session stays
            async with http.get(api_url(one, "/agent/me"), headers=bearer(session)) as r:
                assert r.status == 200 and (await r.json())["extension"] == "101"
            two = await start_engine(
                engine_config(), database_url=pg_url, data_dir=tmp_path / "two"
            )
            async with http.get(api_url(two, "/agent/me"), headers=bearer(session)) as r:
                assert r.status == 200  # a restarted node knows it too
            async with http.delete(api_url(two, "/agent/session"), headers=bearer(session)) as r:
                assert r.status == 204
            async with http.get(api_url(one, "/agent/me"), headers=bearer(session)) as r:
                assert r.status == 401
            # Another session, expired in the database: refused.
            async with http.post(
                api_url(one, "/agents/102/login-token"), headers=bearer(ADMIN_KEY)
            ) as r:
                login = (await r.json())["token"]
            async with http.post(api_url(one, "/agent/session"), json={"login": login}) as r:
                session = (await r.json())["session"]
            await db.execute(
                "UPDATE agent_sessions SET expires_at = now() - interval '1 second'"
                " WHERE digest = $1",
                hashlib.sha256(session.encode()).hexdigest(),
            )
            async with http.get(api_url(two, "/agent/me"), headers=bearer(session)) as r:
                assert r.status == 401
    finally:
        await one.stop()
        await two.stop()


async def test_an_agent_sees_its_own_calls_and_tasks_and_their_pops(engine: Engine) -> None:
    assert engine.store is not None
    number = _number()
    await engine.store.upsert_contact(number, name="Grace Hopper", responsible="103")
    mine = await _answered(engine, number, "101", ago=60)
    theirs = await _answered(engine, number, "102", ago=7200)
    due = datetime.now(UTC) + timedelta(hours=1)
    task_102 = await engine.store.open_callback_task(number, assignee="102", due_at=due,
                                                     call_row_id=theirs)  # fmt: skip
    own = bearer(AGENT_101_KEY)
    async with aiohttp.ClientSession() as http:
        async with http.get(api_url(engine, f"/calls?phone={number}"), headers=own) as r:
            assert [c["id"] for c in (await r.json())["calls"]] == [mine]
        async with http.get(api_url(engine, "/calls?agent=102"), headers=own) as r:
            assert r.status == 403
        async with http.get(api_url(engine, f"/calls/{theirs}"), headers=own) as r:
            assert r.status == 403
        async with http.get(api_url(engine, f"/calls/{theirs}/pop"), headers=own) as r:
            assert r.status == 403
        async with http.get(api_url(engine, "/tasks?status=open"), headers=own) as r:
            assert task_102.id not in [t["id"] for t in (await r.json())["tasks"]]
        async with http.post(api_url(engine, f"/tasks/{task_102.id}/complete"), headers=own) as r:
            assert r.status == 403
        body = {"agent": "101", "number": number, "task": task_102.id}
        async with http.post(api_url(engine, "/calls"), json=body, headers=own) as r:
            assert r.status == 403  # not 101's task: nothing is dialled
        body["task"] = 2**62
        async with http.post(api_url(engine, "/calls"), json=body, headers=own) as r:
            assert r.status == 404
        # The pop of 101's own call: the contact, its manager, the other call, the open task.
        async with http.get(api_url(engine, f"/calls/{mine}/pop"), headers=own) as r:
            assert r.status == 200
            pop: dict[str, Any] = await r.json()
    assert pop["call"] == mine and pop["number"] == number
    assert pop["contact"]["name"] == "Grace Hopper"
    assert pop["responsible"] == {"extension": "103", "name": "Agent 103"}
    assert [c["id"] for c in pop["last_calls"]] == [theirs]  # the call itself is left out
    assert pop["last_calls"][0]["recording"] is None  # no recording, no link
    assert [t["id"] for t in pop["tasks"]] == [task_102.id]
    assert engine.store is not None
    assert await engine.store.complete_task(task_102.id)


async def test_a_callback_time_becomes_the_agents_callback_task(engine: Engine, db: Any) -> None:
    number = _number()
    row = await _answered(engine, number, "101", ago=30)
    own = bearer(AGENT_101_KEY)
    url = api_url(engine, f"/calls/{row}/disposition")
    when = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json={"disposition": "callback", "callback_at": "soon"},
                             headers=own) as r:  # fmt: skip
            assert r.status == 400
        assert await db.fetchval("SELECT disposition FROM calls WHERE id = $1", row) is None
        body = {"disposition": "callback", "note": "after lunch", "callback_at": when.isoformat()}
        async with http.post(url, json=body, headers=own) as r:
            assert r.status == 200, await r.text()
            saved = await r.json()
        async with http.get(api_url(engine, "/agents/101/desk"), headers=own) as r:
            desk = await r.json()
    task = await db.fetchrow("SELECT * FROM tasks WHERE id = $1", saved["callback_task"])
    assert (task["assignee"], task["status"], task["due_at"]) == ("101", "open", when)
    assert task["text"] == f"Call back {number}: after lunch"
    assert saved["callback_task"] in [t["id"] for t in desk["tasks"]]
    assert row in [c["id"] for c in desk["calls"]]
    kinds = await db.fetch(
        "SELECT event_type FROM outbox WHERE aggregate = ANY($1::text[]) ORDER BY id",
        [f"call/{row}", f"task/{saved['callback_task']}"],
    )
    assert [k["event_type"] for k in kinds][-2:] == ["call.disposition", "task.created"]


async def test_keypad_refuses_bad_keys_and_calls_not_in_progress(engine: Engine) -> None:
    async with aiohttp.ClientSession() as http:
        for body in ({"digits": "12x"}, {"digits": ""}, {"digits": "1" * 33}, {}, []):
            async with http.post(api_url(engine, "/calls/no-such-call/dtmf"), json=body,
                                 headers=bearer()) as r:  # fmt: skip
                assert r.status == 400, body
        async with http.post(api_url(engine, "/calls/no-such-call/dtmf"), json={"digits": "1"},
                             headers=bearer()) as r:  # fmt: skip
            assert r.status == 409


@contextlib.asynccontextmanager
async def _streams(
    engine: Engine, *extensions: str
) -> AsyncIterator[dict[str, aiohttp.ClientResponse]]:
    """The agents' live event streams, subscribed (their first comment line read)."""
    async with aiohttp.ClientSession() as http:
        opened: dict[str, aiohttp.ClientResponse] = {}
        try:
            for ext in extensions:
                response = await http.get(api_url(engine, f"/agents/{ext}/events"),
                                          headers=bearer())  # fmt: skip
                assert await response.content.readuntil(b"\n\n") == b": connected\n\n"
                opened[ext] = response
            yield opened
        finally:
            for response in opened.values():
                response.close()


async def _pop(stream: aiohttp.ClientResponse) -> dict[str, Any]:
    return await asyncio.wait_for(_next_event(stream, "screen-pop"), 10)


def _talking(engine: Engine) -> bool:
    return any(b.b is not None for b in engine.switchboard.active.values())


@pytest.mark.peers
async def test_queue_transfer_and_ring_group_calls_pop_before_the_answer(
    pg_url: str, tmp_path: Path
) -> None:
    """A queue call pops on the member's stream while its phone rings; a blind transfer pops on
    the colleague's before they answer; a ring group's call pops on the member rung (the
    contact's manager first)."""
    extra = f"""
[presence]
wrap_up_seconds = 0

[[trunks]]
name = "carrier"
allow_from = ["{carrier.CARRIER_IP}"]

[[queues]]
name = "sales"
members = ["101"]
announce_every = 0
wrap_up = 0

[[ring_groups]]
name = "support"
members = ["101", "102"]

[[dids]]
number = "+12025550100"
trunk = "carrier"
route = "queue:sales"

[[dids]]
number = "+12025550110"
trunk = "carrier"
route = "ringgroup:support"
"""
    engine = await start_engine(engine_config(extra=extra), database_url=pg_url,
                                data_dir=tmp_path)  # fmt: skip
    engine.switchboard.queues.log_in("101", "sales", login=True)
    number = _number()
    assert engine.store is not None
    await engine.store.upsert_contact(number, name="Alan Turing", responsible="102")
    registrar = registrar_of(engine)
    try:
        async with (
            _streams(engine, "101", "102") as streams,
            BaresipPeer("101", workdir=tmp_path / "a", registrar=registrar,
                        password="pass101") as a,
            BaresipPeer("102", workdir=tmp_path / "b", registrar=registrar,
                        password="pass102") as b,
            carrier.customer(number, workdir=tmp_path / "c") as customer,
        ):  # fmt: skip
            await a.wait_registered()
            await b.wait_registered()
            await customer.dial(carrier.did_uri("+12025550100", engine.sip_port))
            queued = await _pop(streams["101"])
            assert not _talking(engine)  # 101's phone still rings
            assert queued["number"] == number and queued["contact"]["name"] == "Alan Turing"
            assert queued["did"] == "+12025550100"
            await a.wait_event("CALL_INCOMING", timeout=5)
            await a.accept()
            await customer.wait_event("CALL_ESTABLISHED", timeout=5)
            async with aiohttp.ClientSession() as http:
                url = api_url(engine, f"/calls/{queued['call']}/transfer")
                async with http.post(url, json={"to": "102"}, headers=bearer()) as r:
                    assert r.status == 202, await r.text()
            handed = await _pop(streams["102"])
            assert handed["call"] == queued["call"] and handed["contact"]["name"] == "Alan Turing"
            await b.wait_event("CALL_INCOMING", timeout=5)
            await b.accept()
            await b.wait_event("CALL_ESTABLISHED", timeout=5)
            await customer.hangup()
            await b.wait_event("CALL_CLOSED", timeout=5)
            await wait_for(lambda: not engine.switchboard.active, what="the call's end")

            await customer.dial(carrier.did_uri("+12025550110", engine.sip_port))
            # The group rings the contact's manager (102) first.
            grouped = await _pop(streams["102"])
            assert not _talking(engine)
            assert grouped["call"] != queued["call"] and grouped["ring_group"] == "support"
            assert grouped["responsible"] == {"extension": "102", "name": "Agent 102"}
            # The earlier call is now among the contact's last calls.
            assert [c["id"] for c in grouped["last_calls"]][:1] == [queued["call"]]
            await b.wait_event("CALL_INCOMING", timeout=5)
            await b.accept()
            await customer.wait_event("CALL_ESTABLISHED", timeout=5)
            await customer.hangup()
            await b.wait_event("CALL_CLOSED", timeout=5)
    finally:
        await engine.stop()


@pytest.mark.peers
async def test_a_call_back_that_does_not_reach_the_customer_leaves_the_task_open(
    pg_url: str, tmp_path: Path
) -> None:
    number = _number()
    async with ScriptedCarrier({number.lstrip("+"): Customer("busy")}) as scripted:
        host, port = scripted.address
        trunk = f'[[trunks]]\nname = "carrier"\noutbound = "{host}:{port}"\n'
        engine = await start_engine(engine_config(extra=trunk), database_url=pg_url,
                                    data_dir=tmp_path)  # fmt: skip
        try:
            assert engine.store is not None
            due = datetime.now(UTC) + timedelta(minutes=5)
            task = await engine.store.open_callback_task(number, assignee="101", due_at=due,
                                                         call_row_id=None)  # fmt: skip
            async with BaresipPeer("101", workdir=tmp_path, registrar=registrar_of(engine),
                                   password="pass101") as agent:  # fmt: skip
                await agent.wait_registered()
                body = {"agent": "101", "number": number, "task": task.id}
                async with (
                    aiohttp.ClientSession() as http,
                    http.post(api_url(engine, "/calls"), json=body,
                              headers=bearer(AGENT_101_KEY)) as r,
                ):  # fmt: skip
                    assert r.status == 202, await r.text()
                await agent.wait_event("CALL_INCOMING", timeout=5)
                await agent.accept()
                await agent.wait_event("CALL_CLOSED", timeout=10)  # busy: the engine hangs up
            assert scripted.record(number.lstrip("+")).invites == 1
            await wait_for(lambda: not engine.switchboard.active, what="the call's end")
            still = await engine.store.get_task(task.id)
            assert still is not None and still.status == "open"
            await engine.store.complete_task(task.id)
        finally:
            await engine.stop()
