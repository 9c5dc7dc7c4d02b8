"""The abandon ledger: live answers and abandoned calls per campaign, against the abandon cap.

An abandoned call is a live (human) answer that was not connected to an agent within 2 seconds,
or was connected to no one. The abandon rate is abandons / live answers, and a campaign must
keep it at or under its cap (3% by default) both over a rolling window (30 days by default) and
within the campaign's local calendar day.

Pure code: time comes in as `now` (POSIX seconds); the local day is computed from `now` in the
campaign's time zone. The rolling window is kept in fixed buckets (one hour by default), so its
trailing edge is exact to one bucket: 30 days of answers cost at most 720 small entries. The
state round-trips through `to_dict` / `from_dict` (plain JSON types) to be persisted.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

logger = logging.getLogger(__name__)

__all__ = ["CONNECT_DEADLINE", "AbandonLedger", "AbandonPolicy"]

CONNECT_DEADLINE = 2.0
"""Seconds after a live answer within which an agent must be connected, else it is abandoned."""

_DAY = 86400.0
_STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class AbandonPolicy:
    """How a campaign's abandon rate is measured and capped."""

    cap: float = 0.03
    """Highest allowed abandons / live answers, both over the window and within a day."""

    window_seconds: float = 30 * _DAY
    """Length of the rolling window (30 days by default)."""

    tz: str = "UTC"
    """IANA time zone whose calendar day bounds the per-day rate (the campaign's local time)."""

    bucket_seconds: float = 3600.0
    """Granularity of the rolling window; its trailing edge is exact to one bucket."""

    connect_deadline: float = CONNECT_DEADLINE
    """A live answer not connected to an agent within this many seconds is an abandon."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.cap <= 1.0:
            raise ValueError(f"abandon cap must be within 0..1, got {self.cap}")
        if self.window_seconds <= 0 or self.bucket_seconds <= 0:
            raise ValueError("window and bucket lengths must be positive")
        ZoneInfo(self.tz)  # fail early on an unknown zone name


@dataclass(slots=True)
class _Counts:
    answers: int = 0
    abandons: int = 0


class AbandonLedger:
    """Live answers and abandons of one campaign, per rolling window and per local day."""

    def __init__(self, policy: AbandonPolicy | None = None) -> None:
        self.policy = policy or AbandonPolicy()
        self._zone = ZoneInfo(self.policy.tz)
        self._buckets: dict[int, _Counts] = {}
        self._days: dict[date, _Counts] = {}
        self.peers: tuple[AbandonLedger, ...] = ()
        """The same campaign's ledgers on the other engine nodes (as last read from the
        database): the rates count their answers too, so the cap holds for the campaign, not
        per node. Only this node's own entries are recorded and saved."""

    # -- recording -------------------------------------------------------------------------------

    def record_answer(self, *, now: float, connect_delay: float | None) -> bool:
        """Record one live answer at `now`; `connect_delay` is the seconds until an agent was
        connected, None if no agent ever was. Returns True when it counts as abandoned."""
        abandoned = connect_delay is None or connect_delay > self.policy.connect_deadline
        self.record_live_answer(now=now, abandoned=abandoned)
        return abandoned

    def record_live_answer(self, *, now: float, abandoned: bool = False) -> None:
        """Record one live answer at `now`, abandoned or not (an abandon is also a live answer)."""
        key = self._bucket(now)
        if key not in self._buckets:
            self._buckets[key] = _Counts()
            self._prune(now)
        bucket = self._buckets[key]
        day = self._days.setdefault(self.local_day(now), _Counts())
        for counts in (bucket, day):
            counts.answers += 1
            counts.abandons += abandoned
        if abandoned:
            logger.info("abandon recorded at %.1f (day %s)", now, self.local_day(now))

    # -- reading ---------------------------------------------------------------------------------

    def local_day(self, now: float) -> date:
        """The campaign's local calendar day at `now`."""
        return datetime.fromtimestamp(now, self._zone).date()

    def window_counts(self, now: float) -> tuple[int, int]:
        """(live answers, abandons) within the rolling window ending at `now`, peers included."""
        answers, abandons = self._own_window(now)
        for peer in self.peers:
            more = peer._own_window(now)
            answers, abandons = answers + more[0], abandons + more[1]
        return answers, abandons

    def day_counts(self, now: float) -> tuple[int, int]:
        """(live answers, abandons) within the campaign's local day of `now`, peers included."""
        answers = abandons = 0
        day = self.local_day(now)
        for ledger in (self, *self.peers):
            counts = ledger._days.get(day)
            if counts is not None:
                answers, abandons = answers + counts.answers, abandons + counts.abandons
        return answers, abandons

    def _own_window(self, now: float) -> tuple[int, int]:
        first = self._bucket(now - self.policy.window_seconds) + 1
        last = self._bucket(now)
        answers = abandons = 0
        for key, counts in self._buckets.items():
            if first <= key <= last:
                answers += counts.answers
                abandons += counts.abandons
        return answers, abandons

    def window_rate(self, now: float, *, min_answers: int = 0) -> float:
        """Abandon rate over the rolling window; the denominator is at least `min_answers`."""
        return _rate(*self.window_counts(now), min_answers)

    def day_rate(self, now: float, *, min_answers: int = 0) -> float:
        """Abandon rate within the local day; the denominator is at least `min_answers`."""
        return _rate(*self.day_counts(now), min_answers)

    def rate(self, now: float, *, min_answers: int = 0) -> float:
        """The binding abandon rate: the higher of the window and day rates.

        `min_answers` keeps a handful of early answers from reading as a huge rate (one abandon
        in the first ten answers of a day is 10% now, but the day's rate is judged at its end).
        """
        return max(
            self.window_rate(now, min_answers=min_answers),
            self.day_rate(now, min_answers=min_answers),
        )

    def headroom(self, now: float, expected_answers: int = 0) -> int:
        """How many more abandons are allowed, in the window and in the day, before the rate
        passes the cap, given `expected_answers` more live answers to come. Never negative."""
        cap = self.policy.cap
        allowed = []
        for answers, abandons in (self.window_counts(now), self.day_counts(now)):
            # The epsilon keeps 0.03 * 100 from flooring to 2.
            allowed.append(math.floor(cap * (answers + expected_answers) + 1e-9) - abandons)
        return max(0, min(allowed))

    def over_cap(self, now: float) -> bool:
        """True when the window or the day rate is above the cap."""
        return self.rate(now) > self.policy.cap

    # -- persistence -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """State as plain JSON types (the policy is configuration and is not included)."""
        return {
            "version": _STATE_VERSION,
            "bucket_seconds": self.policy.bucket_seconds,
            "buckets": [[k, c.answers, c.abandons] for k, c in sorted(self._buckets.items())],
            "days": [[d.isoformat(), c.answers, c.abandons] for d, c in sorted(self._days.items())],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], policy: AbandonPolicy | None = None) -> AbandonLedger:
        """Rebuild a ledger saved by `to_dict`, under `policy`."""
        if data.get("version") != _STATE_VERSION:
            raise ValueError(f"unknown ledger state version {data.get('version')!r}")
        ledger = cls(policy)
        if float(data["bucket_seconds"]) != ledger.policy.bucket_seconds:
            raise ValueError("ledger state was saved with another bucket length")
        for key, answers, abandons in data["buckets"]:
            ledger._buckets[int(key)] = _Counts(int(answers), int(abandons))
        for day, answers, abandons in data["days"]:
            ledger._days[date.fromisoformat(day)] = _Counts(int(answers), int(abandons))
        return ledger

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AbandonLedger):
            return NotImplemented
        return (self.policy, self._buckets, self._days) == (
            other.policy,
            other._buckets,
            other._days,
        )

    __hash__ = None  # type: ignore[assignment]

    # -- internals -------------------------------------------------------------------------------

    def _bucket(self, now: float) -> int:
        return math.floor(now / self.policy.bucket_seconds)

    def _prune(self, now: float) -> None:
        oldest = self._bucket(now - self.policy.window_seconds)
        for key in [k for k in self._buckets if k <= oldest]:
            del self._buckets[key]
        # Days older than the window can no longer be asked about with a current `now`.
        first_day = datetime.fromtimestamp(now - self.policy.window_seconds - _DAY, UTC).date()
        for day in [d for d in self._days if d < first_day]:
            del self._days[day]


def _rate(answers: int, abandons: int, min_answers: int) -> float:
    denominator = max(answers, min_answers)
    return abandons / denominator if denominator else 0.0
