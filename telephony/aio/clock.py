"""The 20 ms media clock: one timer for every call that produces audio (prompts, tones, mixes).

Ticks are scheduled against absolute deadlines (start + n * 20 ms), so a late wake-up does not
push every later frame back: the clock catches up by running the missed ticks at once, up to a
bound, and counts what it had to skip. Media objects never sleep or pace
themselves (docs/architecture.md 5).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

FRAME_SECONDS = 0.02
# Frames run back to back after a stall before the clock gives up on catching up; beyond this
# audio would arrive in a burst the far end's jitter buffer drops anyway.
MAX_CATCH_UP = 5

Tick = Callable[[int], None]


class MediaClock:
    """Calls each subscriber once per 20 ms frame with the frame number; runs only when needed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, interval: float = FRAME_SECONDS) -> None:
        self._loop = loop
        self.interval = interval
        self._subscribers: dict[int, Tick] = {}
        self._next_id = 0
        self._handle: asyncio.TimerHandle | None = None
        self._origin = 0.0
        self.frame = 0
        """Frames produced since the clock (re)started."""
        self.max_lag = 0.0
        """Worst lateness of a tick, in seconds: how far the event loop fell behind."""
        self.skipped = 0
        """Frames dropped because the loop stalled for more than MAX_CATCH_UP frames."""

    def __len__(self) -> int:
        return len(self._subscribers)

    def subscribe(self, tick: Tick) -> int:
        token = self._next_id
        self._next_id += 1
        self._subscribers[token] = tick
        if self._handle is None:
            self._origin = self._loop.time()
            self.frame = 0
            self._schedule()
        return token

    def unsubscribe(self, token: int) -> None:
        self._subscribers.pop(token, None)
        if not self._subscribers and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self) -> None:
        deadline = self._origin + (self.frame + 1) * self.interval
        self._handle = self._loop.call_at(deadline, self._tick)

    def _tick(self) -> None:
        now = self._loop.time()
        due = int((now - self._origin) / self.interval) - self.frame
        self.max_lag = max(self.max_lag, now - (self._origin + (self.frame + 1) * self.interval))
        if due > MAX_CATCH_UP:
            self.skipped += due - MAX_CATCH_UP
            self.frame += due - MAX_CATCH_UP
            due = MAX_CATCH_UP
        for _ in range(max(1, due)):
            self.frame += 1
            for tick in list(self._subscribers.values()):
                try:
                    tick(self.frame)
                except Exception:
                    logger.exception("media clock subscriber failed")
        if self._subscribers:
            self._schedule()
        else:
            self._handle = None
