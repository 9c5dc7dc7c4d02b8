"""Opening hours of a route, in the office's time zone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pbx.routing import OpeningHours


def test_weekdays_and_saturday_in_the_office_zone() -> None:
    hours = OpeningHours.parse("mon-fri 09:00-18:00, sat 10:00-14:00", "America/New_York")
    # 2026-11-23 is a Monday. 14:00 UTC = 09:00 in New York (EST, UTC-5).
    assert hours.is_open(datetime(2026, 11, 23, 14, 0, tzinfo=UTC))
    assert not hours.is_open(datetime(2026, 11, 23, 13, 59, tzinfo=UTC))
    assert not hours.is_open(datetime(2026, 11, 23, 23, 0, tzinfo=UTC))  # 18:00 closes
    assert hours.is_open(datetime(2026, 11, 28, 15, 0, tzinfo=UTC))  # Saturday 10:00
    assert not hours.is_open(datetime(2026, 11, 29, 15, 0, tzinfo=UTC))  # Sunday


def test_wrapping_day_range_and_midnight() -> None:
    hours = OpeningHours.parse("fri-mon 00:00-24:00")
    assert hours.is_open(datetime(2026, 11, 22, 23, 59, tzinfo=UTC))  # Sunday
    assert not hours.is_open(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))  # Wednesday


@pytest.mark.parametrize(
    ("text", "zone"),
    [("weekdays 9-5", "UTC"), ("mon-fri 18:00-09:00", "UTC"), ("mon 09:00-25:00", "UTC"),
     ("mon 09:00-17:00", "Mars/Olympus")],
)  # fmt: skip
def test_nonsense_is_refused(text: str, zone: str) -> None:
    with pytest.raises(ValueError):
        OpeningHours.parse(text, zone)
