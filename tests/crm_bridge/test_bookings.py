"""PgAgentBookings on a real PostgreSQL: one live claim per agent whatever the nodes, claims
given back or lapsed are free again, and every node hears of the others' claims."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg

from crm_bridge import PgAgentBookings


async def until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"not {what} within {timeout} s"
        await asyncio.sleep(0.02)


async def test_one_live_claim_per_agent_across_nodes(pool: asyncpg.Pool) -> None:
    a = PgAgentBookings(pool, node="a", exclusive={"101", "102"})
    b = PgAgentBookings(pool, node="b", exclusive={"101", "102"})
    await b.follow()
    try:
        assert await a.claim("101", "call-1")
        assert await a.claim("101", "call-1")  # the same call again: still its own
        assert not await b.claim("101", "call-2")
        assert not await a.claim("101", "call-3")  # another call of the same node too
        assert await b.holder("101") == ("a", "call-1")
        await until(lambda: b.booked_elsewhere("101"), "heard by b")
        assert not a.booked_elsewhere("101")
        assert await b.claim("190", "call-2")  # not exclusive (takes many calls): never refused
        await a.release("101", "call-9")  # not its claim: nothing happens
        assert await b.holder("101") == ("a", "call-1")
        await a.release("101", "call-1")
        await until(lambda: not b.booked_elsewhere("101"), "freed for b")
        assert await b.claim("101", "call-2")
        assert await a.renew() == 0 and await b.renew() == 1
        assert await b.clear() == 1 and await b.holder("101") is None
    finally:
        await b.close()


async def test_a_lapsed_claim_of_a_dead_node_is_taken_over(pool: asyncpg.Pool) -> None:
    dead = PgAgentBookings(pool, node="dead", lease=-1)  # its lease lapsed at once
    alive = PgAgentBookings(pool, node="alive")
    assert await dead.claim("102", "call-1")
    await alive.reload()  # what renew_forever does each round
    assert not alive.booked_elsewhere("102")
    assert await alive.claim("102", "call-2")
    assert await alive.holder("102") == ("alive", "call-2")


async def test_concurrent_claims_of_one_agent_make_one_winner(pool: asyncpg.Pool) -> None:
    nodes = [PgAgentBookings(pool, node=f"n{i}") for i in range(6)]
    results = await asyncio.gather(*(n.claim("103", f"call-{i}") for i, n in enumerate(nodes)))
    assert sorted(results) == [False] * 5 + [True]
