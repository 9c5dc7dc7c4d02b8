"""REST over the CRM store: calls (with their recordings), tasks, contacts; agent presence."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from callcenter.engine import Engine
from crm_bridge import OUTCOMES, Call, CallFilter, CrmError, CrmStore, TaskFilter, normalize_phone
from recordings import RecordingError, talk_timeline

from .openapi import EXTENSION, ROW_ID, Param, operation, page_json, page_of, paged, read_page
from .security import ApiError, acting_for, bound_extension, requires

ENGINE = web.AppKey("engine", Engine)
"""The running engine, in every handler's `request.app`."""


def crm_store(request: web.Request) -> CrmStore:
    """The engine's CRM store; 503 when it runs without a database."""
    store = request.app[ENGINE].store
    if store is None:
        raise ApiError(503, "this engine runs without a database")
    return store


def _row_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ApiError(400, f"id must be a positive whole number, not {text!r}")
    return int(text)


def _filters(request: web.Request) -> tuple[dict[str, str], int, int]:
    """The query's filters, with limit+1 rows asked for (the extra one says there is more)."""
    limit, offset = read_page(request.query)
    query = {k: v for k, v in request.query.items() if k not in ("limit", "offset")}
    return {**query, "limit": str(limit + 1), "offset": str(offset)}, limit, offset


CALL = {"$ref": "#/components/schemas/Call"}
TASK = {"$ref": "#/components/schemas/Task"}
_TEXT = {"type": "string"}


@operation(
    summary="List calls, newest first",
    tag="calls",
    query=paged(
        Param("date", {"type": "string", "format": "date"}, "One day (YYYY-MM-DD)."),
        Param("since", _TEXT, "ISO 8601 time or date: calls started at or after it."),
        Param("until", _TEXT, "ISO 8601 time or date: calls started before it."),
        Param("agent", _TEXT, "Extension that handled the call."),
        Param("outcome", {"type": "string", "enum": list(OUTCOMES)}),
        Param("phone", _TEXT, "A number on either end (E.164 or national)."),
        Param("direction", {"type": "string", "enum": ["inbound", "outbound", "internal"]}),
    ),
    responses={200: page_of("calls", CALL)},
    errors=(400, 403, 503),
)
async def list_calls(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    query, limit, offset = _filters(request)
    own = bound_extension(request)
    if own is not None:
        # An agent's own key (or session) sees that agent's calls only.
        acting_for(request, query.get("agent", own))
        query["agent"] = own
    try:
        wanted = CallFilter.from_query(
            query, default_country_code=engine.config.crm.default_country_code
        )
        calls = await crm_store(request).list_calls(wanted)
    except CrmError as exc:
        raise ApiError(exc.status, exc.reason) from exc
    items = [c.to_json() for c in calls[:limit]]
    return web.json_response(
        page_json(request, "calls", items, limit=limit, offset=offset, more=len(calls) > limit)
    )


@operation(
    summary="One call",
    tag="calls",
    path={"id": ROW_ID},
    responses={200: CALL},
    errors=(400, 403, 404, 503),
)
async def get_call(request: web.Request) -> web.Response:
    call = await _visible_call(request)
    return web.json_response(call.to_json())


async def _visible_call(request: web.Request) -> Call:
    """The path's calls row; 404 when missing, 403 for another agent's call to an agent's own
    key."""
    call = await crm_store(request).get_call(_row_id(request))
    if call is None:
        raise ApiError(404, "no such call")
    own = bound_extension(request)
    if own is not None and call.agent != own:
        acting_for(request, call.agent)
    return call


@operation(
    summary="The call's recording (stereo WAV; Range requests answer 206)",
    tag="calls",
    path={"id": ROW_ID},
    responses={200: None, 206: None},
    produces="audio/wav",
    errors=(400, 403, 404, 503),
)
async def get_recording(request: web.Request) -> web.StreamResponse:
    path = _recording_file(request, await _visible_call(request))
    # FileResponse answers Range requests (206) so players can seek.
    return web.FileResponse(path, headers={"Content-Type": "audio/wav"})


def _recording_file(request: web.Request, call: Call) -> Path:
    engine = request.app[ENGINE]
    if not call.recording_path or engine.recordings is None:
        raise ApiError(404, "this call has no recording")
    root = engine.recordings.store.root.resolve()
    path = (root / call.recording_path).resolve()
    # The stored path is ours, but never serve anything outside the recordings folder.
    if not path.is_relative_to(root) or not path.is_file():
        raise ApiError(404, "the recording is gone (retention) or was never written")
    return path


@operation(
    summary="Who spoke when in the call's recording (the talk/silence timeline for a player)",
    description="Speech runs of the customer (left channel) and the agent (right), from the "
    "same VAD and smoothing as the call's analytics, pauses up to 300 ms bridged; gaps "
    "between runs are silence.",
    tag="calls",
    path={"id": ROW_ID},
    responses={
        200: {
            "type": "object",
            "required": ["duration_seconds", "segments"],
            "properties": {
                "duration_seconds": {"type": "number"},
                "segments": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "who": {"enum": ["customer", "agent"]},
                            "start": {"type": "number"},
                            "end": {"type": "number"},
                        },
                    },
                },
                "analytics": {"type": "object"},
            },
        }
    },
    errors=(400, 403, 404, 503),
)
async def get_timeline(request: web.Request) -> web.Response:
    path = _recording_file(request, await _visible_call(request))
    try:
        timeline = await asyncio.to_thread(talk_timeline, path)
    except RecordingError as exc:
        raise ApiError(404, f"the recording cannot be read: {exc}") from exc
    return web.json_response(timeline)


@operation(
    summary="List tasks (missed-call callbacks...)",
    tag="tasks",
    query=paged(
        Param("status", {"type": "string", "enum": ["open", "done", "cancelled"]}),
        Param("assignee", EXTENSION),
    ),
    responses={200: page_of("tasks", TASK)},
    errors=(400, 403, 503),
)
async def list_tasks(request: web.Request) -> web.Response:
    query, limit, offset = _filters(request)
    own = bound_extension(request)
    if own is not None:
        # An agent's own key (or session) sees the tasks assigned to that agent only.
        acting_for(request, query.get("assignee", own))
        query["assignee"] = own
    try:
        tasks = await crm_store(request).list_tasks(TaskFilter.from_query(query))
    except CrmError as exc:
        raise ApiError(exc.status, exc.reason) from exc
    items = [t.to_json() for t in tasks[:limit]]
    return web.json_response(
        page_json(request, "tasks", items, limit=limit, offset=offset, more=len(tasks) > limit)
    )


@operation(
    summary="Mark a task done",
    tag="tasks",
    path={"id": ROW_ID},
    responses={200: TASK},
    errors=(400, 403, 404, 409, 503),
)
@requires("manager", "supervisor", "agent")
async def complete_task(request: web.Request) -> web.Response:
    store = crm_store(request)
    if bound_extension(request) is not None:
        existing = await store.get_task(_row_id(request))
        if existing is None:
            raise ApiError(404, f"no task {_row_id(request)}")
        acting_for(request, existing.assignee)
    try:
        task = await store.complete_task(_row_id(request))
    except CrmError as exc:
        raise ApiError(exc.status, exc.reason) from exc
    return web.json_response(task.to_json())


@operation(
    summary="A contact by phone number",
    tag="contacts",
    path={"phone": {"type": "string", "description": "E.164 (+...) or a national number."}},
    responses={200: {"$ref": "#/components/schemas/Contact"}},
    errors=(400, 404, 503),
)
async def get_contact(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    try:
        phone = normalize_phone(request.match_info["phone"], engine.config.crm.default_country_code)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc
    contact = await crm_store(request).get_contact(phone)
    if contact is None:
        raise ApiError(404, f"no contact {phone}")
    return web.json_response(contact.to_json())


@operation(
    summary="Contacts waiting for us with no open task (the rule says: none)",
    description="Contacts whose latest inbound call was missed, with nothing answered since, "
    "and no open task. `[crm] follow_up_minutes` makes the engine open follow-up tasks for "
    "them; the metric callcenter_contacts_without_open_task counts them.",
    tag="contacts",
    query=paged(),
    responses={200: page_of("contacts", {"$ref": "#/components/schemas/Contact"})},
    errors=(400, 503),
)
@requires("manager", "supervisor")
async def contacts_without_task(request: web.Request) -> web.Response:
    limit, offset = read_page(request.query)
    contacts = await crm_store(request).contacts_without_open_task()
    page = [c.to_json() for c in contacts[offset : offset + limit]]
    more = len(contacts) > offset + limit
    return web.json_response(
        page_json(request, "contacts", page, limit=limit, offset=offset, more=more)
    )


PRESENCE: dict[str, Any] = {
    "type": "object",
    "required": ["extension", "state"],
    "properties": {
        "extension": {"type": "string"},
        "state": {"type": "string", "description": "available, ringing, on-call, wrap-up, away"},
        "dnd": {"type": "boolean", "description": "do not disturb (the state reads away)"},
    },
}


@operation(
    summary="An agent's presence",
    tag="agents",
    path={"ext": EXTENSION},
    responses={200: PRESENCE},
    errors=(404,),
)
async def get_presence(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    ext = request.match_info["ext"]
    presence = engine.switchboard.presence
    if ext not in engine.switchboard.extensions:
        raise ApiError(404, f"no extension {ext}")
    now = engine.ua.loop.time()
    state = presence.state(ext, now=now).value
    return web.json_response({"extension": ext, "state": state, "dnd": presence.dnd(ext)})


@operation(
    summary="Set an agent away or available (what *50 / *51 do from the phone)",
    tag="agents",
    path={"ext": EXTENSION},
    body={
        "type": "object",
        "required": ["state"],
        "properties": {"state": {"type": "string", "enum": ["away", "available"]}},
    },
    responses={200: PRESENCE},
    errors=(400, 404),
)
@requires("manager", "supervisor", "agent")
async def set_presence(request: web.Request) -> web.Response:
    """PUT {"state": "away" | "available"}: what *50 / *51 do from the phone."""
    engine = request.app[ENGINE]
    ext = request.match_info["ext"]
    if ext not in engine.switchboard.extensions:
        raise ApiError(404, f"no extension {ext}")
    acting_for(request, ext)
    try:
        body = await request.json()
    except ValueError as exc:
        raise ApiError(400, "body must be JSON") from exc
    state = body.get("state") if isinstance(body, dict) else None
    if state not in ("away", "available"):
        raise ApiError(400, 'state must be "away" or "available"')
    now = engine.ua.loop.time()
    engine.switchboard.presence.set_away(ext, state == "away", now=now)
    if state == "available":
        engine.switchboard.presence.end_wrap_up(ext, now=now)
    return await get_presence(request)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/calls", list_calls)
    app.router.add_get("/calls/{id}", get_call)
    app.router.add_get("/calls/{id}/recording", get_recording)
    app.router.add_get("/calls/{id}/timeline", get_timeline)
    app.router.add_get("/tasks", list_tasks)
    app.router.add_post("/tasks/{id}/complete", complete_task)
    app.router.add_get("/contacts/without-task", contacts_without_task)
    app.router.add_get("/contacts/{phone}", get_contact)
    app.router.add_get("/agents/{ext}/presence", get_presence)
    app.router.add_put("/agents/{ext}/presence", set_presence)
