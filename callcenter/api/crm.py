"""REST over the CRM store: calls (with their recordings), tasks, contacts; agent presence."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from crm_bridge import CallFilter, CrmError, CrmStore, TaskFilter, normalize_phone

from .security import ApiError, requires

if TYPE_CHECKING:
    pass

ENGINE = web.AppKey("engine", "Engine")


def _store(request: web.Request) -> CrmStore:
    store = request.app[ENGINE].store
    if store is None:
        raise ApiError(503, "this engine runs without a database")
    return store


def _row_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not text.isdigit() or len(text) > 18:
        raise ApiError(400, f"id must be a positive whole number, not {text!r}")
    return int(text)


async def list_calls(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    try:
        query = CallFilter.from_query(
            request.query, default_country_code=engine.config.crm.default_country_code
        )
        calls = await _store(request).list_calls(query)
    except CrmError as exc:
        raise ApiError(exc.status, exc.reason) from exc
    return web.json_response(
        {"calls": [c.to_json() for c in calls], "limit": query.limit, "offset": query.offset}
    )


async def get_call(request: web.Request) -> web.Response:
    call = await _store(request).get_call(_row_id(request))
    if call is None:
        raise ApiError(404, "no such call")
    return web.json_response(call.to_json())


async def get_recording(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    call = await _store(request).get_call(_row_id(request))
    if call is None:
        raise ApiError(404, "no such call")
    if not call.recording_path or engine.recordings is None:
        raise ApiError(404, "this call has no recording")
    root = engine.recordings.store.root.resolve()
    path = (root / call.recording_path).resolve()
    # The stored path is ours, but never serve anything outside the recordings folder.
    if not path.is_relative_to(root) or not path.is_file():
        raise ApiError(404, "the recording is gone (retention) or was never written")
    # FileResponse answers Range requests (206) so players can seek.
    return web.FileResponse(path, headers={"Content-Type": "audio/wav"})


async def list_tasks(request: web.Request) -> web.Response:
    try:
        query = TaskFilter.from_query(request.query)
        tasks = await _store(request).list_tasks(query)
    except CrmError as exc:
        raise ApiError(exc.status, exc.reason) from exc
    return web.json_response({"tasks": [t.to_json() for t in tasks]})


@requires("manager", "supervisor", "agent")
async def complete_task(request: web.Request) -> web.Response:
    try:
        task = await _store(request).complete_task(_row_id(request))
    except CrmError as exc:
        raise ApiError(exc.status, exc.reason) from exc
    return web.json_response(task.to_json())


async def get_contact(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    try:
        phone = normalize_phone(request.match_info["phone"], engine.config.crm.default_country_code)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc
    contact = await _store(request).get_contact(phone)
    if contact is None:
        raise ApiError(404, f"no contact {phone}")
    return web.json_response(contact.to_json())


async def get_presence(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    ext = request.match_info["ext"]
    presence = engine.switchboard.presence
    if ext not in engine.switchboard.extensions:
        raise ApiError(404, f"no extension {ext}")
    now = engine.ua.loop.time()
    return web.json_response({"extension": ext, "state": presence.state(ext, now=now).value})


@requires("manager", "supervisor", "agent")
async def set_presence(request: web.Request) -> web.Response:
    """PUT {"state": "away" | "available"}: what *50 / *51 do from the phone."""
    engine = request.app[ENGINE]
    ext = request.match_info["ext"]
    if ext not in engine.switchboard.extensions:
        raise ApiError(404, f"no extension {ext}")
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
    app.router.add_get("/tasks", list_tasks)
    app.router.add_post("/tasks/{id}/complete", complete_task)
    app.router.add_get("/contacts/{phone}", get_contact)
    app.router.add_get("/agents/{ext}/presence", get_presence)
    app.router.add_put("/agents/{ext}/presence", set_presence)
