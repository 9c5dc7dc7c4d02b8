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
from telephony.call import Answered, Ended
from telephony.sip import SipUri

from .b2bua import CallSummary
from .switchboard import Switchboard, answer_of

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
    ) -> Call:
        """Ring `agent`'s phone now and return its leg (its Call-ID is the call's key); the
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
        contact = bindings[0].contact.uri if bindings else None
        if not bindings or not isinstance(contact, SipUri):
            raise ClickToCallError(f"{agent}'s phone is not registered", 409)
        if switchboard.busy(agent):
            raise ClickToCallError(f"{agent} is on a call", 409)
        # Busy for the dialer and other callers from now on, not only once the customer is
        # dialled.
        release = switchboard.hold(agent)
        try:
            # The agent's phone shows the customer's number: they know whom they will call.
            leg = await switchboard.ua.dial(
                contact,
                bindings[0].peer,
                from_=switchboard.identity(number, number),
                to=switchboard.identity(agent, None),
                headers=bindings[0].route_headers(),
            )
        except BaseException:
            release()
            raise
        summary = CallSummary(
            leg.call_id,
            agent,
            number,
            datetime.now(UTC),
            direction="outbound",
            customer=number,
            campaign_id=campaign_id,
            lead_id=lead_id,
        )
        summary.legs.append(leg.call_id)
        switchboard.announce(summary)
        self._tasks.spawn(
            self._connect(leg, summary, caller_id, trunk, release, agent_ring_seconds)
        )
        logger.info("click-to-call %s: ringing %s for %s", leg.call_id, agent, number)
        return leg

    async def _connect(
        self,
        leg: Call,
        summary: CallSummary,
        caller_id: str | None,
        trunk: str,
        release: Callable[[], None],
        agent_ring_seconds: float,
    ) -> None:
        """Wait for the agent to pick up, then dial the customer and bridge (from then on the
        bridged call keeps the agent busy: the hold is released)."""
        try:
            if await self._agent_answers(leg, summary, agent_ring_seconds):
                await self._dial_customer(leg, summary, caller_id, trunk)
        finally:
            release()

    async def _agent_answers(
        self, leg: Call, summary: CallSummary, agent_ring_seconds: float
    ) -> bool:
        try:
            event = await answer_of(leg, agent_ring_seconds)
        except asyncio.CancelledError:
            await leg.hangup(reason="shutdown")
            raise
        if isinstance(event, Answered):
            return True
        if isinstance(event, Ended):
            self._conclude(summary, "no-answer", event.sip_status, f"agent-{event.reason}")
            return False
        await leg.hangup(reason="timeout")
        self._conclude(summary, "no-answer", 480, "agent-timeout")
        return False

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
