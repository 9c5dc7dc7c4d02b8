"""What may be dialled, and when: calling hours in the lead's local time, do-not-call lists,
consent, and the shortest ring time a campaign may use.

Pure code: the current time comes in as an aware `now_utc`; nothing here reads a clock.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

logger = logging.getLogger(__name__)

MIN_RING_SECONDS = 15.0
"""Shortest time a customer's phone may ring before the dialer gives up: hanging up sooner
leaves people running to a phone that stops ringing (a regulators' complaint)."""


def check_ring_time(seconds: float) -> float:
    """`seconds` if it is a lawful max ring time, else ValueError."""
    if seconds < MIN_RING_SECONDS:
        raise ValueError(f"max ring time {seconds} s is under the minimum {MIN_RING_SECONDS} s")
    return seconds


# -- time zones ------------------------------------------------------------------------------

# Country calling code -> the zone most of its people live in. Longest prefix wins.
_COUNTRY_TZ: Mapping[str, str] = {
    "7": "Europe/Moscow",
    "76": "Asia/Almaty",  # Kazakhstan shares +7
    "77": "Asia/Almaty",
    "20": "Africa/Cairo",
    "27": "Africa/Johannesburg",
    "30": "Europe/Athens",
    "31": "Europe/Amsterdam",
    "32": "Europe/Brussels",
    "33": "Europe/Paris",
    "34": "Europe/Madrid",
    "36": "Europe/Budapest",
    "39": "Europe/Rome",
    "40": "Europe/Bucharest",
    "41": "Europe/Zurich",
    "43": "Europe/Vienna",
    "44": "Europe/London",
    "45": "Europe/Copenhagen",
    "46": "Europe/Stockholm",
    "47": "Europe/Oslo",
    "48": "Europe/Warsaw",
    "49": "Europe/Berlin",
    "51": "America/Lima",
    "52": "America/Mexico_City",
    "54": "America/Argentina/Buenos_Aires",
    "55": "America/Sao_Paulo",
    "56": "America/Santiago",
    "57": "America/Bogota",
    "60": "Asia/Kuala_Lumpur",
    "61": "Australia/Sydney",
    "62": "Asia/Jakarta",
    "63": "Asia/Manila",
    "64": "Pacific/Auckland",
    "65": "Asia/Singapore",
    "66": "Asia/Bangkok",
    "81": "Asia/Tokyo",
    "82": "Asia/Seoul",
    "84": "Asia/Ho_Chi_Minh",
    "86": "Asia/Shanghai",
    "90": "Europe/Istanbul",
    "91": "Asia/Kolkata",
    "92": "Asia/Karachi",
    "351": "Europe/Lisbon",
    "353": "Europe/Dublin",
    "358": "Europe/Helsinki",
    "370": "Europe/Vilnius",
    "371": "Europe/Riga",
    "372": "Europe/Tallinn",
    "375": "Europe/Minsk",
    "380": "Europe/Kyiv",
    "420": "Europe/Prague",
    "971": "Asia/Dubai",
    "972": "Asia/Jerusalem",
}

# North American Numbering Plan: a few big area codes per zone; the rest of +1 is taken as
# Eastern time, where most of the population lives.
_NANP_TZ: Mapping[str, str] = {
    **dict.fromkeys(
        ("201", "202", "212", "215", "305", "404", "617", "646", "718", "917"), "America/New_York"
    ),
    **dict.fromkeys(("416", "437", "514", "613", "647"), "America/Toronto"),
    **dict.fromkeys(("214", "312", "469", "512", "612", "713", "773", "832"), "America/Chicago"),
    **dict.fromkeys(("303", "720", "801"), "America/Denver"),
    **dict.fromkeys(("480", "602"), "America/Phoenix"),
    **dict.fromkeys(
        ("206", "213", "310", "408", "415", "619", "650", "702"), "America/Los_Angeles"
    ),
    **dict.fromkeys(("604", "778"), "America/Vancouver"),
    **dict.fromkeys(("403", "587", "780"), "America/Edmonton"),
    "907": "America/Anchorage",
    "808": "Pacific/Honolulu",
}
_NANP_DEFAULT = "America/New_York"


def timezone_for_number(e164: str) -> str | None:
    """IANA zone of an E.164 number from its country (and NANP area) code; None if unknown."""
    digits = e164.lstrip("+")
    if digits.startswith("1"):
        return _NANP_TZ.get(digits[1:4], _NANP_DEFAULT)
    for size in (3, 2, 1):
        zone = _COUNTRY_TZ.get(digits[:size])
        if zone is not None:
            return zone
    return None


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError naming it when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def is_known_zone(name: str) -> bool:
    try:
        zone(name)
    except ValueError:
        return False
    return True


# -- calling hours ---------------------------------------------------------------------------


def _utc(now_utc: datetime) -> datetime:
    if now_utc.tzinfo is None:
        raise ValueError("now_utc must be timezone-aware")
    return now_utc.astimezone(UTC)


@dataclass(frozen=True)
class CallingHours:
    """When calls are allowed, in the called person's local wall-clock time."""

    start: time = time(9, 0)
    """First allowed local time of a day."""
    end: time = time(21, 0)
    """First local time no longer allowed; earlier than `start` means the hours run past
    midnight (they then belong to the day they start on)."""
    days: frozenset[int] = frozenset(range(1, 8))
    """ISO weekdays (Monday = 1) on which the hours start."""

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise ValueError("calling hours start and end at the same time")
        if not self.days or not self.days <= frozenset(range(1, 8)):
            raise ValueError(f"calling days must be ISO weekdays 1-7: {sorted(self.days)}")

    def allowed(self, now_utc: datetime, tz: str) -> bool:
        """Whether `now_utc` falls within the hours in zone `tz`."""
        local = _utc(now_utc).astimezone(zone(tz))
        wall = local.time().replace(tzinfo=None)
        day = local.isoweekday()
        if self.start < self.end:
            return day in self.days and self.start <= wall < self.end
        if wall >= self.start:
            return day in self.days
        return wall < self.end and (day - 2) % 7 + 1 in self.days

    def next_allowed(self, now_utc: datetime, tz: str) -> datetime:
        """The first instant at or after `now_utc` (UTC) within the hours in zone `tz`."""
        now = _utc(now_utc)
        if self.allowed(now, tz):
            return now
        info = zone(tz)
        today = now.astimezone(info).date()
        for offset in range(9):
            day = today + timedelta(days=offset)
            if day.isoweekday() not in self.days:
                continue
            opening = self._opening(day, info)
            if opening > now and self.allowed(opening, tz):
                return opening
        raise AssertionError("calling hours never open")  # days is never empty

    def _opening(self, day: date, info: ZoneInfo) -> datetime:
        """UTC instant the hours open on local `day`. When the start time does not exist that
        day (the clocks jump over it), they open when the clocks jump."""
        earlier = datetime.combine(day, self.start, info).astimezone(UTC)
        later = datetime.combine(day, self.start, info).replace(fold=1).astimezone(UTC)
        if earlier.astimezone(info).time() == self.start:
            return earlier  # exists (fold=0 is the first of two, when the clocks fall back)
        # In a gap: fold=0 lands after the jump, fold=1 before; find the jump to the second.
        wanted = datetime.combine(day, self.start)
        lo, hi = int(min(earlier, later).timestamp()), int(max(earlier, later).timestamp())
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if datetime.fromtimestamp(mid, info).replace(tzinfo=None) >= wanted:
                hi = mid
            else:
                lo = mid
        return datetime.fromtimestamp(hi, UTC)


# -- do not call -----------------------------------------------------------------------------


@dataclass
class DncList:
    """Numbers never to dial: a global list and one per campaign (E.164)."""

    global_numbers: set[str] = field(default_factory=set)
    """On no campaign's call list."""
    per_campaign: dict[int, set[str]] = field(default_factory=dict)
    """Campaign id -> numbers that campaign must not call."""

    def add(self, phone: str, campaign_id: int | None = None) -> None:
        if campaign_id is None:
            self.global_numbers.add(phone)
        else:
            self.per_campaign.setdefault(campaign_id, set()).add(phone)

    def remove(self, phone: str, campaign_id: int | None = None) -> None:
        if campaign_id is None:
            self.global_numbers.discard(phone)
        else:
            self.per_campaign.get(campaign_id, set()).discard(phone)

    def contains(self, phone: str, campaign_id: int | None = None) -> bool:
        """Whether `phone` is barred globally or, given a campaign, for that campaign."""
        if phone in self.global_numbers:
            return True
        return campaign_id is not None and phone in self.per_campaign.get(campaign_id, ())


@dataclass(frozen=True)
class DncImport:
    """Numbers read from a DNC file."""

    phones: list[str]
    """E.164, in file order, without repeats."""
    errors: list[tuple[int, str]]
    """(line, reason) of every unreadable row."""


_DNC_HEADERS = {"phone", "phone_number", "number", "tel", "telephone", "msisdn"}


def read_dnc_csv(data: bytes | str, *, normalize: Callable[[str], str]) -> DncImport:
    """A DNC file: one number a row, in the first column or a phone column; header optional."""
    text = data.decode("utf-8-sig", errors="replace") if isinstance(data, bytes) else data
    text = text.removeprefix("\ufeff")
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    phones: dict[str, None] = {}
    errors: list[tuple[int, str]] = []
    column = 0
    previous_end = 0
    for row in reader:
        line = previous_end + 1
        previous_end = reader.line_num
        if not row or not any(cell.strip() for cell in row):
            continue
        keys = [cell.strip().lower().replace(" ", "_") for cell in row]
        if line == 1 and _DNC_HEADERS & set(keys):
            column = next(i for i, key in enumerate(keys) if key in _DNC_HEADERS)
            continue
        raw = row[column] if column < len(row) else ""
        if "\ufffd" in raw:
            errors.append((line, "not valid UTF-8"))
            continue
        try:
            phones[normalize(raw)] = None
        except ValueError as exc:
            errors.append((line, str(exc) or "not a phone number"))
    return DncImport(list(phones), errors)


def write_dnc_csv(phones: Iterable[str]) -> str:
    """A DNC file `read_dnc_csv` reads back: a `phone` header, one number a line."""
    return "phone\n" + "".join(f"{phone}\n" for phone in phones)


# -- the whole check -------------------------------------------------------------------------


class Callee(Protocol):
    """What the checks need of a lead."""

    @property
    def phone(self) -> str: ...
    @property
    def tz(self) -> str | None: ...
    @property
    def consent(self) -> bool | None: ...


class CampaignRules(Protocol):
    """What the checks need of a campaign (dialer.model.Campaign has it)."""

    @property
    def id(self) -> int | None: ...
    @property
    def window_start(self) -> time: ...
    @property
    def window_end(self) -> time: ...
    @property
    def window_days(self) -> tuple[int, ...]: ...
    @property
    def tz_default(self) -> str: ...


OUTSIDE_HOURS = "outside-hours"
ON_DNC = "dnc"
NO_CONSENT = "no-consent"


@dataclass(frozen=True)
class Compliance:
    """The checks made for one campaign right before each INVITE (the store filters too: this
    is the last word)."""

    hours: CallingHours
    """The campaign's calling hours."""
    dnc: DncList
    """Do-not-call numbers (global and per campaign)."""
    campaign_id: int | None = None
    """Campaign whose own DNC list applies."""
    default_tz: str = "UTC"
    """Zone of leads without one."""

    @classmethod
    def for_campaign(cls, campaign: CampaignRules, dnc: DncList) -> Compliance:
        hours = CallingHours(
            campaign.window_start, campaign.window_end, frozenset(campaign.window_days)
        )
        return cls(hours, dnc, campaign.id, campaign.tz_default)

    def refusal(self, now_utc: datetime, lead: Callee) -> str | None:
        """Why `lead` must not be dialled at `now_utc` (dnc, no-consent, outside-hours), or
        None when it may."""
        if self.dnc.contains(lead.phone, self.campaign_id):
            return ON_DNC
        if lead.consent is False:
            return NO_CONSENT
        if not self.hours.allowed(now_utc, lead.tz or self.default_tz):
            return OUTSIDE_HOURS
        return None

    def allowed(self, now_utc: datetime, lead: Callee) -> bool:
        return self.refusal(now_utc, lead) is None

    def next_allowed(self, now_utc: datetime, lead: Callee) -> datetime | None:
        """First instant `lead` may be dialled; None if never (DNC, no consent)."""
        if self.dnc.contains(lead.phone, self.campaign_id) or lead.consent is False:
            return None
        return self.hours.next_allowed(now_utc, lead.tz or self.default_tz)
