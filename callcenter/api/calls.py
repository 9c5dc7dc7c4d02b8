"""Click-to-call over the API: POST /calls {"agent", "number", "lead"?, "campaign"?} -> 202.

An agent key bound to an extension places calls for that agent only. With `task`, the call works
on an open task (a callback): the task is done once the customer answers."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from callcenter.click_to_call import click_to_call
from callcenter.screen_pop import send_pop
from callcenter.status_callbacks import MAX_URL, check_url
from crm_bridge import CrmError
from pbx import ClickToCallError
from pbx import events as pbx_events

from .crm import ENGINE
from .openapi import EXTENSION, operation
from .security import API_KEY, ApiError, acting_for, requires

if TYPE_CHECKING:
    from callcenter.engine import Engine

logger = logging.getLogger(__name__)

MAX_ID = 2**63 - 1
ID = {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_ID}


def _optional_id(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise ApiError(400, f"{name} must be a positive whole number")
    return value


@operation(
    summary="Click-to-call: ring the agent's phone, then dial the customer and bridge",
    description="The engine rings the agent's registered phone first (it shows the customer's "
    "number); once the agent answers, it dials `number` through the campaign's trunk and caller "
    "ID (else the trunk's) and bridges the two. The call is recorded and journaled as an "
    "outbound calls row (agent, number, lead, campaign) and reaches the CRMs like any call. "
    "Answers at once with the call's ids; the call's progress shows on /api/live. 404: unknown "
    "agent or campaign; 400: not a phone number; 409: the agent's phone is not registered, "
    "the agent is on a call, or no trunk reaches the number.",
    tag="calls",
    body={
        "type": "object",
        "required": ["agent", "number"],
        "properties": {
            "agent": EXTENSION,
            "number": {"type": "string", "description": "7-15 digits, optional + and separators"},
            "lead": ID,
            "campaign": ID,
            "task": {
                **ID,
                "description": "an open task this call works on (a callback): done when the "
                "customer answers",
            },
            "status_callback": {
                "type": "string",
                "format": "uri",
                "maxLength": MAX_URL,
                "description": "an http(s) URL that gets a JSON POST on ringing (the "
                "customer's phone), answered and ended: {call_id, status, at, agent, number, "
                "outcome, hangup_cause}; one attempt each",
            },
        },
    },
    responses={
        202: {
            "type": "object",
            "required": ["call_id", "id", "agent", "number", "state"],
            "properties": {
                "call_id": {
                    "type": "string",
                    "description": "the call's key (/calls/{id}): the SIP Call-ID of the leg "
                    "to the agent's first phone; every registered phone of the agent rings "
                    "and the key stays whichever answers",
                },
                "id": {"type": ["integer", "null"], "description": "the calls row"},
                "agent": {"type": "string"},
                "number": {"type": "string"},
                "state": {"type": "string", "enum": ["ringing-agent"]},
                "warnings": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "DNC / calling-hours reasons the key's role may override "
                    "([crm] manual_policy: warn); with block they refuse the call (403)",
                },
            },
        }
    },
    errors=(400, 403, 404, 409, 503),
)
@requires("manager", "agent")
async def place_call(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    try:
        body = await request.json()
    except ValueError as exc:
        raise ApiError(400, "body must be JSON") from exc
    if not isinstance(body, dict):
        raise ApiError(400, 'body must be {"agent": ..., "number": ...}')
    agent, number = body.get("agent"), body.get("number")
    if not isinstance(agent, str | int) or isinstance(agent, bool) or not str(agent):
        raise ApiError(400, "agent must be an extension")
    if not isinstance(number, str | int) or isinstance(number, bool):
        raise ApiError(400, "number must be a phone number")
    acting_for(request, str(agent))
    task_id = await _open_task(request, body)
    callback = body.get("status_callback")
    if callback is not None:
        try:
            callback = check_url(callback)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from exc
    try:
        placed = await click_to_call(
            engine,
            agent=str(agent),
            number=str(number),
            lead_id=_optional_id(body, "lead"),
            campaign_id=_optional_id(body, "campaign"),
            policy=engine.config.crm.manual_policy.get(request[API_KEY].role, "warn"),
        )
    except ClickToCallError as exc:
        raise ApiError(exc.status, str(exc)) from exc
    if callback is not None and engine.status_callbacks is not None:
        engine.status_callbacks.watch(placed.call_id, callback)
    if task_id is not None:
        request.app[CALLBACK_TASKS].watch(placed.call_id, task_id)
    if placed.row_id is not None:
        # The agent's page shows who is called while the agent's own phone rings.
        engine.spawn(send_pop(engine, placed.row_id, [placed.agent]))
    return web.json_response(
        {
            "call_id": placed.call_id,
            "id": placed.row_id,
            "agent": placed.agent,
            "number": placed.number,
            "state": "ringing-agent",
            "warnings": list(placed.warnings),
        },
        status=202,
    )


class CallbackTasks:
    """Click-to-calls placed to call a task's contact back: the task is done when the customer
    answers (CallAnswered of the call), not when merely dialled; a call that ends unanswered
    leaves it open."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._tasks: dict[str, int] = {}
        events = engine.switchboard.events
        self._undo = [
            events.subscribe(pbx_events.CallAnswered, self._answered),
            events.subscribe(pbx_events.CallEnded, lambda e: self._forget(e.summary.call_id)),
        ]

    def watch(self, call_id: str, task_id: int) -> None:
        self._tasks[call_id] = task_id

    def _forget(self, call_id: str) -> None:
        self._tasks.pop(call_id, None)

    def _answered(self, event: pbx_events.CallAnswered) -> None:
        task_id = self._tasks.pop(event.summary.call_id, None)
        if task_id is not None:
            self.engine.spawn(self._close(task_id, event.summary.call_id))

    async def _close(self, task_id: int, call_id: str) -> None:
        if self.engine.store is None:
            return
        try:
            await self.engine.store.complete_task(task_id)
            logger.info("task %d done: call %s reached the customer", task_id, call_id)
        except CrmError as exc:  # closed meanwhile (the CRM, another call)
            logger.info("task %d not closed by call %s: %s", task_id, call_id, exc.reason)

    def close(self) -> None:
        for undo in self._undo:
            undo()


CALLBACK_TASKS = web.AppKey("callback_tasks", CallbackTasks)


async def _open_task(request: web.Request, body: dict[str, Any]) -> int | None:
    """The `task` of a click-to-call: an open task of the agent's (a bound key's own)."""
    task_id = _optional_id(body, "task")
    if task_id is None:
        return None
    store = request.app[ENGINE].store
    if store is None:
        raise ApiError(503, "tasks need the database")
    task = await store.get_task(task_id)
    if task is None:
        raise ApiError(404, f"no task {task_id}")
    if task.status != "open":
        raise ApiError(409, f"task {task_id} is {task.status} already")
    acting_for(request, task.assignee)
    return task_id


async def _drop_watch(app: web.Application) -> None:
    app[CALLBACK_TASKS].close()


def add_routes(app: web.Application) -> None:
    app[CALLBACK_TASKS] = CallbackTasks(app[ENGINE])
    app.on_cleanup.append(_drop_watch)
    app.router.add_post("/calls", place_call)
