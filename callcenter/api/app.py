"""aiohttp application: GET /health, GET /api/status."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web

from crm_bridge import SessionStore

from ..tls import https_context
from . import (
    agent_desk,
    agents,
    call_control,
    calls,
    campaigns,
    dashboard,
    dnc,
    metrics,
    monitor,
    openapi,
    outbox,
    queues,
    recording_links,
    reports,
    seats,
    sip_ws,
    streams,
)
from .crm import ENGINE, add_routes
from .openapi import operation
from .security import (
    AgentSessions,
    KeyRing,
    auth_middleware,
    echo_request_id,
    json_errors,
    request_ids,
    requires,
)

if TYPE_CHECKING:
    from callcenter.engine import Engine

logger = logging.getLogger(__name__)


@operation(
    summary="Liveness and database check",
    tag="meta",
    public=True,
    responses={
        200: {
            "type": "object",
            "required": ["status", "database"],
            "properties": {"status": {"type": "string"}, "database": {"type": "string"}},
        }
    },
    errors=(503,),
)
async def health(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    database = "none"
    if engine.database is not None:
        try:
            await engine.database.pool.fetchval("SELECT 1")
            database = "ok"
        except Exception as exc:  # the endpoint reports it; it must not fail itself
            logger.warning("health: database check failed: %s", exc)
            return web.json_response({"status": "degraded", "database": "down"}, status=503)
    return web.json_response({"status": "ok", "database": database})


@operation(
    summary="Snapshot: extensions and registrations, calls, legs, RTP ports, media clock",
    tag="meta",
    responses={
        200: {
            "type": "object",
            "required": ["extensions", "calls"],
            "properties": {"extensions": {"type": "array"}, "calls": {"type": "array"}},
        }
    },
)
async def status(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    now = engine.ua.loop.time()
    registrar = engine.switchboard.registrar
    extensions = []
    for number, ext in sorted(engine.switchboard.extensions.items()):
        bindings = registrar.lookup(number, now=now, include_unreachable=True)
        extensions.append(
            {
                "extension": number,
                "display_name": ext.display_name,
                "role": ext.role,
                "registered": bool(bindings),
                # False once keepalives go unanswered: registered, but not rung.
                "reachable": any(b.reachable for b in bindings),
                "contacts": [str(b.contact.uri) for b in bindings],
                "busy": engine.switchboard.busy(number),
            }
        )
    calls = [
        {
            "call_id": bridged.call_id,
            "caller": bridged.caller,
            "callee": bridged.callee,
            "state": "talking" if bridged.b is not None else "ringing",
        }
        for bridged in engine.switchboard.active.values()
    ]
    return web.json_response(
        {
            "extensions": extensions,
            "calls": calls,
            "legs": len(engine.ua.calls),
            "rtp_ports_in_use": engine.ua.ports.in_use,
            "transactions": engine.ua.endpoint.layer.active_count,
            "media_clock": {
                "max_lag_ms": round(engine.ua.clock.max_lag * 1000, 2),
                "skipped_frames": engine.ua.clock.skipped,
            },
        }
    )


_TRUNK_SCHEMA = {
    "type": "object",
    "required": ["name", "registration", "qualify", "channels_in_use", "available"],
    "properties": {
        "name": {"type": "string"},
        "priority": {"type": "integer"},
        "order": {"type": "integer", "description": "Position in the failover order."},
        "address": {"type": ["string", "null"]},
        "registration": {
            "type": ["object", "null"],
            "description": "null when the trunk does not register.",
            "properties": {
                "state": {"enum": ["unregistered", "registering", "registered", "failing"]},
                "last_status": {"type": ["integer", "null"]},
                "last_reason": {"type": ["string", "null"]},
                "next_try_in": {"type": ["number", "null"], "description": "Seconds (failing)."},
                "expires_in": {"type": ["number", "null"]},
                "failures": {"type": "integer"},
            },
        },
        "qualify": {
            "type": ["object", "null"],
            "properties": {
                "status": {"enum": ["unknown", "up", "down"]},
                "rtt_ms": {"type": ["number", "null"]},
                "interval": {"type": "number"},
            },
        },
        "channels": {"type": ["integer", "null"]},
        "channels_in_use": {"type": "integer"},
        "available": {"type": "boolean", "description": "Can carry a call now."},
    },
}


@operation(
    summary="Trunks: registration, qualify, channels in use, failover order",
    tag="meta",
    responses={
        200: {
            "type": "object",
            "required": ["trunks"],
            "properties": {"trunks": {"type": "array", "items": _TRUNK_SCHEMA}},
        }
    },
)
@requires("manager", "supervisor")
async def trunks(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    return web.json_response({"trunks": engine.switchboard.providers.snapshot()})


def build_app(engine: Engine) -> web.Application:
    keys = KeyRing(engine.config.api_keys)
    # Agent-page sessions live in the database when there is one (every node, every restart).
    store = SessionStore(engine.database.pool) if engine.database is not None else None
    sessions = AgentSessions(store)
    app = web.Application(
        middlewares=[
            request_ids,
            json_errors,
            auth_middleware(
                keys,
                open_paths=lambda r: (
                    metrics.is_public_scrape(r)
                    or dashboard.is_open(r)
                    or recording_links.is_signed_link(r)
                    or agent_desk.is_open(r)
                    or sip_ws.is_open(r)
                ),
                sessions=sessions,
            ),
        ]
    )
    app.on_response_prepare.append(echo_request_id)
    app[ENGINE] = engine
    streams.install(app)
    openapi.add_routes(app)
    metrics.add_routes(app)
    app.router.add_get("/health", health)
    app.router.add_get("/api/status", status)
    app.router.add_get("/trunks", trunks)
    add_routes(app)
    campaigns.add_routes(app)
    dnc.add_routes(app)
    outbox.add_routes(app)
    agents.add_routes(app)
    monitor.add_routes(app)
    calls.add_routes(app)
    call_control.add_routes(app)
    dashboard.add_routes(app)
    agent_desk.add_routes(app, sessions)
    recording_links.add_routes(app)
    queues.add_routes(app)
    seats.add_routes(app)
    reports.add_routes(app)
    sip_ws.add_routes(app)
    return app


async def start_http(engine: Engine, host: str, port: int) -> web.AppRunner:
    # A request line or header up to 64 kB reaches the handlers, which answer in the API's JSON
    # error shape (aiohttp's own limit, 8 kB, answers a bare text/plain 400 before them).
    runner = web.AppRunner(
        build_app(engine),
        access_log=None,
        max_line_size=65536,
        max_field_size=65536,
    )
    await runner.setup()
    tls = engine.config.http_tls
    context = None if tls is None else https_context(*tls)
    await web.TCPSite(runner, host, port, ssl_context=context).start()
    logger.info("%s listening on %s:%d", "HTTP" if tls is None else "HTTPS", host, port)
    return runner
