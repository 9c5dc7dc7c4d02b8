"""Rate limiters on a fake clock: amoCRM's 7 per any second, Bitrix24's leaky bucket."""

from __future__ import annotations

from crm_bridge.ratelimit import SlidingWindow, TokenBucket, limiter

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
