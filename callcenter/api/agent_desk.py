"""The agent page (GET /agent, assets under /web/) and what it reads: who the key acts for, the
agent's desk (presence, the call now, open tasks, today's calls), every call's screen pop, and
short-lived agent logins.

The page needs a key bound to one extension: an agent key with `extension`, or a session from
a login token. A supervisor (or the agent's own key) asks POST /agents/{ext}/login-token and
hands out `/agent#login=TOKEN`; the page trades the token once, within minutes, at POST
/agent/session for a session key that acts as that agent's bound key for a shift (the same
server-side checks as a configured agent key: its own calls, tasks, presence, click-to-call).
The page reads its live events (screen-pop, call, presence) from GET /agents/{ext}/events with
fetch(), which sends the Authorization header (EventSource cannot).

The page's phone (web/phone.js, a SIP user agent of our own) trades the session for a SIP login
token (POST /sip/token), registers over /sip and answers with the browser's WebRTC; an agent
may still answer on a SIP phone registered as the extension, and the page drives the call over
REST either way. Outbound calls stay on REST click-to-call, which rings the agent's phone first.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from aiohttp import web

from callcenter.screen_pop import build_pop
from crm_bridge import CallFilter, TaskFilter
from pbx import BridgedCall

from .agents import _own_extension
from .crm import ENGINE, crm_store
from .dashboard import WEB_ROOT
from .monitor import CALL_REF, _call_id, names_row
from .openapi import EXTENSION, operation
from .security import (
    API_KEY,
    LOGIN_SECONDS,
    SESSION_SECONDS,
    AgentSessions,
    ApiError,
    acting_for,
    bound_extension,
    is_session,
    requires,
)

SESSIONS = web.AppKey("agent_sessions", AgentSessions)
ASSETS = {
    "agent.html": "text/html; charset=utf-8",
    "agent.js": "text/javascript; charset=utf-8",
    "phone.js": "text/javascript; charset=utf-8",
    "agent.css": "text/css; charset=utf-8",
}
RECENT_CALLS = 50
"""The desk lists the agent's latest calls of the day (UTC), at most this many."""


def is_open(request: web.Request) -> bool:
    """The page and its assets need no key (no data in them); POST /agent/session checks the
    login token itself."""
    if request.method == "POST" and request.path == "/agent/session":
        return True
    return request.method in ("GET", "HEAD") and request.path in (
        "/agent",
        "/web/agent.js",
        "/web/phone.js",
        "/web/agent.css",
    )


def _asset(name: str) -> web.FileResponse:
    return web.FileResponse(
        WEB_ROOT / name, headers={"Content-Type": ASSETS[name], "Cache-Control": "no-cache"}
    )


@operation(
    summary="The agent page (HTML): presence, the call's controls, screen pops, dispositions, "
    "callback tasks",
    description="Asks for an agent key bound to an extension (kept in the tab's "
    "sessionStorage), or takes `#login=TOKEN` from POST /agents/{ext}/login-token.",
    tag="agent page",
    responses={200: None},
    produces="text/html",
    public=True,
)
async def page(request: web.Request) -> web.FileResponse:
    return _asset("agent.html")


@operation(
    summary="The agent page's script",
    tag="agent page",
    responses={200: None},
    produces="text/javascript",
    public=True,
)
async def script(request: web.Request) -> web.FileResponse:
    return _asset("agent.js")


@operation(
    summary="The agent page's browser phone: a SIP-over-WebSocket user agent (no DOM; the "
    "page drives it)",
    tag="agent page",
    responses={200: None},
    produces="text/javascript",
    public=True,
)
async def phone_script(request: web.Request) -> web.FileResponse:
    return _asset("phone.js")


@operation(
    summary="The agent page's style sheet",
    tag="agent page",
    responses={200: None},
    produces="text/css",
    public=True,
)
async def style(request: web.Request) -> web.FileResponse:
    return _asset("agent.css")


LOGIN = {
    "type": "object",
    "required": ["token", "extension", "expires_in", "url"],
    "properties": {
        "token": {"type": "string"},
        "extension": {"type": "string"},
        "expires_in": {"type": "number"},
        "url": {"type": "string", "description": "the agent page with the token"},
    },
}


@operation(
    summary="A login token for the agent page: opens one agent session for this extension, "
    "once, within five minutes",
    tag="agent page",
    path={"ext": EXTENSION},
    responses={201: LOGIN},
    errors=(403, 404),
)
@requires("manager", "supervisor", "agent")
async def login_token(request: web.Request) -> web.Response:
    key = request[API_KEY]
    if is_session(key):
        raise ApiError(403, "an agent session cannot issue logins")
    _, ext = _own_extension(request)
    token = await request.app[SESSIONS].issue_login(ext, by=key.name)
    return web.json_response(
        {"token": token, "extension": ext, "expires_in": LOGIN_SECONDS,
         "url": f"/agent#login={token}"},
        status=201,
    )  # fmt: skip


SESSION = {
    "type": "object",
    "required": ["session", "extension", "expires_in"],
    "properties": {
        "session": {"type": "string", "description": "a Bearer key acting for the extension"},
        "extension": {"type": "string"},
        "display_name": {"type": ["string", "null"]},
        "expires_in": {"type": "number"},
    },
}


@operation(
    summary="Trade a login token for an agent session (the token is spent)",
    tag="agent page",
    body={"type": "object", "required": ["login"], "properties": {"login": {"type": "string"}}},
    responses={201: SESSION},
    errors=(400, 401),
    public=True,
)
async def open_session(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError as exc:
        raise ApiError(400, "body must be JSON") from exc
    login = body.get("login") if isinstance(body, dict) else None
    if not isinstance(login, str) or not login or len(login) > 200:
        raise ApiError(400, 'body must be {"login": TOKEN}')
    opened = await request.app[SESSIONS].redeem(login)
    if opened is None:
        raise ApiError(401, "this login token is unknown, spent or expired; ask for a new one")
    session, key = opened
    account = request.app[ENGINE].switchboard.extensions.get(key.extension or "")
    return web.json_response(
        {
            "session": session,
            "extension": key.extension,
            "display_name": account.display_name if account is not None else None,
            "expires_in": SESSION_SECONDS,
        },
        status=201,
    )


@operation(
    summary="End this agent session (log out of the agent page)",
    tag="agent page",
    responses={204: None},
    errors=(403,),
)
@requires("agent")
async def close_session(request: web.Request) -> web.Response:
    key = request[API_KEY]
    if not is_session(key):
        raise ApiError(403, "only an agent session ends this way")
    await request.app[SESSIONS].end(key)
    return web.Response(status=204)


def _own(request: web.Request) -> str:
    """The extension the request's key is bound to; 403 for keys bound to none."""
    own = bound_extension(request)
    if own is None:
        raise ApiError(403, "the agent page needs an agent key bound to an extension")
    return own


@operation(
    summary="Who this key acts for (the agent page's first question)",
    tag="agent page",
    responses={
        200: {
            "type": "object",
            "required": ["extension"],
            "properties": {
                "extension": {"type": "string"},
                "display_name": {"type": ["string", "null"]},
                "session": {"type": "boolean"},
            },
        }
    },
    errors=(403,),
)
async def whoami(request: web.Request) -> web.Response:
    own = _own(request)
    account = request.app[ENGINE].switchboard.extensions.get(own)
    return web.json_response(
        {
            "extension": own,
            "display_name": account.display_name if account is not None else None,
            "session": is_session(request[API_KEY]),
        }
    )


def _live_call(engine: Any, ext: str) -> BridgedCall | None:
    for bridged in engine.switchboard.active.values():
        if ext in bridged.parties or ext in bridged.ringing:
            return bridged  # type: ignore[no-any-return]
    return None


async def live_call_json(engine: Any, bridged: BridgedCall, ext: str) -> dict[str, Any]:
    """The agent's view of a call in progress."""
    if bridged.b is None:
        state = "ringing"
    elif bridged.on_hold_by_api:
        state = "held"
    else:
        state = "talking"
    row = None
    if engine.journal is not None:
        row = await engine.journal.find_row(bridged.a.call_id)
    other = bridged.caller if bridged.callee == ext else bridged.callee
    return {
        "call_id": bridged.a.call_id,
        "call": row,
        "state": state,
        "direction": bridged.summary.direction,
        "other": bridged.summary.customer or other,
        "caller": bridged.caller,
        "callee": bridged.callee,
    }


@operation(
    summary="The agent's desk: presence, the call in progress, open tasks, today's calls (UTC)",
    tag="agent page",
    path={"ext": EXTENSION},
    responses={200: {"type": "object"}},
    errors=(403, 404, 503),
)
@requires("manager", "supervisor", "agent")
async def desk(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    _, ext = _own_extension(request)
    store = crm_store(request)
    presence = engine.switchboard.presence
    now = engine.ua.loop.time()
    bridged = _live_call(engine, ext)
    tasks = await store.list_tasks(TaskFilter(status="open", assignee=ext, limit=100))
    midnight = datetime.combine(datetime.now(UTC).date(), time(), UTC)
    calls = await store.list_calls(CallFilter(agent=ext, since=midnight, limit=RECENT_CALLS))
    return web.json_response(
        {
            "extension": ext,
            "state": presence.state(ext, now=now).value,
            "dnd": presence.dnd(ext),
            "wrap_up_left": presence.wrap_up_left(ext, now=now),
            "call": None if bridged is None else await live_call_json(engine, bridged, ext),
            "tasks": [t.to_json() for t in tasks],
            "calls": [c.to_json() for c in calls],
        }
    )


@operation(
    summary="A call's screen pop: the contact and its responsible manager, the lead (dialer "
    "calls), the last calls with signed recording links, the open tasks",
    description="What the agent's event stream pushes as `screen-pop` when the phone rings. "
    "An agent key reads the pop of a call it takes part in, is rung for, or handled.",
    tag="calls",
    path={"id": CALL_REF},
    responses={200: {"type": "object"}},
    errors=(400, 403, 404, 503),
)
@requires("manager", "supervisor", "agent")
async def pop(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    store = crm_store(request)
    text = request.match_info["id"]
    if names_row(engine, text):
        row: int | None = int(text)
    else:
        call_id = await _call_id(engine, text)
        row = await engine.journal.find_row(call_id) if engine.journal is not None else None
    call = await store.get_call(row) if row is not None else None
    if call is None:
        raise ApiError(404, f"no call {text}")
    own = bound_extension(request)
    if own is not None and call.agent != own:
        bridged = engine.switchboard.active.get(call.call_id)
        if bridged is None or (own not in bridged.parties and own not in bridged.ringing):
            acting_for(request, None)  # 403: not this agent's call
    return web.json_response(await build_pop(engine, call))


def add_routes(app: web.Application, sessions: AgentSessions) -> None:
    app[SESSIONS] = sessions
    app.router.add_get("/agent", page)
    app.router.add_get("/web/agent.js", script)
    app.router.add_get("/web/phone.js", phone_script)
    app.router.add_get("/web/agent.css", style)
    app.router.add_post("/agents/{ext}/login-token", login_token)
    app.router.add_post("/agent/session", open_session)
    app.router.add_delete("/agent/session", close_session)
    app.router.add_get("/agent/me", whoami)
    app.router.add_get("/agents/{ext}/desk", desk)
    app.router.add_get("/calls/{id}/pop", pop)
