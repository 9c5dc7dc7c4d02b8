"""Call control over the API, on a live call (`{id}`: the calls row id or the caller leg's
SIP Call-ID, as for monitoring):

    POST /calls/{id}/transfer  {"to": "104" | "ringgroup:NAME" | "queue:NAME" | "+E164",
                                "mode": "blind" | "warm"}   -> 202 (the new party rings;
                                a queue takes the caller at once, blind only)
    POST /calls/{id}/transfer/{tid}/complete   warm: the caller goes to the consulted party
    POST /calls/{id}/transfer/{tid}/cancel     warm: the consulted party goes, agent and caller
                                               talk again
    POST /calls/{id}/hold                          -> 200 (the customer hears music on hold)
    POST /calls/{id}/resume                        -> 200
    POST /calls/{id}/hangup                        -> 200 (BYE to both parties)
    POST /calls/{id}/dtmf      {"digits": "12#"}   -> 200 (keys to the other party)
    POST /calls/{id}/play      {"text": "...", "to": "caller" | "callee" | "both"} -> 202
    POST /calls/{id}/recording {"record": false}   -> 200 (opt-out: silence from now on;
                                                      true records again)
    POST /calls/{id}/park                          -> 200 {"slot": "701"} (the customer hears
                                                      music; *71SLOT or SLOT retrieves it)

An agent key acts only on a call it is a party of.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ivr import PromptError
from pbx import BridgedCall
from telephony.aio import MediaError, dtmf_route
from telephony.rtp import DTMF_DIGITS

from .crm import ENGINE
from .monitor import CALL_REF, _body, _bridged
from .openapi import operation
from .security import ApiError, acting_for, bound_extension, requires

if TYPE_CHECKING:
    from callcenter.engine import Engine

MODES = ("blind", "warm")
CALL_STATE = {
    "type": "object",
    "required": ["call_id", "caller", "callee", "state"],
    "properties": {
        "call_id": {"type": "string"},
        "caller": {"type": "string"},
        "callee": {"type": "string", "description": "the party talking to the caller now"},
        "state": {
            "type": "string",
            "enum": ["talking", "transferring", "consulting", "held", "ending"],
        },
        "transfer": {"type": "integer", "description": "the transfer's id (warm: {tid})"},
        "consulting": {"type": ["string", "null"]},
        "transfers": {"type": "array", "items": {"type": "object"}},
    },
}


def _state(bridged: BridgedCall, state: str | None = None) -> dict[str, Any]:
    if state is None:
        if bridged.consulting is not None:
            state = "consulting"
        elif bridged.transferring:
            state = "transferring"
        else:
            state = "held" if bridged.on_hold_by_api else "talking"
    return {
        "call_id": bridged.call_id,
        "caller": bridged.caller,
        "callee": bridged.callee,
        "state": state,
        "consulting": bridged.consulting,
        "transfers": list(bridged.summary.transfers),
    }


async def _own_call(request: web.Request) -> tuple[Engine, BridgedCall]:
    engine = request.app[ENGINE]
    bridged = await _bridged(engine, request.match_info["id"])
    own = bound_extension(request)
    if own is not None and own not in bridged.parties:
        acting_for(request, None)  # 403: an agent key acts on its own calls only
    return engine, bridged


@operation(
    summary="Transfer a live call (blind): the caller hears ringing while the target rings",
    tag="call control",
    path={"id": CALL_REF},
    body={
        "type": "object",
        "required": ["to"],
        "properties": {
            "to": {
                "type": "string",
                "description": "an extension, ringgroup:NAME, queue:NAME (blind only: the "
                "caller waits there like any queued caller), one of our DIDs (its route) or "
                "an external number (through a trunk)",
            },
            "mode": {"type": "string", "enum": list(MODES), "default": "blind"},
        },
    },
    responses={202: CALL_STATE},
    errors=(400, 403, 404, 409, 503),
)
@requires("manager", "supervisor", "agent")
async def transfer(request: web.Request) -> web.Response:
    engine, bridged = await _own_call(request)
    body = await _body(request)
    to = body.get("to")
    mode = body.get("mode", "blind")
    if not isinstance(to, str) or not to or len(to) > 64:
        raise ApiError(400, "to must be an extension, ringgroup:NAME, queue:NAME or a number")
    if mode not in MODES:
        raise ApiError(400, f"mode must be one of {', '.join(MODES)}")
    if to in bridged.parties or (to.startswith("agent:") and to[6:] in bridged.parties):
        raise ApiError(409, f"{to} is on this call already")
    started = engine.switchboard.transfer_call(bridged, to, by="api", mode=mode)
    if started == 480:
        raise ApiError(409, f"nobody at {to} can take the call now")
    if started == 404:
        raise ApiError(404, f"no extension, group, queue or number {to}")
    if started == 400:
        raise ApiError(400, "a queue takes blind transfers only")
    if isinstance(started, int):
        raise ApiError(409, "the call is not answered or a transfer runs already")
    return web.json_response(
        {**_state(bridged, "transferring"), "transfer": started.id}, status=202
    )


async def _consultation(request: web.Request, complete: bool) -> web.Response:
    _, bridged = await _own_call(request)
    tid = request.match_info["tid"]
    current = bridged.consult_id
    if current is None or str(current) != tid:
        raise ApiError(409, f"transfer {tid[:20]} is not a consultation in progress")
    done = bridged.complete_consultation() if complete else bridged.cancel_consultation()
    if not done:
        raise ApiError(409, "the consultation ended meanwhile")
    return web.json_response(_state(bridged, "talking"))


TRANSFER_ID = {"type": "string", "pattern": "^[0-9]{1,9}$"}


@operation(
    summary="Complete a warm transfer: the caller talks to the consulted party, the agent leaves",
    tag="call control",
    path={"id": CALL_REF, "tid": TRANSFER_ID},
    responses={200: CALL_STATE},
    errors=(403, 404, 409, 503),
)
@requires("manager", "supervisor", "agent")
async def complete(request: web.Request) -> web.Response:
    return await _consultation(request, True)


@operation(
    summary="Cancel a warm transfer: the consulted party goes, the agent has the caller back",
    tag="call control",
    path={"id": CALL_REF, "tid": TRANSFER_ID},
    responses={200: CALL_STATE},
    errors=(403, 404, 409, 503),
)
@requires("manager", "supervisor", "agent")
async def cancel(request: web.Request) -> web.Response:
    return await _consultation(request, False)


async def _hold(request: web.Request, on: bool) -> web.Response:
    _, bridged = await _own_call(request)
    if not bridged.hold_by_api(on):
        raise ApiError(409, "the call cannot be held or resumed now (a transfer runs, or no music)")
    return web.json_response(_state(bridged))


@operation(
    summary="Put the caller on hold: music on hold for the caller, the agent's audio cut",
    tag="call control",
    path={"id": CALL_REF},
    responses={200: CALL_STATE},
    errors=(403, 404, 409, 503),
)
@requires("manager", "supervisor", "agent")
async def hold(request: web.Request) -> web.Response:
    return await _hold(request, True)


@operation(
    summary="Take a call the API held off hold",
    tag="call control",
    path={"id": CALL_REF},
    responses={200: CALL_STATE},
    errors=(403, 404, 409, 503),
)
@requires("manager", "supervisor", "agent")
async def resume(request: web.Request) -> web.Response:
    return await _hold(request, False)


MAX_DIGITS = 32


@operation(
    summary="Press keys towards a party of a live call (the agent's keypad on the page)",
    description="Each digit goes the way the party's phone understands it (RFC 4733, SIP "
    "INFO or an in-band tone), as a key pressed on the other phone would. An agent key sends "
    "to the other party of its own call; other keys choose `to` (default: the customer).",
    tag="call control",
    path={"id": CALL_REF},
    body={
        "type": "object",
        "required": ["digits"],
        "properties": {
            "digits": {"type": "string", "pattern": "^[0-9*#A-D]{1,32}$"},
            "to": {"type": "string", "enum": ["caller", "callee"]},
        },
    },
    responses={200: CALL_STATE},
    errors=(400, 403, 404, 409, 503),
)
@requires("manager", "supervisor", "agent")
async def dtmf(request: web.Request) -> web.Response:
    body = await _body(request)
    digits = body.get("digits")
    if (
        not isinstance(digits, str)
        or not 1 <= len(digits) <= MAX_DIGITS
        or not set(digits) <= set(DTMF_DIGITS)
    ):
        raise ApiError(400, f"digits must be 1-{MAX_DIGITS} of 0-9 * # A-D")
    engine, bridged = await _own_call(request)
    own = bound_extension(request)
    to = body.get("to")
    if own is not None:
        to = "caller" if bridged.callee == own else "callee"
    elif to is None:
        to = "callee" if bridged.callee not in engine.switchboard.extensions else "caller"
    if to not in ("caller", "callee"):
        raise ApiError(400, 'to must be "caller" or "callee"')
    leg = bridged.a if to == "caller" else bridged.b
    if leg is None or bridged.transferring:
        raise ApiError(409, "the call is not bridged now (a transfer runs)")
    try:
        for digit in digits:
            await leg.send_dtmf(digit, method=dtmf_route(leg))
    except (RuntimeError, MediaError, OSError) as exc:  # the leg ended meanwhile
        raise ApiError(409, f"the keys were not sent: {exc}") from exc
    return web.json_response(_state(bridged))


@operation(
    summary="Hang up a live call (BYE to both parties)",
    tag="call control",
    path={"id": CALL_REF},
    responses={200: CALL_STATE},
    errors=(403, 404, 409, 503),
)
@requires("manager", "supervisor", "agent")
async def hangup(request: web.Request) -> web.Response:
    _, bridged = await _own_call(request)
    await bridged.a.hangup(reason="api-hangup")
    return web.json_response(_state(bridged, "ending"))


PLAY_TARGETS = ("caller", "callee", "both")
MAX_PROMPT_TEXT = 500


@operation(
    summary="Play a spoken prompt to a party of a live call (the other's audio pauses for it)",
    tag="call control",
    path={"id": CALL_REF},
    body={
        "type": "object",
        "required": ["text"],
        "properties": {
            "text": {"type": "string", "minLength": 1, "maxLength": MAX_PROMPT_TEXT},
            "to": {"type": "string", "enum": list(PLAY_TARGETS), "default": "caller"},
        },
    },
    responses={202: CALL_STATE},
    errors=(400, 403, 404, 409, 503),
)
@requires("manager", "supervisor", "agent")
async def play(request: web.Request) -> web.Response:
    engine, bridged = await _own_call(request)
    body = await _body(request)
    text, to = body.get("text"), body.get("to", "caller")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_PROMPT_TEXT:
        raise ApiError(400, f"text must be 1-{MAX_PROMPT_TEXT} characters")
    if to not in PLAY_TARGETS:
        raise ApiError(400, f"to must be one of {', '.join(PLAY_TARGETS)}")
    if engine.prompts is None or engine.prompts.espeak is None:
        raise ApiError(503, "text prompts need espeak-ng, which is not installed")
    try:
        path = await asyncio.to_thread(engine.prompts.speak, text)
    except PromptError as exc:
        raise ApiError(503, str(exc)) from exc
    if bridged.play_prompt(path, to=to) is None:
        raise ApiError(409, "the call is not bridged now (a transfer runs)")
    return web.json_response(_state(bridged), status=202)


@operation(
    summary="Stop recording a live call (opt-out: silence is written from now on) or record again",
    tag="call control",
    path={"id": CALL_REF},
    body={
        "type": "object",
        "required": ["record"],
        "properties": {"record": {"type": "boolean"}},
    },
    responses={
        200: {
            "type": "object",
            "required": ["call_id", "recording"],
            "properties": {"call_id": {"type": "string"}, "recording": {"type": "boolean"}},
        }
    },
    errors=(400, 403, 404, 409, 503),
)
@requires("manager", "supervisor", "agent")
async def recording(request: web.Request) -> web.Response:
    engine, bridged = await _own_call(request)
    record = (await _body(request)).get("record")
    if not isinstance(record, bool):
        raise ApiError(400, "record must be true or false")
    if engine.recordings is None:
        raise ApiError(503, "recording is off on this engine")
    if not engine.recordings.set_paused(bridged, not record):
        raise ApiError(409, "the call is not bridged now")
    now = engine.recordings.recording(bridged.call_id)
    return web.json_response({"call_id": bridged.call_id, "recording": bool(now)})


@operation(
    summary="Park a live call: the customer waits with music in a slot any phone retrieves "
    "(*71SLOT or SLOT); the parker hears the slot and is hung up, and is rung back when "
    "nobody retrieves the call in time",
    tag="call control",
    path={"id": CALL_REF},
    responses={
        200: {
            "type": "object",
            "required": ["call_id", "slot"],
            "properties": {"call_id": {"type": "string"}, "slot": {"type": "string"}},
        }
    },
    errors=(403, 404, 409, 503),
)
@requires("manager", "supervisor", "agent")
async def park(request: web.Request) -> web.Response:
    engine, bridged = await _own_call(request)
    slot = engine.switchboard.park(bridged, by=bound_extension(request) or "api")
    if slot is None:
        raise ApiError(409, "the call cannot be parked now (not bridged, or the lot is full)")
    return web.json_response({"call_id": bridged.call_id, "slot": slot})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/calls/{id}/transfer", transfer)
    app.router.add_post("/calls/{id}/transfer/{tid}/complete", complete)
    app.router.add_post("/calls/{id}/transfer/{tid}/cancel", cancel)
    app.router.add_post("/calls/{id}/hangup", hangup)
    app.router.add_post("/calls/{id}/dtmf", dtmf)
    app.router.add_post("/calls/{id}/hold", hold)
    app.router.add_post("/calls/{id}/resume", resume)
    app.router.add_post("/calls/{id}/play", play)
    app.router.add_post("/calls/{id}/recording", recording)
    app.router.add_post("/calls/{id}/park", park)
