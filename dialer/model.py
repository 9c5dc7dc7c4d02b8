"""Campaigns, leads and attempts: the dialer's data model, its state table, and the `LeadStore`
protocol through which the dialer reads and writes them (crm_bridge implements it).

A campaign moves draft -> running <-> paused -> finished on the commands start, pause, resume
and stop. A lead is pending until claimed (in-progress, with a new attempt reserved), then
pending again with a retry time, done, or dnc. An attempt is reserved in the database before
its INVITE goes out and closed with exactly one outcome; after a crash the attempts a node had
in flight are closed as outcome-unknown and never dialled again under the same number.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from types import MappingProxyType
from typing import Any, Protocol, Self

from .compliance import check_ring_time
from .errors import InvalidCampaign, InvalidTransition
from .ledger import CONNECT_DEADLINE

logger = logging.getLogger(__name__)

# -- outcomes --------------------------------------------------------------------------------

ANSWERED_HUMAN = "answered-human"
ANSWERED_MACHINE = "answered-machine"
BUSY = "busy"
NO_ANSWER = "no-answer"
FAILED = "failed"
ABANDONED = "abandoned"
REJECTED = "rejected"
DNC = "dnc"
OUTCOME_UNKNOWN = "outcome-unknown"

ATTEMPT_OUTCOMES = (
    ANSWERED_HUMAN,
    ANSWERED_MACHINE,
    BUSY,
    NO_ANSWER,
    FAILED,
    ABANDONED,
    REJECTED,
    DNC,
    OUTCOME_UNKNOWN,
)
"""Every way an attempt can end. answered-human means a person reached an agent; a person
not connected within 2 s is abandoned; outcome-unknown closes an attempt a crash interrupted."""

LEAD_STATUSES = ("pending", "in-progress", "done", "dnc")

DEFAULT_RETRY_DELAYS: Mapping[str, float] = MappingProxyType(
    {
        BUSY: 300.0,
        NO_ANSWER: 1800.0,
        FAILED: 600.0,
        ANSWERED_MACHINE: 3600.0,
        ABANDONED: 3600.0,
        OUTCOME_UNKNOWN: 900.0,
    }
)
"""Seconds before the next attempt after each retryable outcome; an outcome absent from a
campaign's table (answered-human, rejected, dnc) ends the lead."""

PACING_MODES = ("power", "predictive", "broadcast")
"""power and predictive connect people to agents; broadcast plays an IVR flow to them."""
MACHINE_ACTIONS = ("voicemail", "hangup")
AMD_UNSURE_ACTIONS = ("connect", "voicemail", "hangup")
"""What an UNSURE answering-machine verdict means: connect an agent (as for a person), treat it
as a machine (the machine action: the voicemail message, or hang up), or hang up."""
ALL_DAYS = (1, 2, 3, 4, 5, 6, 7)
"""ISO weekdays, Monday = 1."""


def retry_delay(retry_delays: Mapping[str, float], outcome: str) -> float | None:
    """Seconds to wait before the next attempt after `outcome`, None when the lead is done."""
    if outcome not in ATTEMPT_OUTCOMES:
        raise ValueError(f"unknown attempt outcome {outcome!r}")
    delay = retry_delays.get(outcome)
    return None if delay is None else float(delay)


# -- campaign states -------------------------------------------------------------------------


class CampaignState(enum.StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"


class CampaignCommand(enum.StrEnum):
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"


CAMPAIGN_TRANSITIONS: Mapping[tuple[CampaignState, CampaignCommand], CampaignState] = (
    MappingProxyType(
        {
            (CampaignState.DRAFT, CampaignCommand.START): CampaignState.RUNNING,
            (CampaignState.DRAFT, CampaignCommand.STOP): CampaignState.FINISHED,
            (CampaignState.RUNNING, CampaignCommand.PAUSE): CampaignState.PAUSED,
            (CampaignState.RUNNING, CampaignCommand.STOP): CampaignState.FINISHED,
            (CampaignState.PAUSED, CampaignCommand.RESUME): CampaignState.RUNNING,
            (CampaignState.PAUSED, CampaignCommand.STOP): CampaignState.FINISHED,
        }
    )
)
"""{(state, command): next state}; a missing pair is refused (finished is final)."""


def next_campaign_state(
    state: CampaignState | str, command: CampaignCommand | str
) -> CampaignState:
    """The state `command` leads to from `state`; InvalidTransition when not allowed."""
    try:
        state = CampaignState(state)
        command = CampaignCommand(command)
    except ValueError as exc:
        raise InvalidTransition(str(exc)) from None
    try:
        return CAMPAIGN_TRANSITIONS[state, command]
    except KeyError:
        raise InvalidTransition(
            f"cannot {command.value} a campaign that is {state.value}"
        ) from None


# -- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Campaign:
    """A dialing campaign's settings and state."""

    name: str
    """Unique name, as typed on the CLI."""
    caller_id: str = ""
    """Number presented to the customers (E.164)."""
    trunk: str = ""
    """Outbound trunk the calls go through."""
    agents: tuple[str, ...] = ()
    """Extensions of the agents taking the calls (or use `ring_group`)."""
    ring_group: str | None = None
    """Ring group whose members take the calls, instead of `agents`."""
    mode: str = "power"
    """Pacing: power (fixed lines per idle agent), predictive, or broadcast (a flow plays to
    each person; `lines` calls at once, agents only when the flow transfers)."""
    ratio: float = 1.0
    """Lines per idle agent in power mode, 1.0-5.0."""
    abandon_cap: float = 0.03
    """Highest share of live answers that may be abandoned."""
    abandon_window_days: int = 30
    """Rolling window the abandon rate is measured over (and per day)."""
    max_attempts: int = 3
    """Attempts per lead at most."""
    retry_delays: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_RETRY_DELAYS))
    """Seconds before the next attempt, per outcome; outcomes absent end the lead."""
    window_start: time = time(9, 0)
    """Calling hours start, in each lead's local time."""
    window_end: time = time(21, 0)
    """Calling hours end (exclusive), in each lead's local time; before start = past midnight."""
    window_days: tuple[int, ...] = ALL_DAYS
    """ISO weekdays (Monday = 1) calls are allowed on, in the lead's local time."""
    tz_default: str = "UTC"
    """IANA time zone of leads whose zone is neither given nor derivable from the number."""
    max_ring_seconds: float = 20.0
    """How long a customer's phone may ring before we give up; never under 15 s."""
    machine_action: str = "voicemail"
    """What to do when a machine answers: leave the voicemail message, or hang up."""
    voicemail_prompt: str | None = None
    """WAV played to answering machines."""
    amd: bool = True
    """Answering-machine detection on every answer; off, every answer counts as a person."""
    amd_max_seconds: float = 6.0
    """Latest AMD verdict after answer, seconds (1-30; the detector's own default)."""
    amd_initial_silence_seconds: float = 3.0
    """Nobody speaking this long after answer is an UNSURE verdict, seconds (0.5-30)."""
    amd_unsure: str = "connect"
    """What an UNSURE verdict means: connect, voicemail (the machine action) or hangup."""
    connect_seconds: float = CONNECT_DEADLINE
    """A person who answered waits at most this long (after the verdict) for an agent before
    the call counts as abandoned and hears the safe-harbor message (0.5-15; 2 s is what
    Ofcom and the FTC's Telemarketing Sales Rule allow)."""
    safe_harbor_prompt: str | None = None
    """WAV played to a person no agent could take (an abandoned call)."""
    flow: str | None = None
    """Broadcast: the IVR flow (by name, from the engine's [ivr] flows) each person hears."""
    lines: int = 10
    """Broadcast: calls up at once at most (ringing, in the flow, or transferred)."""
    require_consent: bool = False
    """Dial only leads whose consent column said yes (others are skipped, never dialled)."""
    state: CampaignState = CampaignState.DRAFT
    """draft, running, paused or finished."""
    id: int | None = None
    """Database id, once stored."""
    created_at: datetime | None = None
    """When it was created."""
    updated_at: datetime | None = None
    """When its settings or state last changed."""
    started_at: datetime | None = None
    """When it first started."""
    finished_at: datetime | None = None

    @property
    def row_id(self) -> int:
        """The database id of a campaign read from the store (LookupError before it is
        stored)."""
        if self.id is None:
            raise LookupError(f"campaign {self.name!r} is not stored")
        return self.id

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise InvalidCampaign("a campaign needs a name")
        if self.mode not in PACING_MODES:
            raise InvalidCampaign(f"mode must be one of {PACING_MODES}, not {self.mode!r}")
        if self.mode == "broadcast" and not self.flow:
            raise InvalidCampaign("a broadcast campaign needs a flow")
        if not 1 <= self.lines <= 1000:
            raise InvalidCampaign(f"lines {self.lines} is outside 1-1000")
        if not 1.0 <= self.ratio <= 5.0:
            raise InvalidCampaign(f"power ratio {self.ratio} is outside 1.0-5.0")
        if not 0.0 <= self.abandon_cap <= 1.0:
            raise InvalidCampaign(f"abandon cap {self.abandon_cap} is not a share (0-1)")
        if self.abandon_window_days < 1:
            raise InvalidCampaign("the abandon window is at least one day")
        if self.max_attempts < 1:
            raise InvalidCampaign("max attempts is at least 1")
        if self.machine_action not in MACHINE_ACTIONS:
            raise InvalidCampaign(f"machine action must be one of {MACHINE_ACTIONS}")
        if not isinstance(self.amd, bool):
            raise InvalidCampaign("amd must be true or false")
        if self.amd_unsure not in AMD_UNSURE_ACTIONS:
            raise InvalidCampaign(f"amd_unsure must be one of {AMD_UNSURE_ACTIONS}")
        if not 1.0 <= self.amd_max_seconds <= 30.0:
            raise InvalidCampaign(f"amd_max_seconds {self.amd_max_seconds} is outside 1-30")
        if not 0.5 <= self.amd_initial_silence_seconds <= 30.0:
            raise InvalidCampaign(
                f"amd_initial_silence_seconds {self.amd_initial_silence_seconds} is outside 0.5-30"
            )
        if not 0.5 <= self.connect_seconds <= 15.0:
            raise InvalidCampaign(f"connect_seconds {self.connect_seconds} is outside 0.5-15")
        if not self.window_days or not set(self.window_days) <= set(ALL_DAYS):
            raise InvalidCampaign(f"calling days must be ISO weekdays 1-7: {self.window_days}")
        if self.window_start == self.window_end:
            raise InvalidCampaign("calling hours start and end at the same time")
        for outcome, delay in self.retry_delays.items():
            if outcome not in ATTEMPT_OUTCOMES:
                raise InvalidCampaign(f"retry delay for unknown outcome {outcome!r}")
            if delay < 0:
                raise InvalidCampaign(f"negative retry delay for {outcome}")
        try:
            check_ring_time(self.max_ring_seconds)
        except ValueError as exc:
            raise InvalidCampaign(str(exc)) from None
        object.__setattr__(self, "state", CampaignState(self.state))
        object.__setattr__(self, "agents", tuple(self.agents))
        object.__setattr__(self, "window_days", tuple(sorted(set(self.window_days))))

    def apply(self, command: CampaignCommand | str) -> Self:
        """This campaign after `command` (InvalidTransition if its state refuses it)."""
        new = next_campaign_state(self.state, command)
        logger.info("campaign %s: %s -> %s", self.name, self.state.value, new.value)
        return dataclasses.replace(self, state=new)


@dataclass(frozen=True)
class NewLead:
    """A lead read from a file, not stored yet."""

    phone: str
    """E.164."""
    tz: str
    """IANA time zone the calling hours are applied in."""
    name: str | None = None
    """Customer's name."""
    consent: bool | None = None
    """Whether the customer agreed to be called; False means never dial (None: not stated)."""
    responsible: str | None = None
    """Extension of the manager responsible for the customer."""
    data: Mapping[str, str] = field(default_factory=dict)
    """Every other column of the file, by its header."""
    line: int = 0
    """Line of the file it came from (the last one, when rows were merged)."""


@dataclass(frozen=True)
class Lead:
    """A stored lead of a campaign."""

    id: int
    campaign_id: int
    phone: str
    """E.164."""
    tz: str
    """IANA time zone of the customer."""
    name: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    """Extra columns of the import (shown to the agent on the screen pop)."""
    consent: bool | None = None
    responsible: str | None = None
    status: str = "pending"
    """pending, in-progress, done or dnc."""
    attempts: int = 0
    """Attempts reserved so far."""
    next_attempt_at: datetime | None = None
    """Not dialled before this time."""
    last_outcome: str | None = None
    """Outcome of the latest finished attempt."""
    callback_agent: str | None = None
    """The agent who promised to call back: the next attempt is connected to them."""


@dataclass(frozen=True)
class Attempt:
    """One try at reaching a lead: reserved before its INVITE, closed with one outcome."""

    id: int
    lead_id: int
    campaign_id: int
    attempt_no: int
    """1 for the lead's first attempt; unique per lead."""
    reserved_at: datetime
    """When a node claimed the lead for it."""
    node: str
    """Engine node that owns it (restart recovery closes only its own)."""
    call_id: str | None = None
    """SIP Call-ID of the INVITE, once sent."""
    dialled_at: datetime | None = None
    """When the INVITE went out."""
    outcome: str | None = None
    """One of ATTEMPT_OUTCOMES, once ended."""
    ended_at: datetime | None = None
    agent: str | None = None
    """Extension the customer was connected to."""
    amd_verdict: str | None = None
    """The answering-machine verdict (human, machine, unsure, sit, fax); None without AMD."""
    amd_reason: str | None = None
    """Why (dialer.AmdReason's value)."""
    amd_confidence: float | None = None
    """How sure, 0.5-1."""
    amd_seconds: float | None = None
    """Audio seconds from answer to the verdict."""


@dataclass(frozen=True)
class Claim:
    """A lead claimed for dialing and the attempt reserved for it."""

    lead: Lead
    attempt: Attempt


@dataclass(frozen=True)
class CampaignProgress:
    """Counts for the progress bar of the CLI and the API."""

    total: int
    """Leads in the campaign."""
    dialled: int
    """Attempts whose INVITE went out."""
    answered_human: int
    """Live answers (connected or abandoned)."""
    answered_machine: int
    connected: int
    """Live answers that reached an agent."""
    abandoned: int
    remaining: int
    """Leads that may still be dialled (pending or in progress)."""
    done: int
    dnc: int
    in_flight: int
    """Attempts reserved and not ended."""

    @property
    def abandon_rate(self) -> float:
        """Abandoned / live answers (0 before the first live answer)."""
        return self.abandoned / self.answered_human if self.answered_human else 0.0


class LeadStore(Protocol):
    """What the dialer needs from storage; dialer.PgLeadStore implements it on PostgreSQL.
    Times are aware UTC."""

    async def claim_next_leads(
        self,
        campaign_id: int,
        n: int,
        *,
        now: datetime,
        node: str,
        idle_agents: Sequence[str] | None = None,
    ) -> Sequence[Claim]:
        """Up to `n` leads due now (running campaign, within calling hours, not on DNC, under
        max attempts), each with a NEW attempt reserved in the same transaction; no two nodes
        ever get the same lead. Items have `.lead` and `.attempt` (see `Claim`). A callback
        promised by an agent waits for that agent to be among `idle_agents` (for a while)."""
        ...

    async def save_broadcast_result(
        self, attempt_id: int, result: Mapping[str, Any], *, now: datetime
    ) -> None:
        """Store what an answered broadcast call did in its flow (path, digits, flags)."""
        ...

    async def attempt_dialled(self, attempt_id: int, call_id: str, *, now: datetime) -> None:
        """The attempt's INVITE went out with this Call-ID."""
        ...

    async def attempt_finished(
        self,
        attempt_id: int,
        outcome: str,
        *,
        now: datetime,
        retry_at: datetime | None = None,
        agent: str | None = None,
    ) -> Lead:
        """Close the attempt; the lead is rescheduled by the campaign's retry delays (or at
        `retry_at`, a callback), or done / dnc. Returns the lead."""
        ...

    async def attempt_amd(
        self, attempt_id: int, verdict: str, *, reason: str, confidence: float, seconds: float
    ) -> None:
        """Store the answering-machine verdict of an answered attempt."""
        ...

    async def release_attempt(self, attempt_id: int, *, now: datetime) -> None:
        """Undo a reservation whose INVITE was never sent (last-moment compliance refusal)."""
        ...

    async def close_interrupted_attempts(self, node: str, *, now: datetime) -> Sequence[Attempt]:
        """After a restart: close this node's attempts in flight as outcome-unknown."""
        ...

    async def get_campaign(self, campaign_id: int) -> Campaign: ...

    async def campaign_progress(self, campaign_id: int) -> CampaignProgress: ...

    async def dnc_contains(self, phone: str, *, campaign_id: int | None = None) -> bool: ...
