"""Rate limiters on a fake clock: amoCRM's 7 per any second, Bitrix24's leaky bucket."""

from __future__ import annotations

import asyncio

import asyncpg

from crm_bridge.ratelimit import RateLimiter, SlidingWindow, TokenBucket, limiter, shared_limiter

from ._helpers import FakeClock


def _send(gate: SlidingWindow | TokenBucket, clock: FakeClock, seconds: float) -> list[float]:
    """Times at which requests go when each waits for the gate, for `seconds`."""
    start, sent = clock.now, []
    while clock.now - start < seconds:
        wait = gate.delay()
        if wait > 0:
            clock.advance(wait)
        else:
            sent.append(clock.now - start)
    return sent


def test_sliding_window_never_lets_more_than_the_limit_into_any_second() -> None:
    clock = FakeClock(0.0)
    gate = SlidingWindow(7, margin=0.0, clock=clock)
    sent = _send(gate, clock, 10.0)
    assert len(sent) == 70
    for i in range(len(sent) - 7):
        assert sent[i + 7] - sent[i] >= 1.0


def test_token_bucket_bursts_then_drains_at_the_rate() -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(2.0, 50, clock=clock)
    sent = _send(bucket, clock, 10.0)
    assert sum(1 for t in sent if t == 0.0) == 50  # the burst
    assert len(sent) == 50 + 19  # then 2 per second (the 20th falls at t = 10)


def test_pause_holds_everything_back() -> None:
    clock = FakeClock(0.0)
    window, bucket = SlidingWindow(7, clock=clock), TokenBucket(2.0, 50, clock=clock)
    for gate in (window, bucket):
        gate.pause(3.0)
        assert gate.delay() == 3.0
    clock.advance(3.0)
    assert window.delay() == 0.0
    assert bucket.delay() == 0.5  # empty after a "too many": one every 1/rate


def test_kind_defaults_pick_the_right_shape() -> None:
    assert isinstance(limiter(7.0, 7), SlidingWindow)
    assert isinstance(limiter(2.0, 50), TokenBucket)


def _peak(stamps: list[float], period: float) -> int:
    """Most of `stamps` within any `period` seconds."""
    stamps, start, best = sorted(stamps), 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= period:
            start += 1
        best = max(best, end - start + 1)
    return best


async def _burst(gates: list[RateLimiter], each: int) -> list[float]:
    """Every gate takes `each` slots at once (the nodes' lanes); when each was granted."""
    loop = asyncio.get_running_loop()
    granted: list[float] = []

    async def take(gate: RateLimiter) -> None:
        await gate.acquire()
        granted.append(loop.time())

    await asyncio.gather(*(take(g) for g in gates for _ in range(each)))
    return granted


async def test_two_nodes_share_one_accounts_limit_through_postgresql(crm_url: str) -> None:
    """Two nodes (two pools) sending to one amoCRM account: SharedWindow keeps them within 7
    per second together, where a SlidingWindow per node lets 14 through."""
    pools = [await asyncpg.create_pool(crm_url, min_size=1, max_size=4) for _ in range(2)]
    try:
        shared = [shared_limiter(p, "amocrm:https://acme.amocrm.ru", 7.0, 7) for p in pools]
        together = await _burst(shared, 10)
        apart = await _burst([limiter(7.0, 7), limiter(7.0, 7)], 10)
    finally:
        for pool in pools:
            await pool.close()
    assert len(together) == 20 and _peak(together, 1.0) <= 7
    assert _peak(apart, 1.0) == 14  # what the per-process limit did with two nodes


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
