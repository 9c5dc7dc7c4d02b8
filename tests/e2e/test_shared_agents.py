"""Two engine nodes on one database with `[sip] cluster = true`: an agent on a call through one
node is busy for the other too (agent_bookings, heard by LISTEN/NOTIFY), so a customer calling
the other node's number never rings that agent's phone a second time; once the call ends the
other node rings the agent again. The agent registered with the first node only: the second
reaches the phone through the shared registrations."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, time
from pathlib import Path

import asyncpg
import pytest

from callcenter.runtime import Engine, start_engine
from dialer import Campaign, NewLead, PgLeadStore
from sip_test_env import carrier
from sip_test_env.baresip import BaresipPeer
from sip_test_env.scripted_carrier import Customer, ScriptedCarrier

from .conftest import engine_config, registrar_of

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
    pg_url: str, tmp_path: Path, extra: str
) -> AsyncIterator[tuple[Engine, Engine]]:
    """Two engines on one database, each its own node, with `[sip] cluster = true`."""
    started: list[Engine] = []
    try:
        for name in ("a", "b"):
            config = engine_config(extra_sip="cluster = true\n", extra=extra)
            started.append(
                await start_engine(config, database_url=pg_url, data_dir=tmp_path / name)
            )
        yield started[0], started[1]
    finally:
        for engine in started:
            await engine.stop()


@pytest.fixture
async def nodes(pg_url: str, tmp_path: Path) -> AsyncIterator[tuple[Engine, Engine]]:
    async with two_nodes(pg_url, tmp_path, TRUNK) as running:
        yield running


async def until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"not {what} within {timeout} s"
        await asyncio.sleep(0.05)


async def holder(pg_url: str, extension: str) -> str | None:
    conn = await asyncpg.connect(pg_url)
    try:
        return await conn.fetchval(
            "SELECT node FROM agent_bookings WHERE extension = $1", extension
        )
    finally:
        await conn.close()


async def test_an_agent_on_a_call_through_one_node_is_not_rung_by_the_other(
    nodes: tuple[Engine, Engine], pg_url: str, tmp_path: Path
) -> None:
    a, b = nodes
    node_a, node_b = a.config.crm.node, b.config.crm.node
    async with (
        BaresipPeer("101", workdir=tmp_path, registrar=registrar_of(a),
                    password="pass101") as agent,
        carrier.customer("+12125551234", workdir=tmp_path) as first,
        carrier.customer("+12125551235", workdir=tmp_path) as second,
    ):  # fmt: skip
        await agent.wait_registered()
        now = b.ua.loop.time
        await until(lambda: b.switchboard.registrar.lookup("101", now=now()), "101 seen by b")
        await first.dial(carrier.did_uri(DID, a.sip_port))
        await agent.wait_event("CALL_INCOMING", timeout=10)
        await agent.accept()
        await first.wait_event("CALL_ESTABLISHED", timeout=10)
        assert await holder(pg_url, "101") == node_a
        await until(lambda: b.switchboard.busy("101"), "101 busy for b")
        # The other node's customer: nobody free in the group, the phone does not ring.
        await second.dial(carrier.did_uri(DID, b.sip_port))
        await second.wait_event("CALL_CLOSED", timeout=10)
        assert len(agent.events_of("CALL_INCOMING")) == 1
        await first.hangup()
        await agent.wait_event("CALL_CLOSED", timeout=10)
        await until(lambda: not b.switchboard.busy("101"), "101 free for b")
        assert await holder(pg_url, "101") is None
        # Free again: the other node books and rings the agent.
        await second.dial(carrier.did_uri(DID, b.sip_port))
        await agent.wait_event("CALL_INCOMING", timeout=10)
        await agent.accept()
        await second.wait_event("CALL_ESTABLISHED", timeout=10)
        assert await holder(pg_url, "101") == node_b
        await until(lambda: a.switchboard.busy("101"), "101 busy for a in turn")
        await second.hangup()
        await agent.wait_event("CALL_CLOSED", timeout=10)
    assert len(agent.events_of("CALL_INCOMING")) == 2


@pytest.mark.slow
async def test_two_campaigns_on_two_nodes_never_book_one_agent_twice(
    pg_url: str, tmp_path: Path
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
        async with two_nodes(pg_url, tmp_path, trunk) as (a, b):
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
                    started = datetime.now(UTC)
                    campaign = await store.create_campaign(
                        Campaign(
                            name=f"shared-{secrets.token_hex(3)}", caller_id="12125550100",
                            trunk="carrier", agents=("101",), mode="power", ratio=1.0,
                            max_attempts=1, window_start=time(0, 0), window_end=time(23, 59),
                            tz_default="UTC", max_ring_seconds=15, amd=False,
                        ),
                        now=started,
                    )  # fmt: skip
                    assert campaign.id is not None
                    await store.import_leads(
                        campaign.id, [NewLead(f"+{n}", "UTC") for n in half], now=started
                    )
                    campaigns.append(campaign.id)
                for campaign_id in campaigns:
                    await store.set_state(campaign_id, "start", now=datetime.now(UTC))
                for campaign_id in campaigns:
                    await finished(store, campaign_id, timeout=120)
                    await store.set_state(campaign_id, "stop", now=datetime.now(UTC))
    rows = await answered_by_101(pg_url, campaigns)
    assert len(rows) >= 2, rows  # the agent took calls, ...
    for earlier, later in itertools.pairwise(rows):
        assert later["answered_at"] >= earlier["ended_at"], (earlier, later)  # ... one at a time
    assert {r["node"] for r in rows} <= {a.config.crm.node, b.config.crm.node}
    assert await holder(pg_url, "101") is None


async def finished(store: PgLeadStore, campaign_id: int, *, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        progress = await store.campaign_progress(campaign_id)
        if progress.remaining == 0 and progress.in_flight == 0:
            return
        assert loop.time() < deadline, progress
        await asyncio.sleep(0.5)


async def answered_by_101(pg_url: str, campaigns: list[int]) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(pg_url)
    try:
        return await conn.fetch(
            "SELECT call_id, node, answered_at, ended_at FROM calls WHERE agent = '101'"
            " AND campaign_id = ANY($1::bigint[]) AND answered_at IS NOT NULL"
            " ORDER BY answered_at",
            campaigns,
        )
    finally:
        await conn.close()
