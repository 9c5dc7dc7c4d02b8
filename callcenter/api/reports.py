"""Supervisors' reports: each agent's day (calls, talk time, average handle time,
dispositions), as JSON or as a CSV file for a spreadsheet."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from crm_bridge.reports import agent_days, agent_days_csv

from .crm import ENGINE
from .openapi import Param, operation
from .security import ApiError, requires

AGENT_DAY = {
    "type": "object",
    "properties": {
        "agent": {"type": "string"},
        "calls": {"type": "integer"},
        "answered": {"type": "integer"},
        "inbound": {"type": "integer"},
        "outbound": {"type": "integer"},
        "internal": {"type": "integer"},
        "not_answered": {"type": "integer"},
        "campaign_calls": {"type": "integer"},
        "talk_seconds": {"type": "number"},
        "after_call_seconds": {"type": "number"},
        "longest_talk_seconds": {"type": "number"},
        "average_talk_seconds": {"type": "number"},
        "average_handle_seconds": {
            "type": "number",
            "description": "(talk + after-call work until the disposition) per answered call",
        },
        "first_call_at": {"type": "string", "format": "date-time"},
        "last_call_at": {"type": "string", "format": "date-time"},
        "dispositions": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
}


@operation(
    summary="Each agent's day: calls, talk time, average handle time, dispositions",
    description="`format=csv` gives the same as a CSV file. The day is a calendar day in `tz`.",
    tag="reports",
    query=(
        Param("date", {"type": "string", "format": "date"}, "YYYY-MM-DD; default today in tz"),
        Param("tz", {"type": "string"}, "IANA time zone of the day, default UTC"),
        Param("agent", {"type": "string"}, "extensions, comma-separated; default every agent"),
        Param("campaign", {"type": "integer", "minimum": 1}, "one campaign's calls only"),
        Param("format", {"type": "string", "enum": ["json", "csv"]}, "json (default) or csv"),
    ),
    responses={200: {"type": "object", "properties": {
        "date": {"type": "string"}, "tz": {"type": "string"},
        "agents": {"type": "array", "items": AGENT_DAY}}}},
    errors=(400, 503),
)  # fmt: skip
@requires("manager", "supervisor")
async def agent_report(request: web.Request) -> web.Response:
    """GET /reports/agents?date=2026-12-07&tz=Europe/Moscow[&format=csv]."""
    engine = request.app[ENGINE]
    if engine.database is None:
        raise ApiError(503, "this engine runs without a database")
    query = request.query
    try:
        tz = ZoneInfo(query.get("tz", "UTC"))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ApiError(400, f"unknown time zone {query.get('tz')!r}") from exc
    try:
        day = (
            date.fromisoformat(query["date"])
            if "date" in query
            else datetime.now(UTC).astimezone(tz).date()
        )
    except ValueError as exc:
        raise ApiError(400, f"date must be YYYY-MM-DD, not {query.get('date')!r}") from exc
    if not 1970 <= day.year <= 9998:
        raise ApiError(400, f"date {day.isoformat()} is outside 1970-9998")
    form = query.get("format", "json")
    if form not in ("json", "csv"):
        raise ApiError(400, "format must be json or csv")
    agents = (
        [a.strip() for a in query["agent"].split(",") if a.strip()] if "agent" in query else None
    )
    campaign = query.get("campaign")
    if campaign is not None and not (
        campaign.isascii() and campaign.isdigit() and len(campaign) < 19
    ):
        raise ApiError(400, f"campaign must be a campaign id, not {campaign!r}")
    days = await agent_days(
        engine.database.pool,
        day,
        tz,
        agents=agents,
        campaign_id=int(campaign) if campaign is not None else None,
    )
    if form == "csv":
        return web.Response(
            text=agent_days_csv(days),
            content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="agents-{day.isoformat()}.csv"'},
        )
    return web.json_response(
        {"date": day.isoformat(), "tz": str(tz), "agents": [d.to_json() for d in days]}
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/reports/agents", agent_report)
