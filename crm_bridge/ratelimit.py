"""A token bucket per CRM account, so a backlog drains within what the CRM allows (amoCRM:
7 requests/s, or it answers 429 and then blocks the IP; Bitrix24: a leaky bucket of 50 draining
at 2/s, or 503 QUERY_LIMIT_EXCEEDED).

`SharedWindow` counts in PostgreSQL, so every engine node delivering to one account keeps,
together, within what the account allows (a limit per process would let N nodes send N times
the rate).
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

logger = logging.getLogger(__name__)


_TAKE = """
WITH cur AS (
    SELECT account, paused_until,
           ARRAY(SELECT s FROM unnest(sent) AS s
                 WHERE s > clock_timestamp() - make_interval(secs => $3) ORDER BY s) AS recent
    FROM crm_rate_windows WHERE account = $1 FOR UPDATE
), verdict AS (
    SELECT account, recent,
           CASE WHEN paused_until > clock_timestamp()
                    THEN extract(epoch FROM paused_until - clock_timestamp())::float8
                WHEN cardinality(recent) < $2 THEN 0.0
                ELSE extract(epoch FROM recent[cardinality(recent) - $2 + 1]
                             + make_interval(secs => $3) - clock_timestamp())::float8
           END AS wait
    FROM cur
)
UPDATE crm_rate_windows w
SET sent = CASE WHEN v.wait <= 0 THEN v.recent || clock_timestamp() ELSE v.recent END
FROM verdict v WHERE w.account = v.account
RETURNING v.wait
"""

_PAUSE = (
    "UPDATE crm_rate_windows SET paused_until = GREATEST(COALESCE(paused_until, '-infinity'),"
    " clock_timestamp() + make_interval(secs => $2)) WHERE account = $1"
)


class SharedWindow:
    """At most `limit` requests to one account within any `period` seconds, counted by every
    node together in PostgreSQL (row `account` of crm_rate_windows, taken under its lock; the
    database's clock, so nodes' clocks need not agree). One round trip per request. `margin`
    is added to the period, so requests that leave us just in time do not arrive early."""

    def __init__(
        self, pool: asyncpg.Pool, account: str, limit: int, period: float, *, margin: float = 0.05
    ) -> None:
        if limit < 1 or period <= 0:
            raise ValueError("limit must be at least 1 and period positive")
        self.pool = pool
        self.account = account
        self.limit = limit
        self.period = period + margin
        self._ready = False
        self._lock = asyncio.Lock()
        self._pauses: set[asyncio.Task[None]] = set()

    async def acquire(self) -> None:
        """Wait for a slot (this node's waiters in arrival order)."""
        async with self._lock:
            while (wait := await self._take()) > 0:
                await asyncio.sleep(wait)

    async def _take(self) -> float:
        async with self.pool.acquire() as conn:
            if not self._ready:
                await conn.execute(
                    "INSERT INTO crm_rate_windows (account) VALUES ($1) ON CONFLICT DO NOTHING",
                    self.account,
                )
                self._ready = True
            wait = await conn.fetchval(_TAKE, self.account, self.limit, self.period)
        return float(wait or 0.0)

    def pause(self, seconds: float) -> None:
        """The CRM said "too many": no node sends for `seconds` (written in the background)."""
        task = asyncio.get_running_loop().create_task(self._pause(seconds))
        self._pauses.add(task)
        task.add_done_callback(self._pauses.discard)

    async def _pause(self, seconds: float) -> None:
        try:
            async with self.pool.acquire() as conn:
                await conn.execute(_PAUSE, self.account, seconds)
        except (OSError, asyncpg.PostgresError) as exc:  # the next 429 pauses it again
            logger.warning("%s: CRM pause not stored: %s", self.account, exc)


def shared_limiter(pool: asyncpg.Pool, account: str, rate: float, burst: int) -> SharedWindow:
    """The limiter of one account for every node together: `rate` per second when no burst
    above it is allowed (amoCRM's 7 in any second), else `burst` within the time the rate takes
    to send them (Bitrix24's leaky bucket: 50, then 2 per second)."""
    if burst <= rate:
        return SharedWindow(pool, account, max(1, int(rate)), 1.0)
    return SharedWindow(pool, account, burst, burst / rate, margin=0.0)


RateLimiter = SharedWindow
