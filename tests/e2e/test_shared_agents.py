"""Two engine nodes on one database with `[sip] cluster = true`: an agent on a call through one
node is busy for the other too (agent_bookings, heard by LISTEN/NOTIFY), so a customer calling
the other node's number never rings that agent's phone a second time; once the call ends the
other node rings the agent again. The agent registered with the first node only: the second
reaches the phone through the shared registrations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from callcenter.runtime import Engine, start_engine
from sip_test_env import carrier
from sip_test_env.baresip import BaresipPeer

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


@pytest.fixture
async def nodes(pg_url: str, tmp_path: Path) -> AsyncIterator[tuple[Engine, Engine]]:
    started: list[Engine] = []
    try:
        for name in ("a", "b"):
            config = engine_config(extra_sip="cluster = true\n", extra=TRUNK)
            started.append(
                await start_engine(config, database_url=pg_url, data_dir=tmp_path / name)
            )
        yield started[0], started[1]
    finally:
        for engine in started:
            await engine.stop()


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
