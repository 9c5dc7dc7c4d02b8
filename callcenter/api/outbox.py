"""REST for CRM delivery: the backlog per endpoint, the dead letters, and requeueing them once
the CRM (or its configuration) is fixed — an event is never lost, only parked."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .crm import ENGINE, crm_store
from .openapi import Param, operation, page_json, page_of, paged, read_page
from .security import ApiError, requires

ENDPOINT = Param("endpoint", {"type": "string", "maxLength": 200}, "One CRM endpoint's name.")
DEAD = {
    "type": "object",
    "required": ["event_id", "endpoint", "event_type", "aggregate", "attempts", "dead_at"],
    "properties": {
        "event_id": {"type": "integer"},
        "endpoint": {"type": "string"},
        "event_type": {"type": "string"},
        "aggregate": {"type": "string", "description": "call/<id> or task/<id>"},
        "attempts": {"type": "integer"},
        "dead_at": {"type": "string", "format": "date-time"},
        "last_error": {"type": ["string", "null"]},
        "occurred_at": {"type": "string", "format": "date-time"},
        "idempotency_key": {"type": "string"},
    },
}


def _json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


@operation(
    summary="CRM delivery backlog per endpoint (pending, dead, oldest pending event)",
    tag="outbox",
    responses={200: {"type": "object", "additionalProperties": {"type": "object"}}},
    errors=(503,),
)
@requires()
async def outbox_status(request: web.Request) -> web.Response:
    status = await crm_store(request).outbox_status()
    return web.json_response({name: _json(counts) for name, counts in status.items()})


@operation(
    summary="Dead letters: deliveries given up on, oldest first",
    tag="outbox",
    query=paged(ENDPOINT),
    responses={200: page_of("dead", DEAD)},
    errors=(400, 503),
)
@requires()
async def dead_letters(request: web.Request) -> web.Response:
    limit, offset = read_page(request.query)
    rows = await crm_store(request).dead_letters(
        endpoint=request.query.get("endpoint"), limit=limit + 1, offset=offset
    )
    items = [_json(r) for r in rows[:limit]]
    return web.json_response(
        page_json(request, "dead", items, limit=limit, offset=offset, more=len(rows) > limit)
    )


@operation(
    summary="Deliver dead letters again (all, one endpoint's, or the listed events)",
    description="Due at once with their attempts reset; an event older than the retry policy's "
    "max age gets one more try. Events after it in the same call may have been delivered "
    "already: the CRM sees this one late (occurred_at and the idempotency key tell it).",
    tag="outbox",
    body={
        "type": "object",
        "properties": {
            "endpoint": {"type": "string", "maxLength": 200},
            "events": {"type": "array", "items": {"type": "integer", "minimum": 1}},
        },
    },
    responses={
        200: {
            "type": "object",
            "required": ["requeued"],
            "properties": {"requeued": {"type": "integer"}},
        }
    },
    errors=(400, 503),
)
@requires()
async def requeue(request: web.Request) -> web.Response:
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError as exc:
        raise ApiError(400, "body must be JSON") from exc
    if not isinstance(body, dict):
        raise ApiError(400, 'body must be {"endpoint": ..., "events": [...]} (both optional)')
    endpoint, events = body.get("endpoint"), body.get("events")
    if endpoint is not None and not isinstance(endpoint, str):
        raise ApiError(400, "endpoint must be an endpoint's name")
    if events is not None and (
        not isinstance(events, list) or not all(type(e) is int and 0 < e < 2**63 for e in events)
    ):
        raise ApiError(400, "events must be a list of event ids")
    requeued = await crm_store(request).requeue_dead_letters(
        now=datetime.now(UTC), endpoint=endpoint, event_ids=events
    )
    outbox = request.app[ENGINE].outbox
    if outbox is not None:
        outbox.wake()
    return web.json_response({"requeued": requeued})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/outbox", outbox_status)
    app.router.add_get("/outbox/dead", dead_letters)
    app.router.add_post("/outbox/dead/requeue", requeue)
