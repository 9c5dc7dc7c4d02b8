"""An agent's seat for power and predictive dialing (see pbx/seats.py): the engine rings the
agent's phone and keeps the answered call up, so the dialer bridges each person with no
ringing; the same as dialling *55 from the phone."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pbx import Switchboard
from pbx.seats import SeatError

from .agents import _own_extension
from .openapi import EXTENSION, operation
from .security import ApiError, requires

SEAT = {
    "type": "object",
    "required": ["extension", "seated"],
    "properties": {
        "extension": {"type": "string"},
        "seated": {"type": "boolean"},
        "ringing": {"type": "boolean", "description": "the engine rings the phone to seat it"},
        "on_call": {"type": "boolean", "description": "a customer is bridged to the seat"},
        "calls": {"type": "integer", "description": "customers bridged since it was taken"},
        "seated_for": {"type": "number", "description": "seconds since it was taken"},
    },
}


def _seat_json(switchboard: Switchboard, ext: str, *, ringing: bool = False) -> dict[str, Any]:
    seat = switchboard.seats.get(ext)
    if seat is None:
        return {"extension": ext, "seated": False, "ringing": ringing}
    since = switchboard.ua.loop.time() - seat.since
    return {"extension": ext, "seated": True, "ringing": False, "on_call": seat.on_call,
            "calls": seat.calls, "seated_for": round(since, 3)}  # fmt: skip


@operation(
    summary="The agent's seat (nailed-up line for power and predictive dialing)",
    tag="agents",
    path={"ext": EXTENSION},
    responses={200: SEAT},
    errors=(404,),
)
@requires("manager", "supervisor", "agent")
async def get_seat(request: web.Request) -> web.Response:
    """GET /agents/{ext}/seat."""
    switchboard, ext = _own_extension(request)
    return web.json_response(_seat_json(switchboard, ext))


@operation(
    summary="Seat the agent: the engine rings their phone (asking it to answer by itself) and "
    "keeps the answered call up for the dialer",
    description="202 while the phone rings; GET shows `seated` once it answered. 409: seated "
    "already, on a call, or the phone is not registered.",
    tag="agents",
    path={"ext": EXTENSION},
    responses={202: SEAT},
    errors=(404, 409),
)
@requires("manager", "supervisor", "agent")
async def post_seat(request: web.Request) -> web.Response:
    """POST /agents/{ext}/seat."""
    switchboard, ext = _own_extension(request)
    try:
        await switchboard.call_seat(ext)
    except SeatError as exc:
        raise ApiError(exc.status, str(exc)) from exc
    return web.json_response(_seat_json(switchboard, ext, ringing=True), status=202)


@operation(
    summary="The agent stands up: the seat's call is hung up",
    tag="agents",
    path={"ext": EXTENSION},
    responses={200: SEAT},
    errors=(404, 409),
)
@requires("manager", "supervisor", "agent")
async def delete_seat(request: web.Request) -> web.Response:
    """DELETE /agents/{ext}/seat: 409 while a customer is on it."""
    switchboard, ext = _own_extension(request)
    try:
        await switchboard.leave_seat(ext)
    except SeatError as exc:
        raise ApiError(exc.status, str(exc)) from exc
    return web.json_response(_seat_json(switchboard, ext))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/agents/{ext}/seat", get_seat)
    app.router.add_post("/agents/{ext}/seat", post_seat)
    app.router.add_delete("/agents/{ext}/seat", delete_seat)
