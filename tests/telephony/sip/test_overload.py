"""Overload control, sans-IO: levels from the smoothed loop lag with hysteresis, and what is
refused (only new INVITEs) on a virtual clock."""

from __future__ import annotations

from collections import deque

import pytest

from telephony.sip import OverloadConfig, OverloadControl, OverloadLevel, looks_like_new_invite

CONFIG = OverloadConfig(shed_lag=0.1, drop_lag=0.5, recover_after=2.0, smoothing=0.5)


def feed(control: OverloadControl, lags: list[float], start: float = 0.0) -> float:
    now = start
    for lag in lags:
        now += 0.05 + lag
        control.observe(lag, now)
    return now


def test_one_late_timer_is_no_overload() -> None:
    control = OverloadControl(CONFIG)
    feed(control, [0.0] * 5 + [0.15] + [0.0] * 5)
    assert control.level is OverloadLevel.NORMAL


def test_levels_rise_at_once_and_fall_only_after_a_calm_while() -> None:
    changes: list[OverloadLevel] = []
    control = OverloadControl(CONFIG)
    control.listeners.append(changes.append)
    now = feed(control, [0.3, 0.3])
    assert control.level is OverloadLevel.SHEDDING
    now = feed(control, [1.5, 1.5], now)
    assert control.level is OverloadLevel.DROPPING
    now = feed(control, [0.2, 0.2, 0.2], now)  # still behind, no longer far behind
    assert control.level is OverloadLevel.SHEDDING
    now = feed(control, [0.0] * 10, now)  # calm, but not yet for 2 s
    assert control.level is OverloadLevel.SHEDDING and now < 6
    feed(control, [0.0] * 40, now)
    assert control.level is OverloadLevel.NORMAL
    assert changes == [
        OverloadLevel.SHEDDING,
        OverloadLevel.DROPPING,
        OverloadLevel.SHEDDING,
        OverloadLevel.NORMAL,
    ]


def test_only_new_invites_are_refused() -> None:
    control = OverloadControl(CONFIG)
    assert not control.sheds("INVITE", None, 0.0)  # normal: everything is taken
    now = feed(control, [0.3, 0.3])
    burst = [control.sheds("INVITE", None, now) for _ in range(10)]
    assert burst.count(True) >= 8  # the rest of a burst over the admitted rate
    assert not control.sheds("INVITE", "a1b2", now)  # a re-INVITE in a dialog
    for method in ("ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "INFO", "UPDATE"):
        assert not control.sheds(method, None, now)
    assert control.shed == burst.count(True)
    new = b"INVITE sip:101@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:101@x>\r\n"
    assert not control.drops_unread(new)  # shedding answers, it does not drop
    feed(control, [2.0, 2.0])
    assert control.drops_unread(new) and control.dropped == 1


@pytest.mark.parametrize(
    ("data", "new"),
    [
        (b"INVITE sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\n", True),
        (b"INVITE sip:a@b SIP/2.0\r\nt: <sip:a@b>\r\nf: <sip:c@d>;tag=1\r\n", True),
        (b"INVITE sip:a@b SIP/2.0\r\nTO : <sip:a@b>;TAG=9\r\n", False),
        (b"INVITE sip:a@b SIP/2.0\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>;tag=x\r\n", False),
        (b"BYE sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\n", False),
        (b"SIP/2.0 200 OK\r\nTo: <sip:a@b>\r\n", False),
    ],
)
def test_a_new_invite_is_told_from_its_bytes(data: bytes, new: bool) -> None:
    assert looks_like_new_invite(data) is new


def test_thresholds_are_checked() -> None:
    with pytest.raises(ValueError):
        OverloadConfig(shed_lag=0.5, drop_lag=0.1)
    with pytest.raises(ValueError):
        OverloadConfig(smoothing=0)


class Engine:
    """An engine that sets up `capacity` calls a second on one core: the calls it admits beyond
    that wait in a backlog, and its loop runs as late as the backlog takes to clear. `later`:
    the share of a call's work that comes `delay` seconds after it is admitted (its BYE, a
    hold time later), as on a real engine, where the lag answers the admitted rate late.
    `cpu`: the core's busy seconds so far."""

    def __init__(self, capacity: float, later: float = 0.0, delay: float = 1.0) -> None:
        self.capacity = capacity
        self.backlog = 0.0
        self.later, self.delay = later, delay
        self.cpu = self.now = 0.0
        self._due: deque[tuple[float, float, int]] = deque()
        self.ended = 0
        """Calls whose last work came due (a call ends a `delay` after it is admitted)."""

    def lag(self, admitted: int, interval: float) -> float:
        self.now += interval
        work = admitted * (1.0 - self.later)
        self._due.append((self.now + self.delay, admitted * self.later, admitted))
        while self._due and self._due[0][0] <= self.now:
            _, later, calls = self._due.popleft()
            work += later
            self.ended += calls
        done = min(self.capacity * interval, self.backlog + work)
        self.cpu += done / self.capacity
        self.backlog += work - done
        return self.backlog / self.capacity


def offer(
    control: OverloadControl,
    engine: Engine,
    rate: float,
    seconds: float,
    start: float,
    *,
    cpu: bool = False,
) -> tuple[int, int, float]:
    """New INVITEs at `rate` per second for `seconds`, the loop probed every 50 ms (`cpu`: the
    probe reports the engine's CPU time too): (taken, refused, end)."""
    taken = refused = admitted = 0
    next_probe = start + 0.05
    now = start
    for n in range(int(rate * seconds)):
        now = start + n / rate
        while next_probe <= now:
            ended = engine.ended
            lag = engine.lag(admitted, 0.05)
            for _ in range(engine.ended - ended):
                control.call_ended()
            control.observe(lag, next_probe, cpu=engine.cpu if cpu else None)
            admitted = 0
            next_probe += 0.05
        if control.sheds("INVITE", None, now):
            refused += 1
        else:
            taken += 1
            admitted += 1
    return taken, refused, start + seconds


@pytest.mark.parametrize("overload", [2.0, 3.0, 4.0])
def test_goodput_under_overload_stays_near_capacity(overload: float) -> None:
    """Offered 2x and 3x what the engine takes, it keeps taking about its capacity: the calls
    over the admitted rate get 503, not every call while it recovers."""
    control = OverloadControl(OverloadConfig(shed_lag=0.2, drop_lag=5.0))
    engine = Engine(100.0)
    offer(control, engine, 50, 5, 0.0)  # half the capacity: nothing refused
    assert control.level is OverloadLevel.NORMAL and control.shed == 0
    taken, refused, _ = offer(control, engine, overload * 100, 30, 5.0)
    goodput = taken / 30
    assert control.level is not OverloadLevel.NORMAL and refused > 0
    assert 90 <= goodput <= 105, goodput
    assert engine.backlog / engine.capacity < 1.0  # the loop stays within a second


@pytest.mark.parametrize("later", [0.0, 0.5])
@pytest.mark.parametrize("overload", [2.0, 3.0, 4.0])
def test_with_the_cpu_a_call_costs_goodput_stays_near_capacity(
    overload: float, later: float
) -> None:
    """The shell reports the loop's CPU time: the cost of a call measured while running
    normally sets the admitted rate. Half of each call's work coming a second after it is
    admitted (the lag answering late) does not make it undershoot."""
    control = OverloadControl(OverloadConfig(shed_lag=0.2, drop_lag=5.0))
    engine = Engine(100.0, later=later)
    offer(control, engine, 50, 6, 0.0, cpu=True)
    assert control.call_cost == pytest.approx(0.01, rel=0.05)  # 100 calls a second a core
    taken, refused, _ = offer(control, engine, overload * 100, 30, 6.0, cpu=True)
    goodput = taken / 30
    assert control.level is not OverloadLevel.NORMAL and refused > 0
    assert 90 <= goodput <= 105, goodput
    assert engine.backlog / engine.capacity < 1.0


def test_without_the_cpu_time_a_delayed_lag_costs_goodput() -> None:
    # Why the cost anchors the rate: on the lag alone, half of each call's work coming a
    # second late makes the controller cut far under capacity.
    control = OverloadControl(OverloadConfig(shed_lag=0.2, drop_lag=5.0))
    engine = Engine(100.0, later=0.5)
    offer(control, engine, 50, 6, 0.0)
    taken, _, _ = offer(control, engine, 300, 30, 6.0)
    assert control.call_cost is None and taken / 30 < 85


def test_back_to_normal_once_the_offer_fits() -> None:
    control = OverloadControl(OverloadConfig(shed_lag=0.2, drop_lag=5.0, recover_after=2.0))
    engine = Engine(100.0)
    offer(control, engine, 50, 3, 0.0)
    _, _, end = offer(control, engine, 250, 10, 3.0)
    assert control.level is OverloadLevel.SHEDDING
    _, refused, _ = offer(control, engine, 60, 20, end)
    assert control.level is OverloadLevel.NORMAL and control.rate == 0.0
    assert refused < 60  # refused only at first, while the rate came back up
