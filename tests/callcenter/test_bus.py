"""The live board and bus: snapshot + deltas reproduce the board; plan / fact / pace arithmetic."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.config import ConfigError, parse_config
from callcenter.events import (
    LIVE_QUEUE_LIMIT,
    AgentStateChanged,
    CallAnswered,
    CallEnded,
    CallRinging,
    CallStarted,
    CampaignGone,
    CampaignProgress,
    Delta,
    LiveBoard,
    LiveBus,
    TaskCreated,
    TaskDone,
    TrunkChanged,
    plan_progress,
    working_days,
)
from callcenter.live import LocalToday, local_today

DAY = date(2026, 11, 10)  # a Tuesday
AGENTS = ("101", "102", "103")


def _board(day: date = DAY) -> LiveBoard:
    board = LiveBoard(day)
    for ext in AGENTS:
        board.add_agent(ext, name=f"Agent {ext}", role="agent", daily_plan=10, since=0.0)
    return board


# -- plan and pace -----------------------------------------------------------------------------


def test_working_days_of_november_2026() -> None:
    days = working_days(2026, 11)
    assert len(days) == 21
    assert days[0] == date(2026, 11, 2) and days[-1] == date(2026, 11, 30)


def test_plan_progress_mid_month() -> None:
    progress = plan_progress(10, day_fact=4, month_fact=50, today=DAY)
    assert progress.day_plan == 10 and progress.day_percent == 40.0
    assert progress.month_plan == 210
    assert progress.month_percent == 23.8
    assert progress.days_left == 15  # the 10th to the 30th, weekends out
    assert progress.pace == 71.4  # 50 of the 70 due by the end of the 10th
    assert progress.needed_per_day == 10.7  # 160 left over 15 days


def test_a_weekend_day_has_no_day_plan() -> None:
    progress = plan_progress(10, day_fact=2, month_fact=0, today=date(2026, 11, 22))
    assert progress.day_plan == 0 and progress.day_percent == 0.0
    assert progress.days_left == 6


def test_no_plan_means_no_percentages() -> None:
    progress = plan_progress(0, day_fact=3, month_fact=30, today=DAY)
    assert (progress.month_plan, progress.month_percent, progress.pace) == (0, 0.0, 0.0)
    assert progress.needed_per_day == 0.0


@given(
    plan=st.integers(0, 200),
    fact=st.integers(0, 5000),
    today=st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)),
)
def test_plan_progress_adds_up(plan: int, fact: int, today: date) -> None:
    days = working_days(today.year, today.month)
    progress = plan_progress(plan, day_fact=0, month_fact=fact, today=today)
    assert progress.month_plan == plan * len(days)
    assert progress.days_left + sum(d < today for d in days) == len(days)
    due = plan * sum(d <= today for d in days)
    on_pace = plan_progress(plan, day_fact=0, month_fact=due, today=today)
    assert on_pace.pace == (100.0 if due else 0.0)
    if progress.days_left:
        assert progress.needed_per_day * progress.days_left >= progress.month_plan - fact - 1e-6


# -- board: snapshot + deltas ------------------------------------------------------------------

_KEYS = {
    "agent": ("agents", "extension"),
    "call": ("calls", "call_id"),
    "campaign": ("campaigns", "id"),
    "task": ("tasks", "id"),
    "trunk": ("trunks", "name"),
}


def _client_fold(snapshot: dict[str, Any], deltas: list[Delta]) -> dict[str, Any]:
    """What the page does: rows by key from the snapshot, then upsert / remove per delta."""
    tables = {name: {row[key]: row for row in snapshot[name]} for name, key in _KEYS.values()}
    for kind, data in deltas:
        if kind.endswith("-gone"):
            name, key = _KEYS[kind.removesuffix("-gone")]
            tables[name].pop(data[key], None)
        else:
            name, key = _KEYS[kind]
            tables[name][data[key]] = data
    return tables


def _tables(snapshot: dict[str, Any]) -> dict[str, Any]:
    return _client_fold(snapshot, [])


call_ids = st.sampled_from(["c1", "c2", "c3"])
exts = st.sampled_from([*AGENTS, "999"])
events = st.one_of(
    st.builds(
        AgentStateChanged,
        exts,
        st.sampled_from(["available", "on-call", "wrap-up", "away"]),
        st.floats(0, 1e6),
    ),
    st.builds(CallStarted, call_ids, exts, exts, st.just("internal"), st.floats(0, 1e6)),
    st.builds(CallRinging, call_ids, st.lists(exts, max_size=2, unique=True).map(tuple)),
    st.builds(CallAnswered, call_ids, exts, exts, st.floats(0, 1e6)),
    st.builds(
        CallEnded,
        call_ids,
        st.one_of(st.none(), exts),
        st.just("answered"),
        st.floats(0, 600),
        st.floats(0, 1e6),
    ),
    st.builds(
        CampaignProgress,
        st.integers(1, 3),
        st.just("c"),
        st.sampled_from(["running", "paused"]),
        *[st.integers(0, 9)] * 7,
        st.floats(0, 1),
        st.just(0.03),
    ),
    st.builds(CampaignGone, st.integers(1, 3)),
    st.builds(
        TaskCreated,
        st.integers(1, 3),
        st.just("callback"),
        st.just("+12125550001"),
        st.none(),
        st.just("call back"),
        st.floats(0, 1e6),
        st.floats(0, 1e6),
    ),
    st.builds(TaskDone, st.integers(1, 3)),
    st.sampled_from(["provider", "backup"]).flatmap(
        lambda name: st.builds(
            TrunkChanged,
            st.just(name),
            st.fixed_dictionaries({"name": st.just(name), "channels_in_use": st.integers(0, 3)}),
        )
    ),
)


@settings(max_examples=200)
@given(before=st.lists(events, max_size=15), after=st.lists(events, max_size=25))
def test_snapshot_plus_deltas_is_the_next_snapshot(before: list[Any], after: list[Any]) -> None:
    board = _board()
    for event in before:
        board.apply(event, today=DAY)
    snapshot = board.snapshot()
    deltas: list[Delta] = []
    for event in after:
        deltas += board.apply(event, today=DAY)
    assert _client_fold(snapshot, deltas) == _tables(board.snapshot())


@settings(max_examples=200)
@given(history=st.lists(events, max_size=30))
def test_a_board_nobody_watches_ends_the_same(history: list[Any]) -> None:
    # With nobody subscribed the bus folds events in without rendering deltas; the board (and
    # so the next subscriber's snapshot) must be the one a watched board reaches.
    watched, quiet = _board(), _board()
    for event in history:
        watched.apply(event, today=DAY)
        assert quiet.apply(event, today=DAY, deltas=False) == []
        assert quiet.snapshot() == watched.snapshot()
        # The ringing index agrees with a scan of the live calls.
        scan = {ext for call in quiet.calls.values() for ext in call.ringing}
        assert quiet.ringing_agents() == scan


def test_an_answered_call_counts_for_its_agent_and_a_new_day_resets() -> None:
    board = _board()
    board.apply(CallStarted("c1", "101", "102", "internal", 100.0), today=DAY)
    deltas = board.apply(CallRinging("c1", ("102",)), today=DAY)
    assert ("agent", board.snapshot()["agents"][1]) in deltas
    assert board.snapshot()["agents"][1]["state"] == "ringing"
    board.apply(CallAnswered("c1", "101", "102", 101.0), today=DAY)
    agent = board.snapshot()["agents"][1]
    assert agent["state"] == "available"  # presence says on-call, in its own event
    assert board.snapshot()["calls"][0]["state"] == "talking"
    deltas = board.apply(CallEnded("c1", "102", "answered", 42.5, 143.5), today=DAY)
    assert ("call-gone", {"call_id": "c1"}) in deltas
    agent = board.snapshot()["agents"][1]
    assert (agent["calls_today"], agent["talk_today"]) == (1, 42.5)
    assert agent["plan"]["day_fact"] == 1 and agent["plan"]["month_fact"] == 1
    deltas = board.apply(TaskDone(7), today=date(2026, 11, 11))
    assert len(deltas) == len(AGENTS)  # each agent's day starts at zero
    assert board.snapshot()["agents"][1]["calls_today"] == 0
    assert board.snapshot()["agents"][1]["plan"]["month_fact"] == 1
    board.apply(TaskDone(7), today=date(2026, 12, 1))
    assert board.snapshot()["agents"][1]["plan"]["month_fact"] == 0


def test_repeated_progress_sends_nothing() -> None:
    board = _board()
    progress = CampaignProgress(1, "c", "running", 10, 2, 1, 9, 1, 0, 1, 0.0, 0.03)
    assert board.apply(progress, today=DAY) != []
    assert board.apply(progress, today=DAY) == []


# -- bus -----------------------------------------------------------------------------------------


async def test_a_subscriber_gets_the_snapshot_then_deltas_in_order() -> None:
    bus = LiveBus(_board(), today=lambda: DAY)
    bus.publish(AgentStateChanged("101", "away", 5.0))
    snapshot, subscription = bus.subscribe()
    assert snapshot["agents"][0]["state"] == "away"
    bus.publish(AgentStateChanged("101", "available", 6.0))
    bus.publish(CallStarted("c1", "101", "102", "internal", 7.0))
    kinds = [subscription.queue.get_nowait()[0] for _ in range(2)]
    assert kinds == ["agent", "call"]
    bus.unsubscribe(subscription)
    bus.publish(CallEnded("c1", None, "cancelled", 0.0, 8.0))
    assert subscription.queue.empty()


async def test_a_subscriber_that_falls_behind_is_cut_off() -> None:
    bus = LiveBus(_board(), today=lambda: DAY)
    _, slow = bus.subscribe()
    _, fast = bus.subscribe()
    for n in range(1, LIVE_QUEUE_LIMIT + 2):  # each one a change: away, available, away...
        bus.publish(AgentStateChanged("101", "away" if n % 2 else "available", float(n)))
        while not fast.queue.empty():
            fast.queue.get_nowait()
    assert slow.lost.is_set() and not fast.lost.is_set()
    assert bus.subscribers == 1
    bus.close()
    assert fast.lost.is_set() and bus.subscribers == 0


@pytest.mark.parametrize("state", ["on-call", "wrap-up"])
def test_agent_state_carries_since(state: str) -> None:
    board = _board()
    board.apply(AgentStateChanged("103", state, 1234.5), today=DAY)
    agent = board.snapshot()["agents"][2]
    assert (agent["state"], agent["since"]) == (state, 1234.5)


async def test_bus_listeners_see_every_event() -> None:
    bus = LiveBus(_board(), today=lambda: DAY)
    seen: list[Any] = []
    bus.on_event.append(seen.append)
    event = TaskDone(1)
    bus.publish(event)
    assert seen == [event]
    await asyncio.sleep(0)


# -- config ------------------------------------------------------------------------------------

_ACCOUNT = '[[accounts]]\nextension = "101"\npassword = "pass101"\n'


def test_daily_plan_comes_from_the_account() -> None:
    config = parse_config(_ACCOUNT + "daily_plan = 25\n", source="t.toml")
    assert config.accounts[0].daily_plan == 25
    assert parse_config(_ACCOUNT, source="t.toml").accounts[0].daily_plan == 0


@pytest.mark.parametrize("value", ["-1", '"ten"', "true", "2.5"])
def test_a_bad_daily_plan_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="daily_plan"):
        parse_config(_ACCOUNT + f"daily_plan = {value}\n", source="t.toml")


def test_the_bus_day_turns_at_local_midnight() -> None:
    midnight = datetime.combine(date(2026, 11, 11), datetime.min.time()).timestamp()
    now = [midnight - 1.0]
    today = LocalToday(clock=lambda: now[0])
    assert today() == date(2026, 11, 10)
    now[0] = midnight - 0.001
    assert today() == date(2026, 11, 10)
    now[0] = midnight
    assert today() == date(2026, 11, 11)
    now[0] = midnight - 3600.0  # the wall clock set back
    assert today() == date(2026, 11, 10)
    assert LocalToday()() == local_today()
