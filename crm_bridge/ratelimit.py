"""A token bucket per CRM account, so a backlog drains within what the CRM allows (amoCRM:
7 requests/s, or it answers 429 and then blocks the IP; Bitrix24: a leaky bucket of 50 draining
at 2/s, or 503 QUERY_LIMIT_EXCEEDED).

`SharedWindow` counts in PostgreSQL, so every engine node delivering to one account keeps,
together, within what the account allows (a limit per process would let N nodes send N times
the rate).

A slot is stamped when it is taken and stamped again when the CRM's answer comes (`answered`):
the CRM got the request by then, so the request after the limit-th next waits a whole period
from there. A request held up on its way (a busy event loop, a slow connect) then cannot land
within one period of one sent after it, as it could when only the take was counted (seen as
the odd 429 from a loaded node).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import asyncpg

logger = logging.getLogger(__name__)


_TAKE = """
WITH cur AS (
    SELECT account, paused_until, clock_timestamp() AS now,
           ARRAY(SELECT s FROM unnest(sent) AS s
                 WHERE s > clock_timestamp() - make_interval(secs => $3) ORDER BY s) AS recent
    FROM crm_rate_windows WHERE account = $1 FOR UPDATE
), verdict AS (
    SELECT account, recent, now,
           CASE WHEN paused_until > now
                    THEN extract(epoch FROM paused_until - now)::float8
                WHEN cardinality(recent) < $2 THEN 0.0
                ELSE extract(epoch FROM recent[cardinality(recent) - $2 + 1]
                             + make_interval(secs => $3) - now)::float8
           END AS wait
    FROM cur
)
UPDATE crm_rate_windows w
SET sent = CASE WHEN v.wait <= 0 THEN v.recent || v.now ELSE v.recent END
FROM verdict v WHERE w.account = v.account
RETURNING v.wait, v.now
"""

# The answer came: the slot's stamp moves to now (or, gone from the window already, a new one
# joins it: the request counts from when it surely arrived).
_ANSWERED = """
UPDATE crm_rate_windows
SET sent = CASE WHEN $2::timestamptz = ANY(sent) THEN array_replace(sent, $2, clock_timestamp())
                ELSE sent || clock_timestamp() END
WHERE account = $1
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

    async def acquire(self) -> datetime:
        """Wait for a slot (this node's waiters in arrival order); the slot's stamp, for
        `answered`."""
        async with self._lock:
            while True:
                wait, stamp = await self._take()
                if wait <= 0:
                    return stamp
                await asyncio.sleep(wait)

    async def answered(self, stamp: datetime) -> None:
        """The request sent in the slot `stamp` has its answer (or gave up waiting for one): it
        counts from now."""
        try:
            async with self.pool.acquire() as conn:
                await conn.execute(_ANSWERED, self.account, stamp)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The take's stamp stands (and a stopping worker's pool may be closing).
            logger.warning("%s: CRM answer time not stored: %s", self.account, exc)

    async def _take(self) -> tuple[float, datetime]:
        async with self.pool.acquire() as conn:
            if not self._ready:
                await conn.execute(
                    "INSERT INTO crm_rate_windows (account) VALUES ($1) ON CONFLICT DO NOTHING",
                    self.account,
                )
                self._ready = True
            row = await conn.fetchrow(_TAKE, self.account, self.limit, self.period)
        assert row is not None  # the row was made above
        return float(row["wait"] or 0.0), row["now"]

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
