"""What may be dialled, and when: calling hours in the lead's local time, do-not-call lists,
consent, and the shortest ring time a campaign may use.

Pure code: the current time comes in as an aware `now_utc`; nothing here reads a clock.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
import phonenumbers.timezone

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

MAX_ZONE_SPREAD = timedelta(hours=3)
"""Widest spread of UTC offsets across a number's zones that still gets the narrowest common
window; a wider one (a Russian mobile spans UTC+2 to UTC+12, whose 9-21 windows never meet)
makes the zone unknown, so the lead's own `tz` or the campaign's zone decides."""
_UNKNOWN_ZONE = "Etc/Unknown"
_SPREAD_REFERENCE = (datetime(2026, 1, 15, 12, tzinfo=UTC), datetime(2026, 7, 15, 12, tzinfo=UTC))


def zones_for_number(e164: str) -> tuple[str, ...]:
    """Every IANA zone the number may ring in, by libphonenumber's geographic data (the area
    code: Vladivostok's +7 423 is Asia/Vladivostok, Sacramento's +1 916 America/Los_Angeles);
    () when unknown."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return ()
    zones = phonenumbers.timezone.time_zones_for_number(number)
    return tuple(z for z in zones if z != _UNKNOWN_ZONE and is_known_zone(z))


def timezone_for_number(e164: str) -> str | None:
    """The lead zone of a number: one IANA zone, or several joined with "," when the number
    spans zones within MAX_ZONE_SPREAD (calls then keep to the narrowest window, the hours
    that are allowed in every one of them); None when unknown or spread wider."""
    zones = zones_for_number(e164)
    if not zones:
        return None
    offsets = [
        at.astimezone(ZoneInfo(z)).utcoffset() or timedelta(0)
        for z in zones
        for at in _SPREAD_REFERENCE
    ]
    if max(offsets) - min(offsets) > MAX_ZONE_SPREAD:
        return None
    return ",".join(zones)


def zones(tz: str) -> list[ZoneInfo]:
    """The zones of a lead's `tz` (one name, or several joined with ","); ValueError naming an
    unknown one."""
    return [zone(name.strip()) for name in tz.split(",")]


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError naming it when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def is_known_zone(name: str) -> bool:
    """Whether `name` (one zone or several joined with ",") names only known zones."""
    try:
        zones(name)
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
        """Whether `now_utc` falls within the hours in zone `tz` (in every zone of a
        ","-joined list: the narrowest window)."""
        return all(self._allowed_in(now_utc, info) for info in zones(tz))

    def _allowed_in(self, now_utc: datetime, info: ZoneInfo) -> bool:
        local = _utc(now_utc).astimezone(info)
        wall = local.time().replace(tzinfo=None)
        day = local.isoweekday()
        if self.start < self.end:
            return day in self.days and self.start <= wall < self.end
        if wall >= self.start:
            return day in self.days
        return wall < self.end and (day - 2) % 7 + 1 in self.days

    def next_allowed(self, now_utc: datetime, tz: str) -> datetime:
        """The first instant at or after `now_utc` (UTC) within the hours in zone `tz` (in
        every zone of a ","-joined list). ValueError when the zones' hours never meet."""
        now = _utc(now_utc)
        if self.allowed(now, tz):
            return now
        # The common window opens when the last of the zones' windows opens.
        openings = []
        for info in zones(tz):
            today = now.astimezone(info).date()
            for offset in range(9):
                day = today + timedelta(days=offset)
                if day.isoweekday() in self.days:
                    opening = self._opening(day, info)
                    if opening > now:
                        openings.append(opening)
        for opening in sorted(openings):
            if self.allowed(opening, tz):
                return opening
        raise ValueError(f"the calling hours of {tz} never meet")

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
        try:
            return self.hours.next_allowed(now_utc, lead.tz or self.default_tz)
        except ValueError:  # the zones' hours never meet
            return None
