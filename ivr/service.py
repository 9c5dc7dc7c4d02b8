"""The IVR as a service: answers a call, walks its flow, says how the call ended; holds one
runner per flow (inbound DIDs and broadcast campaigns share them).

It knows the PBX only through `IvrActions` and what it is handed: the composition root routes
`ivr:FLOW` DIDs here and turns a `Served` into the call's journal entry.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from telephony.aio import Call

from .flow import Flow
from .runner import FlowContext, FlowResult, FlowRunner, IvrActions

logger = logging.getLogger(__name__)

ANSWER_TIMEOUT = 5.0
"""Seconds to wait for the caller's ACK after the IVR answers."""
RECENT_RESULTS = 500


@dataclass(frozen=True)
class Served:
    """How a call served by a flow ended, as the call log records it."""

    outcome: str
    """"answered" (the IVR answered it), "failed" (it never could), "transferred" (a
    transfer node connected it: the bridge owns the call from then on)."""
    cause: str
    """"ivr-<flow outcome>", or why the IVR could not take it: no-flow, ivr-answer-failed,
    no-ack."""
    status: int | None
    result: FlowResult | None = None


class IvrService:
    def __init__(self, flows: dict[str, Flow], actions: IvrActions) -> None:
        self.flows = flows
        self.actions = actions
        self.runners = {name: FlowRunner(flow, actions) for name, flow in flows.items()}
        self.results: deque[tuple[str, FlowResult]] = deque(maxlen=RECENT_RESULTS)
        """(Call-ID, result) of recent inbound flow calls, newest last."""
        self.calls: dict[str, Call] = {}
        """Calls in a flow now, by Call-ID."""

    def runner(self, name: str) -> FlowRunner:
        """The runner of flow `name` (KeyError when there is none)."""
        return self.runners[name]

    async def serve(
        self,
        call: Call,
        flow: str,
        context: FlowContext,
        *,
        on_answered: Callable[[], None] | None = None,
    ) -> Served:
        """Answer an inbound call and walk flow `flow` over it. `on_answered` runs once the
        caller's ACK is in (talk time starts there)."""
        runner = self.runners.get(flow)
        if runner is None:  # the config check makes this a bug, not a caller's mistake
            logger.error("call %s: no IVR flow %s", call.call_id, flow)
            call.reject(503)
            return Served("failed", "no-flow", 503)
        try:
            await call.answer()
        except Exception as exc:  # no common codec, no RTP port
            logger.warning("call %s: IVR cannot answer: %s", call.call_id, exc)
            call.reject(getattr(exc, "status_code", 500))
            return Served("failed", "ivr-answer-failed", 500)
        try:
            await call.next_event(timeout=ANSWER_TIMEOUT)  # Answered once the ACK is in
        except TimeoutError:
            logger.info("call %s: no ACK for the IVR's answer", call.call_id)
        if call.ended.done() or call.state.value != "connected":
            await call.hangup(reason="failed")
            return Served("failed", "no-ack", call.final_status)
        if on_answered is not None:
            on_answered()
        self.calls[call.call_id] = call
        try:
            result = await runner.run(call, context)
        finally:
            self.calls.pop(call.call_id, None)
        self.results.append((call.call_id, result))
        if result.outcome == "transferred":
            return Served("transferred", "ivr-transferred", 200, result)
        return Served("answered", f"ivr-{result.outcome}", 200, result)

    async def shutdown(self) -> None:
        """Hang up every call still in a flow (their flows then end and are journaled)."""
        for call in list(self.calls.values()):
            await call.hangup(reason="shutdown")


__all__ = ["ANSWER_TIMEOUT", "IvrService", "Served"]
