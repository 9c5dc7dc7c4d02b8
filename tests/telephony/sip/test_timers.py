"""RFC 3261 timer values (table 4) derived from T1, T2, T4."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telephony.sip.timers import TimerConfig


def test_defaults_are_rfc_values() -> None:
    config = TimerConfig()
    assert (config.t1, config.t2, config.t4) == (0.5, 4.0, 5.0)
    assert config.timer_a(reliable=False) == 0.5
    assert config.timer_b == 32.0
    assert config.timer_d(reliable=False) == 32.0
    assert config.timer_e(reliable=False) == 0.5
    assert config.timer_f == 32.0
    assert config.timer_g(reliable=False) == 0.5
    assert config.timer_h == 32.0
    assert config.timer_i(reliable=False) == 5.0
    assert config.timer_j(reliable=False) == 32.0
    assert config.timer_k(reliable=False) == 5.0
    assert config.timer_l == config.timer_m == 32.0
    assert config.first_2xx_retransmit == 0.5
    assert config.trying_delay == 0.2  # RFC 3261 17.2.1: 200 ms


def test_reliable_transport_has_no_retransmissions_and_no_waits() -> None:
    config = TimerConfig()
    assert config.timer_a(reliable=True) is None
    assert config.timer_e(reliable=True) is None
    assert config.timer_g(reliable=True) is None
    assert config.timer_d(reliable=True) == 0
    assert config.timer_i(reliable=True) == 0
    assert config.timer_j(reliable=True) == 0
    assert config.timer_k(reliable=True) == 0
    # Transaction timeouts do not depend on the transport.
    assert config.timer_b == config.timer_f == config.timer_h == 64 * config.t1


def test_timer_a_doubles_without_cap() -> None:
    config = TimerConfig()
    interval = config.timer_a(reliable=False)
    assert interval is not None
    seen = [interval]
    for _ in range(6):
        interval = config.next_timer_a(interval)
        seen.append(interval)
    assert seen == [0.5, 1, 2, 4, 8, 16, 32]


def test_timer_e_and_g_cap_at_t2() -> None:
    config = TimerConfig()
    e = config.timer_e(reliable=False)
    g = config.timer_g(reliable=False)
    assert e is not None and g is not None
    es, gs = [e], [g]
    for _ in range(5):
        e = config.next_timer_e(e, proceeding=False)
        g = config.next_timer_g(g)
        es.append(e)
        gs.append(g)
    assert es == gs == [0.5, 1, 2, 4, 4, 4]
    # Proceeding: straight to T2 (RFC 3261 17.1.2.2).
    assert config.next_timer_e(0.5, proceeding=True) == 4.0
    assert config.next_2xx_retransmit(2.0) == 4.0
    assert config.next_2xx_retransmit(4.0) == 4.0


def test_timer_d_follows_a_large_t1() -> None:
    # D covers the peer's response retransmissions, which last 64*T1.
    config = TimerConfig(t1=1.0, t2=8.0)
    assert config.timer_d(reliable=False) == 64.0
    assert TimerConfig(timer_d_unreliable=40.0).timer_d(reliable=False) == 40.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"t1": 0},
        {"t1": 5.0, "t2": 4.0},
        {"t4": 0},
        {"timer_d_unreliable": -1},
        {"trying_delay": -0.1},
    ],
)
def test_invalid_config_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TimerConfig(**kwargs)


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TimerConfig().t1 = 1.0  # type: ignore[misc]


@given(
    t1=st.floats(0.01, 5.0),
    factor=st.floats(1.0, 20.0),
    interval=st.floats(0.001, 100.0),
)
def test_capped_timers_never_exceed_t2_and_grow(t1: float, factor: float, interval: float) -> None:
    config = TimerConfig(t1=t1, t2=t1 * factor)
    for nxt in (config.next_timer_e(interval, proceeding=False), config.next_timer_g(interval)):
        assert nxt <= config.t2
        assert nxt >= min(interval, config.t2)
    assert config.next_timer_a(interval) == 2 * interval
