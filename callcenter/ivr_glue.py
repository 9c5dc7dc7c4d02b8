"""IVR wiring: flows loaded from the config, served on `ivr:FLOW` DIDs, actions on the PBX and CRM.

ivr knows nothing of pbx or crm_bridge (feature packages never import each other); here its
`IvrActions` protocol is implemented with the Switchboard (transfers, who is free), the CrmStore
(callback tasks) and the lead store (do-not-call list). The dialer's broadcast mode gets its
runners from `ivr.IvrService.runner(name)` and the same actions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crm_bridge import CrmStore
from dialer import PgLeadStore
from ivr import (
    BeepDetector,
    Flow,
    FlowContext,
    FlowError,
    IvrCall,
    IvrService,
    PromptCache,
    load_flow,
)
from pbx import CallSummary, Did, Switchboard
from telephony.aio import Call

from .config import ConfigError, IvrSettings
from .journal import CallJournal

logger = logging.getLogger(__name__)

IvrRoute = Callable[[Call, Did, CallSummary], Awaitable[None]]


def load_flows(settings: IvrSettings, *, data_dir: Path) -> dict[str, Flow]:
    """Every configured flow with its prompts converted (or spoken) into the prompt cache.
    A prompt that cannot be made is a ConfigError naming the flow file's line."""
    cache = PromptCache(
        settings.prompt_cache or data_dir / "prompts",
        espeak="espeak-ng" if settings.tts else None,
    )
    flows = {}
    for name, path in settings.flows:
        try:
            flows[name] = load_flow(path, name=name, prepare=cache.prepare)
        except FlowError as exc:
            raise ConfigError(exc.path, exc.line, exc.reason) from exc
    return flows


class SwitchboardActions:
    """`ivr.IvrActions` on the engine: Switchboard, CrmStore, lead store."""

    def __init__(
        self,
        switchboard: Switchboard,
        *,
        store: CrmStore | None,
        leads: PgLeadStore | None,
        journal: CallJournal | None,
        beep_detector: Callable[[], BeepDetector] | None = None,
    ) -> None:
        self.switchboard = switchboard
        self.store = store
        self.leads = leads
        self.journal = journal
        self.summaries: dict[str, CallSummary] = {}
        """The journal summary of each call in a flow, by Call-ID (a transfer continues it);
        the dialer registers its broadcast calls here with track()."""
        self._beep_detector = beep_detector

    def track(self, call_id: str, summary: CallSummary) -> None:
        self.summaries[call_id] = summary

    def forget(self, call_id: str) -> None:
        self.summaries.pop(call_id, None)

    def agents_available(self, target: str) -> bool:
        kind, _, name = target.partition(":")
        if kind == "ringgroup":
            group = self.switchboard.groups.get(name)
            members = list(group.members) if group is not None else []
        else:
            members = [name]
        now = self.switchboard.ua.loop.time()
        return bool(self.switchboard.reachable(members, now=now))

    async def transfer(
        self, call: IvrCall, target: str, *, timeout: float, context: FlowContext
    ) -> bool:
        if not isinstance(call, Call):
            raise TypeError("transfers need a telephony Call")
        summary = self.summaries.get(call.call_id)
        if summary is None:
            summary = CallSummary(call.call_id, context.caller, target, datetime.now(UTC))
            summary.direction, summary.customer = "inbound", context.caller
            self.summaries[call.call_id] = summary
        return await self.switchboard.transfer(call, target, summary=summary, timeout=timeout)

    async def create_callback(
        self, context: FlowContext, *, assignee: str | None, due_in: timedelta, text: str
    ) -> None:
        if self.store is None:
            logger.warning("call %s: no database, callback task not made", context.call_id)
            return
        row = None
        if self.journal is not None and context.call_id:
            try:
                row = await self.journal.row_id(context.call_id)
            except Exception as exc:  # the call's row failed to open: the task still matters
                logger.info("call %s: no calls row for the task: %s", context.call_id, exc)
        await self.store.open_callback_task(
            context.caller,
            assignee=assignee,
            due_at=datetime.now(UTC) + due_in,
            call_row_id=row,
            text=text or f"Call back {context.caller}: asked for it in the phone menu",
        )

    async def opt_out(self, context: FlowContext, *, scope: str) -> None:
        if self.leads is None:
            logger.warning("call %s: no database, opt-out not stored", context.call_id)
            return
        campaign = context.campaign_id if scope == "campaign" else None
        await self.leads.dnc_add(
            [context.caller], now=datetime.now(UTC), campaign_id=campaign, reason="ivr opt-out"
        )

    def beep_detector(self) -> BeepDetector | None:
        return self._beep_detector() if self._beep_detector is not None else None


RESPONSIBLE_LOOKUP_SECONDS = 1.0
"""How long an inbound flow waits to learn the caller's responsible manager before it starts
without (its `{responsible}` targets then take their fallback)."""


def serve_dids(
    service: IvrService,
    actions: SwitchboardActions,
    *,
    responsible: Callable[[str], Awaitable[str | None]] | None = None,
) -> IvrRoute:
    """Switchboard.on_ivr: a DID routed to `ivr:FLOW` is served by the flow, then journaled
    (unless a transfer node handed it to a bridge, which journals it at its end). The flow's
    data holds the caller's `phone` and, from `responsible` (the CRM contact's manager, kept in
    step with amoCRM or Bitrix24 through user_map), `responsible`: `agent:{responsible}` routes
    "press 1" to the caller's own manager."""

    async def serve(call: Call, did: Did, summary: CallSummary) -> None:
        def answered() -> None:
            summary.answered_at = datetime.now(UTC)  # by the IVR: talk time runs from here
            actions.track(call.call_id, summary)  # a transfer continues this call row

        data = {"phone": summary.caller}
        if responsible is not None:
            try:
                manager = await asyncio.wait_for(
                    responsible(summary.caller), RESPONSIBLE_LOOKUP_SECONDS
                )
            except Exception as exc:  # a slow or failing store: the flow goes on without
                logger.warning("call %s: responsible manager unknown: %r", call.call_id, exc)
                manager = None
            if manager:
                data["responsible"] = manager
        context = FlowContext(
            caller=summary.caller, call_id=call.call_id, did=did.number, data=data
        )
        try:
            served = await service.serve(
                call, did.route.partition(":")[2], context, on_answered=answered
            )
        finally:
            actions.forget(call.call_id)
        if served.outcome != "transferred":
            summary.outcome, summary.hangup_cause = served.outcome, served.cause
            summary.sip_status, summary.ended_at = served.status, datetime.now(UTC)
            actions.switchboard.conclude(summary)

    return serve


__all__ = ["SwitchboardActions", "load_flows", "serve_dids"]
