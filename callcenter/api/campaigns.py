"""REST for campaigns: create, upload leads (CSV), start / pause / resume / stop, status."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, time
from typing import Any

from aiohttp import web

from dialer import (
    Campaign,
    CampaignProgress,
    DialerError,
    LeadFileError,
    PgLeadStore,
    read_leads_csv,
)

from .crm import ENGINE
from .openapi import ROW_ID, operation, page_json, page_of, paged, read_page
from .security import ApiError, requires

COMMANDS = ("start", "pause", "resume", "stop")
CAMPAIGN = {"$ref": "#/components/schemas/Campaign"}
SETTINGS = {
    "type": "object",
    "required": ["name"],
    "description": "Campaign settings: `name` and any of the Campaign fields (window_start and "
    "window_end as HH:MM; agents a list of extensions; retry_delays {outcome: seconds}).",
    "properties": {
        "name": {"type": "string"},
        "caller_id": {"type": "string"},
        "trunk": {"type": "string"},
        "agents": {"type": "array", "items": {"type": "string"}},
        "mode": {"type": "string", "description": "pacing: power, predictive, broadcast"},
        "ratio": {"type": "number"},
        "abandon_cap": {"type": "number"},
        "max_attempts": {"type": "integer"},
        "window_start": {"type": "string"},
        "window_end": {"type": "string"},
        "window_days": {"type": "array", "items": {"type": "integer"}},
        "tz_default": {"type": "string"},
        "lines": {"type": "integer"},
        "machine_action": {"type": "string", "description": "voicemail or hangup"},
        "amd": {"type": "boolean", "description": "answering-machine detection on answer"},
        "amd_max_seconds": {"type": "number", "description": "latest AMD verdict, 1-30 s"},
        "amd_initial_silence_seconds": {
            "type": "number",
            "description": "silence after answer that makes the verdict unsure, 0.5-30 s",
        },
        "amd_unsure": {
            "type": "string",
            "enum": ["connect", "voicemail", "hangup"],
            "description": "what an unsure verdict does",
        },
        "connect_seconds": {
            "type": "number",
            "description": "longest wait of a person for an agent before it is abandoned, 0.5-15 s",
        },
    },
}


def campaign_json(campaign: Campaign, progress: CampaignProgress | None = None) -> dict[str, Any]:
    """A campaign (and its progress) as the API and the CLI show it."""
    data: dict[str, Any] = {
        f.name: getattr(campaign, f.name)
        for f in dataclasses.fields(campaign)
        if isinstance(getattr(campaign, f.name), str | int | float | bool | type(None) | tuple)
    }
    for key, value in list(data.items()):
        if isinstance(value, tuple):
            data[key] = list(value)
    for name in ("window_start", "window_end", "created_at", "updated_at"):
        value = getattr(campaign, name)
        if value is not None:
            data[name] = value.isoformat()
    data["state"] = campaign.state.value
    data["retry_delays"] = dict(campaign.retry_delays)
    if progress is not None:
        data["progress"] = dataclasses.asdict(progress)
    return data


def lead_store(request: web.Request) -> PgLeadStore:
    """The engine's lead store (campaigns, DNC); 503 when it runs without a database."""
    leads = request.app[ENGINE].leads
    if leads is None:
        raise ApiError(503, "this engine runs without a database")
    return leads


def _id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ApiError(400, f"campaign id must be a positive whole number, not {text!r}")
    return int(text)


async def _campaign(request: web.Request) -> Any:
    try:
        return await lead_store(request).get_campaign(_id(request))
    except DialerError as exc:
        raise ApiError(exc.status, exc.reason) from exc


@operation(
    summary="List campaigns with their progress",
    tag="campaigns",
    query=paged(),
    responses={200: page_of("campaigns", CAMPAIGN)},
    errors=(400, 503),
)
async def list_campaigns(request: web.Request) -> web.Response:
    limit, offset = read_page(request.query)
    store = lead_store(request)
    stored = await store.list_campaigns()
    page = stored[offset : offset + limit]
    out = [campaign_json(c, await store.campaign_progress(c.row_id)) for c in page]
    more = len(stored) > offset + limit
    return web.json_response(
        page_json(request, "campaigns", out, limit=limit, offset=offset, more=more)
    )


@operation(
    summary="One campaign with its progress",
    tag="campaigns",
    path={"id": ROW_ID},
    responses={200: CAMPAIGN},
    errors=(400, 404, 503),
)
async def get_campaign(request: web.Request) -> web.Response:
    stored = await _campaign(request)
    store = lead_store(request)
    data = campaign_json(stored, await store.campaign_progress(stored.row_id))
    data["amd_summary"] = await store.amd_summary(stored.id)
    if stored.mode == "broadcast":
        data["broadcast"] = await store.broadcast_progress(stored.id)
    return web.json_response(data)


@operation(
    summary="Results per lead: broadcast flows (path, digits, listened, transfer, opt-out) "
    "and every answered attempt's AMD verdict",
    tag="campaigns",
    path={"id": ROW_ID},
    responses={
        200: {
            "type": "object",
            "required": ["results", "attempts"],
            "properties": {
                "results": {"type": "array", "items": {"type": "object"}},
                "attempts": {
                    "type": "array",
                    "items": {"type": "object"},
                    "description": "Answered attempts with their AMD verdict, reason, "
                    "confidence, decision time (s), outcome, agent and the agent's disposition.",
                },
            },
        }
    },
    errors=(400, 404, 503),
)
async def get_results(request: web.Request) -> web.Response:
    """GET /campaigns/{id}/results: per lead, what each answered broadcast call did (the flow's
    node path, digits pressed, listened to the end, transferred, callback, opted out)."""
    stored = await _campaign(request)
    store = lead_store(request)
    return web.json_response(
        {
            "results": await store.broadcast_results(stored.id),
            "attempts": await store.amd_results(stored.id),
        }
    )


_SCALARS: dict[str, tuple[type, ...]] = {"str": (str,), "float": (int, float), "int": (int,),
                                         "bool": (bool,)}  # fmt: skip
_TYPES = {f.name: str(f.type) for f in dataclasses.fields(Campaign)}


def _check_types(fields: dict[str, Any]) -> None:
    """A setting of the wrong JSON type (a number for a name, an object for a flag) is a 400,
    named, before the campaign model sees it."""
    for name, value in fields.items():
        kind = _TYPES.get(name, "")
        base, _, optional = kind.partition(" | ")
        if value is None and optional == "None":
            continue
        allowed = _SCALARS.get(base)
        if allowed is None:
            continue  # times, lists and mappings are read below
        if not isinstance(value, allowed) or (base != "bool" and isinstance(value, bool)):
            raise ApiError(400, f"{name} must be a JSON {base}, not {type(value).__name__}")


def _settings(body: Any) -> Campaign:
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object of campaign settings")
    fields = dict(body)
    _check_types(fields)
    try:
        for name in ("window_start", "window_end"):
            if name in fields:
                fields[name] = time.fromisoformat(str(fields[name]))
        for name in ("agents", "window_days"):
            if name in fields:
                fields[name] = tuple(fields[name])
        return Campaign(**fields)
    except TypeError as exc:
        raise ApiError(400, f"unknown or missing campaign setting: {exc}") from exc
    except (DialerError, ValueError) as exc:
        raise ApiError(400, str(exc)) from exc


@operation(
    summary="Create a campaign (draft)",
    tag="campaigns",
    body=SETTINGS,
    responses={201: CAMPAIGN},
    errors=(400, 409, 503),
)
@requires("manager")
async def create_campaign(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError as exc:
        raise ApiError(400, "body must be JSON") from exc
    settings = _settings(body)
    try:
        stored = await lead_store(request).create_campaign(settings, now=datetime.now(UTC))
    except DialerError as exc:
        raise ApiError(exc.status, exc.reason) from exc
    return web.json_response(campaign_json(stored), status=201)


LEAD_SUMMARY = {
    "type": "object",
    "required": ["imported", "merged", "dnc", "errors", "duplicates"],
    "properties": {
        "imported": {"type": "integer"},
        "merged": {"type": "integer"},
        "dnc": {"type": "integer"},
        "errors": {"type": "array", "items": {"type": "object"}},
        "duplicates": {"type": "array", "items": {"type": "object"}},
    },
}


@operation(
    summary="Upload leads (CSV with a phone column; name, tz and other columns optional)",
    description="Good rows import; bad rows come back with their line and reason.",
    tag="campaigns",
    path={"id": ROW_ID},
    body={"type": "string"},
    body_type="text/csv",
    responses={200: LEAD_SUMMARY},
    errors=(400, 404, 503),
)
@requires("manager")
async def upload_leads(request: web.Request) -> web.Response:
    """POST a CSV (text/csv body): good rows import, bad rows come back with line and reason."""
    stored = await _campaign(request)
    normalize = lead_store(request).normalize
    try:
        result = read_leads_csv(
            await request.read(), normalize=normalize, default_tz=stored.tz_default
        )
    except LeadFileError as exc:
        raise ApiError(400, str(exc)) from exc
    try:
        summary = await lead_store(request).import_leads(
            stored.id, result.leads, now=datetime.now(UTC)
        )
    except DialerError as exc:
        raise ApiError(exc.status, exc.reason) from exc
    return web.json_response(
        {
            "imported": len(summary.inserted),
            "merged": len(summary.merged),
            "dnc": len(summary.dnc),
            "errors": [{"line": line, "reason": reason} for line, reason in result.errors],
            "duplicates": [{"phone": d.phone, "lines": list(d.lines)} for d in result.duplicates],
        }
    )


@operation(
    summary="Start, pause, resume or stop a campaign",
    tag="campaigns",
    path={"id": ROW_ID, "command": {"type": "string", "enum": list(COMMANDS)}},
    responses={200: CAMPAIGN},
    errors=(400, 404, 409, 503),
)
@requires("manager")
async def command(request: web.Request) -> web.Response:
    verb = request.match_info["command"]
    if verb not in COMMANDS:
        raise ApiError(404, f"no such campaign command {verb!r}; one of {', '.join(COMMANDS)}")
    stored = await _campaign(request)
    try:
        updated = await lead_store(request).set_state(stored.id, verb, now=datetime.now(UTC))
    except DialerError as exc:
        raise ApiError(exc.status, exc.reason) from exc
    campaigns = request.app[ENGINE].campaigns
    if campaigns is not None:
        await campaigns.sync()  # start or stop dialing now, not at the next poll
    return web.json_response(campaign_json(updated))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/campaigns", list_campaigns)
    app.router.add_post("/campaigns", create_campaign)
    app.router.add_get("/campaigns/{id}", get_campaign)
    app.router.add_get("/campaigns/{id}/results", get_results)
    app.router.add_post("/campaigns/{id}/leads", upload_leads)
    app.router.add_post("/campaigns/{id}/{command}", command)
