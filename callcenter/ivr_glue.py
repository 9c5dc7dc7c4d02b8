"""IVR wiring: flows loaded from the config, served on `ivr:FLOW` DIDs, actions on the PBX and CRM.

ivr knows nothing of pbx or crm_bridge (feature packages never import each other); here its
`IvrActions` protocol is implemented with the Switchboard (transfers, who is free), the CrmStore
(callback tasks) and the lead store (do-not-call list). The dialer's broadcast mode gets its
runners from `IvrService.runner(name)` and the same actions.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crm_bridge import CrmStore, PgLeadStore
from ivr import (
    BeepDetector,
    Flow,
    FlowContext,
    FlowError,
    FlowResult,
    FlowRunner,
    IvrCall,
    PromptCache,
    load_flow,
)
from pbx import CallSummary, Did, Switchboard
from telephony.aio import Call

from .config import ConfigError, IvrSettings
from .journal import CallJournal

logger = logging.getLogger(__name__)

# Seconds to wait for the caller's ACK after the IVR answers.
ANSWER_TIMEOUT = 5.0
RECENT_RESULTS = 500


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


class IvrService:
    """Serves DIDs routed to `ivr:FLOW` (Switchboard.on_ivr) and hands out flow runners."""

    def __init__(self, flows: dict[str, Flow], actions: SwitchboardActions) -> None:
        self.flows = flows
        self.actions = actions
        self.runners = {name: FlowRunner(flow, actions) for name, flow in flows.items()}
        self.results: deque[tuple[str, FlowResult]] = deque(maxlen=RECENT_RESULTS)
        """(Call-ID, result) of recent inbound flow calls, newest last."""
        self.calls: dict[str, Call] = {}
        """Inbound calls in a flow now, by Call-ID."""

    def runner(self, name: str) -> FlowRunner:
        """The runner of flow `name` (KeyError when there is none)."""
        return self.runners[name]

    async def serve(self, call: Call, did: Did, summary: CallSummary) -> None:
        """Answer an inbound call, walk the DID's flow, journal the call unless transferred."""
        name = did.route.partition(":")[2]
        runner = self.runners.get(name)
        if runner is None:  # the config check makes this a bug, not a caller's mistake
            logger.error("DID %s: no IVR flow %s", did.number, name)
            call.reject(503)
            self._conclude(summary, "failed", "no-flow", 503)
            return
        try:
            await call.answer()
        except Exception as exc:  # no common codec, no RTP port
            logger.warning("call %s: IVR cannot answer: %s", call.call_id, exc)
            call.reject(getattr(exc, "status_code", 500))
            self._conclude(summary, "failed", "ivr-answer-failed", 500)
            return
        try:
            await call.next_event(timeout=ANSWER_TIMEOUT)  # Answered once the ACK is in
        except TimeoutError:
            logger.info("call %s: no ACK for the IVR's answer", call.call_id)
        if call.ended.done() or call.state.value != "connected":
            await call.hangup(reason="failed")
            self._conclude(summary, "failed", "no-ack", call.final_status)
            return
        summary.answered_at = datetime.now(UTC)  # by the IVR: talk time runs from here
        self.actions.track(call.call_id, summary)
        self.calls[call.call_id] = call
        try:
            context = FlowContext(caller=summary.caller, call_id=call.call_id, did=did.number)
            result = await runner.run(call, context)
        finally:
            self.actions.forget(call.call_id)
            self.calls.pop(call.call_id, None)
        self.results.append((call.call_id, result))
        if result.outcome != "transferred":
            self._conclude(summary, "answered", f"ivr-{result.outcome}", 200)

    async def shutdown(self) -> None:
        """Hang up every call still in a flow (their flows then end and journal them)."""
        for call in list(self.calls.values()):
            await call.hangup(reason="shutdown")

    def _conclude(self, summary: CallSummary, outcome: str, cause: str, status: int | None) -> None:
        summary.outcome, summary.hangup_cause, summary.sip_status = outcome, cause, status
        summary.ended_at = datetime.now(UTC)
        self.actions.switchboard.conclude(summary)


__all__ = ["IvrService", "SwitchboardActions", "load_flows"]
