"""Each agent's day, computed by PostgreSQL from calls rows: counts by direction, talk time,
after-call work until the disposition (capped), average handle time, dispositions, and the day
taken in the report's time zone."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from crm_bridge.reports import ACW_CAP, agent_days, agent_days_csv, day_bounds

VLADIVOSTOK = ZoneInfo("Asia/Vladivostok")  # UTC+10
DAY = date(2026, 12, 7)


async def _call(pool: asyncpg.Pool, agent: str, start: datetime, *, talk: float | None,
                direction: str = "inbound", disposition: str | None = None,
                acw: float | None = None, campaign: int | None = None) -> None:  # fmt: skip
    answered = start + timedelta(seconds=5) if talk is not None else None
    ended = (
        (answered + timedelta(seconds=talk))
        if answered is not None and talk is not None
        else (start + timedelta(seconds=20))
    )
    disposed = ended + timedelta(seconds=acw) if acw is not None else None
    outcome = "answered" if talk is not None else "missed"
    await pool.execute(
        "INSERT INTO calls (call_id, direction, from_number, to_number, started_at, answered_at,"
        " ended_at, outcome, agent, disposition, disposed_at, campaign_id)"
        " VALUES ($1, $2, '+12025550100', '+12025550199', $3, $4, $5, $6, $7, $8, $9, $10)",
        f"{agent}-{start.timestamp()}", direction, start, answered, ended, outcome, agent,
        disposition, disposed, campaign,
    )  # fmt: skip


async def test_each_agents_day_in_the_reports_time_zone(pool: asyncpg.Pool) -> None:
    start, end = day_bounds(DAY, VLADIVOSTOK)
    assert start.utcoffset() == timedelta(hours=10) and end - start == timedelta(days=1)
    morning = start + timedelta(hours=9)
    await _call(pool, "101", morning, talk=60, disposition="sale", acw=30)
    await _call(pool, "101", morning + timedelta(hours=1), talk=120, direction="outbound",
                disposition="callback", acw=ACW_CAP * 10, campaign=7)  # fmt: skip
    await _call(pool, "101", morning + timedelta(hours=2), talk=None)  # rang, never answered
    await _call(pool, "101", morning + timedelta(hours=3), talk=30, disposition="sale", acw=10)
    await _call(pool, "102", morning, talk=300, direction="internal")
    # 23:30 the day before in Vladivostok (13:30 UTC on DAY): not this day's.
    await _call(pool, "101", start - timedelta(minutes=30), talk=999)
    # 00:10 the next day in Vladivostok.
    await _call(pool, "102", end + timedelta(minutes=10), talk=999)

    days = {d.agent: d for d in await agent_days(pool, DAY, VLADIVOSTOK)}
    assert sorted(days) == ["101", "102"]
    a = days["101"]
    assert (a.calls, a.answered, a.not_answered, a.inbound, a.outbound) == (4, 3, 1, 3, 1)
    assert a.campaign_calls == 1 and a.talk_seconds == 210 and a.longest_talk_seconds == 120
    assert a.after_call_seconds == 30 + ACW_CAP + 10  # the late disposition counts ACW_CAP
    assert a.average_handle_seconds == (210 + 30 + ACW_CAP + 10) / 3
    assert a.dispositions == {"sale": 2, "callback": 1}
    assert a.first_call_at == morning and a.first_call_at.tzinfo is VLADIVOSTOK
    b = days["102"]
    assert (b.calls, b.internal, b.talk_seconds, b.dispositions) == (1, 1, 300, {})
    assert b.average_handle_seconds == 300
    only = await agent_days(pool, DAY, VLADIVOSTOK, agents=["102"])
    assert [d.agent for d in only] == ["102"]
    (campaign,) = await agent_days(pool, DAY, VLADIVOSTOK, campaign_id=7)
    assert (campaign.agent, campaign.calls, campaign.talk_seconds) == ("101", 1, 120)
    # DAY in UTC starts ten hours later: 101's first call (23:00 UTC the day before) and 102's
    # morning call fall out of it, 102's call after Vladivostok's midnight falls in.
    utc = {d.agent: d for d in await agent_days(pool, DAY, ZoneInfo("UTC"))}
    assert utc["101"].talk_seconds == 120 + 30 and utc["102"].talk_seconds == 999

    rows = list(csv.DictReader(io.StringIO(agent_days_csv(list(days.values())))))
    assert [r["agent"] for r in rows] == ["101", "102"]
    assert rows[0]["dispositions"] == "callback=1;sale=2"
    assert float(rows[0]["average_handle_seconds"]) == round(a.average_handle_seconds, 1)
    assert rows[1]["calls"] == "1" and rows[1]["dispositions"] == ""


async def test_a_day_without_calls_is_an_empty_report(pool: asyncpg.Pool) -> None:
    assert await agent_days(pool, DAY, VLADIVOSTOK) == []
    assert await agent_days(pool, DAY, VLADIVOSTOK, campaign_id=7) == []
    assert agent_days_csv([]).splitlines()[0].startswith("agent,calls,answered")
