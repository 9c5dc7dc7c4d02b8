"""Two engine nodes on one database with `[sip] cluster = true`: an agent on a call through one
node is busy for the other too (agent_bookings, heard by LISTEN/NOTIFY), so a customer calling
the other node's number never rings that agent's phone a second time; once the call ends the
other node rings the agent again. The agent registered with the first node only: the second
reaches the phone through the shared registrations."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from callcenter.runtime import Engine, start_engine
from dialer import PgLeadStore
from pbx import AgentState
from pbx.events import PresenceChanged
from sip_test_env import carrier
from sip_test_env.baresip import BaresipPeer
from sip_test_env.scripted_carrier import Customer, ScriptedCarrier

from .conftest import api_url, bearer, engine_config, power_campaign, registrar_of

pytestmark = pytest.mark.peers

DID = "+12025550100"
TRUNK = f"""
[[trunks]]
name = "carrier"
allow_from = ["{carrier.CARRIER_IP}"]

[[ring_groups]]
name = "sales"
members = ["101"]
ring_timeout = 10

[[dids]]
number = "{DID}"
trunk = "carrier"
route = "ringgroup:sales"
"""


@contextlib.asynccontextmanager
async def two_nodes(
    crm_url: str, tmp_path: Path, extra: str
) -> AsyncIterator[tuple[Engine, Engine]]:
    """Two engines on one database, each its own node, with `[sip] cluster = true`."""
    started: list[Engine] = []
    try:
        for name in ("a", "b"):
            config = engine_config(extra_sip="cluster = true\n", extra=extra)
            started.append(
                await start_engine(config, database_url=crm_url, data_dir=tmp_path / name)
            )
        yield started[0], started[1]
    finally:
        for engine in started:
            await engine.stop()


@pytest.fixture
async def nodes(crm_url: str, tmp_path: Path) -> AsyncIterator[tuple[Engine, Engine]]:
    async with two_nodes(crm_url, tmp_path, TRUNK) as running:
        yield running


@contextlib.asynccontextmanager
async def agent_and_customers(
    a: Engine, b: Engine, tmp_path: Path
) -> AsyncIterator[tuple[BaresipPeer, BaresipPeer, BaresipPeer]]:
    """Agent 101 registered with `a` (and seen by `b` through the shared registrations), and
    two customers on the carrier's address."""
    async with (
        BaresipPeer("101", workdir=tmp_path, registrar=registrar_of(a),
                    password="pass101") as agent,
        carrier.customer("+12125551234", workdir=tmp_path) as first,
        carrier.customer("+12125551235", workdir=tmp_path) as second,
    ):  # fmt: skip
        await agent.wait_registered()
        now = b.ua.loop.time
        await until(lambda: b.switchboard.registrar.lookup("101", now=now()), "101 seen by b")
        yield agent, first, second


async def until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"not {what} within {timeout} s"
        await asyncio.sleep(0.05)


async def answered_call(customer: BaresipPeer, agent: BaresipPeer, node: Engine) -> None:
    """`customer` calls the DID through `node`; the agent answers; the customer hangs up."""
    await customer.dial(carrier.did_uri(DID, node.sip_port))
    await agent.wait_event("CALL_INCOMING", timeout=10)
    await agent.accept()
    await customer.wait_event("CALL_ESTABLISHED", timeout=10)
    await customer.hangup()
    await agent.wait_event("CALL_CLOSED", timeout=10)


async def holder(crm_url: str, extension: str) -> str | None:
    conn = await asyncpg.connect(crm_url)
    try:
        return await conn.fetchval(
            "SELECT node FROM agent_bookings WHERE extension = $1", extension
        )
    finally:
        await conn.close()


async def test_an_agent_on_a_call_through_one_node_is_not_rung_by_the_other(
    nodes: tuple[Engine, Engine], crm_url: str, tmp_path: Path
) -> None:
    a, b = nodes
    node_a, node_b = a.config.crm.node, b.config.crm.node
    async with agent_and_customers(a, b, tmp_path) as (agent, first, second):
        now = b.ua.loop.time
        await first.dial(carrier.did_uri(DID, a.sip_port))
        await agent.wait_event("CALL_INCOMING", timeout=10)
        await agent.accept()
        await first.wait_event("CALL_ESTABLISHED", timeout=10)
        assert await holder(crm_url, "101") == node_a
        await until(lambda: b.switchboard.busy("101"), "101 busy for b")
        # The other node's customer: nobody free in the group, the phone does not ring.
        await second.dial(carrier.did_uri(DID, b.sip_port))
        await second.wait_event("CALL_CLOSED", timeout=10)
        assert len(agent.events_of("CALL_INCOMING")) == 1
        await first.hangup()
        await agent.wait_event("CALL_CLOSED", timeout=10)
        await until(lambda: not b.switchboard.busy("101"), "101 free for b")
        assert await holder(crm_url, "101") is None
        # The call's wrap-up on the first node holds on the other too, until the agent ends it.
        await until(lambda: not b.switchboard.presence.available("101", now=now()), "wrap-up")
        a.switchboard.presence.end_wrap_up("101", now=a.ua.loop.time())
        await until(lambda: b.switchboard.presence.available("101", now=now()), "101 free again")
        # Free again: the other node books and rings the agent.
        await second.dial(carrier.did_uri(DID, b.sip_port))
        await agent.wait_event("CALL_INCOMING", timeout=10)
        await agent.accept()
        await second.wait_event("CALL_ESTABLISHED", timeout=10)
        assert await holder(crm_url, "101") == node_b
        await until(lambda: a.switchboard.busy("101"), "101 busy for a in turn")
        await second.hangup()
        await agent.wait_event("CALL_CLOSED", timeout=10)
    assert len(agent.events_of("CALL_INCOMING")) == 2


async def presence_on(engine: Engine, state: str, http: aiohttp.ClientSession) -> None:
    """PUT /agents/101/presence on `engine` (what *50 / *51 or the agent page do there)."""
    url = api_url(engine, "/agents/101/presence")
    async with http.put(url, json={"state": state}, headers=bearer()) as response:
        assert response.status == 200, await response.text()


async def board_on(engine: Engine, http: aiohttp.ClientSession) -> dict[str, Any]:
    """`engine`'s dashboard board (GET /api/live/snapshot)."""
    async with http.get(api_url(engine, "/api/live/snapshot"), headers=bearer()) as response:
        assert response.status == 200
        board: dict[str, Any] = await response.json()
    return board


async def shown_on(engine: Engine, http: aiohttp.ClientSession) -> str:
    """Agent 101's state on `engine`'s dashboard board."""
    board = await board_on(engine, http)
    return str(next(a["state"] for a in board["agents"] if a["extension"] == "101"))


async def test_away_on_call_and_wrap_up_on_one_node_hold_on_the_other(
    crm_url: str, tmp_path: Path
) -> None:
    extra = TRUNK + "\n[presence]\nwrap_up_seconds = 60\n"
    async with (
        two_nodes(crm_url, tmp_path, extra) as (a, b),
        aiohttp.ClientSession() as http,
        agent_and_customers(a, b, tmp_path) as (agent, first, second),
    ):
        now = b.ua.loop.time
        state_on_b = lambda: b.switchboard.presence.state("101", now=now())  # noqa: E731
        state_on_a = lambda: a.switchboard.presence.state("101", now=a.ua.loop.time())  # noqa: E731
        # Away on one node is away on the other, and its dashboard shows it.
        await presence_on(a, "away", http)
        await until(lambda: state_on_b() is AgentState.AWAY, "away on b")
        assert await shown_on(b, http) == "away"
        await presence_on(b, "available", http)
        await until(lambda: state_on_a() is AgentState.AVAILABLE, "available on a")
        # A call through one node: the other shows the agent on a call.
        await first.dial(carrier.did_uri(DID, a.sip_port))
        await agent.wait_event("CALL_INCOMING", timeout=10)
        await agent.accept()
        await first.wait_event("CALL_ESTABLISHED", timeout=10)
        await until(lambda: state_on_b() is AgentState.ON_CALL, "on a call on b")
        assert await shown_on(b, http) == "on-call"
        # ... and the call itself, as the node that holds it shows it.
        await until(lambda: b.live.board.calls.keys() == a.live.board.calls.keys(), "call on b")
        # (its answer reaches b a moment after the call itself)
        await until(
            lambda: [c.state for c in b.live.board.calls.values()] == ["talking"], "talking on b"
        )
        [shown] = (await board_on(b, http))["calls"]
        assert shown["state"] == "talking" and shown["call_id"] in a.live.board.calls
        await first.hangup()
        await agent.wait_event("CALL_CLOSED", timeout=10)
        await until(lambda: not b.live.board.calls, "the call gone from b's board")
        # Its wrap-up there blocks the agent here: the other node's customer finds nobody.
        await until(lambda: state_on_b() is AgentState.WRAP_UP, "wrap-up on b")
        assert await shown_on(b, http) == "wrap-up"
        await second.dial(carrier.did_uri(DID, b.sip_port))
        await second.wait_event("CALL_CLOSED", timeout=10)
        assert len(agent.events_of("CALL_INCOMING")) == 1
        # The agent ends the wrap-up on the other node: the first one rings them again.
        await presence_on(b, "available", http)
        await until(lambda: state_on_a() is AgentState.AVAILABLE, "wrap-up over on a")
        await answered_call(second, agent, a)
    assert len(agent.events_of("CALL_INCOMING")) == 2


class Offers:
    """Agent 101's presence changes on one node, each with the wall-clock time and whether
    that node would offer the agent a call then (a ring group's `reachable`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seen: list[tuple[float, AgentState, bool]] = []
        self._changed = asyncio.Event()
        engine.switchboard.events.subscribe(PresenceChanged, self._heard)

    def _heard(self, event: PresenceChanged) -> None:
        if event.extension == "101":
            sb = self.engine.switchboard
            offered = bool(sb.reachable(["101"], now=self.engine.ua.loop.time()))
            self.seen.append((time.time(), event.state, offered))
            self._changed.set()

    async def until(self, wanted: Callable[[AgentState, bool], bool], timeout: float) -> float:
        """Wait for a change `wanted(state, offered)`; returns when it happened (wall clock)."""
        async with asyncio.timeout(timeout):
            while True:
                for at, state, offered in self.seen:
                    if wanted(state, offered):
                        return at
                self._changed.clear()
                await self._changed.wait()

    def states(self) -> list[AgentState]:
        """The states seen, each once in a row."""
        return [s for i, (_, s, _) in enumerate(self.seen) if i == 0 or self.seen[i - 1][1] != s]


async def test_a_wrap_up_on_one_node_holds_on_the_other_from_the_call_end_on(
    crm_url: str, tmp_path: Path
) -> None:
    """The first node releases the agent's booking with the wrap-up its call began (one
    statement), so the other node goes from "on a call" straight to "wrap-up": it never
    offers the agent a call in between, nor before the wrap-up ends, and offers one as soon
    as it ends."""
    extra = TRUNK + "\n[presence]\nwrap_up_seconds = 3\n"
    async with (
        two_nodes(crm_url, tmp_path, extra) as (a, b),
        agent_and_customers(a, b, tmp_path) as (agent, first, second),
    ):
        on_b = Offers(b)
        await first.dial(carrier.did_uri(DID, a.sip_port))
        await agent.wait_event("CALL_INCOMING", timeout=10)
        await agent.accept()
        await first.wait_event("CALL_ESTABLISHED", timeout=10)
        await on_b.until(lambda state, _: state is AgentState.ON_CALL, timeout=5)
        await first.hangup()
        await agent.wait_event("CALL_CLOSED", timeout=10)
        left = a.switchboard.presence.wrap_up_left("101", now=a.ua.loop.time())
        wrap_up_end = time.time() + left
        assert left > 0
        # At once, through the other node: the agent is not offered the call.
        await second.dial(carrier.did_uri(DID, b.sip_port))
        await second.wait_event("CALL_CLOSED", timeout=10)
        assert len(agent.events_of("CALL_INCOMING")) == 1
        offered_at = await on_b.until(lambda _, offered: offered, timeout=left + 5)
        assert on_b.states() == [AgentState.ON_CALL, AgentState.WRAP_UP, AgentState.AVAILABLE]
        assert [at for at, _, offered in on_b.seen if offered] == [offered_at]
        assert offered_at >= wrap_up_end - 0.05  # (two wall clocks' readings on one machine)
        # ... and right after it, the other node rings the agent.
        await answered_call(second, agent, b)
    assert len(agent.events_of("CALL_INCOMING")) == 2


@pytest.mark.slow
async def test_two_campaigns_on_two_nodes_never_book_one_agent_twice(
    crm_url: str, tmp_path: Path
) -> None:
    """Both nodes run both campaigns (every node runs every running campaign; SKIP LOCKED
    shares the leads), all with agent 101 alone, whose phone answers every call by itself: a
    second call booked onto 101 would overlap the first in the calls table."""
    leads = {f"1212555{n:04d}": n for n in range(1, 9)}
    customers = {
        number: Customer("human", answer_after=0.3 + (n % 4) / 10, hang_up_after=3)
        for number, n in leads.items()
    }
    async with ScriptedCarrier(customers) as carrier_ua:
        host, port = carrier_ua.address
        trunk = (
            f'[[trunks]]\nname = "carrier"\noutbound = "{host}:{port}"\n'
            'caller_id = "12125550100"\ncps = 5\n\n[presence]\nwrap_up_seconds = 0.5\n'
        )
        async with two_nodes(crm_url, tmp_path, trunk) as (a, b):
            assert a.database is not None
            store = PgLeadStore(a.database.pool)
            async with BaresipPeer(
                "101", workdir=tmp_path, registrar=registrar_of(a), password="pass101",
                answermode="auto",
            ) as agent:  # fmt: skip
                await agent.wait_registered()
                now = b.ua.loop.time
                await until(lambda: b.switchboard.registrar.lookup("101", now=now()), "seen by b")
                numbers = sorted(leads)
                campaigns = []
                for half in (numbers[:4], numbers[4:]):
                    campaigns.append(await power_campaign(store, "shared", [f"+{n}" for n in half]))
                for campaign_id in campaigns:
                    await store.set_state(campaign_id, "start", now=datetime.now(UTC))
                for campaign_id in campaigns:
                    await finished(store, campaign_id, timeout=120)
                    await store.set_state(campaign_id, "stop", now=datetime.now(UTC))
    rows = await answered_by_101(crm_url, campaigns)
    outcomes = await attempt_outcomes(crm_url, campaigns)
    # Each node paces only for the agent it holds (a dialer reservation in agent_bookings):
    # every person who answered reached the agent, none was abandoned (3% of 8 is under 1).
    assert outcomes.get("abandoned", 0) == 0, outcomes
    assert outcomes.get("answered-human", 0) == len(leads), outcomes
    assert len(rows) >= 2, rows  # the agent took calls, ...
    for earlier, later in itertools.pairwise(rows):
        assert later["answered_at"] >= earlier["ended_at"], (earlier, later)  # ... one at a time
    assert {r["node"] for r in rows} <= {a.config.crm.node, b.config.crm.node}
    assert await holder(crm_url, "101") is None


async def finished(store: PgLeadStore, campaign_id: int, *, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        progress = await store.campaign_progress(campaign_id)
        if progress.remaining == 0 and progress.in_flight == 0:
            return
        assert loop.time() < deadline, progress
        await asyncio.sleep(0.5)


async def attempt_outcomes(crm_url: str, campaigns: list[int]) -> dict[str, int]:
    conn = await asyncpg.connect(crm_url)
    try:
        rows = await conn.fetch(
            "SELECT outcome, count(*) AS n FROM attempts WHERE campaign_id = ANY($1::bigint[])"
            " GROUP BY outcome",
            campaigns,
        )
    finally:
        await conn.close()
    return {r["outcome"]: r["n"] for r in rows}


async def answered_by_101(crm_url: str, campaigns: list[int]) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(crm_url)
    try:
        return await conn.fetch(
            "SELECT call_id, node, answered_at, ended_at FROM calls WHERE agent = '101'"
            " AND campaign_id = ANY($1::bigint[]) AND answered_at IS NOT NULL"
            " ORDER BY answered_at",
            campaigns,
        )
    finally:
        await conn.close()
