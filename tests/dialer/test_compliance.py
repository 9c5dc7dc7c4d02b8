"""Calling hours in the lead's zone (DST, midnight), time zones from numbers, DNC, ring time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import partial
from zoneinfo import ZoneInfo

import phonenumbers
import phonenumbers.timezone
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_bridge import normalize_phone
from dialer import (
    MIN_RING_SECONDS,
    CallingHours,
    Campaign,
    Compliance,
    DncList,
    check_ring_time,
    read_dnc_csv,
    timezone_for_number,
    write_dnc_csv,
)

NY = "America/New_York"


@dataclass(frozen=True)
class Person:
    phone: str
    tz: str | None = NY
    consent: bool | None = None


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(tz: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(tz)).astimezone(UTC)  # type: ignore[misc]


# Russia's and North America's zones by area code (issue 16: Vladivostok +7 423 was taken for
# Moscow, Sacramento +1 916 for New York). Expected values are libphonenumber's.
ZONE_TABLE = [
    ("+74951234567", "Europe/Moscow"),  # Moscow
    ("+78122345678", "Europe/Moscow"),  # St Petersburg
    ("+74012123456", "Europe/Bucharest"),  # Kaliningrad (UTC+2, libphonenumber's alias)
    ("+78462123456", "Europe/Samara"),  # Samara
    ("+73432123456", "Asia/Yekaterinburg"),  # Yekaterinburg
    ("+73812123456", "Asia/Omsk"),  # Omsk
    ("+73832123456", "Asia/Novosibirsk"),  # Novosibirsk
    ("+73912123456", "Asia/Krasnoyarsk"),  # Krasnoyarsk
    ("+73952123456", "Asia/Irkutsk"),  # Irkutsk
    ("+74112123456", "Asia/Yakutsk"),  # Yakutsk
    ("+74232123456", "Asia/Vladivostok"),  # Vladivostok
    ("+74132123456", "Asia/Magadan"),  # Magadan
    ("+74152123456", "Asia/Kamchatka"),  # Petropavlovsk-Kamchatsky
    ("+12125550123", "America/New_York"),
    ("+13125550123", "America/Chicago"),
    ("+13035550123", "America/Denver"),
    ("+16025550123", "America/Phoenix"),  # Arizona: no DST
    ("+19165550123", "America/Los_Angeles"),  # Sacramento
    ("+14155550123", "America/Los_Angeles"),
    ("+18085550123", "Pacific/Honolulu"),
    ("+14165550123", "America/Toronto"),
    ("+15145550123", "America/Toronto"),  # Montreal
    ("+16045550123", "America/Vancouver"),
    ("+14035550123", "America/Edmonton"),
    ("+13065550123", "America/Regina"),  # Saskatchewan: no DST
    ("+19025550123", "America/Halifax"),
    ("+17095550123", "America/Halifax,America/St_Johns"),  # Labrador and Newfoundland
    ("+19075550123", "America/Adak,America/Anchorage"),  # Alaska: two zones, one hour apart
    ("+79151234567", None),  # a Russian mobile may be anywhere from UTC+2 to UTC+12
    ("+19995550123", None),  # no such area code: no guess
    ("+442079460958", "Europe/London"),
]


@pytest.mark.parametrize(("number", "zone"), ZONE_TABLE)
def test_zone_from_number_agrees_with_phonenumbers(number: str, zone: str | None) -> None:
    assert timezone_for_number(number) == zone
    parsed = phonenumbers.parse(number)
    listed = phonenumbers.timezone.time_zones_for_number(parsed)
    if zone is not None:
        assert tuple(zone.split(",")) == listed
        for name in zone.split(","):
            ZoneInfo(name)  # every zone exists here too


@pytest.mark.parametrize(
    ("number", "moscow_hour", "allowed"),
    [
        ("+74232123456", 4, True),  # 11:00 in Vladivostok
        ("+74232123456", 14, False),  # 21:00 in Vladivostok: closed (it used to dial till 04:00)
        ("+74951234567", 14, True),
        ("+74951234567", 4, False),
    ],
)
def test_calling_hours_from_the_number(number: str, moscow_hour: int, allowed: bool) -> None:
    now = local("Europe/Moscow", 2026, 3, 10, moscow_hour, 0)
    tz = timezone_for_number(number)
    assert tz is not None and HOURS.allowed(now, tz) is allowed


def test_sacramento_keeps_pacific_hours() -> None:
    tz = timezone_for_number("+19165550123")
    assert tz == "America/Los_Angeles"
    at_nine_new_york = local("America/New_York", 2026, 3, 10, 9, 0)  # 06:00 in Sacramento
    assert not HOURS.allowed(at_nine_new_york, tz)
    assert HOURS.next_allowed(at_nine_new_york, tz) == local(tz, 2026, 3, 10, 9, 0)


def test_a_number_spanning_zones_gets_the_narrowest_window() -> None:
    tz = "America/Adak,America/Anchorage"  # UTC-10 and UTC-9 in winter
    nine_anchorage = local("America/Anchorage", 2026, 1, 12, 9, 0)  # 08:00 in Adak
    assert not HOURS.allowed(nine_anchorage, tz)
    assert HOURS.next_allowed(nine_anchorage, tz) == local("America/Adak", 2026, 1, 12, 9, 0)
    late = local("America/Adak", 2026, 1, 12, 20, 30)  # 21:30 in Anchorage
    assert not HOURS.allowed(late, tz)
    assert HOURS.allowed(local("America/Adak", 2026, 1, 12, 19, 30), tz)
    mornings = CallingHours(time(9), time(12))
    with pytest.raises(ValueError, match="never meet"):  # 06-09 UTC and 23-02 UTC
        mornings.next_allowed(nine_anchorage, "Europe/Moscow,Asia/Vladivostok")


HOURS = CallingHours(time(9), time(21))


def test_window_is_in_the_leads_own_zone() -> None:
    noon_utc = utc(2024, 6, 12, 12)  # 08:00 in New York, 13:00 in London, 21:00 in Tokyo
    assert not HOURS.allowed(noon_utc, NY)
    assert HOURS.allowed(noon_utc, "Europe/London")
    assert not HOURS.allowed(noon_utc, "Asia/Tokyo")  # end is exclusive
    assert HOURS.allowed(noon_utc - timedelta(seconds=1), "Asia/Tokyo")
    assert HOURS.next_allowed(noon_utc, NY) == local(NY, 2024, 6, 12, 9)
    assert HOURS.next_allowed(noon_utc, "Asia/Tokyo") == local("Asia/Tokyo", 2024, 6, 13, 9)
    assert HOURS.next_allowed(noon_utc, "Europe/London") == noon_utc


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError):
        HOURS.allowed(datetime(2024, 6, 12, 12), NY)


def test_spring_forward_opens_at_9_local_daylight_time() -> None:
    # 2024-03-10: New York skips 02:00-03:00; 09:00 EDT is 13:00 UTC (not 14:00 as the day
    # before).
    assert HOURS.next_allowed(utc(2024, 3, 10, 2, 30), NY) == utc(2024, 3, 10, 13)
    assert not HOURS.allowed(utc(2024, 3, 10, 12, 59, 59), NY)
    assert HOURS.allowed(utc(2024, 3, 10, 13), NY)
    assert HOURS.allowed(utc(2024, 3, 9, 14), NY)
    assert not HOURS.allowed(utc(2024, 3, 9, 13, 30), NY)


def test_fall_back_closes_at_21_local_standard_time() -> None:
    # 2024-11-03: back to EST; 21:00 EST is 02:00 UTC the next day.
    assert HOURS.allowed(utc(2024, 11, 4, 1, 59), NY)
    assert not HOURS.allowed(utc(2024, 11, 4, 2), NY)
    assert HOURS.next_allowed(utc(2024, 11, 4, 2), NY) == utc(2024, 11, 4, 14)


def test_start_inside_the_skipped_hour_opens_when_the_clocks_jump() -> None:
    night = CallingHours(time(2, 30), time(5))
    # 02:30 does not exist on 2024-03-10 in New York: the first allowed instant is 03:00 EDT.
    opening = night.next_allowed(utc(2024, 3, 10, 5), NY)
    assert opening == utc(2024, 3, 10, 7)
    assert night.allowed(opening, NY)
    assert not night.allowed(opening - timedelta(seconds=1), NY)


def test_start_inside_the_repeated_hour_opens_at_the_first() -> None:
    night = CallingHours(time(1, 30), time(5))
    # 01:30 happens twice on 2024-11-03; the first is EDT (05:30 UTC).
    assert night.next_allowed(utc(2024, 11, 3, 4), NY) == utc(2024, 11, 3, 5, 30)


def test_hours_past_midnight_and_days_of_week() -> None:
    late = CallingHours(time(22), time(2), frozenset({5}))  # Friday night only
    tokyo = "Asia/Tokyo"
    assert late.allowed(local(tokyo, 2024, 6, 14, 23), tokyo)  # Friday 23:00
    assert late.allowed(local(tokyo, 2024, 6, 15, 1, 59), tokyo)  # Saturday 01:59: Friday's
    assert not late.allowed(local(tokyo, 2024, 6, 15, 2), tokyo)
    assert not late.allowed(local(tokyo, 2024, 6, 15, 23), tokyo)  # Saturday night
    assert not late.allowed(local(tokyo, 2024, 6, 14, 1), tokyo)  # Thursday's night
    assert late.next_allowed(local(tokyo, 2024, 6, 15, 3), tokyo) == local(tokyo, 2024, 6, 21, 22)


def test_weekdays_only_skips_the_weekend() -> None:
    weekdays = CallingHours(time(9), time(17), frozenset(range(1, 6)))
    friday_evening = local("Europe/Berlin", 2024, 6, 14, 18)
    assert weekdays.next_allowed(friday_evening, "Europe/Berlin") == local(
        "Europe/Berlin", 2024, 6, 17, 9
    )


_zones = st.sampled_from(
    [NY, "Europe/London", "Australia/Sydney", "Asia/Kolkata", "America/Santiago", "Pacific/Apia"]
)


@given(
    hours_args=st.tuples(
        st.integers(0, 23), st.integers(0, 59), st.integers(0, 23), st.integers(0, 59)
    ).filter(lambda a: a[:2] != a[2:]),
    days=st.frozensets(st.integers(1, 7), min_size=1),
    zone=_zones,
    now=st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1), timezones=st.just(UTC)),
)
def test_next_allowed_is_allowed_and_nothing_earlier_is(
    hours_args: tuple[int, int, int, int], days: frozenset[int], zone: str, now: datetime
) -> None:
    sh, sm, eh, em = hours_args
    hours = CallingHours(time(sh, sm), time(eh, em), days)
    first = hours.next_allowed(now, zone)
    assert first >= now
    assert hours.allowed(first, zone)
    if first > now:
        # Sampled instants before it are all outside (never dial outside, never wait longer
        # than needed): check the second before and a spread of earlier instants.
        assert not hours.allowed(first - timedelta(seconds=1), zone)
        span = first - now
        for k in range(1, 20):
            assert not hours.allowed(now + span * k / 20 - timedelta(seconds=1), zone)


def test_dnc_global_and_per_campaign() -> None:
    dnc = DncList()
    dnc.add("+442079460958")
    dnc.add("+442079460959", campaign_id=7)
    assert dnc.contains("+442079460958")
    assert dnc.contains("+442079460958", 3)
    assert dnc.contains("+442079460959", 7)
    assert not dnc.contains("+442079460959", 3)
    assert not dnc.contains("+442079460959")
    dnc.remove("+442079460959", 7)
    assert not dnc.contains("+442079460959", 7)


def test_compliance_refuses_dnc_no_consent_and_outside_hours() -> None:
    campaign = Campaign("spring", id=7, tz_default="Europe/London")
    dnc = DncList({"+12125550100"}, {7: {"+12125550101"}})
    rules = Compliance.for_campaign(campaign, dnc)
    day = utc(2024, 6, 12, 15)  # 11:00 in New York
    night = utc(2024, 6, 12, 5)  # 01:00 in New York
    assert rules.refusal(day, Person("+12125550100")) == "dnc"
    assert rules.refusal(day, Person("+12125550101")) == "dnc"
    assert rules.refusal(day, Person("+12125550102", consent=False)) == "no-consent"
    assert rules.refusal(night, Person("+12125550102")) == "outside-hours"
    assert rules.allowed(day, Person("+12125550102", consent=True))
    assert rules.next_allowed(day, Person("+12125550100")) is None
    assert rules.next_allowed(night, Person("+12125550102")) == utc(2024, 6, 12, 13)
    # No zone: the campaign's default.
    assert rules.next_allowed(night, Person("+12125550102", tz=None)) == utc(2024, 6, 12, 8)


def test_dnc_files_round_trip_and_report_bad_lines() -> None:
    normalize = partial(normalize_phone, default_country_code="1")
    data = "\ufeffNumber;note\n+1 212 555 0100;x\n(212) 555-0101\nnot a number\n\n+12125550100\n"
    read = read_dnc_csv(data.encode(), normalize=normalize)
    assert read.phones == ["+12125550100", "+12125550101"]
    assert [line for line, _ in read.errors] == [4]
    again = read_dnc_csv(write_dnc_csv(read.phones), normalize=normalize)
    assert again.phones == read.phones and again.errors == []
    headless = read_dnc_csv("+12125550100\n+12125550102\n", normalize=normalize)
    assert headless.phones == ["+12125550100", "+12125550102"]


def test_ring_time_never_under_15_seconds() -> None:
    assert MIN_RING_SECONDS == 15
    assert check_ring_time(15) == 15
    with pytest.raises(ValueError):
        check_ring_time(14.9)
