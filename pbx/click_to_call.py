"""Click-to-call: the PBX rings the agent's phone first (showing the customer's number), and
once the agent picks up, dials the customer through the trunk and bridges the two.

The call is one call log entry (outbound, the agent, the customer's number, campaign and lead
when given), announced when the agent's phone starts ringing and concluded at the end; it is
recorded and journaled like any other bridged call.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime

from telephony.aio import Call, TaskSet
from telephony.call import Ended
from telephony.sip import SipUri

from .b2bua import CallSummary
from .switchboard import Switchboard, first_answer

logger = logging.getLogger(__name__)

# What a dialable customer number looks like once spaces, dashes and brackets are gone.
_NUMBER = re.compile(r"^\+?[0-9]{7,15}$")
_SEPARATORS = re.compile(r"[\s\-().]")
AGENT_RING_SECONDS = 30.0
"""How long the agent's phone rings before the click-to-call gives up."""


class ClickToCallError(Exception):
    """A click-to-call that cannot start; `status` is the HTTP answer."""

    status = 400

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        if status is not None:
            self.status = status


def dialable(number: str) -> str:
    """The number without separators; ClickToCallError (400) when it is not a phone number."""
    cleaned = _SEPARATORS.sub("", number)
    if not _NUMBER.match(cleaned):
        raise ClickToCallError(f"{number!r} is not a phone number (7-15 digits, optional +)")
    return cleaned


class ClickToCall:
    """Places click-to-call calls on the switchboard; each runs beside it until bridged."""

    def __init__(self, switchboard: Switchboard) -> None:
        self.switchboard = switchboard
        self._tasks = TaskSet("click-to-call")

    async def place(
        self,
        agent: str,
        number: str,
        *,
        caller_id: str | None = None,
        trunk: str = "",
        campaign_id: int | None = None,
        lead_id: int | None = None,
        agent_ring_seconds: float = AGENT_RING_SECONDS,
    ) -> str:
        """Ring every phone `agent` registered now and return the call's key (the Call-ID of
        the first phone's leg: the calls row's and the API's, whichever phone answers); the
        rest runs beside. ClickToCallError (with the HTTP status) when the agent is unknown,
        busy or not registered, the number is bad or no trunk reaches it."""
        switchboard = self.switchboard
        if agent not in switchboard.extensions:
            raise ClickToCallError(f"no extension {agent}", 404)
        number = dialable(number)
        if not switchboard.can_reach(number, trunk):
            where = f" {trunk}" if trunk else ""
            raise ClickToCallError(f"no trunk{where} can reach {number}", 409)
        now = switchboard.ua.loop.time()
        bindings = switchboard.registrar.lookup(agent, now=now)
        if not any(isinstance(b.contact.uri, SipUri) for b in bindings):
            raise ClickToCallError(f"{agent}'s phone is not registered", 409)
        if switchboard.busy(agent):
            raise ClickToCallError(f"{agent} is on a call", 409)
        # Busy for the dialer and other callers from now on, not only once the customer is
        # dialled.
        release = switchboard.hold(agent)
        try:
            # The agent's phones show the customer's number: they know whom they will call.
            legs = await switchboard.ring_phones(
                bindings,
                from_=switchboard.identity(number, number),
                to=switchboard.identity(agent, None),
            )
        except BaseException:
            release()
            raise
        if not legs:
            release()
            raise ClickToCallError(f"{agent}'s phone cannot be reached", 409)
        key = legs[0].call_id
        summary = CallSummary(
            key,
            agent,
            number,
            datetime.now(UTC),
            direction="outbound",
            customer=number,
            campaign_id=campaign_id,
            lead_id=lead_id,
        )
        summary.legs.extend(leg.call_id for leg in legs)
        switchboard.announce(summary)
        self._tasks.spawn(
            self._connect(legs, summary, caller_id, trunk, release, agent_ring_seconds)
        )
        logger.info("click-to-call %s: ringing %d phones of %s for %s", key, len(legs), agent,
                    number)  # fmt: skip
        return key

    async def _connect(
        self,
        legs: list[Call],
        summary: CallSummary,
        caller_id: str | None,
        trunk: str,
        release: Callable[[], None],
        agent_ring_seconds: float,
    ) -> None:
        """Wait for one of the agent's phones to pick up (the others stop ringing), then dial
        the customer and bridge (from then on the bridged call keeps the agent busy: the hold
        is released)."""
        try:
            leg = await self._agent_answers(legs, summary, agent_ring_seconds)
            if leg is not None:
                await self._dial_customer(leg, summary, caller_id, trunk)
        finally:
            release()

    async def _agent_answers(
        self, legs: list[Call], summary: CallSummary, agent_ring_seconds: float
    ) -> Call | None:
        try:
            first = await first_answer(legs, agent_ring_seconds)
        except asyncio.CancelledError:
            for leg in legs:
                await leg.hangup(reason="shutdown")
            raise
        if isinstance(first, Call):
            return first
        if isinstance(first, Ended):
            self._conclude(summary, "no-answer", first.sip_status, f"agent-{first.reason}")
            return None
        for leg in legs:
            await leg.hangup(reason="timeout")
        self._conclude(summary, "no-answer", 480, "agent-timeout")
        return None

    async def _dial_customer(
        self, leg: Call, summary: CallSummary, caller_id: str | None, trunk: str
    ) -> None:
        try:
            self.switchboard.dial_out(
                leg, summary.callee, summary=summary, caller_id=caller_id, trunk=trunk
            )
        except LookupError as exc:  # the trunk went away while the agent's phone rang
            logger.warning("click-to-call %s: %s", leg.call_id, exc)
            await leg.hangup(reason="failed")
            self._conclude(summary, "failed", None, "no-trunk")

    def _conclude(self, summary: CallSummary, outcome: str, status: int | None, cause: str) -> None:
        summary.outcome, summary.sip_status, summary.hangup_cause = outcome, status, cause
        self.switchboard.conclude(summary)

    async def shutdown(self) -> None:
        """Cancel the click-to-calls still ringing an agent (their legs are hung up)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)


__all__ = ["AGENT_RING_SECONDS", "ClickToCall", "ClickToCallError", "dialable"]
