"""The dialer's telephone lines: the PBX's trunk, agents and bridging, as dialer.Lines."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from crm_bridge import CrmStore
from dialer import AgentsNow, Campaign, Claim, FlowOutcome
from ivr import FlowContext, IvrService
from pbx import AgentState, BridgedCall, CallSummary, Switchboard
from telephony.aio import Call

from .events import AgentEvents
from .ivr_glue import SwitchboardActions
from .journal import CallJournal

logger = logging.getLogger(__name__)

# An attempt's outcome as the call log names it.
_CALL_OUTCOME = {"answered-machine": "voicemail", "answered-human": "answered"}


ScreenPop = Callable[[str, Call, Claim, Campaign], None]


class ScreenPops:
    """A ScreenPop: tells the agent's screen who is on the line (lead data, campaign, attempt)
    the moment the dialer connects them, and the CRMs through the outbox."""

    def __init__(
        self,
        events: AgentEvents,
        *,
        journal: CallJournal | None,
        store: CrmStore | None,
        spawn: Callable[[Coroutine[Any, Any, None]], object],
    ) -> None:
        self.events = events
        self.journal = journal
        self.store = store
        self.spawn = spawn
        self.enrich: Callable[[int], Awaitable[dict[str, Any]]] | None = None
        """The call's whole pop by calls row (contact, manager, last calls, open tasks), set
        once the engine exists; the dialer's campaign, lead and attempt go on top of it."""

    def __call__(self, agent: str, call: Call, claim: Claim, campaign: Campaign) -> None:
        self.spawn(self._pop(agent, call, claim, campaign))

    async def _pop(self, agent: str, call: Call, claim: Claim, campaign: Campaign) -> None:
        row = await self.journal.row_id(call.call_id) if self.journal is not None else None
        lead = claim.lead
        details = {
            "campaign": {"id": campaign.id, "name": campaign.name},
            "lead": {
                "id": lead.id,
                "phone": lead.phone,
                "name": lead.name,
                "data": dict(lead.data),
            },
            "attempt": {"id": claim.attempt.id, "number": claim.attempt.attempt_no},
        }
        pop: dict[str, Any] = {}
        if row is not None and self.enrich is not None:
            try:
                pop = await self.enrich(row)
            except Exception:  # the dialer's part of the pop still goes
                logger.exception("call %s: screen pop not enriched", call.call_id)
        pop.update({"call": row, "call_id": call.call_id, **details})
        self.events.publish(agent, "screen-pop", pop)
        if row is not None and self.store is not None:
            try:
                await self.store.screen_pop(row, agent, details, now=datetime.now(UTC))
            except Exception as exc:  # the agent has the pop already; the CRM copy is extra
                logger.error("call %s: screen pop not queued for the CRMs: %s", call.call_id, exc)


class PbxLines:
    def __init__(
        self,
        switchboard: Switchboard,
        *,
        screen_pop: ScreenPop | None = None,
        ivr: IvrService | None = None,
        ivr_actions: SwitchboardActions | None = None,
    ) -> None:
        self.switchboard = switchboard
        self.screen_pop = screen_pop
        self.ivr = ivr
        self.ivr_actions = ivr_actions
        """The engine's IVR flows (broadcast campaigns play one to each person)."""
        """Gets (agent, customer leg, claim, campaign) the moment an agent is connected."""
        self._summaries: dict[str, CallSummary] = {}
        """Each attempt's call log entry, by Call-ID, from the INVITE to the end."""
        self._held: dict[str, int] = {}
        """Agents this node's dialer holds (reserved in the shared bookings on a cluster), by
        the campaign pacing for them: one campaign's at a time, so two campaigns never count
        one idle agent twice."""

    def agents_now(self, agents: tuple[str, ...]) -> AgentsNow:
        board = self.switchboard
        now = board.ua.loop.time()
        # An agent a queue's waiting caller needs is not the dialer's to take.
        wanted = board.queues.wanted(now=now)
        # An agent on a seat (*55) is the dialer's: bridged at once, no phone rung.
        free = [*board.seated(agents, now=now), *board.reachable(agents, now=now)]
        idle = tuple(a for a in dict.fromkeys(free) if a not in wanted or a in board.seats)
        talking, wrapping = [], []
        for agent in agents:
            if agent in idle or agent not in board.extensions:
                continue
            if not board.registrar.lookup(agent, now=now):
                continue  # logged out: not part of the campaign's staff right now
            if board.bookings is not None and board.bookings.booked_elsewhere(agent):
                continue  # another node's: its end is no sooner free for us
            state = board.presence.state(agent, now=now)
            if state is AgentState.ON_CALL:
                talking.append(board.presence.on_call_for(agent, now=now) or 0.0)
            elif state is AgentState.WRAP_UP:
                wrapping.append(board.presence.wrap_up_left(agent, now=now))
        return AgentsNow(idle, tuple(talking), tuple(wrapping))

    async def reserve(self, campaign: int, idle: tuple[str, ...]) -> tuple[str, ...]:
        mine = [a for a in idle if self._held.get(a, campaign) == campaign]
        for agent in mine:  # before the wait: another campaign pacing meanwhile skips them
            self._held[agent] = campaign
        bookings = self.switchboard.bookings
        held: set[str] = set()
        try:
            held = await bookings.reserve(mine) if bookings is not None else set(mine)
        finally:
            for agent in mine:
                if agent not in held and self._held.get(agent) == campaign:
                    del self._held[agent]
        return tuple(a for a in mine if a in held)

    async def unreserve(self, campaign: int, *, keep: int) -> None:
        mine = [a for a, c in self._held.items() if c == campaign]
        if len(mine) <= keep:
            return
        board = self.switchboard
        idle = set(board.reachable(mine, now=board.ua.loop.time()))
        # Agents since taken by a call go first (their booking is the call's now).
        spare = sorted(mine, key=lambda a: a in idle)[: len(mine) - keep]
        for agent in spare:
            del self._held[agent]
        if board.bookings is not None:
            await board.bookings.unreserve(spare)

    async def originate(self, claim: Claim, campaign: Campaign) -> Call:
        call = await self.switchboard.originate(
            claim.lead.phone, caller_id=campaign.caller_id or None, trunk=campaign.trunk
        )
        summary = CallSummary(
            call.call_id, campaign.caller_id or campaign.name, claim.lead.phone, datetime.now(UTC)
        )
        summary.direction, summary.customer = "outbound", claim.lead.phone
        summary.campaign_id, summary.lead_id = campaign.id, claim.lead.id
        self._summaries[call.call_id] = summary
        self.switchboard.announce_outgoing(call, summary)
        return call

    def finished(self, call: Call, outcome: str) -> None:
        summary = self._summaries.pop(call.call_id, None)
        if summary is None:
            return
        summary.outcome = _CALL_OUTCOME.get(outcome, outcome)
        summary.sip_status, summary.hangup_cause = call.final_status, call.end_reason
        self.switchboard.conclude(summary)

    async def run_flow(self, customer: Call, *, claim: Claim, campaign: Campaign) -> FlowOutcome:
        if self.ivr is None or campaign.flow not in self.ivr.runners:
            raise LookupError(f"no IVR flow {campaign.flow!r} on this engine (see [ivr] flows)")
        runner = self.ivr.runner(campaign.flow)
        summary = self._summaries[customer.call_id]
        lead = claim.lead
        # The flow's targets and assignees may name lead fields: agent:{responsible}...
        data = {str(k): str(v) for k, v in lead.data.items()}
        data |= {
            "phone": lead.phone,
            "name": lead.name or "",
            "responsible": lead.responsible or "",
        }
        context = FlowContext(
            caller=lead.phone,
            call_id=customer.call_id,
            campaign_id=campaign.id,
            lead_id=lead.id,
            data=data,
        )
        actions = self.ivr_actions
        if actions is not None:
            actions.track(customer.call_id, summary)  # a transfer continues this call row
        try:
            result = await runner.run(customer, context)
        finally:
            if actions is not None:
                actions.forget(customer.call_id)
        agent = None
        if result.outcome == "transferred":
            # The switchboard bridged the call and journals it when it ends.
            self._summaries.pop(customer.call_id, None)
            agent = summary.callee
        return FlowOutcome(dataclasses.asdict(result), agent)

    def connect(
        self,
        customer: Call,
        agents: tuple[str, ...],
        *,
        claim: Claim,
        campaign: Campaign,
        timeout: float,
        on_no_agent: Callable[[Call], Awaitable[None]],
    ) -> Awaitable[str | None]:
        connected: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

        def settle(agent: str | None) -> None:
            if not connected.done():
                connected.set_result(agent)

        summary = self._summaries.pop(customer.call_id)

        async def no_agent(leg: Call) -> None:
            settle(None)
            summary.outcome = "abandoned"
            await on_no_agent(leg)

        bridged = self.switchboard.connect(
            customer, list(agents), summary=summary, timeout=timeout, on_no_agent=no_agent
        )

        def on_answer(call: BridgedCall) -> None:
            settle(call.callee)
            if self.screen_pop is not None:
                self.screen_pop(call.callee, customer, claim, campaign)

        bridged.when_answered(on_answer)
        customer.ended.add_done_callback(lambda _: settle(None))
        return connected
