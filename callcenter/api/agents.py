"""The agent's side of the API: the live event stream (screen pops, presence) and dispositions."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import asyncpg
from aiohttp import web

from crm_bridge import CrmError
from pbx import Switchboard
from pbx.forwarding import ForwardingError

from .crm import CALL, ENGINE
from .openapi import EXTENSION, ROW_ID, operation
from .security import ApiError, acting_for, bound_extension, requires
from .streams import held

KEEPALIVE = 15.0


@operation(
    summary="The agent's live events (server-sent events: screen-pop, presence)",
    description="A text/event-stream that lasts until the client goes; a comment line every "
    f"{KEEPALIVE:.0f} s keeps it open. An agent key bound to an extension reads only that "
    "extension's stream.",
    tag="agents",
    path={"ext": EXTENSION},
    responses={200: None},
    produces="text/event-stream",
    errors=(404,),
)
async def agent_events(request: web.Request) -> web.StreamResponse:
    """GET /agents/{ext}/events: server-sent events (screen-pop, presence) until the client goes."""
    engine = request.app[ENGINE]
    ext = request.match_info["ext"]
    if ext not in engine.switchboard.extensions:
        raise ApiError(404, f"no extension {ext}")
    acting_for(request, ext)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    queue = engine.events.subscribe(ext)
    with held(request):
        try:
            await response.write(b": connected\n\n")
            while True:
                try:
                    kind, data = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                await response.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            engine.events.unsubscribe(ext, queue)
    return response


@operation(
    summary="Set the call's disposition (ends the agent's wrap-up; `dnc` bars the number)",
    tag="calls",
    path={"id": ROW_ID},
    body={
        "type": "object",
        "required": ["disposition"],
        "properties": {
            "disposition": {"type": "string"},
            "note": {"type": ["string", "null"]},
            "callback_at": {
                "type": "string",
                "format": "date-time",
                "description": "when to call back, with a time zone (needed for `callback`): "
                "a dialer lead is dialled again then, any other call gets a callback task for "
                "its agent",
            },
        },
    },
    responses={200: CALL},
    errors=(400, 404, 409, 503),
)
@requires("manager", "supervisor", "agent")
async def disposition(request: web.Request) -> web.Response:
    """POST /calls/{id}/disposition {"disposition": ..., "note": ...}: ends the agent's wrap-up;
    `dnc` also bars the number."""
    engine = request.app[ENGINE]
    if engine.store is None:
        raise ApiError(503, "this engine runs without a database")
    text = request.match_info["id"]
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ApiError(400, f"id must be a positive whole number, not {text!r}")
    try:
        body = await request.json()
    except ValueError as exc:
        raise ApiError(400, "body must be JSON") from exc
    if not isinstance(body, dict) or not isinstance(body.get("disposition"), str):
        raise ApiError(400, 'body must be {"disposition": ..., "note": ...}')
    note = body.get("note")
    now = datetime.now(UTC)
    callback_at = None
    if body["disposition"] == "callback" or body.get("callback_at") is not None:
        try:
            callback_at = datetime.fromisoformat(str(body.get("callback_at")))
        except ValueError as exc:
            raise ApiError(400, "a callback needs callback_at, an ISO 8601 time with zone") from exc
        if callback_at.tzinfo is None or callback_at <= now:
            raise ApiError(400, "callback_at must be a future time with a time zone")
    if bound_extension(request) is not None:
        # An agent's own key disposes of its own calls only (one more read, for those keys).
        existing = await engine.store.get_call(int(text))
        if existing is None:
            raise ApiError(404, f"no call {text}")
        acting_for(request, existing.agent)
    try:
        call = await engine.store.set_disposition(
            int(text), body["disposition"], note=str(note) if note is not None else None, now=now
        )
    except CrmError as exc:
        raise ApiError(exc.status, exc.reason) from exc
    if call.agent and call.agent in engine.switchboard.extensions:
        engine.switchboard.presence.end_wrap_up(call.agent, now=engine.ua.loop.time())
    result = call.to_json()
    if call.disposition == "dnc" and call.contact_phone and engine.leads is not None:
        await engine.leads.dnc_add([call.contact_phone], now=now, reason="agent disposition")
    if callback_at is not None and call.lead_id is not None and engine.leads is not None:
        # The dialer calls the lead again then (its calling hours and attempts still apply).
        # The agent who promised it gets that call.
        result["callback_scheduled"] = await engine.leads.schedule_callback(
            call.lead_id, callback_at, agent=call.agent
        )
    elif callback_at is not None and call.contact_phone:
        # Any other call: a callback task for the agent, due then (one-click call back on the
        # agent page; the CRMs get task.created).
        text = f"Call back {call.contact_phone}" + (f": {note}" if note else "")
        task = await engine.store.open_callback_task(
            call.contact_phone,
            assignee=call.agent,
            due_at=callback_at,
            call_row_id=call.id,
            text=text[:500],
        )
        result["callback_task"] = task.id
    return web.json_response(result)


_TARGET = {"type": ["string", "null"], "description": "an extension or a phone number; null: off"}
FORWARDING = {
    "type": "object",
    "properties": {
        "extension": {"type": "string"},
        "dnd": {"type": "boolean", "description": "do not disturb (shown as away)"},
        "always": _TARGET,
        "busy": _TARGET,
        "no_answer": _TARGET,
        "no_answer_after": {"type": "number", "minimum": 1, "maximum": 300},
    },
}


def _own_extension(request: web.Request) -> tuple[Switchboard, str]:
    """The switchboard and the path's extension, when it exists and the key acts for it."""
    switchboard = request.app[ENGINE].switchboard
    ext = request.match_info["ext"]
    if ext not in switchboard.extensions:
        raise ApiError(404, f"no extension {ext}")
    acting_for(request, ext)
    return switchboard, ext


@operation(
    summary="The extension's DND and call forwarding",
    tag="agents",
    path={"ext": EXTENSION},
    responses={200: FORWARDING},
    errors=(404,),
)
@requires("manager", "supervisor", "agent")
async def get_forwarding(request: web.Request) -> web.Response:
    """GET /agents/{ext}/forwarding: DND and forwarding (unconditional, busy, no answer)."""
    switchboard, ext = _own_extension(request)
    return web.json_response({"extension": ext, **switchboard.forwarding[ext].to_json()})


@operation(
    summary="Change the extension's DND and call forwarding (what *78/*79, *72/*73, *90/*91 "
    "and *92/*93 do from the phone); fields left out keep their value",
    tag="agents",
    path={"ext": EXTENSION},
    body=FORWARDING,
    responses={200: FORWARDING},
    errors=(400, 404, 503),
)
@requires("manager", "supervisor", "agent")
async def put_forwarding(request: web.Request) -> web.Response:
    """PUT /agents/{ext}/forwarding {"dnd": ..., "always": ..., ...}."""
    switchboard, ext = _own_extension(request)
    try:
        body = await request.json()
    except ValueError as exc:
        raise ApiError(400, "body must be JSON") from exc
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k != "extension"}
    try:
        settings = switchboard.forwarding[ext].updated(body)
    except ForwardingError as exc:
        raise ApiError(400, str(exc)) from exc
    if ext in (settings.always, settings.busy, settings.no_answer):
        raise ApiError(400, f"{ext} cannot forward to itself")
    shared = request.app[ENGINE].forwarding
    if shared is None:
        switchboard.set_forwarding(ext, settings)
    else:
        try:
            await shared.save(ext, settings)  # stored for every node first: nothing half-made
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise ApiError(503, f"forwarding not changed: the database failed ({exc})") from exc
    return web.json_response({"extension": ext, **settings.to_json()})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/agents/{ext}/events", agent_events)
    app.router.add_get("/agents/{ext}/forwarding", get_forwarding)
    app.router.add_put("/agents/{ext}/forwarding", put_forwarding)
    app.router.add_post("/calls/{id}/disposition", disposition)
