"""The media clock on a virtual event loop: exact frame counts, catch-up and skips."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from telephony.aio.clock import MAX_CATCH_UP, MediaClock


class VirtualLoop:
    """Just what MediaClock uses of a loop: time() and call_at(), driven by the test."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[tuple[float, Callable[[], None], asyncio.TimerHandle]] = []

    def time(self) -> float:
        return self.now

    def get_debug(self) -> bool:
        return False

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        pass

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> asyncio.TimerHandle:
        handle = asyncio.TimerHandle(when, callback, args, cast(asyncio.AbstractEventLoop, self))
        self.timers.append((when, lambda: callback(*args), handle))
        return handle

    def advance(self, until: float) -> None:
        while True:
            due = [t for t in self.timers if t[0] <= until and not t[2].cancelled()]
            if not due:
                break
            first = min(due, key=lambda t: t[0])
            self.timers.remove(first)
            self.now = max(self.now, first[0])
            first[1]()
        self.now = until


def _clock() -> tuple[VirtualLoop, MediaClock]:
    loop = VirtualLoop()
    return loop, MediaClock(cast(asyncio.AbstractEventLoop, loop))


def test_one_tick_per_frame_with_consecutive_numbers() -> None:
    loop, clock = _clock()
    seen: list[int] = []
    clock.subscribe(seen.append)
    loop.advance(101.0)
    assert seen == list(range(1, 51))
    assert clock.max_lag == 0.0


def test_a_late_wakeup_catches_up_and_a_stall_skips() -> None:
    loop, clock = _clock()
    seen: list[int] = []
    clock.subscribe(seen.append)
    loop.advance(100.02)
    assert seen == [1]
    loop.now = 100.075  # woke 35 ms late: frames 2 and 3 run back to back, none lost
    loop.advance(100.075)
    assert seen == [1, 2, 3]
    loop.now = 101.0  # a 925 ms stall: only MAX_CATCH_UP frames run, the rest are skipped
    loop.advance(101.0)
    assert len(seen) == 3 + MAX_CATCH_UP
    assert clock.skipped == 50 - 3 - MAX_CATCH_UP
    assert seen[-1] == 50


def test_runs_only_while_someone_listens() -> None:
    loop, clock = _clock()
    a: list[int] = []
    token = clock.subscribe(a.append)
    loop.advance(100.1)
    clock.unsubscribe(token)
    assert not [t for t in loop.timers if not t[2].cancelled()]
    loop.advance(101.0)
    assert len(a) == 5
