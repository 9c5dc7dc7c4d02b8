"""Pickup selection: *8 takes the oldest call ringing a phone of the picker's groups, **EXT the
call ringing EXT when the picker shares a group with it; everything else is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from pbx import Pickup, PickupGroup, PickupGroups, PickupRefusal, RingingCall, parse_pickup

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
GROUPS = PickupGroups(
    [PickupGroup("sales", ("101", "102", "103")), PickupGroup("support", ("103", "104"))]
)


def _call(key: str, ringing: set[str], age: int) -> RingingCall:
    return RingingCall(key, frozenset(ringing), T0 - timedelta(seconds=age))


def test_codes_parse() -> None:
    assert parse_pickup("*8") is not None and parse_pickup("*8").target is None  # type: ignore[union-attr]
    code = parse_pickup("**103")
    assert code is not None and code.target == "103"
    for other in ("*80", "**", "**1", "*50", "103", "***103", "**123456789"):
        assert parse_pickup(other) is None


def test_an_agent_in_two_groups_reaches_both() -> None:
    assert GROUPS.peers("103") == {"101", "102", "104"}
    assert GROUPS.peers("104") == {"103"}
    assert GROUPS.peers("105") == frozenset()
    assert GROUPS.may_pick("104", "103") and not GROUPS.may_pick("104", "101")


def test_group_pickup_takes_the_oldest_call_of_the_pickers_groups() -> None:
    calls = [
        _call("new", {"103"}, age=2),
        _call("old", {"103", "102"}, age=9),
        _call("older-elsewhere", {"105"}, age=30),
    ]
    assert GROUPS.select("104", calls) == Pickup("old", "103")
    assert GROUPS.select("101", calls) == Pickup("old", "102")


def test_directed_pickup_takes_exactly_that_phone() -> None:
    calls = [_call("to-102", {"102"}, age=9), _call("to-103", {"103"}, age=1)]
    assert GROUPS.select("104", calls, target="103") == Pickup("to-103", "103")
    assert GROUPS.select("101", calls, target="102") == Pickup("to-102", "102")


def test_refusals() -> None:
    calls = [_call("to-101", {"101"}, age=3)]
    # 104 shares no group with 101: directed pickup is not allowed, *8 finds nothing.
    assert GROUPS.select("104", calls, target="101") is PickupRefusal.NOT_ALLOWED
    assert GROUPS.select("104", calls) is PickupRefusal.NOTHING_RINGING
    assert GROUPS.select("102", [], target="101") is PickupRefusal.NOTHING_RINGING
    assert GROUPS.select("105", calls) is PickupRefusal.NOTHING_RINGING
    # Nobody picks up a call that rings only their own phone through *8.
    assert GROUPS.select("101", calls) is PickupRefusal.NOTHING_RINGING


members = st.sets(st.sampled_from(["101", "102", "103", "104", "105"]), min_size=1)


@given(
    st.lists(members, max_size=4),
    st.lists(st.tuples(members, st.integers(0, 100)), max_size=6),
    st.sampled_from(["101", "102", "103", "104", "105"]),
)
def test_selection_never_leaves_the_pickers_groups(
    groups: list[set[str]], ringing: list[tuple[set[str], int]], picker: str
) -> None:
    pickup = PickupGroups(PickupGroup(f"g{i}", tuple(sorted(m))) for i, m in enumerate(groups))
    calls = [_call(f"c{i}", r, age) for i, (r, age) in enumerate(ringing)]
    choice = pickup.select(picker, calls)
    eligible = [c for c in calls if c.ringing & pickup.peers(picker)]
    if not eligible:
        assert choice is PickupRefusal.NOTHING_RINGING
        return
    assert isinstance(choice, Pickup)
    chosen = next(c for c in calls if c.key == choice.key)
    assert choice.picked_from in chosen.ringing & pickup.peers(picker)
    assert chosen.since == min(c.since for c in eligible)
