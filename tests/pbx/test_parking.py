"""The parking lot (pbx.parking, pure): slots in order, one per call, retrieval codes, the
in-call #72 and the announcement."""

from __future__ import annotations

from pbx.forwarding import parse_forward_code
from pbx.parking import FeatureDigits, ParkingLot, announcement
from pbx.pickup import parse_pickup


def test_slots_are_taken_in_order_and_freed() -> None:
    lot = ParkingLot(first=701, count=2)
    assert lot.park("a") == "701" and lot.park("b") == "702"
    assert lot.park("c") is None  # full
    assert lot.park("a") is None  # parked already
    assert lot.take("701") == "a" and lot.take("701") is None
    assert lot.park("c") == "701"
    lot.leave("b")
    assert lot.parked() == {"701": "c"}


def test_retrieval_codes() -> None:
    lot = ParkingLot()
    assert lot.retrieval("*71701") == "701" and lot.retrieval("701") == "701"
    assert lot.retrieval("*71720") == "720"
    for other in ("*71721", "721", "*71", "*7170", "101", "*78"):
        assert lot.retrieval(other) is None
    # *71 is neither a forwarding code nor a pickup.
    assert parse_forward_code("*71701") is None and parse_pickup("*71701") is None


def test_hash_72_typed_in_time_parks_once() -> None:
    keys = FeatureDigits()
    assert [keys.feed(d, t) for d, t in (("#", 0.0), ("7", 0.5), ("2", 1.0))] == [
        False, False, True,
    ]  # fmt: skip
    assert not keys.feed("2", 1.2)  # the code starts over once matched
    # A key after more than DIGIT_GAP seconds starts again; digits before the # do not matter.
    assert [keys.feed(d, t) for d, t in (("#", 5.0), ("7", 8.0), ("2", 8.5))] == [False] * 3
    assert [keys.feed(d, t) for d, t in (("1", 9.0), ("#", 9.1), ("7", 9.2), ("2", 9.3))] == [
        False, False, False, True,
    ]  # fmt: skip


def test_the_announcement_says_the_slot_digit_by_digit() -> None:
    assert announcement("701") == "Parked on 7 0 1"
