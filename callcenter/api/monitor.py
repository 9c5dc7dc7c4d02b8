"""Supervisor monitoring over the API: join a call (the engine rings the supervisor's phone first),
switch mode, leave; and the call's monitoring audit.

    POST   /calls/{id}/monitor            {"supervisor": "190", "mode": "whisper"} -> 201 session
    PATCH  /calls/{id}/monitor/{session}  {"mode": "barge"}
    DELETE /calls/{id}/monitor/{session}
    GET    /calls/{id}/monitor            the audit entries of the call

`{id}` is the calls row id (digits) or the SIP Call-ID of the caller's leg.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pbx import BridgedCall, MonitorError, MonitorMode, MonitorSession

from .crm import ENGINE
from .openapi import operation
from .security import ApiError, requires

if TYPE_CHECKING:
    from callcenter.engine import Engine

logger = logging.getLogger(__name__)

MODES = {m.value: m for m in MonitorMode}
RING_SECONDS = 30.0


def names_row(engine: Engine, text: str) -> bool:
    """Whether a path's call reference is a calls row id: digits that are not a live call's
    SIP Call-ID (some phones' Call-IDs are all digits, e.g. baresip's 16 hex digits at times)."""
    return (
        text.isascii()
        and text.isdigit()
        and len(text) <= 18
        and text not in engine.switchboard.active
    )


async def _call_id(engine: Engine, text: str) -> str:
    if names_row(engine, text):
        if engine.store is None:
            raise ApiError(503, "this engine runs without a database")
        call = await engine.store.get_call(int(text))
        if call is None:
            raise ApiError(404, f"no call {text}")
        return call.call_id
    return text


async def _bridged(engine: Engine, text: str) -> BridgedCall:
    call_id = await _call_id(engine, text)
    bridged = engine.switchboard.active.get(call_id)
    if bridged is None or bridged.b is None:
        raise ApiError(409, f"call {text} is not in progress")
    return bridged


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise ApiError(400, "body must be JSON") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    return body


def _mode(body: dict[str, Any]) -> MonitorMode:
    mode = MODES.get(str(body.get("mode", "")))
    if mode is None:
        raise ApiError(400, f"mode must be one of {', '.join(MODES)}")
    return mode


def _session_json(session: MonitorSession) -> dict[str, Any]:
    return {
        "session": session.id,
        "call_id": session.bridged.call_id,
        "supervisor": session.supervisor,
        "agent": session.agent,
        "mode": session.mode.value,
    }


def _session(engine: Engine, bridged: BridgedCall, text: str) -> MonitorSession:
    usable = text.isascii() and text.isdigit() and len(text) <= 18
    session = engine.switchboard.monitors.get(int(text)) if usable else None
    if session is None or session.bridged is not bridged:
        raise ApiError(404, f"no monitor session {text} on this call")
    return session


CALL_REF = {
    "type": "string",
    "description": "the SIP Call-ID of a live call, else a calls row id (digits)",
}
SESSION_ID = {"type": "string", "pattern": "^[0-9]{1,18}$"}
MODE_BODY = {
    "type": "object",
    "required": ["mode"],
    "properties": {"mode": {"type": "string", "enum": list(MODES)}},
}
SESSION = {
    "type": "object",
    "required": ["session", "call_id", "supervisor", "agent", "mode"],
    "properties": {
        "session": {"type": "integer"},
        "call_id": {"type": "string"},
        "supervisor": {"type": "string"},
        "agent": {"type": "string"},
        "mode": {"type": "string", "enum": list(MODES)},
    },
}


@operation(
    summary="Monitor a call: ring the supervisor's phone, then listen, whisper or barge",
    tag="monitor",
    path={"id": CALL_REF},
    body={
        "type": "object",
        "required": ["supervisor", "mode"],
        "properties": {
            "supervisor": {"type": "string", "description": "the supervisor's extension"},
            "mode": {"type": "string", "enum": list(MODES)},
        },
    },
    responses={201: SESSION},
    errors=(400, 404, 409, 503),
)
@requires("supervisor")
async def join(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    bridged = await _bridged(engine, request.match_info["id"])
    body = await _body(request)
    supervisor = str(body.get("supervisor", ""))
    mode = _mode(body)
    switchboard = engine.switchboard
    ext = switchboard.extensions.get(supervisor)
    team = ext.team if ext is not None else ()
    agent = next((p for p in bridged.parties if p in team), None)
    try:
        if ext is None or ext.role != "supervisor":
            raise MonitorError(f"{supervisor} is not a supervisor")
        if agent is None:
            raise MonitorError(f"no agent of {supervisor}'s team is on this call")
        if switchboard.check_monitor(supervisor, agent) is not bridged:
            raise MonitorError(f"{agent} is on another call", 409)
        session = await switchboard.call_supervisor(
            bridged, supervisor=supervisor, agent=agent, mode=mode, timeout=RING_SECONDS
        )
    except MonitorError as exc:
        raise ApiError(exc.status, str(exc)) from exc
    return web.json_response(_session_json(session), status=201)


@operation(
    summary="Switch a monitor session's mode",
    tag="monitor",
    path={"id": CALL_REF, "session": SESSION_ID},
    body=MODE_BODY,
    responses={200: SESSION},
    errors=(400, 404, 409, 503),
)
@requires("supervisor")
async def change(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    bridged = await _bridged(engine, request.match_info["id"])
    session = _session(engine, bridged, request.match_info["session"])
    session.set_mode(_mode(await _body(request)))
    return web.json_response(_session_json(session))


@operation(
    summary="End a monitor session",
    tag="monitor",
    path={"id": CALL_REF, "session": SESSION_ID},
    responses={200: SESSION},
    errors=(404, 409, 503),
)
@requires("supervisor")
async def leave(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    bridged = await _bridged(engine, request.match_info["id"])
    session = _session(engine, bridged, request.match_info["session"])
    session.leave()
    return web.json_response(_session_json(session))


@operation(
    summary="The call's monitoring audit",
    tag="monitor",
    path={"id": CALL_REF},
    responses={
        200: {
            "type": "object",
            "required": ["entries"],
            "properties": {"entries": {"type": "array", "items": {"type": "object"}}},
        }
    },
    errors=(404, 503),
)
@requires("manager", "supervisor")
async def audit(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    if engine.monitoring is None:
        raise ApiError(503, "this engine runs without a database")
    call_id = await _call_id(engine, request.match_info["id"])
    entries = await engine.monitoring.audit_entries(call_id=call_id, limit=1000)
    return web.json_response({"entries": [e.to_json() for e in entries]})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/calls/{id}/monitor", join)
    app.router.add_get("/calls/{id}/monitor", audit)
    app.router.add_patch("/calls/{id}/monitor/{session}", change)
    app.router.add_delete("/calls/{id}/monitor/{session}", leave)
