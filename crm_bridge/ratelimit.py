"""A token bucket per CRM account, so a backlog drains within what the CRM allows (amoCRM:
7 requests/s, or it answers 429 and then blocks the IP; Bitrix24: a leaky bucket of 50 draining
at 2/s, or 503 QUERY_LIMIT_EXCEEDED).

`TokenBucket` and `SlidingWindow` count per process; `SharedWindow` counts in PostgreSQL, so every
engine node delivering to one account keeps, together, within what the account allows (the
outbox worker uses it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

import asyncpg

logger = logging.getLogger(__name__)


class TokenBucket:
    """`rate` requests per second on average, up to `burst` at once; waiters are served in
    arrival order (asyncio.Lock is fair)."""

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def _refill(self) -> float:
        now = self._clock()
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
        return now

    def delay(self) -> float:
        """Seconds until a request may go (0: now); takes the token when it is 0."""
        now = self._refill()
        if now < self._paused_until:
            return self._paused_until - now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate

    async def acquire(self) -> None:
        """Wait for a token."""
        async with self._lock:
            while (wait := self.delay()) > 0:
                await asyncio.sleep(wait)

    def pause(self, seconds: float) -> None:
        """The CRM said "too many" (429, QUERY_LIMIT_EXCEEDED): nothing goes for `seconds`, and
        the bucket starts empty after that."""
        now = self._refill()
        self._paused_until = max(self._paused_until, now + seconds)
        self._tokens = 0.0
        self._stamp = self._paused_until  # it refills from the end of the pause


class SlidingWindow:
    """At most `limit` requests within any `period` seconds (amoCRM's "7 requests per second":
    a token bucket would let 7 go at once and 7 more within the same second). `margin` is
    added to the period so requests that leave us just in time do not arrive early."""

    def __init__(
        self,
        limit: int,
        period: float = 1.0,
        *,
        margin: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or period <= 0:
            raise ValueError("limit must be at least 1 and period positive")
        self.limit = limit
        self.period = period + margin
        self._clock = clock
        self._sent: deque[float] = deque()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def delay(self) -> float:
        """Seconds until a request may go (0: now, and it is counted)."""
        now = self._clock()
        if now < self._paused_until:
            return self._paused_until - now
        while self._sent and now - self._sent[0] >= self.period:
            self._sent.popleft()
        if len(self._sent) < self.limit:
            self._sent.append(now)
            return 0.0
        return self.period - (now - self._sent[0])

    async def acquire(self) -> None:
        """Wait for a slot."""
        async with self._lock:
            while (wait := self.delay()) > 0:
                await asyncio.sleep(wait)

    def pause(self, seconds: float) -> None:
        """The CRM said "too many": nothing goes for `seconds`."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)


def limiter(rate: float, burst: int) -> RateLimiter:
    """A sliding window of `rate` per second when no burst above the rate is allowed, else a
    token bucket (Bitrix24's leaky bucket: 50 at once, then 2 per second)."""
    if burst <= rate:
        return SlidingWindow(max(1, int(rate)))
    return TokenBucket(rate, burst)


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
    is added to the period, as SlidingWindow does."""

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
    """`limiter`'s rule for every node together: `rate` per second when no burst above it is
    allowed (amoCRM), else `burst` within the time the rate takes to send them (Bitrix24's
    leaky bucket: 50, then 2 per second)."""
    if burst <= rate:
        return SharedWindow(pool, account, max(1, int(rate)), 1.0)
    return SharedWindow(pool, account, burst, burst / rate, margin=0.0)


RateLimiter = TokenBucket | SlidingWindow | SharedWindow
