"""Live events: per-agent streams (screen pops, presence) and the engine's event bus.

The bus takes typed events from the composition root's hooks (presence changes, calls starting,
ringing, answered, ended; campaign progress; missed-call tasks), folds them into a `LiveBoard`
(what a supervisor's dashboard shows) and fans the resulting row changes out to subscribers.
A subscriber gets the board's snapshot first, then deltas; one that falls behind is cut off
(its stream ends and the browser reconnects to a fresh snapshot) rather than missing a delta.

The board is pure: time comes in (`now` as POSIX seconds, `today` as a date).
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

logger = logging.getLogger(__name__)

# A slow or vanished browser must not make the engine hold its events without bound.
QUEUE_LIMIT = 100
LIVE_QUEUE_LIMIT = 1000


class AgentEvents:
    def __init__(self) -> None:
        self._streams: dict[str, set[asyncio.Queue[tuple[str, dict[str, Any]]]]] = defaultdict(set)

    def subscribe(self, extension: str) -> asyncio.Queue[tuple[str, dict[str, Any]]]:
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(QUEUE_LIMIT)
        self._streams[extension].add(queue)
        return queue

    def unsubscribe(self, extension: str, queue: asyncio.Queue[tuple[str, dict[str, Any]]]) -> None:
        self._streams[extension].discard(queue)

    def watched(self, extension: str) -> bool:
        """Whether a stream of `extension`'s is open (what it would be sent reaches someone)."""
        return bool(self._streams.get(extension))

    def publish(self, extension: str, kind: str, data: dict[str, Any]) -> None:
        for queue in list(self._streams.get(extension, ())):
            try:
                queue.put_nowait((kind, data))
            except asyncio.QueueFull:
                logger.warning("events for %s dropped: the stream is not read", extension)


# -- typed events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentStateChanged:
    extension: str
    state: str
    """available, on-call, wrap-up or away (pbx.AgentState values)."""
    since: float
    """POSIX seconds when the agent entered the state."""


@dataclass(frozen=True)
class CallStarted:
    call_id: str
    """The caller leg's SIP Call-ID (the switchboard's key; /calls/{id}/monitor takes it)."""
    caller: str
    callee: str
    direction: str
    """internal, inbound or outbound."""
    at: float
    """POSIX seconds."""
    campaign_id: int | None = None
    lead_id: int | None = None


@dataclass(frozen=True)
class CallRinging:
    call_id: str
    ringing: tuple[str, ...]
    """Extensions whose phones ring for the call now (empty: none any more)."""


@dataclass(frozen=True)
class CallAnswered:
    call_id: str
    caller: str
    callee: str
    """The party that answered (an agent, or the customer's number on click-to-call)."""
    at: float


@dataclass(frozen=True)
class CallEnded:
    call_id: str
    agent: str | None
    """The agent who talked on the call (None when nobody answered)."""
    outcome: str
    talk_seconds: float
    at: float


@dataclass(frozen=True)
class CampaignProgress:
    campaign_id: int
    name: str
    state: str
    total: int
    dialled: int
    done: int
    remaining: int
    connected: int
    abandoned: int
    in_flight: int
    abandon_rate: float
    """The rate the dialer paces against (its ledger's when it runs here, else lifetime)."""
    abandon_cap: float
    amd_machines: int = 0
    """Answers AMD called machines."""
    amd_judged: int = 0
    """Answers with an AMD verdict an agent heard and disposed."""
    amd_false_person_rate: float | None = None
    """Of those AMD called people, the share the agent marked answering-machine."""
    amd_false_machine_rate: float | None = None
    """Of those AMD called machines, the share the agent said was a person."""


@dataclass(frozen=True)
class CampaignGone:
    campaign_id: int


@dataclass(frozen=True)
class TaskCreated:
    task_id: int
    type: str
    phone: str
    assignee: str | None
    text: str
    created_at: float
    """POSIX seconds (the dashboard shows the task's age)."""
    due_at: float
    missed_calls: int = 1


@dataclass(frozen=True)
class TaskDone:
    task_id: int


@dataclass(frozen=True)
class TrunkChanged:
    """A trunk's registration, qualify state or channels changed (pbx.trunks snapshot row)."""

    name: str
    data: dict[str, Any]


@dataclass(frozen=True)
class QueueProgress:
    """A waiting queue as a supervisor watches it (pbx.queue.Queue.snapshot, in short)."""

    name: str
    waiting: int
    longest_wait: float
    """Seconds the longest-waiting caller has waited now."""
    members_logged_in: int
    answered: int
    abandoned: int
    service_level: float | None
    """Share answered within `service_level_seconds` (None before any answer)."""
    service_level_seconds: float
    average_speed_of_answer: float | None
    abandon_rate: float | None


LiveEvent = (
    AgentStateChanged
    | CallStarted
    | CallRinging
    | CallAnswered
    | CallEnded
    | CampaignProgress
    | CampaignGone
    | TaskCreated
    | TaskDone
    | TrunkChanged
    | QueueProgress
)
Delta = tuple[str, dict[str, Any]]
"""(kind, data): kind is agent, call, call-gone, campaign, campaign-gone, task, task-gone,
trunk, queue."""


# -- plan and pace ---------------------------------------------------------------------------


def working_days(year: int, month: int) -> list[date]:
    """Monday to Friday of the month (the days a daily plan counts)."""
    days = calendar.monthrange(year, month)[1]
    return [d for n in range(1, days + 1) if (d := date(year, month, n)).weekday() < 5]


@dataclass(frozen=True)
class PlanProgress:
    """A sales floor's "plan / fact / % / days left" for one agent."""

    day_plan: int
    day_fact: int
    day_percent: float
    month_plan: int
    """daily plan x the month's working days."""
    month_fact: int
    month_percent: float
    days_left: int
    """Working days left in the month, today included when it is one."""
    pace: float
    """Month fact against the plan due by the end of today (100: on pace)."""
    needed_per_day: float
    """Calls a day over the days left to make the month plan."""


def plan_progress(daily_plan: int, day_fact: int, month_fact: int, today: date) -> PlanProgress:
    days = working_days(today.year, today.month)
    month_plan = daily_plan * len(days)
    left = sum(d >= today for d in days)
    due = daily_plan * sum(d <= today for d in days)
    missing = max(0, month_plan - month_fact)

    def percent(fact: int, plan: int) -> float:
        return round(100.0 * fact / plan, 1) if plan else 0.0

    return PlanProgress(
        day_plan=daily_plan if today.weekday() < 5 else 0,
        day_fact=day_fact,
        day_percent=percent(day_fact, daily_plan if today.weekday() < 5 else 0),
        month_plan=month_plan,
        month_fact=month_fact,
        month_percent=percent(month_fact, month_plan),
        days_left=left,
        pace=percent(month_fact, due),
        # Rounded up: the figure must not promise the plan with fewer calls than it takes.
        needed_per_day=math.ceil(missing * 10 / left - 1e-9) / 10 if left else float(missing),
    )


# -- the board ---------------------------------------------------------------------------------


@dataclass
class _Agent:
    extension: str
    name: str
    role: str
    state: str = "available"
    since: float = 0.0
    ringing: bool = False
    calls_today: int = 0
    talk_today: float = 0.0
    month_calls: int = 0
    daily_plan: int = 0


@dataclass
class _Call:
    call_id: str
    caller: str
    callee: str
    direction: str
    started_at: float
    state: str = "ringing"
    """ringing or talking."""
    answered_at: float | None = None
    ringing: tuple[str, ...] = ()
    campaign_id: int | None = None
    lead_id: int | None = None


@dataclass
class LiveBoard:
    """What the dashboard shows, kept up to date by `apply` (pure)."""

    day: date
    agents: dict[str, _Agent] = field(default_factory=dict)
    calls: dict[str, _Call] = field(default_factory=dict)
    campaigns: dict[int, CampaignProgress] = field(default_factory=dict)
    tasks: dict[int, TaskCreated] = field(default_factory=dict)
    trunks: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each trunk's row as `pbx.trunks.TrunkManager.snapshot` gives it."""
    queues: dict[str, QueueProgress] = field(default_factory=dict)
    _ringing: dict[str, int] = field(default_factory=dict, repr=False)
    """Calls ringing each extension now (the index `ringing_agents` reads)."""

    def add_agent(
        self, extension: str, *, name: str, role: str, daily_plan: int, since: float
    ) -> None:
        self.agents[extension] = _Agent(extension, name, role, since=since, daily_plan=daily_plan)

    def seed_counts(
        self, today: date, day: dict[str, tuple[int, float]], month: dict[str, int]
    ) -> list[Delta]:
        """Today's (calls, talk seconds) and the month's calls per agent, from the call log."""
        self.day = today
        for agent in self.agents.values():
            agent.calls_today, agent.talk_today = day.get(agent.extension, (0, 0.0))
            agent.month_calls = month.get(agent.extension, 0)
        return [self._agent_delta(a) for a in self.agents.values()]

    def set_plan(self, extension: str, daily_plan: int) -> list[Delta]:
        agent = self.agents[extension]
        agent.daily_plan = daily_plan
        return [self._agent_delta(agent)]

    def apply(self, event: LiveEvent, *, today: date, deltas: bool = True) -> list[Delta]:
        """Fold one event in; the rows it changed, as deltas for the subscribers. With
        ``deltas=False`` (nobody watches) the board changes the same but no row is rendered."""
        out: list[Delta] | None = self.roll_over(today) if deltas else None
        if out is None:
            self.roll_over(today)
        match event:
            case AgentStateChanged(extension=ext, state=state, since=since):
                agent = self.agents.get(ext)
                if agent is not None and agent.state != state:
                    agent.state, agent.since = state, since
                    if out is not None:
                        out.append(self._agent_delta(agent))
            case CallStarted():
                replaced = self.calls.get(event.call_id)
                if replaced is not None:  # a Call-ID seen again: the old row's phones stop
                    self._ringing_changed(replaced.ringing, (), out)
                call = self.calls[event.call_id] = _Call(
                    event.call_id,
                    event.caller,
                    event.callee,
                    event.direction,
                    event.at,
                    campaign_id=event.campaign_id,
                    lead_id=event.lead_id,
                )
                if out is not None:
                    out.append(("call", self._call_json(call)))
            case CallRinging(call_id=call_id, ringing=ringing):
                rung = self.calls.get(call_id)
                if rung is not None and rung.ringing != ringing:
                    self._ring(rung, ringing, out)
            case CallAnswered(call_id=call_id):
                answered = self.calls.get(call_id)
                if answered is not None:
                    answered.caller, answered.callee = event.caller, event.callee
                    answered.state, answered.answered_at = "talking", event.at
                    self._ring(answered, (), out)
            case CallEnded(call_id=call_id, agent=ext):
                gone = self.calls.pop(call_id, None)
                if gone is not None:
                    if out is not None:
                        out.append(("call-gone", {"call_id": call_id}))
                    self._ringing_changed(gone.ringing, (), out)
                agent = self.agents.get(ext or "")
                if agent is not None:  # someone answered (else the event names no agent)
                    agent.calls_today += 1
                    agent.month_calls += 1
                    agent.talk_today += event.talk_seconds
                    if out is not None:
                        out.append(self._agent_delta(agent))
            case CampaignProgress(campaign_id=campaign_id):
                if self.campaigns.get(campaign_id) != event:
                    self.campaigns[campaign_id] = event
                    if out is not None:
                        out.append(("campaign", _campaign_json(event)))
            case CampaignGone(campaign_id=campaign_id):
                if self.campaigns.pop(campaign_id, None) is not None and out is not None:
                    out.append(("campaign-gone", {"id": campaign_id}))
            case TaskCreated(task_id=task_id):
                if self.tasks.get(task_id) != event:
                    self.tasks[task_id] = event
                    if out is not None:
                        out.append(("task", _task_json(event)))
            case TaskDone(task_id=task_id):
                if self.tasks.pop(task_id, None) is not None and out is not None:
                    out.append(("task-gone", {"id": task_id}))
            case TrunkChanged(name=name, data=data):
                if self.trunks.get(name) != data:
                    self.trunks[name] = data
                    if out is not None:
                        out.append(("trunk", data))
            case QueueProgress(name=name):
                if self.queues.get(name) != event:
                    self.queues[name] = event
                    if out is not None:
                        out.append(("queue", asdict(event)))
        return [] if out is None else out

    def _ring(self, call: _Call, ringing: tuple[str, ...], out: list[Delta] | None) -> None:
        """The phones ringing for `call` are now `ringing`."""
        before, call.ringing = call.ringing, ringing
        if out is not None:
            out.append(("call", self._call_json(call)))
        self._ringing_changed(before, ringing, out)

    def snapshot(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "agents": [self._agent_json(a) for a in sorted(self.agents.values(), key=_by_ext)],
            "calls": [self._call_json(c) for c in self.calls.values()],
            "campaigns": [_campaign_json(c) for c in self.campaigns.values()],
            "tasks": [_task_json(t) for t in self.tasks.values()],
            "trunks": list(self.trunks.values()),
            "queues": [asdict(q) for q in self.queues.values()],
        }

    def ringing_agents(self) -> set[str]:
        return set(self._ringing)

    def roll_over(self, today: date) -> list[Delta]:
        """A new day starts every agent's day counts at zero (a new month, the month's too)."""
        if today == self.day:
            return []
        new_month = (today.year, today.month) != (self.day.year, self.day.month)
        self.day = today
        for agent in self.agents.values():
            agent.calls_today, agent.talk_today = 0, 0.0
            if new_month:
                agent.month_calls = 0
        return [self._agent_delta(a) for a in self.agents.values()]

    def _ringing_changed(
        self, before: Iterable[str], after: Iterable[str], out: list[Delta] | None
    ) -> None:
        """One call stopped ringing `before` and rings `after`: keep the count of calls ringing
        each phone (no scan of the live calls) and show the agents whose phone started or
        stopped ringing."""
        count = self._ringing
        stopped, started = set(before), set(after)
        for ext in stopped:
            left = count[ext] - 1
            if left:
                count[ext] = left
            else:
                del count[ext]
        for ext in started:
            count[ext] = count.get(ext, 0) + 1
        for ext in sorted(stopped ^ started):
            agent = self.agents.get(ext)
            if agent is not None and agent.ringing != (ext in count):
                agent.ringing = ext in count
                if out is not None:
                    out.append(self._agent_delta(agent))

    def _agent_delta(self, agent: _Agent) -> Delta:
        return ("agent", self._agent_json(agent))

    def _agent_json(self, agent: _Agent) -> dict[str, Any]:
        shown = "ringing" if agent.ringing and agent.state == "available" else agent.state
        plan = plan_progress(agent.daily_plan, agent.calls_today, agent.month_calls, self.day)
        return {
            "extension": agent.extension,
            "name": agent.name,
            "role": agent.role,
            "state": shown,
            "since": agent.since,
            "calls_today": agent.calls_today,
            "talk_today": round(agent.talk_today, 1),
            "daily_plan": agent.daily_plan,
            "plan": asdict(plan),
        }

    @staticmethod
    def _call_json(call: _Call) -> dict[str, Any]:
        data = asdict(call)
        data["ringing"] = list(call.ringing)
        return data


def _by_ext(agent: _Agent) -> str:
    return agent.extension


def _campaign_json(progress: CampaignProgress) -> dict[str, Any]:
    data = asdict(progress)
    data["id"] = data.pop("campaign_id")
    return data


def _task_json(task: TaskCreated) -> dict[str, Any]:
    data = asdict(task)
    data["id"] = data.pop("task_id")
    return data


# -- the bus -----------------------------------------------------------------------------------


class Subscription:
    """One live stream: a snapshot was taken when it began; deltas queue up here."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Delta] = asyncio.Queue(LIVE_QUEUE_LIMIT)
        self.lost = asyncio.Event()
        """Set when a delta could not be queued: the stream must end (the client resyncs)."""


class LiveBus:
    """Publishes typed events into the board and out to every subscriber."""

    def __init__(self, board: LiveBoard, *, today: Callable[[], date]) -> None:
        self.board = board
        self.today = today
        self._subscribers: set[Subscription] = set()
        self.on_event: list[Callable[[LiveEvent], None]] = []
        """Also told every event (metrics, tests)."""

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> tuple[dict[str, Any], Subscription]:
        """The board now and the stream of what changes after it (no gap, no overlap)."""
        self._fan_out(self.board.roll_over(self.today()))
        subscription = Subscription()
        self._subscribers.add(subscription)
        return self.board.snapshot(), subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def publish(self, event: LiveEvent) -> None:
        for listener in self.on_event:
            listener(event)
        if not self._subscribers:  # nobody watches: fold it in, render nothing
            self.board.apply(event, today=self.today(), deltas=False)
            return
        self._fan_out(self.board.apply(event, today=self.today()))

    def close(self) -> None:
        """End every stream (the engine stops)."""
        for subscription in self._subscribers:
            subscription.lost.set()
        self._subscribers.clear()

    def publish_deltas(self, deltas: list[Delta]) -> None:
        self._fan_out(deltas)

    def _fan_out(self, deltas: list[Delta]) -> None:
        if not deltas:
            return
        for subscription in list(self._subscribers):
            try:
                for delta in deltas:
                    subscription.queue.put_nowait(delta)
            except asyncio.QueueFull:
                logger.warning("live stream cut off: it fell %d events behind", LIVE_QUEUE_LIMIT)
                self._subscribers.discard(subscription)
                subscription.lost.set()
