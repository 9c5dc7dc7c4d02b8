"""A token bucket per CRM account, so a backlog drains within what the CRM allows (amoCRM:
7 requests/s, or it answers 429 and then blocks the IP; Bitrix24: a leaky bucket of 50 draining
at 2/s, or 503 QUERY_LIMIT_EXCEEDED).

Per process: every engine node has its own buckets, so with N nodes delivering to one account
give each 1/N of the account's rate (`rate_limit` on the endpoint).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable


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


RateLimiter = TokenBucket | SlidingWindow


def limiter(rate: float, burst: int) -> RateLimiter:
    """A sliding window of `rate` per second when no burst above the rate is allowed, else a
    token bucket (Bitrix24's leaky bucket: 50 at once, then 2 per second)."""
    if burst <= rate:
        return SlidingWindow(max(1, int(rate)))
    return TokenBucket(rate, burst)
