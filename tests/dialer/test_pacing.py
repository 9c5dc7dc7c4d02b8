"""Pacing: the power formula, the trunk's calls-per-second bucket, the predictive pacer's
estimates, its dial counts and its throttling by the abandon ledger."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer import (
    PACERS,
    AbandonLedger,
    AbandonPolicy,
    PacingState,
    PowerPacer,
    PredictiveConfig,
    PredictivePacer,
    TokenBucket,
    make_pacer,
)
from dialer.pacing import free_agents_pmf, no_agent_chance

NOW = 1_715_000_000.0

# -- power ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "idle", "in_flight", "lines"),
    [
        (1.0, 3, 0, 3),
        (1.0, 3, 2, 1),
        (1.5, 3, 0, 5),  # ceil(4.5)
        (1.5, 2, 0, 3),
        (2.0, 4, 3, 5),
        (3.0, 1, 5, 0),  # more in flight than wanted: none, never negative
        (5.0, 0, 0, 0),
    ],
)
def test_power_formula(ratio: float, idle: int, in_flight: int, lines: int) -> None:
    state = PacingState(idle_agents=idle, dialing_since=(NOW,) * in_flight)
    assert PowerPacer(ratio).lines_to_dial(state, now=NOW) == lines


def test_power_counts_live_answers_waiting_as_in_flight() -> None:
    state = PacingState(idle_agents=2, dialing_since=(NOW,), live_waiting=1)
    assert state.calls_in_flight == 2
    assert PowerPacer(1.0).lines_to_dial(state, now=NOW) == 0


def test_power_falls_back_to_one_line_per_agent_at_the_abandon_cap() -> None:
    ledger = AbandonLedger(AbandonPolicy(cap=0.03))
    pacer = make_pacer("power", ratio=3.0, ledger=ledger)
    state = PacingState(idle_agents=2)
    for _ in range(29):
        ledger.record_answer(now=NOW, connect_delay=0.5)
    assert pacer.lines_to_dial(state, now=NOW) == 6
    # One abandon in 30 live answers is 3.3%: over a 3% cap, so no more overdialing...
    ledger.record_answer(now=NOW, connect_delay=None)
    assert pacer.lines_to_dial(state, now=NOW) == 2
    # ...until enough answers bring the rate back under 85% of it (2.5% here).
    for _ in range(10):
        ledger.record_answer(now=NOW, connect_delay=0.5)
    assert pacer.lines_to_dial(state, now=NOW) == 6


@pytest.mark.parametrize("ratio", [0.5, 0.99, 5.01, 10.0])
def test_power_ratio_bounds(ratio: float) -> None:
    with pytest.raises(ValueError):
        PowerPacer(ratio)


@given(
    st.floats(1.0, 5.0),
    st.integers(0, 200),
    st.integers(0, 500),
    st.integers(0, 20),
)
def test_power_never_negative_and_tops_up(ratio: float, idle: int, flying: int, wait: int) -> None:
    state = PacingState(idle_agents=idle, dialing_since=(NOW,) * flying, live_waiting=wait)
    lines = PowerPacer(ratio).lines_to_dial(state, now=NOW)
    assert lines >= 0
    assert lines == max(0, math.ceil(ratio * idle - 1e-9) - flying - wait)


# -- trunk calls-per-second cap ----------------------------------------------------------------


def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=4, now=0.0)
    assert bucket.take(10, now=0.0) == 4
    assert bucket.take(1, now=0.0) == 0
    assert bucket.next_token_at(now=0.0) == pytest.approx(0.5)
    assert bucket.take(10, now=0.5) == 1
    assert bucket.take(10, now=2.0) == 3
    assert bucket.take(10, now=100.0) == 4  # never more than the burst saved up
    assert bucket.next_token_at(now=100.0) == pytest.approx(100.5)
    assert bucket.take(0, now=200.0) == 0
    assert bucket.next_token_at(now=200.0) == 200.0


async def test_token_bucket_takes_back_what_was_not_spent() -> None:
    bucket = TokenBucket(rate=2.0, burst=4, now=0.0)
    assert await bucket.acquire(3, now=0.0) == 3
    await bucket.give_back(2)  # no lead was due for two of them
    assert await bucket.acquire(10, now=0.0) == 3
    await bucket.give_back(10)
    assert bucket.available(now=0.0) == 4  # never more than the burst


def test_token_bucket_rejects_a_zero_rate() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0)


@given(
    st.floats(0.5, 50.0),
    st.lists(st.tuples(st.floats(0.0, 5.0), st.integers(0, 30)), min_size=1, max_size=50),
)
def test_token_bucket_never_exceeds_rate_plus_burst(
    rate: float, requests: list[tuple[float, int]]
) -> None:
    bucket = TokenBucket(rate, now=0.0)
    now = 0.0
    granted = 0
    for step, wanted in requests:
        now += step
        got = bucket.take(wanted, now=now)
        assert 0 <= got <= wanted
        granted += got
    assert granted <= bucket.burst + rate * now + 1e-6


# -- the probability model ---------------------------------------------------------------------


def test_free_agents_pmf_is_a_distribution() -> None:
    pmf = free_agents_pmf(2, [0.5, 0.999, 0.2, 0.01, 0.02, 0.0])
    assert pmf.sum() == pytest.approx(1.0)
    assert pmf[:3].sum() == pytest.approx(0.0)  # two idle and one nearly sure agent
    mean = float(np.arange(len(pmf)) @ pmf)
    assert mean == pytest.approx(3 + 0.5 + 0.2 + 0.03, abs=1e-6)


def test_no_agent_chance_exact_cases() -> None:
    one_agent = np.array([0.0, 1.0])
    lam = np.array([0.0, 0.5, 2.0])
    # One sure agent: a new live answer finds none when another live answer came first.
    assert no_agent_chance(lam, 0, one_agent) == pytest.approx(1 - np.exp(-lam))
    # A live answer already waiting takes that agent.
    assert no_agent_chance(lam, 1, one_agent) == pytest.approx(np.ones(3))
    # No agent at all: certain.
    assert no_agent_chance(lam, 0, np.array([1.0])) == pytest.approx(np.ones(3))


def test_no_agent_chance_matches_sampling() -> None:
    rng = np.random.default_rng(3)
    chances = [0.9, 0.6, 0.3, 0.02, 0.03]
    free = free_agents_pmf(1, chances)
    lam = 1.7
    samples = 200_000
    x = rng.poisson(lam, samples)
    f = 1 + (rng.random((samples, len(chances))) < chances).sum(axis=1)
    sampled = float(np.mean(x >= f))
    assert no_agent_chance(np.array([lam]), 0, free)[0] == pytest.approx(sampled, abs=0.01)


# -- predictive --------------------------------------------------------------------------------


def feed(pacer: PredictivePacer, n: int, *, live: float, seed: int = 1) -> None:
    """A steady stream: `live` of dials answered by people after ~10 s, talks of ~120 s."""
    rng = random.Random(seed)
    for _ in range(n):
        draw = rng.random()
        if draw < live:
            pacer.observe("answered-human", rng.uniform(6, 14), rng.uniform(60, 180), 10.0)
        elif draw < live + 0.1:
            pacer.observe("answered-machine", rng.uniform(6, 14))
        else:
            pacer.observe("no-answer", 25.0)


def test_predictive_starts_from_priors() -> None:
    cfg = PredictiveConfig()
    pacer = PredictivePacer()
    assert pacer.live_rate == pytest.approx(cfg.live_rate_prior)
    assert pacer.ring_time == pytest.approx(cfg.ring_prior)
    assert pacer.talk_time == pytest.approx(cfg.talk_prior)
    assert pacer.wrap_time == pytest.approx(cfg.wrap_prior)


@pytest.mark.parametrize("live", [0.1, 0.25, 0.5])
def test_predictive_converges_on_a_steady_stream(live: float) -> None:
    pacer = PredictivePacer()
    feed(pacer, 5000, live=live)
    assert pacer.live_rate == pytest.approx(live, abs=0.05)
    assert pacer.ring_time == pytest.approx(10.0, abs=1.0)
    assert pacer.talk_time == pytest.approx(120.0, abs=15.0)
    assert pacer.wrap_time == pytest.approx(10.0)
    # Calls in flight past every live ring time are no-answers to be.
    assert pacer.live_chance(20.0) == 0.0
    assert pacer.live_chance(0.0) == pytest.approx(pacer.live_rate, abs=0.05)
    # A talk 170 s long ends within 20 s more far likelier than a fresh one.
    assert pacer.free_chance(170.0, 20.0) > 0.8 > pacer.free_chance(0.0, 20.0)


def test_predictive_learns_a_new_rate() -> None:
    pacer = PredictivePacer()
    feed(pacer, 3000, live=0.4)
    feed(pacer, 3000, live=0.1, seed=2)
    assert pacer.live_rate == pytest.approx(0.1, abs=0.04)


def test_predictive_dials_more_lines_when_answers_are_rare() -> None:
    state = PacingState(idle_agents=5)
    counts = []
    for live in (0.4, 0.2, 0.1):
        pacer = PredictivePacer()
        feed(pacer, 2000, live=live)
        counts.append(pacer.lines_to_dial(state, now=NOW))
    assert 5 <= counts[0] < counts[1] < counts[2]
    # Yet never more than expected live answers well past the idle agents.
    assert counts[2] * 0.1 < 5


def test_predictive_dials_ahead_for_agents_finishing_wrap_up() -> None:
    pacer = PredictivePacer()
    feed(pacer, 2000, live=0.2)
    busy = PacingState(idle_agents=0, on_call_since=(NOW - 10,) * 5)
    wrapping = PacingState(idle_agents=0, on_call_since=(NOW - 10,) * 5, wrap_up_until=(NOW + 1,))
    assert pacer.lines_to_dial(busy, now=NOW) == 0
    assert pacer.lines_to_dial(wrapping, now=NOW) >= 1


def test_predictive_with_no_agents_dials_nothing() -> None:
    pacer = PredictivePacer()
    assert pacer.lines_to_dial(PacingState(idle_agents=0), now=NOW) == 0


states = st.builds(
    PacingState,
    idle_agents=st.integers(0, 30),
    on_call_since=st.lists(st.floats(NOW - 600, NOW), max_size=30).map(tuple),
    wrap_up_until=st.lists(st.floats(NOW, NOW + 15), max_size=10).map(tuple),
    dialing_since=st.lists(st.floats(NOW - 30, NOW), max_size=60).map(tuple),
    live_waiting=st.integers(0, 3),
)
trained = PredictivePacer()
feed(trained, 2000, live=0.2)


@given(states)
@settings(max_examples=150, deadline=None)
def test_predictive_bounds(state: PacingState) -> None:
    lines = trained.lines_to_dial(state, now=NOW)
    assert lines >= 0
    assert lines + state.calls_in_flight <= max(
        state.calls_in_flight, trained.config.max_lines_per_agent * state.agents
    )


@given(states)
@settings(max_examples=100, deadline=None)
def test_predictive_dials_no_more_with_more_in_flight(state: PacingState) -> None:
    more = PacingState(
        idle_agents=state.idle_agents,
        on_call_since=state.on_call_since,
        wrap_up_until=state.wrap_up_until,
        dialing_since=(*state.dialing_since, NOW),
        live_waiting=state.live_waiting,
    )
    assert trained.lines_to_dial(more, now=NOW) <= trained.lines_to_dial(state, now=NOW)


def ledger_at(rate: float, answers: int = 1000) -> AbandonLedger:
    ledger = AbandonLedger(AbandonPolicy(cap=0.03))
    abandons = round(rate * answers)
    for i in range(answers):
        ledger.record_live_answer(now=NOW - 3600 + i, abandoned=i < abandons)
    return ledger


def test_predictive_throttles_as_the_ledger_nears_the_cap() -> None:
    state = PacingState(idle_agents=20, on_call_since=(NOW - 100,) * 20, dialing_since=(NOW,) * 5)
    lines = []
    for rate in (0.0, 0.015, 0.02, 0.025, 0.029):
        pacer = PredictivePacer(ledger_at(rate))
        feed(pacer, 2000, live=0.15)
        lines.append(pacer.lines_to_dial(state, now=NOW))
    assert lines == sorted(lines, reverse=True)
    assert lines[0] > lines[-1]
    assert lines[-1] >= 20 - 5  # still at least ratio 1.0


@pytest.mark.parametrize("rate", [0.03, 0.05, 0.2])
def test_predictive_falls_back_to_ratio_one_at_the_cap(rate: float) -> None:
    pacer = PredictivePacer(ledger_at(rate))
    feed(pacer, 2000, live=0.15)
    assert pacer.tolerance(now=NOW) is None
    state = PacingState(idle_agents=7, dialing_since=(NOW,) * 3)
    assert pacer.lines_to_dial(state, now=NOW) == 4


@given(st.floats(0.0, 0.029), st.floats(0.0, 0.029))
def test_tolerance_falls_as_the_rate_rises(a: float, b: float) -> None:
    low, high = sorted((a, b))
    t_low = PredictivePacer(ledger_at(low)).tolerance(now=NOW)
    t_high = PredictivePacer(ledger_at(high)).tolerance(now=NOW)
    assert t_low is not None and t_high is not None
    assert t_high <= t_low + 1e-12


def test_early_answers_of_the_day_do_not_trip_the_fallback() -> None:
    ledger = AbandonLedger(AbandonPolicy(cap=0.03))
    for i in range(10):
        ledger.record_live_answer(now=NOW + i, abandoned=i == 0)
    assert ledger.day_rate(NOW + 10) == pytest.approx(0.1)
    assert PredictivePacer(ledger).tolerance(now=NOW + 10) is not None


def test_registry_builds_pacers_by_mode() -> None:
    assert set(PACERS) == {"power", "predictive", "broadcast"}
    power = make_pacer("power", ratio=2.0)
    assert isinstance(power, PowerPacer)
    assert power.ratio == 2.0
    ledger = AbandonLedger()
    predictive = make_pacer("predictive", ledger=ledger)
    assert isinstance(predictive, PredictivePacer)
    assert predictive.ledger is ledger
    broadcast = make_pacer("broadcast", lines=4)
    assert broadcast.lines_to_dial(PacingState(idle_agents=0, dialing_since=(NOW,)), now=NOW) == 3
    with pytest.raises(ValueError, match="unknown pacing mode"):
        make_pacer("preview")
