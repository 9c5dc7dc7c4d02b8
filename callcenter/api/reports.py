"""Supervisor reports: the per-agent day report (calls, talk time, average handle time,
dispositions) as JSON and as CSV, for one day in UTC."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from crm_bridge import DISPOSITIONS

from .crm import crm_store
from .openapi import Param, operation
from .security import ApiError, requires

_DATE = Param("date", {"type": "string", "format": "date"}, "The day (in tz); default today.")
_TZ = Param("tz", {"type": "string"}, "IANA time zone the day is taken in; default UTC.")
_ROW = {
    "type": "object",
    "required": ["agent", "calls", "answered", "talk_seconds", "average_handle_seconds"],
    "properties": {
        "agent": {"type": "string"},
        "calls": {"type": "integer"},
        "answered": {"type": "integer"},
        "inbound": {"type": "integer"},
        "outbound": {"type": "integer"},
        "talk_seconds": {"type": "number"},
        "average_talk_seconds": {"type": "number"},
        "average_wrap_seconds": {
            "type": "number",
            "description": "after-call work: the call's end to its disposition (at most 1 h)",
        },
        "average_handle_seconds": {"type": "number", "description": "talk + after-call work"},
        "dispositions": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
}
COLUMNS = (
    "agent",
    "calls",
    "answered",
    "inbound",
    "outbound",
    "talk_seconds",
    "average_talk_seconds",
    "average_wrap_seconds",
    "average_handle_seconds",
)


def _day(request: web.Request) -> tuple[date, ZoneInfo]:
    """The report's calendar day and the zone it is a day in (a team in Vladivostok asks for
    its own day, not UTC's: 10 hours apart)."""
    unknown = sorted(set(request.query) - {"date", "tz"})
    if unknown:
        raise ApiError(400, f"unknown parameter {', '.join(unknown)}")
    name = request.query.get("tz", "UTC")
    try:
        tz = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ApiError(400, f"unknown time zone {name!r}") from exc
    text = request.query.get("date")
    if text is None:
        return datetime.now(UTC).astimezone(tz).date(), tz
    try:
        day = date.fromisoformat(text)
    except ValueError as exc:
        raise ApiError(400, f"date must be YYYY-MM-DD, not {text!r}") from exc
    if not 1970 <= day.year <= 9998:
        raise ApiError(400, f"date {text} is outside 1970-9998")
    return day, tz


async def _report(request: web.Request) -> tuple[date, list[dict[str, Any]]]:
    day, tz = _day(request)
    # Midnight to midnight in the zone: 23 or 25 hours on the days clocks change.
    since = datetime.combine(day, time(), tz)
    until = datetime.combine(day + timedelta(days=1), time(), tz)
    rows = await crm_store(request).agent_day_report(since, until)
    return day, rows


@operation(
    summary="Per-agent day report: calls, talk time, average handle time, dispositions",
    tag="reports",
    query=(_DATE, _TZ),
    responses={
        200: {
            "type": "object",
            "required": ["date", "agents"],
            "properties": {
                "date": {"type": "string", "format": "date"},
                "agents": {"type": "array", "items": _ROW},
            },
        }
    },
    errors=(400, 503),
)
@requires("manager", "supervisor")
async def agents_report(request: web.Request) -> web.Response:
    day, rows = await _report(request)
    return web.json_response({"date": day.isoformat(), "agents": rows})


@operation(
    summary="The per-agent day report as CSV (one row per agent, one column per disposition)",
    tag="reports",
    query=(_DATE, _TZ),
    responses={200: None},
    produces="text/csv",
    errors=(400, 503),
)
@requires("manager", "supervisor")
async def agents_report_csv(request: web.Request) -> web.Response:
    day, rows = await _report(request)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*COLUMNS, *DISPOSITIONS])
    for row in rows:
        writer.writerow([*(row[c] for c in COLUMNS),
                         *(row["dispositions"].get(d, 0) for d in DISPOSITIONS)])  # fmt: skip
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="agents-{day.isoformat()}.csv"'},
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/reports/agents", agents_report)
    app.router.add_get("/reports/agents.csv", agents_report_csv)
