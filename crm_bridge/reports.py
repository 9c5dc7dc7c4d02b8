"""Supervisors' reports from the calls table: each agent's day.

One SQL statement per report, computed in PostgreSQL over the calls the agent handled (the row's
`agent`: the last agent who talked to the customer, or whom the call rang). The day is a
calendar day in the report's time zone, so "today" in Vladivostok is not UTC's.

Handle time follows the usual contact-centre definition: talk time plus after-call work, the
wrap-up between the call's end and the agent's disposition (counted up to `ACW_CAP` seconds,
so a disposition typed the next morning does not make one call last all night).
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

ACW_CAP = 600.0
"""Most seconds of after-call work one call may count."""

_AGENT_DAY = """
WITH day AS (
    SELECT * FROM calls
    WHERE agent IS NOT NULL AND started_at >= $1 AND started_at < $2
      AND ($3::text[] IS NULL OR agent = ANY($3))
      AND ($5::bigint IS NULL OR campaign_id = $5)
), dispositions AS (
    SELECT agent, jsonb_object_agg(disposition, n) AS counts FROM (
        SELECT agent, disposition, count(*) AS n FROM day
        WHERE disposition IS NOT NULL GROUP BY agent, disposition
    ) d GROUP BY agent
)
SELECT d.agent,
       count(*) AS calls,
       count(*) FILTER (WHERE answered_at IS NOT NULL) AS answered,
       count(*) FILTER (WHERE direction = 'inbound') AS inbound,
       count(*) FILTER (WHERE direction = 'outbound') AS outbound,
       count(*) FILTER (WHERE direction = 'internal') AS internal,
       count(*) FILTER (WHERE answered_at IS NULL AND ended_at IS NOT NULL) AS not_answered,
       count(*) FILTER (WHERE campaign_id IS NOT NULL) AS campaign_calls,
       coalesce(sum(talk_seconds) FILTER (WHERE answered_at IS NOT NULL), 0) AS talk_seconds,
       coalesce(sum(least(extract(epoch FROM disposed_at - ended_at), $4))
                FILTER (WHERE disposed_at > ended_at AND answered_at IS NOT NULL), 0)
           AS after_call_seconds,
       coalesce(max(talk_seconds), 0) AS longest_talk_seconds,
       min(started_at) AS first_call_at,
       max(coalesce(ended_at, started_at)) AS last_call_at,
       coalesce(ds.counts, '{}'::jsonb) AS dispositions
FROM day d LEFT JOIN dispositions ds ON ds.agent = d.agent
GROUP BY d.agent, ds.counts
ORDER BY d.agent
"""


@dataclass(frozen=True)
class AgentDay:
    """What one agent did on one day."""

    agent: str
    calls: int
    answered: int
    inbound: int
    outbound: int
    internal: int
    not_answered: int
    """Calls that rang the agent (or that the agent placed) and were never answered."""
    campaign_calls: int
    talk_seconds: float
    after_call_seconds: float
    """Wrap-up until the disposition, per call at most ACW_CAP."""
    longest_talk_seconds: float
    first_call_at: datetime
    last_call_at: datetime
    dispositions: dict[str, int]

    @property
    def average_talk_seconds(self) -> float:
        return self.talk_seconds / self.answered if self.answered else 0.0

    @property
    def average_handle_seconds(self) -> float:
        """(Talk + after-call work) per answered call."""
        return (
            (self.talk_seconds + self.after_call_seconds) / self.answered if self.answered else 0.0
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["first_call_at"] = self.first_call_at.isoformat()
        data["last_call_at"] = self.last_call_at.isoformat()
        for key in ("talk_seconds", "after_call_seconds", "longest_talk_seconds"):
            data[key] = round(data[key], 1)
        data["average_talk_seconds"] = round(self.average_talk_seconds, 1)
        data["average_handle_seconds"] = round(self.average_handle_seconds, 1)
        return data


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The instants `day` starts and ends in `tz` (a day of 23 or 25 hours at a DST change)."""
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return start, end


async def agent_days(
    pool: asyncpg.Pool,
    day: date,
    tz: ZoneInfo,
    *,
    agents: list[str] | None = None,
    campaign_id: int | None = None,
) -> list[AgentDay]:
    """Each agent's `day` (in `tz`), by extension: those of `agents` only, and the calls of
    one campaign only, when given."""
    start, end = day_bounds(day, tz)
    rows = await pool.fetch(_AGENT_DAY, start, end, agents, ACW_CAP, campaign_id)
    result = []
    for row in rows:
        data = dict(row)
        counts = data["dispositions"]
        data["dispositions"] = counts if isinstance(counts, dict) else _json(counts)
        for key in ("talk_seconds", "after_call_seconds", "longest_talk_seconds"):
            data[key] = float(data[key])
        data["first_call_at"] = data["first_call_at"].astimezone(tz)
        data["last_call_at"] = data["last_call_at"].astimezone(tz)
        result.append(AgentDay(**data))
    return result


def _json(text: str) -> dict[str, int]:
    import json

    return {str(k): int(v) for k, v in json.loads(text).items()}


CSV_COLUMNS = (
    *(f.name for f in fields(AgentDay) if f.name != "dispositions"),
    "average_talk_seconds",
    "average_handle_seconds",
    "dispositions",
)


def agent_days_csv(days: list[AgentDay]) -> str:
    """The report as CSV (one row per agent; dispositions as `name=count;...`), for a
    spreadsheet: a header row, RFC 4180 quoting, CRLF line ends."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for entry in days:
        data = entry.to_json()
        data["dispositions"] = ";".join(f"{k}={v}" for k, v in sorted(entry.dispositions.items()))
        writer.writerow([data[c] for c in CSV_COLUMNS])
    return out.getvalue()
