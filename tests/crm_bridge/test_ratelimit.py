"""The CRM rate limit every node shares, on a real PostgreSQL: amoCRM's 7 per any second,
Bitrix24's leaky bucket, and a pause one node hears holding the others."""

from __future__ import annotations

import asyncio

import asyncpg

from crm_bridge.ratelimit import RateLimiter, SharedWindow, shared_limiter


async def test_bitrix24s_bucket_lets_50_go_at_once_then_holds_the_next(crm_url: str) -> None:
    """Bitrix24's leaky bucket (50 at once, draining 2 per second) as a window of 50 per 25 s."""
    pool = await asyncpg.create_pool(crm_url, min_size=1, max_size=2)
    try:
        gate = shared_limiter(pool, "bitrix24:https://acme.bitrix24.ru", 2.0, 50)
        assert (gate.limit, gate.period) == (50, 25.0)
        waits = [(await gate._take())[0] for _ in range(51)]
    finally:
        await pool.close()
    assert waits[:50] == [0.0] * 50 and 24.0 < waits[50] <= 25.0


def _peak(stamps: list[float], period: float) -> int:
    """Most of `stamps` within any `period` seconds."""
    stamps, start, best = sorted(stamps), 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= period:
            start += 1
        best = max(best, end - start + 1)
    return best


async def _burst(gates: list[RateLimiter], each: int) -> None:
    """Every gate takes `each` slots at once (the nodes' lanes)."""
    await asyncio.gather(*(g.acquire() for g in gates for _ in range(each)))


_LOG_GRANTS = """
CREATE TABLE granted (at TIMESTAMPTZ NOT NULL);
CREATE FUNCTION log_grant() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(NEW.sent) > 0 AND NEW.sent[cardinality(NEW.sent)]
            IS DISTINCT FROM OLD.sent[cardinality(OLD.sent)] THEN
        INSERT INTO granted VALUES (NEW.sent[cardinality(NEW.sent)]);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER log_grant AFTER UPDATE ON crm_rate_windows FOR EACH ROW EXECUTE FUNCTION log_grant();
"""


async def test_two_nodes_share_one_accounts_limit_through_postgresql(crm_url: str) -> None:
    """Two nodes (two pools) sending to one amoCRM account: SharedWindow keeps them within 7
    per second together. The grants are read as the database stamped them (a trigger logs each
    one): the times a busy test process wakes up after its grant are not the limiter's."""
    pools = [await asyncpg.create_pool(crm_url, min_size=1, max_size=4) for _ in range(2)]
    try:
        await pools[0].execute(_LOG_GRANTS)
        shared = [shared_limiter(p, "amocrm:https://acme.amocrm.ru", 7.0, 7) for p in pools]
        await _burst(shared, 10)
        rows = await pools[0].fetch("SELECT extract(epoch FROM at)::float8 AS t FROM granted")
    finally:
        for pool in pools:
            await pool.close()
    together = [r["t"] for r in rows]
    assert len(together) == 20 and _peak(together, 1.0) <= 7


async def test_a_pause_one_node_hears_holds_the_other_too(crm_url: str) -> None:
    pools = [await asyncpg.create_pool(crm_url, min_size=1, max_size=2) for _ in range(2)]
    try:
        first, second = (shared_limiter(p, "amocrm:https://acme.amocrm.ru", 7.0, 7) for p in pools)
        await first.acquire()
        first.pause(0.6)  # the CRM answered 429 to the first node
        await asyncio.gather(*first._pauses)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await second.acquire()
        waited = loop.time() - start
    finally:
        for pool in pools:
            await pool.close()
    assert waited >= 0.5


async def test_a_slot_counts_from_the_answer_of_its_request(crm_url: str) -> None:
    """A request held up on its way (its answer comes 0.3 s after its slot was taken) may reach
    the CRM up to then: the next request over the limit waits a whole period from the answer,
    not from the take; an answer that comes after the slot left the window counts afresh."""
    pool = await asyncpg.create_pool(crm_url, min_size=1, max_size=2)
    try:
        gate = SharedWindow(pool, "amocrm:https://slow.amocrm.ru", 1, 1.0, margin=0.0)
        held_up = await gate.acquire()
        await asyncio.sleep(0.3)  # the request's flight
        await gate.answered(held_up)
        after_answer, _ = await gate._take()
        late = SharedWindow(pool, "amocrm:https://late.amocrm.ru", 1, 0.2, margin=0.0)
        stamp = await late.acquire()
        await asyncio.sleep(0.3)  # answered after its slot left the 0.2 s window
        await late.answered(stamp)
        after_late_answer, _ = await late._take()
    finally:
        await pool.close()
    assert 0.9 < after_answer <= 1.0  # counted from the take, it would be about 0.7
    assert 0.1 < after_late_answer <= 0.2  # counted from the take, it could go at once
