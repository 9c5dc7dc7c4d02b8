"""REST for the do-not-call list: export, import (CSV), add, remove; global or per campaign."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dialer import DialerError, PgLeadStore, read_dnc_csv, write_dnc_csv

from .campaigns import lead_store
from .openapi import ROW_ID, Param, operation
from .security import ApiError, requires

SCOPE = Param(
    "campaign",
    ROW_ID,
    "A campaign's own list; without it, the global list (numbers never dialled by any campaign).",
)
ENTRY = {
    "type": "object",
    "required": ["phone", "campaign_id", "reason", "added_at"],
    "properties": {
        "phone": {"type": "string", "description": "E.164."},
        "campaign_id": {"type": ["integer", "null"]},
        "reason": {"type": ["string", "null"]},
        "added_at": {"type": "string", "format": "date-time"},
    },
}
IMPORTED = {
    "type": "object",
    "required": ["added", "read", "errors"],
    "properties": {
        "added": {"type": "integer", "description": "Numbers new to the list."},
        "read": {"type": "integer", "description": "Good numbers in the file."},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["line", "reason"],
                "properties": {"line": {"type": "integer"}, "reason": {"type": "string"}},
            },
        },
    },
}


async def _scope(request: web.Request, store: PgLeadStore) -> int | None:
    text = request.query.get("campaign")
    if text is None:
        return None
    if not text.isdigit() or len(text) > 18:
        raise ApiError(400, f"campaign must be a campaign id, not {text!r}")
    try:
        return (await store.get_campaign(int(text))).id
    except DialerError as exc:
        raise ApiError(exc.status, exc.reason) from exc


@operation(
    summary="The do-not-call list",
    tag="dnc",
    query=(SCOPE,),
    responses={
        200: {
            "type": "object",
            "required": ["numbers"],
            "properties": {"numbers": {"type": "array", "items": ENTRY}},
        }
    },
    errors=(400, 404, 503),
)
@requires("manager")
async def list_dnc(request: web.Request) -> web.Response:
    store = lead_store(request)
    entries = await store.dnc_list(campaign_id=await _scope(request, store))
    numbers = [
        {"phone": e.phone, "campaign_id": e.campaign_id, "reason": e.reason,
         "added_at": e.added_at.isoformat()}
        for e in entries
    ]  # fmt: skip
    return web.json_response({"numbers": numbers})


@operation(
    summary="The do-not-call list as a CSV file (what POST /dnc imports)",
    tag="dnc",
    query=(SCOPE,),
    responses={200: None},
    produces="text/csv",
    errors=(400, 404, 503),
)
@requires("manager")
async def export_dnc(request: web.Request) -> web.Response:
    store = lead_store(request)
    entries = await store.dnc_list(campaign_id=await _scope(request, store))
    return web.Response(text=write_dnc_csv(e.phone for e in entries), content_type="text/csv")


@operation(
    summary="Import numbers (a CSV file: a phone column or one number a line)",
    description="Bad rows come back with their line and reason; the good ones are added. Leads "
    "still to be dialled with these numbers become dnc.",
    tag="dnc",
    query=(SCOPE,),
    body={"type": "string"},
    body_type="text/csv",
    responses={200: IMPORTED},
    errors=(400, 404, 503),
)
@requires("manager")
async def import_dnc(request: web.Request) -> web.Response:
    store = lead_store(request)
    campaign = await _scope(request, store)
    found = read_dnc_csv(await request.read(), normalize=store.normalize)
    added = await store.dnc_import(found.phones, now=datetime.now(UTC), campaign_id=campaign)
    errors: list[dict[str, Any]] = [{"line": n, "reason": r} for n, r in found.errors]
    return web.json_response({"added": added, "read": len(found.phones), "errors": errors})


@operation(
    summary="Lift a number's bar (in the global list, or one campaign's)",
    tag="dnc",
    path={"phone": {"type": "string", "description": "The number, E.164 or national."}},
    query=(SCOPE,),
    responses={
        200: {
            "type": "object",
            "required": ["removed"],
            "properties": {"removed": {"type": "integer"}},
        }
    },
    errors=(400, 404, 503),
)
@requires("manager")
async def remove_dnc(request: web.Request) -> web.Response:
    store = lead_store(request)
    campaign = await _scope(request, store)
    try:
        removed = await store.dnc_remove([request.match_info["phone"]], campaign_id=campaign)
    except ValueError as exc:  # not a phone number
        raise ApiError(400, str(exc) or "not a phone number") from exc
    if not removed:
        raise ApiError(404, "that number is not on this list")
    return web.json_response({"removed": removed})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/dnc", list_dnc)
    app.router.add_get("/dnc.csv", export_dnc)
    app.router.add_post("/dnc", import_dnc)
    app.router.add_delete("/dnc/{phone}", remove_dnc)
