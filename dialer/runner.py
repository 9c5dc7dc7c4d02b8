"""Running a campaign: pace, claim leads, dial, detect machines, connect people to agents.

The runner owns no SIP and no database: it talks to a `LeadStore` (dialer/store.py implements
it) and to `Lines` (the composition root implements it over the PBX). Each attempt is reserved
in the store before its INVITE goes out, so a crash never dials a lead twice for the same
attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from telephony.aio import Call
from telephony.aio.tasks import cancel_and_wait
from telephony.call import Answered, Ended
from telephony.media import WavSource

from .amd import AmdConfig, AmdDecision, AmdReason, AnsweringMachineDetector, BeepDetector, Verdict
from .ledger import AbandonLedger
from .model import Campaign, Claim, LeadStore
from .pacing import Bucket, Pacer, PacingState

logger = logging.getLogger(__name__)

# SIP final statuses of an unanswered attempt -> the attempt's outcome.
_OUTCOME_BY_STATUS = {486: "busy", 600: "busy", 603: "rejected", 403: "rejected", 480: "no-answer",
                      408: "no-answer", 487: "no-answer"}  # fmt: skip


@dataclass(frozen=True)
class AgentsNow:
    """A campaign's logged-in agents at one moment, as pacing sees them."""

    idle: tuple[str, ...]
    """Registered, available and not on a call: can take a call now."""
    talking_for: tuple[float, ...] = ()
    """For each agent on a call: seconds since it began."""
    wrap_up_left: tuple[float, ...] = ()
    """For each agent in wrap-up: seconds left at most."""


class Lines(Protocol):
    """What the dialer needs from the telephone system (the PBX, through the composition root)."""

    def agents_now(self, agents: tuple[str, ...]) -> AgentsNow:
        """Which of the campaign's agents are idle, talking or wrapping up."""
        ...

    async def reserve(self, campaign: int, idle: tuple[str, ...]) -> tuple[str, ...]:
        """Hold idle agents for `campaign`'s pacing: those of `idle` no other campaign here
        and no other node holds (the rest are not this campaign's to count)."""
        ...

    async def unreserve(self, campaign: int, *, keep: int) -> None:
        """`campaign` needs `keep` of the agents it holds at most (its calls in flight and
        people waiting): the others are given back."""
        ...

    async def originate(self, claim: Claim, campaign: Campaign) -> Call:
        """Send the INVITE for one attempt through the trunk (the call log opens its row)."""
        ...

    def finished(self, call: Call, outcome: str) -> None:
        """An attempt that never reached an agent is over: close its call log row."""
        ...

    def run_flow(
        self, customer: Call, *, claim: Claim, campaign: Campaign
    ) -> Awaitable[FlowOutcome]:
        """Broadcast: play the campaign's IVR flow to an answered person; resolves when the
        flow is over (hung up, or transferred to an agent who answered)."""
        ...

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
        """Bridge the customer to a free agent; resolves to the agent's extension once
        connected, or None when nobody took the call within `timeout`."""
        ...


@dataclass(frozen=True)
class FlowOutcome:
    """What a broadcast call did in its flow (stored per attempt)."""

    result: Mapping[str, Any]
    """The flow's result (path, digits, listened_to_end, outcome, callback_created...)."""
    agent: str | None = None
    """The agent the flow transferred the person to, once that agent answered."""


@dataclass
class RunnerConfig:
    tick: float = 0.5
    """Seconds between pacing decisions (an agent coming free also wakes the runner)."""
    node: str = "node"
    """This engine's name in attempt reservations."""
    clock: Callable[[], float] = time.time
    """POSIX seconds for pacing, the trunk's token bucket and the abandon ledger (which keeps
    calendar days, hence wall-clock time)."""


@dataclass
class _Stats:
    dialled: int = 0
    humans: int = 0
    machines: int = 0
    connected: int = 0
    abandoned: int = 0
    in_flight: dict[int, float] = field(default_factory=dict)
    """attempt id -> clock time the INVITE went out (still ringing or in AMD)."""
    live_waiting: int = 0
    """Live answers waiting for an agent (within the connect deadline)."""


class CampaignRunner:
    def __init__(
        self,
        campaign: Campaign,
        store: LeadStore,
        lines: Lines,
        *,
        pacer: Pacer,
        ledger: AbandonLedger,
        bucket: Bucket,
        config: RunnerConfig | None = None,
    ) -> None:
        self.campaign = campaign
        self.store = store
        self.lines = lines
        self.pacer = pacer
        self.ledger = ledger
        self.bucket = bucket
        self.config = config or RunnerConfig()
        self.on_ledger_change: Callable[[AbandonLedger], None] | None = None
        """Gets the ledger after every live answer (to persist it)."""
        self.stats = _Stats()
        self._attempts: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._agent_changed = asyncio.Event()
        """Set by wake(): an agent's state changed (people waiting for one look again)."""
        self._task: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._broadcast = campaign.mode == "broadcast"

    @property
    def campaign_id(self) -> int:
        return self.campaign.row_id

    def start(self) -> None:
        self._task = self._loop.create_task(self._run())

    async def stop(self, *, hang_up: bool = False) -> None:
        """Stop dialing; attempts in progress finish unless `hang_up`."""
        if self._task is not None:
            await cancel_and_wait(self._task)
        if hang_up:
            for task in list(self._attempts):
                task.cancel()
        if self._attempts:
            await asyncio.wait(self._attempts, timeout=30)
        if not self._broadcast:
            try:
                await self.lines.unreserve(self.campaign_id, keep=0)
            except Exception as exc:  # the reservations lapse with their lease anyway
                logger.error("campaign %s: agents not given back: %s", self.campaign.name, exc)

    def wake(self) -> None:
        """An agent came free: decide now, not at the next tick (and tell waiting people)."""
        self._wake.set()
        self._agent_changed.set()

    async def _agent_free(self, agents: tuple[str, ...], call: Call, *, until: float) -> None:
        """Wait (up to `until`) for one of `agents` to be idle; presence changes wake us."""
        while not call.ended.done():
            self._agent_changed.clear()
            if self.lines.agents_now(agents).idle:
                return
            left = until - self.config.clock()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._agent_changed.wait(), left)

    async def _run(self) -> None:
        while True:
            try:
                await self._pace()
            except Exception:
                logger.exception("campaign %s: pacing failed", self.campaign.name)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.tick)

    def _state(self, agents: AgentsNow, idle: tuple[str, ...], now: float) -> PacingState:
        return PacingState(
            idle_agents=len(idle),
            on_call_since=tuple(now - t for t in agents.talking_for),
            wrap_up_until=tuple(now + t for t in agents.wrap_up_left),
            dialing_since=tuple(self.stats.in_flight.values()),
            live_waiting=self.stats.live_waiting,
        )

    async def _pace(self) -> None:
        now = self.config.clock()
        agents = self.lines.agents_now(self.campaign.agents)
        idle = agents.idle
        wanted = self.pacer.lines_to_dial(self._state(agents, idle, now), now=now)
        if wanted > 0 and idle and not self._broadcast:
            # Count only the idle agents this campaign holds: another node's (or another
            # campaign's) dialer pacing for the same agents would over-dial and abandon.
            held = await self.lines.reserve(self.campaign_id, idle)
            if held != idle:
                idle = held
                wanted = self.pacer.lines_to_dial(self._state(agents, idle, now), now=now)
        allowed = await self.bucket.acquire(wanted, now=now) if wanted > 0 else 0
        if allowed > 0:
            claims = await self.store.claim_next_leads(
                self.campaign_id, allowed, now=datetime.now(UTC), node=self.config.node,
                idle_agents=idle,
            )  # fmt: skip
            if len(claims) < allowed:  # no lead due: the trunk's budget is for other campaigns
                await self.bucket.give_back(allowed - len(claims))
            for claim in claims:
                self.stats.in_flight[claim.attempt.id] = self.config.clock()
                task = self._loop.create_task(self._attempt(claim))
                self._attempts.add(task)
                task.add_done_callback(self._attempts.discard)
        if not self._broadcast:
            await self.lines.unreserve(
                self.campaign_id, keep=len(self.stats.in_flight) + self.stats.live_waiting
            )

    async def _attempt(self, claim: Claim) -> None:
        attempt = claim.attempt
        outcome, agent = "failed", None
        call: Call | None = None
        try:
            self.stats.in_flight.setdefault(attempt.id, self.config.clock())
            call = await self.lines.originate(claim, self.campaign)
            await self.store.attempt_dialled(attempt.id, call.call_id, now=datetime.now(UTC))
            self.stats.dialled += 1
            outcome, agent = await self._follow(call, claim)
        except LookupError as exc:
            logger.error("campaign %s: %s", self.campaign.name, exc)
        except Exception:
            logger.exception("campaign %s: attempt %d failed", self.campaign.name, attempt.id)
        finally:
            self.stats.in_flight.pop(attempt.id, None)
            if call is not None and agent is None:
                try:
                    if not call.ended.done():
                        await call.hangup(reason=outcome)
                    self.lines.finished(call, outcome)
                except Exception:  # the attempt must still be closed below
                    logger.exception("campaign %s: attempt %d hang-up", self.campaign.name,
                                     attempt.id)  # fmt: skip
            with contextlib.suppress(Exception):
                await self.store.attempt_finished(
                    attempt.id, outcome, now=datetime.now(UTC), agent=agent
                )
            self.wake()

    async def _follow(self, call: Call, claim: Claim) -> tuple[str, str | None]:
        """Ringing to the end: the attempt's outcome and the agent who took it. The pacer
        learns from every attempt (ring time, live or not, talk time)."""
        clock = self.config.clock
        dialled = self.stats.in_flight.get(claim.attempt.id, clock())
        try:
            async with asyncio.timeout(self.campaign.max_ring_seconds):
                while True:
                    event = await call.next_event()
                    if isinstance(event, Answered):
                        break
                    if isinstance(event, Ended):
                        outcome = _OUTCOME_BY_STATUS.get(event.sip_status or 0, "failed")
                        self.pacer.observe(outcome, clock() - dialled)
                        return outcome, None
        except TimeoutError:
            call.cancel(reason="ring-timeout")
            self.pacer.observe("no-answer", clock() - dialled)
            return "no-answer", None
        ring = clock() - dialled
        decision = await self._classify(call)
        if not self._broadcast:
            # A broadcast call holds its line until it ends; a dialer call stops counting
            # against the agents once it is classified.
            self.stats.in_flight.pop(claim.attempt.id, None)
        if decision is None:
            return await self._decided(call, claim, None, ring)
        # The verdict is stored beside what it decides: a person reaches an agent at once,
        # not after a database round trip (the attempt is closed only once it is stored).
        saving = self._loop.create_task(self._save_amd(claim, decision))
        try:
            return await self._decided(call, claim, decision, ring)
        finally:
            await saving

    async def _decided(
        self, call: Call, claim: Claim, decision: AmdDecision | None, ring: float
    ) -> tuple[str, str | None]:
        """What the verdict (None: no AMD, a person) makes of an answered call."""
        clock = self.config.clock
        verdict = decision.verdict if decision is not None else Verdict.HUMAN
        if verdict is Verdict.SIT:  # a network announcement: the number may work later
            self.pacer.observe("failed", ring)
            return "failed", None
        if verdict is Verdict.FAX:  # never a person on this number
            self.pacer.observe("rejected", ring)
            return "rejected", None
        if verdict is Verdict.UNSURE:
            unsure = self.campaign.amd_unsure
            if unsure == "hangup":
                self.stats.machines += 1
                self.pacer.observe("answered-machine", ring)
                return "answered-machine", None
            verdict = Verdict.MACHINE if unsure == "voicemail" else Verdict.HUMAN
        if verdict is Verdict.MACHINE:
            self.stats.machines += 1
            self.pacer.observe("answered-machine", ring)
            left = await self._leave_message(call, decision)
            if self._broadcast:
                await self._save_result(claim, FlowOutcome({
                    "flow": self.campaign.flow, "path": ["voicemail"], "outcome": "voicemail",
                    "voicemail_left": left, "listened_to_end": left,
                }))  # fmt: skip
            return "answered-machine", None
        self.stats.humans += 1
        self.pacer.observe("answered-human", ring)
        if self._broadcast:
            return await self._broadcast_flow(call, claim)
        answered = clock()
        self.stats.live_waiting += 1
        try:
            agents = self._agents_for(claim)
            # A person may wait up to the connect deadline for an agent to come free.
            deadline = answered + self.campaign.connect_seconds
            await self._agent_free(agents, call, until=deadline)
            agent = await self.lines.connect(
                call, agents, claim=claim, campaign=self.campaign,
                timeout=max(0.1, deadline - clock()), on_no_agent=self._safe_harbor,
            )  # fmt: skip
        finally:
            self.stats.live_waiting -= 1
        connected = clock()
        abandoned = self.ledger.record_answer(
            now=answered, connect_delay=connected - answered if agent is not None else None
        )
        if self.on_ledger_change is not None:
            self.on_ledger_change(self.ledger)
        await call.ended
        if agent is None or abandoned:
            self.stats.abandoned += 1
            return "abandoned", agent
        self.pacer.observe_talk(clock() - connected)
        self.stats.connected += 1
        return "answered-human", agent

    async def _broadcast_flow(self, call: Call, claim: Claim) -> tuple[str, str | None]:
        """A person answered a broadcast: the flow plays (press 1, press 9...); the attempt is
        answered-human whatever they chose, and the flow's result is stored with it."""
        try:
            outcome = await self.lines.run_flow(call, claim=claim, campaign=self.campaign)
        except LookupError as exc:  # no such flow on this engine
            logger.error("campaign %s: %s", self.campaign.name, exc)
            return "failed", None
        await self._save_result(claim, outcome)
        if outcome.agent is not None:
            await call.ended  # the line stays busy until the transferred call ends
            self.stats.connected += 1
        return "answered-human", outcome.agent

    async def _save_result(self, claim: Claim, outcome: FlowOutcome) -> None:
        result = {**outcome.result, "agent": outcome.agent}
        try:
            await self.store.save_broadcast_result(claim.attempt.id, result, now=datetime.now(UTC))
        except Exception:  # the call happened; losing its detail must not lose the attempt
            logger.exception("campaign %s: broadcast result not stored", self.campaign.name)

    def _agents_for(self, claim: Claim) -> tuple[str, ...]:
        """Who may take the call: the agent who promised this callback while they are free,
        otherwise the campaign's agents (the longest idle first)."""
        promised = claim.lead.callback_agent
        if (
            promised is not None
            and promised in self.campaign.agents
            and self.lines.agents_now((promised,)).idle
        ):
            return (promised,)
        return self.campaign.agents

    def amd_config(self) -> AmdConfig:
        """The detector's settings for this campaign (its time limits)."""
        campaign = self.campaign
        max_ms = round(campaign.amd_max_seconds * 1000)
        return AmdConfig(
            max_analysis_ms=max_ms,
            initial_silence_ms=min(max_ms, round(campaign.amd_initial_silence_seconds * 1000)),
        )

    async def _classify(self, call: Call) -> AmdDecision | None:
        """Stream the first seconds of the answer through AMD; people are passed on at once.
        None when the campaign runs without AMD (or the call ended before a verdict)."""
        if not self.campaign.amd:
            return None
        config = self.amd_config()
        detector = AnsweringMachineDetector(config)
        decided: asyncio.Future[AmdDecision] = self._loop.create_future()

        def frame(pcm: object) -> None:
            decision = detector.feed(pcm)  # type: ignore[arg-type]
            if decision is not None and not decided.done():
                decided.set_result(decision)

        assert call.media is not None
        stop_listening = call.media.listen(frame)
        # The detector decides within max_analysis_ms of audio (a tone then sounding is heard
        # to its end, 1.5 s at most); the margin covers late or lost packets.
        limit = config.max_analysis_ms / 1000 + 2.5
        try:
            done, _ = await asyncio.wait(
                {decided, call.ended}, timeout=limit, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stop_listening()
        if decided in done:
            return decided.result()
        if call.ended.done():
            return None
        logger.warning("campaign %s: no AMD verdict in %.1f s (no audio?)", self.campaign.name,
                       limit)  # fmt: skip
        return AmdDecision(
            verdict=Verdict.UNSURE, reason=AmdReason.TIMEOUT, frames=detector.frames,
            words=detector.words, greeting_ms=0, initial_silence_ms=0, confidence=0.5,
        )  # fmt: skip

    async def _save_amd(self, claim: Claim, decision: AmdDecision) -> None:
        try:
            await self.store.attempt_amd(
                claim.attempt.id, decision.verdict.value, reason=decision.reason.value,
                confidence=decision.confidence, seconds=decision.seconds,
            )  # fmt: skip
        except Exception:  # the call goes on; losing the verdict must not lose the attempt
            logger.exception("campaign %s: AMD verdict not stored", self.campaign.name)

    async def _leave_message(self, call: Call, decision: AmdDecision | None = None) -> bool:
        """Wait for the beep (or the end of the greeting), play the voicemail message, hang up.
        True when the whole message played. After a verdict on the beep itself the message
        starts once no second beep follows; after one on a greeting that ended in silence, a
        beep still to come or more silence ends the wait."""
        if self.campaign.machine_action != "voicemail" or not self.campaign.voicemail_prompt:
            await call.hangup(reason="machine")
            return False
        reason = decision.reason if decision is not None else None
        heard = reason in (
            AmdReason.MACHINE_GREETING, AmdReason.NO_BEEP, AmdReason.INITIAL_SILENCE,
            AmdReason.TIMEOUT,
        )  # fmt: skip
        await self._wait_for_beep(call, greeting_heard=heard, beep_heard=reason is AmdReason.BEEP)
        if call.ended.done():
            return False
        with contextlib.suppress(RuntimeError):
            await call.play(WavSource(self.campaign.voicemail_prompt))
        left = not call.ended.done()
        await call.hangup(reason="voicemail-left")
        return left

    async def _wait_for_beep(self, call: Call, *, greeting_heard: bool, beep_heard: bool) -> None:
        beep = BeepDetector(greeting_heard=greeting_heard, beep_heard=beep_heard)
        ready: asyncio.Future[None] = self._loop.create_future()

        def frame(pcm: object) -> None:
            beep.feed(pcm)  # type: ignore[arg-type]
            if beep.ready and not ready.done():
                ready.set_result(None)

        assert call.media is not None
        stop_listening = call.media.listen(frame)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait({ready, call.ended}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        stop_listening()

    async def _safe_harbor(self, call: Call) -> None:
        """Nobody free: the customer hears a short message instead of silence (and it counts)."""
        if self.campaign.safe_harbor_prompt:
            with contextlib.suppress(RuntimeError):
                await call.play(WavSource(self.campaign.safe_harbor_prompt))
        await call.hangup(reason="abandoned")
