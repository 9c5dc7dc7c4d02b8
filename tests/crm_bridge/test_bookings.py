"""PgAgentBookings on a real PostgreSQL: one live claim per agent whatever the nodes, claims
given back or lapsed are free again, and every node hears of the others' claims."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

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


async def test_a_dialer_reservation_holds_an_idle_agent_for_its_node_alone(
    pool: asyncpg.Pool,
) -> None:
    a = PgAgentBookings(pool, node="a", exclusive={"101", "102"})
    b = PgAgentBookings(pool, node="b", exclusive={"101", "102"})
    await b.follow()
    try:
        # Both nodes' dialers pace for 101 and 102 at once: each agent is held by one node.
        got_a, got_b = await asyncio.gather(a.reserve(["101", "102"]), b.reserve(["101", "102"]))
        assert got_a | got_b == {"101", "102"} and not got_a & got_b
        await b.unreserve(got_b)
        assert await a.reserve(["101", "102", "190"]) == {"101", "102", "190"}  # 190: many calls
        assert await b.reserve(["101"]) == set()
        await until(lambda: b.booked_elsewhere("101"), "a's reservation heard by b")
        # A call of the reserving node takes the agent over; another node's call does not.
        assert not await b.claim("101", "call-b")
        assert await a.claim("101", "call-a")
        assert await a.holder("101") == ("a", "call-a")
        await a.unreserve(["101", "102"])  # a call's booking stays, the reservation goes
        assert await a.holder("101") == ("a", "call-a") and await a.holder("102") is None
        assert await b.reserve(["102"]) == {"102"}
    finally:
        await b.close()


async def test_reserving_again_renews_without_telling_the_other_nodes(pool: asyncpg.Pool) -> None:
    a = PgAgentBookings(pool, node="a")
    heard: list[str] = []

    def notified(*args: object) -> None:
        heard.append(str(args[-1]))

    async with pool.acquire() as conn:
        await conn.add_listener("agent_bookings", notified)
        assert await a.reserve(["101"]) == {"101"}
        await until(lambda: len(heard) == 1, "the reservation announced")
        for _ in range(3):
            assert await a.reserve(["101"]) == {"101"}
        assert await a.claim("101", "call-1")  # the holder changes: announced
        await until(lambda: len(heard) == 2, "the takeover announced")
        await conn.execute("SELECT 1")  # a round trip: any NOTIFY sent so far has arrived
        assert heard == ["a\n101\nbooked\ndialer", "a\n101\nbooked\ncall-1"]
        await conn.remove_listener("agent_bookings", notified)


async def test_a_node_that_stops_renewing_is_dead_for_the_others(pool: asyncpg.Pool) -> None:
    dying = PgAgentBookings(pool, node="gone", lease=30)
    dead = PgAgentBookings(pool, node="gone", lease=-1)  # the same node, its lease run out
    alive = PgAgentBookings(pool, node="here", lease=30)
    await dying.join()
    await alive.join()
    assert await alive.dead_nodes() == []
    await dead.renew()
    assert await alive.dead_nodes() == ["gone"]
    await dying.renew()  # back: alive again
    assert await alive.dead_nodes() == []
    await dead.leave()
    assert await alive.dead_nodes() == []


async def test_other_nodes_calls_are_told_apart_from_their_reservations(
    pool: asyncpg.Pool,
) -> None:
    a = PgAgentBookings(pool, node="a")
    b = PgAgentBookings(pool, node="b")
    told: list[tuple[str, bool]] = []
    b.on_call_elsewhere = lambda ext, on_call: told.append((ext, on_call))
    await b.follow()
    try:
        await a.reserve(["101"])
        await until(lambda: b.booked_elsewhere("101"), "the reservation heard")
        assert not b.on_call_elsewhere_now("101") and told == []
        assert await a.claim("101", "call-1")
        await until(lambda: told == [("101", True)], "the call heard")
        await a.release("101", "call-1")
        await until(lambda: told == [("101", True), ("101", False)], "the release heard")
        assert await a.claim("102", "call-2")
        await b.reload()  # what renew_forever does: the same, read instead of heard
        await until(lambda: ("102", True) in told, "the second call")
        assert told.count(("102", True)) == 1
    finally:
        await b.close()


async def test_a_release_carries_the_agents_wrap_up(pool: asyncpg.Pool) -> None:
    """The agent's row holds the wrap-up before any node hears the release (one statement),
    and a release of a booking the node does not hold writes nothing."""
    a = PgAgentBookings(pool, node="a", exclusive={"104"})
    ends = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    a.wrap_up_end = lambda extension: ends if extension == "104" else None
    seen: list[object] = []
    read = asyncio.Event()
    reads: list[asyncio.Task[None]] = []

    async with pool.acquire() as listening, pool.acquire() as reading:

        async def on_release() -> None:
            row = await reading.fetchval(
                "SELECT wrap_up_until FROM agent_presence WHERE extension = '104'"
            )
            seen.append(row)
            read.set()

        def notified(*args: object) -> None:
            if str(args[-1]).startswith("a\n104\nfree"):
                reads.append(asyncio.get_running_loop().create_task(on_release()))

        await listening.add_listener("agent_bookings", notified)
        try:
            await a.release("104", "call-1")  # holds none: no row
            assert (
                await reading.fetchval(
                    "SELECT count(*) FROM agent_presence WHERE extension = '104'"
                )
                == 0
            )
            assert await a.claim("104", "call-1")
            await a.release("104", "call-1")
            await asyncio.wait_for(read.wait(), 5)
            await asyncio.gather(*reads)
        finally:
            await listening.remove_listener("agent_bookings", notified)
    assert seen == [ends]
