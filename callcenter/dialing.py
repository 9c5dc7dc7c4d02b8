"""The dialer's telephone lines: the PBX's trunk, agents and bridging, as dialer.Lines."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from dialer import Campaign, Claim
from pbx import BridgedCall, CallSummary, Switchboard
from telephony.aio import Call


class PbxLines:
    def __init__(self, switchboard: Switchboard) -> None:
        self.switchboard = switchboard

    def idle_agents(self, agents: tuple[str, ...]) -> int:
        board = self.switchboard
        now = board.ua.loop.time()
        return sum(
            1
            for agent in agents
            if board.presence.available(agent, now=now)
            and not board.busy(agent)
            and board.registrar.lookup(agent, now=now)
        )

    async def originate(self, number: str, *, caller_id: str) -> Call:
        return await self.switchboard.originate(number, caller_id=caller_id or None)

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

        async def no_agent(leg: Call) -> None:
            settle(None)
            await on_no_agent(leg)

        caller = campaign.caller_id or campaign.name
        summary = CallSummary(customer.call_id, caller, claim.lead.phone, datetime.now(UTC))
        summary.direction, summary.customer = "outbound", claim.lead.phone
        summary.campaign_id, summary.lead_id = campaign.id, claim.lead.id
        bridged = self.switchboard.connect(
            customer, list(agents), summary=summary, timeout=timeout, on_no_agent=no_agent
        )
        answered = bridged.on_answer

        def on_answer(call: BridgedCall) -> None:
            if answered is not None:
                answered(call)
            settle(call.callee)

        bridged.on_answer = on_answer
        customer.ended.add_done_callback(lambda _: settle(None))
        return connected
