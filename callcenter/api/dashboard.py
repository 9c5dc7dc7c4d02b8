"""The live dashboard: the page (GET /, assets under /web/), its event stream GET /api/live and
per-agent daily plans (PUT /agents/{ext}/plan).

EventSource cannot send an Authorization header. Rather than put the API key in the stream's
URL (where access logs, proxies and browser history keep it), the page trades its key for a
short-lived stream token (POST /api/live/token) and opens /api/live?token=...; a token only
opens live streams and expires after TOKEN_SECONDS (the page gets a new one to reconnect).
Clients that can send headers use Authorization: Bearer on /api/live as everywhere else.

The stream sends `event: snapshot` (the whole board, with the server's clock) first, then one
event per changed row: agent, call, call-gone, campaign, campaign-gone, task, task-gone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..config import ApiKey
from .crm import ENGINE
from .openapi import EXTENSION, Param, operation
from .security import API_KEY, ApiError, requires
from .streams import held

if TYPE_CHECKING:
    from callcenter.events import LiveBus

logger = logging.getLogger(__name__)

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
LIVE_ROLES = ("admin", "manager", "supervisor")
TOKEN_SECONDS = 60.0
KEEPALIVE = 15.0
TOKENS = web.AppKey("live_tokens", dict)


def is_open(request: web.Request) -> bool:
    """Paths the auth middleware lets through without a key: the page and its assets (no data
    in them), and the live stream (which checks its token itself)."""
    if request.method not in ("GET", "HEAD"):
        return False
    return request.path in ("/", "/api/live") or request.path.startswith("/web/")


@operation(
    summary="The live dashboard (HTML page)",
    description="Asks for an API key once (kept in the tab's sessionStorage), or takes "
    "`?key=` for kiosk screens (then drops it from the address bar).",
    tag="dashboard",
    responses={200: None},
    produces="text/html",
    public=True,
)
async def index(request: web.Request) -> web.FileResponse:
    return _asset("index.html")


@operation(
    summary="The dashboard's script",
    tag="dashboard",
    responses={200: None},
    produces="text/javascript",
    public=True,
)
async def script(request: web.Request) -> web.FileResponse:
    return _asset("app.js")


@operation(
    summary="The dashboard's style sheet",
    tag="dashboard",
    responses={200: None},
    produces="text/css",
    public=True,
)
async def style(request: web.Request) -> web.FileResponse:
    return _asset("style.css")


def _asset(name: str) -> web.FileResponse:
    if name not in ASSETS:
        raise ApiError(404, f"no asset {name}")
    return web.FileResponse(
        WEB_ROOT / name,
        headers={"Content-Type": ASSETS[name], "Cache-Control": "no-cache"},
    )


def _bus(request: web.Request) -> LiveBus:
    return request.app[ENGINE].live


@operation(
    summary="A short-lived token that opens the live stream (EventSource sends no headers)",
    tag="dashboard",
    responses={
        201: {
            "type": "object",
            "required": ["token", "expires_in"],
            "properties": {"token": {"type": "string"}, "expires_in": {"type": "number"}},
        }
    },
)
@requires("manager", "supervisor")
async def issue_token(request: web.Request) -> web.Response:
    """POST /api/live/token: a token that opens /api/live?token=... for TOKEN_SECONDS."""
    tokens: dict[str, tuple[str, float]] = request.app[TOKENS]
    now = time.monotonic()
    for stale in [t for t, (_, until) in tokens.items() if until <= now]:
        del tokens[stale]
    token = secrets.token_urlsafe(24)
    tokens[token] = (request[API_KEY].name, now + TOKEN_SECONDS)
    return web.json_response({"token": token, "expires_in": TOKEN_SECONDS}, status=201)


def _allowed(request: web.Request) -> str:
    """Who opens the stream: a supervisor/manager/admin key, or a live token."""
    key: ApiKey | None = request.get(API_KEY)
    if key is not None:
        if key.role not in LIVE_ROLES:
            raise ApiError(403, f"role {key.role} may not watch the live board")
        return key.name
    token = request.query.get("token", "")
    found = request.app[TOKENS].get(token) if token else None
    if found is None or found[1] <= time.monotonic():
        raise ApiError(401, "a valid API key (Authorization: Bearer) or live token is required")
    return str(found[0])


@operation(
    summary="The live board (server-sent events: a snapshot, then row deltas)",
    description="Events: `snapshot` (agents, calls, campaigns, tasks, the server's `now`), then "
    "`agent`, `call`, `campaign`, `task` (the whole changed row) and `call-gone`, "
    "`campaign-gone`, `task-gone`. A stream that falls far behind is ended; reconnect for a "
    "fresh snapshot. Lasts until the client goes (a comment line every "
    f"{KEEPALIVE:.0f} s keeps it open).",
    tag="dashboard",
    query=(Param("token", {"type": "string"}, "from POST /api/live/token"),),
    responses={200: None},
    produces="text/event-stream",
    public=True,
    extra_auth="Needs a supervisor, manager or admin key (Bearer), or `?token=` from "
    "POST /api/live/token.",
)
async def live(request: web.Request) -> web.StreamResponse:
    """GET /api/live: server-sent events, snapshot first, then deltas, until the client goes."""
    who = _allowed(request)
    engine = request.app[ENGINE]
    bus = _bus(request)
    feed = engine.live_feed
    try:
        await feed.refresh()
    except Exception:  # the stream still shows agents and calls
        logger.exception("live: campaigns and tasks not refreshed")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    snapshot, subscription = bus.subscribe()
    feed.watch()
    logger.info("live: %s watches the board", who)
    with held(request):
        try:
            snapshot["now"] = time.time()
            await response.write(_event("snapshot", snapshot))
            lost = asyncio.ensure_future(subscription.lost.wait())
            try:
                while True:
                    get = asyncio.ensure_future(subscription.queue.get())
                    done, _ = await asyncio.wait(
                        {get, lost}, timeout=KEEPALIVE, return_when=asyncio.FIRST_COMPLETED
                    )
                    if get not in done:
                        get.cancel()
                        if lost in done:
                            break
                        await response.write(b": keepalive\n\n")
                        continue
                    kind, data = get.result()
                    await response.write(_event(kind, data))
            finally:
                lost.cancel()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            bus.unsubscribe(subscription)
    return response


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


@operation(
    summary="Set an agent's daily plan (calls a working day) for the dashboard",
    tag="dashboard",
    path={"ext": EXTENSION},
    body={
        "type": "object",
        "required": ["daily_plan"],
        "properties": {"daily_plan": {"type": "integer", "minimum": 0, "maximum": 100000}},
    },
    responses={200: {"type": "object"}},
    errors=(400, 404),
)
@requires("manager")
async def set_plan(request: web.Request) -> web.Response:
    """PUT /agents/{ext}/plan {"daily_plan": N}: calls a working day (stored: it outlives
    restarts and overrides the config's `daily_plan`)."""
    bus = _bus(request)
    ext = request.match_info["ext"]
    if ext not in bus.board.agents:
        raise ApiError(404, f"no extension {ext}")
    try:
        body = await request.json()
    except ValueError as exc:
        raise ApiError(400, "body must be JSON") from exc
    plan = body.get("daily_plan") if isinstance(body, dict) else None
    if isinstance(plan, bool) or not isinstance(plan, int) or not 0 <= plan <= 100000:
        raise ApiError(400, 'body must be {"daily_plan": N}, N a whole number >= 0')
    store = request.app[ENGINE].store
    if store is not None:
        await store.set_daily_plan(ext, plan, now=datetime.now(UTC))
    deltas = bus.board.set_plan(ext, plan)
    bus.publish_deltas(deltas)
    return web.json_response(deltas[0][1])


@operation(
    summary="The live board now (what /api/live's snapshot holds), as JSON",
    tag="dashboard",
    responses={200: {"type": "object"}},
)
@requires("manager", "supervisor")
async def get_board(request: web.Request) -> web.Response:
    """GET /api/live/snapshot: the board as JSON, for clients that poll."""
    snapshot = _bus(request).board.snapshot()
    snapshot["now"] = time.time()
    return web.json_response(snapshot)


async def _close_streams(app: web.Application) -> None:
    app[ENGINE].live.close()


def add_routes(app: web.Application) -> None:
    app[TOKENS] = {}
    app.router.add_get("/", index)
    app.router.add_get("/web/app.js", script)
    app.router.add_get("/web/style.css", style)
    app.router.add_post("/api/live/token", issue_token)
    app.router.add_get("/api/live", live)
    app.router.add_get("/api/live/snapshot", get_board)
    app.router.add_put("/agents/{ext}/plan", set_plan)
    app.on_shutdown.append(_close_streams)
