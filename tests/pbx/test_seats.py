"""The seats table: one seat per agent, idle or on a call, left by its own leg only."""

from __future__ import annotations

import pytest

from pbx.seats import Seats


def test_one_seat_per_agent_and_only_its_leg_leaves_it() -> None:
    seats: Seats[object] = Seats()
    leg, other = object(), object()
    assert seats.take("101", leg, now=1.0) is not None
    assert seats.take("101", other, now=2.0) is None  # seated already: the second is refused
    assert "101" in seats and len(seats) == 1
    assert seats.leave("101", other) is None  # not its seat
    assert seats.holder(leg) == "101" and seats.holder(other) is None
    assert seats.leave("101", leg) is not None
    assert "101" not in seats and seats.leave("101", leg) is None


def test_idle_seats_in_the_order_asked_and_a_busy_one_is_not_taken_twice() -> None:
    seats: Seats[str] = Seats()
    for agent in ("101", "102", "103"):
        seats.take(agent, f"leg-{agent}", now=0.0)
    assert seats.idle(["103", "104", "101"]) == ["103", "101"]
    seat = seats.occupy("101")
    assert seat.on_call and seat.calls == 1
    assert seats.idle(["101", "102"]) == ["102"]
    with pytest.raises(ValueError):
        seats.occupy("101")
    seats.release("101")
    assert seats.idle(["101"]) == ["101"] and seats.occupy("101").calls == 2
    seats.release("999")  # no seat: nothing to do
