"""AbandonLedger: the abandon definition, rolling window, local-day boundary, headroom, state."""

from __future__ import annotations

import json
import math
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer import CONNECT_DEADLINE, AbandonLedger, AbandonPolicy

DAY = 86400.0
T0 = datetime(2024, 5, 6, 12, 0, tzinfo=ZoneInfo("UTC")).timestamp()


def test_abandon_is_a_live_answer_not_connected_within_the_deadline() -> None:
    ledger = AbandonLedger()
    assert ledger.record_answer(now=T0, connect_delay=0.0) is False
    assert ledger.record_answer(now=T0, connect_delay=CONNECT_DEADLINE) is False
    assert ledger.record_answer(now=T0, connect_delay=CONNECT_DEADLINE + 0.01) is True
    assert ledger.record_answer(now=T0, connect_delay=None) is True
    assert ledger.window_counts(T0) == (4, 2)
    assert ledger.day_counts(T0) == (4, 2)
    assert ledger.rate(T0) == pytest.approx(0.5)


def test_rates_with_minimum_denominator() -> None:
    ledger = AbandonLedger()
    ledger.record_live_answer(now=T0, abandoned=True)
    assert ledger.day_rate(T0) == 1.0
    assert ledger.day_rate(T0, min_answers=100) == pytest.approx(0.01)
    assert AbandonLedger().rate(T0) == 0.0


def test_rolling_window_forgets_old_answers() -> None:
    ledger = AbandonLedger(AbandonPolicy(window_seconds=30 * DAY))
    ledger.record_live_answer(now=T0, abandoned=True)
    ledger.record_live_answer(now=T0 + 10 * DAY)
    assert ledger.window_counts(T0 + 29 * DAY) == (2, 1)
    # One bucket (an hour) past 30 days the first answer has left the window.
    later = T0 + 30 * DAY + 3600
    assert ledger.window_counts(later) == (1, 0)
    assert ledger.window_rate(later) == 0.0
    assert ledger.over_cap(T0 + DAY)
    assert not ledger.over_cap(later)


def test_local_day_boundary_follows_the_campaign_time_zone() -> None:
    zone = ZoneInfo("America/New_York")
    ledger = AbandonLedger(AbandonPolicy(tz="America/New_York"))
    before = datetime(2024, 5, 6, 23, 59, tzinfo=zone).timestamp()
    after = datetime(2024, 5, 7, 0, 1, tzinfo=zone).timestamp()
    ledger.record_live_answer(now=before, abandoned=True)
    ledger.record_live_answer(now=after)
    assert ledger.day_counts(before) == (1, 1)
    assert ledger.day_counts(after) == (1, 0)
    # Both are the same UTC day (03:59 and 04:01), so the zone really decided it.
    assert ledger.window_counts(after) == (2, 1)
    assert ledger.rate(after) == pytest.approx(0.5)  # the window binds, not the day


def test_day_with_a_dst_change_is_one_day() -> None:
    zone = ZoneInfo("Europe/Berlin")
    ledger = AbandonLedger(AbandonPolicy(tz="Europe/Berlin"))
    # 2024-03-31 is 23 hours long in Berlin.
    first = datetime(2024, 3, 31, 0, 30, tzinfo=zone).timestamp()
    last = datetime(2024, 3, 31, 23, 30, tzinfo=zone).timestamp()
    ledger.record_live_answer(now=first)
    ledger.record_live_answer(now=last, abandoned=True)
    assert last - first == 22 * 3600
    assert ledger.day_counts(last) == (2, 1)
    assert ledger.day_counts(last + 3600) == (0, 0)


def test_headroom_counts_abandons_left_under_the_cap() -> None:
    ledger = AbandonLedger(AbandonPolicy(cap=0.03))
    for i in range(100):
        ledger.record_live_answer(now=T0 + i, abandoned=i < 2)
    assert ledger.headroom(T0 + 100) == 1
    assert ledger.headroom(T0 + 100, expected_answers=100) == 4
    ledger.record_live_answer(now=T0 + 101, abandoned=True)
    ledger.record_live_answer(now=T0 + 102, abandoned=True)
    assert ledger.headroom(T0 + 103) == 0  # over the cap: no headroom, never negative


def test_headroom_is_bound_by_the_day_too() -> None:
    ledger = AbandonLedger(AbandonPolicy(cap=0.03))
    for i in range(1000):
        ledger.record_live_answer(now=T0 - 5 * DAY + i)
    ledger.record_live_answer(now=T0, abandoned=True)
    # The window has room for 29 more, today (1 answer, 1 abandon) none.
    assert ledger.headroom(T0) == 0
    assert ledger.headroom(T0, expected_answers=99) == 2


def test_policy_is_validated() -> None:
    with pytest.raises(ValueError):
        AbandonPolicy(cap=1.5)
    with pytest.raises(ValueError):
        AbandonPolicy(window_seconds=0)
    with pytest.raises(Exception):  # noqa: B017 - zoneinfo raises its own error type
        AbandonPolicy(tz="Nowhere/Atlantis")


events = st.lists(
    st.tuples(st.floats(0, 40 * DAY, allow_nan=False), st.booleans()), max_size=60
).map(sorted)


@given(events, st.floats(0, 45 * DAY, allow_nan=False))
@settings(max_examples=150, deadline=None)
def test_state_round_trips_through_json(log: list[tuple[float, bool]], probe: float) -> None:
    policy = AbandonPolicy(tz="Asia/Kolkata")
    ledger = AbandonLedger(policy)
    for offset, abandoned in log:
        ledger.record_live_answer(now=T0 + offset, abandoned=abandoned)
    copy = AbandonLedger.from_dict(json.loads(json.dumps(ledger.to_dict())), policy)
    assert copy == ledger
    now = T0 + probe
    assert copy.window_counts(now) == ledger.window_counts(now)
    assert copy.day_counts(now) == ledger.day_counts(now)
    assert copy.headroom(now, 10) == ledger.headroom(now, 10)


@given(events)
@settings(max_examples=150, deadline=None)
def test_window_matches_a_plain_count(log: list[tuple[float, bool]]) -> None:
    policy = AbandonPolicy(window_seconds=7 * DAY)
    ledger = AbandonLedger(policy)
    for offset, abandoned in log:
        ledger.record_live_answer(now=T0 + offset, abandoned=abandoned)
    if not log:
        return
    now = T0 + log[-1][0]
    hour = policy.bucket_seconds
    first = math.floor((now - policy.window_seconds) / hour) + 1
    inside = [a for t, a in log if math.floor((T0 + t) / hour) >= first]
    assert ledger.window_counts(now) == (len(inside), sum(inside))


def test_from_dict_refuses_unknown_state() -> None:
    with pytest.raises(ValueError):
        AbandonLedger.from_dict({"version": 99})
    state = AbandonLedger().to_dict()
    with pytest.raises(ValueError):
        AbandonLedger.from_dict(state, AbandonPolicy(bucket_seconds=60))


def test_peer_ledgers_count_towards_the_cap_but_are_not_saved() -> None:
    noon = datetime(2026, 5, 4, 12, tzinfo=ZoneInfo("UTC")).timestamp()
    here, there = AbandonLedger(), AbandonLedger()
    for _ in range(20):
        here.record_answer(now=noon, connect_delay=0.4)
    there.record_answer(now=noon, connect_delay=None)
    assert here.rate(noon) == 0.0
    here.peers = (AbandonLedger.from_dict(there.to_dict()),)  # as read from the database
    assert here.window_counts(noon) == (21, 1) and here.day_counts(noon) == (21, 1)
    assert here.over_cap(noon)  # 1 in 21 is 4.8%: the campaign, not this node, is judged
    assert AbandonLedger.from_dict(here.to_dict()).window_counts(noon) == (20, 0)
