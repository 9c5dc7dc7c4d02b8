"""GET /queues (the waiting queues, their callers, members and figures) and
POST /queues/{name}/members (log a member in or out, like *45 / *46 on the phone)."""

from __future__ import annotations

from aiohttp import web

from .crm import ENGINE
from .openapi import EXTENSION, operation
from .security import ApiError, acting_for, requires

QUEUE = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "strategy": {"type": "string"},
        "waiting": {"type": "array", "items": {"type": "object"}},
        "members": {"type": "array", "items": {"type": "object"}},
        "entered": {"type": "integer"},
        "answered": {"type": "integer"},
        "answered_within_service_level": {"type": "integer"},
        "abandoned": {"type": "integer"},
        "overflowed": {"type": "integer"},
        "callbacks": {"type": "integer"},
        "service_level_seconds": {"type": "number"},
        "service_level": {"type": ["number", "null"]},
        "average_speed_of_answer": {"type": ["number", "null"]},
        "abandon_rate": {"type": ["number", "null"]},
        "longest_wait": {"type": "number"},
    },
}


@operation(
    summary="The waiting queues: callers in line, members, service level and speed of answer",
    tag="queues",
    responses={200: {"type": "object", "properties": {"queues": {"type": "array",
                                                                  "items": QUEUE}}}},
)  # fmt: skip
async def list_queues(request: web.Request) -> web.Response:
    """GET /queues."""
    engine = request.app[ENGINE]
    now = engine.ua.loop.time()
    desk = engine.switchboard.queues
    return web.json_response({"queues": [q.snapshot(now=now) for q in desk.queues.values()]})


@operation(
    summary="Log a member in or out of the queue",
    description="An agent key bound to an extension logs in or out only that extension.",
    tag="queues",
    path={"name": {"type": "string"}},
    body={
        "type": "object",
        "required": ["extension", "action"],
        "properties": {
            "extension": EXTENSION,
            "action": {"type": "string", "enum": ["login", "logout"]},
        },
    },
    responses={200: QUEUE},
    errors=(400, 404),
)
@requires("manager", "supervisor", "agent")
async def member(request: web.Request) -> web.Response:
    """POST /queues/{name}/members {"extension": "101", "action": "login" | "logout"}."""
    engine = request.app[ENGINE]
    desk = engine.switchboard.queues
    name = request.match_info["name"]
    queue = desk.queues.get(name)
    if queue is None:
        raise ApiError(404, f"no queue {name}")
    try:
        body = await request.json()
    except ValueError as exc:
        raise ApiError(400, "body must be JSON") from exc
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("extension"), str)
        or body.get("action") not in ("login", "logout")
    ):
        raise ApiError(400, 'body must be {"extension": "101", "action": "login" | "logout"}')
    extension = body["extension"]
    acting_for(request, extension)
    if not desk.log_in(extension, name, login=body["action"] == "login"):
        raise ApiError(404, f"{extension} is no member of queue {name}")
    return web.json_response(queue.snapshot(now=engine.ua.loop.time()))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/queues", list_queues)
    app.router.add_post("/queues/{name}/members", member)
