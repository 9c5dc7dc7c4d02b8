"""Composition-root glue for the live dashboard: the switchboard's and presence's hooks publish
typed events on the engine's LiveBus; a feed polls what only the database knows (campaign
progress, missed-call tasks, today's and the month's counts) while someone watches."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from crm_bridge import CrmStore, TaskFilter
from dialer import CampaignSupervisor, PgLeadStore
from pbx import AgentState, CallSummary, Switchboard
from pbx import events as pbx_events
from pbx.acd import QueueDesk
from pbx.trunks import TrunkState

from .config import Account
from .database import Database
from .events import (
    AgentStateChanged,
    CallAnswered,
    CallEnded,
    CallRinging,
    CallStarted,
    CampaignGone,
    CampaignProgress,
    LiveBoard,
    LiveBus,
    QueueProgress,
    TaskCreated,
    TaskDone,
    TrunkChanged,
)

logger = logging.getLogger(__name__)

POLL_SECONDS = 2.0
"""Database look-ups for campaigns and tasks while a dashboard is open."""
SHOWN_CAMPAIGN_STATES = ("draft", "running", "paused")
TASK_LIMIT = 200

# Answered calls per agent today and this month (plan / fact), from the call log.
_COUNTS = (
    "SELECT agent,"
    " count(*) FILTER (WHERE started_at >= $1) AS today,"
    " coalesce(sum(extract(epoch FROM ended_at - answered_at))"
    "  FILTER (WHERE started_at >= $1), 0)::float8 AS talk,"
    " count(*) AS month"
    " FROM calls WHERE agent IS NOT NULL AND answered_at IS NOT NULL AND ended_at IS NOT NULL"
    " AND started_at >= $2 GROUP BY agent"
)


def local_today() -> date:
    return datetime.now().astimezone().date()


class LocalToday:
    """`local_today` for the bus, which asks on every event: the date is worked out again only
    once the wall clock passes the next local midnight (or goes back before the day began)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._day = date.min
        self._begins = self._ends = 0.0

    def __call__(self) -> date:
        now = self.clock()
        if not self._begins <= now < self._ends:
            self._day = datetime.fromtimestamp(now).date()
            day_start = datetime.combine(self._day, datetime.min.time())
            self._begins = day_start.timestamp()
            self._ends = (day_start + timedelta(days=1)).timestamp()
        return self._day


def wire_live(switchboard: Switchboard, accounts: Iterable[Account]) -> LiveBus:
    """Build the dashboard's bus, fed by the switchboard's events (pbx.events)."""
    board = LiveBoard(local_today())
    loop = switchboard.ua.loop
    now, wall = loop.time(), time.time()
    for account in accounts:
        board.add_agent(
            account.extension,
            name=account.display_name,
            role=account.role,
            daily_plan=account.daily_plan,
            since=wall - switchboard.presence.idle_for(account.extension, now=now),
        )
    bus = LiveBus(board, today=LocalToday())
    providers = switchboard.providers
    for row in providers.snapshot():
        board.trunks[row["name"]] = row

    def trunk_changed(state: TrunkState) -> None:
        bus.publish(TrunkChanged(state.trunk.name, providers.describe(state)))

    def channels_changed(_: object) -> None:
        for state in providers.states.values():  # unchanged rows send nothing (board.apply)
            trunk_changed(state)

    providers.listeners.append(trunk_changed)
    presence = switchboard.presence
    events = switchboard.events

    def agent_changed(changed: pbx_events.PresenceChanged) -> None:
        extension, state = changed.extension, changed.state
        bus.publish(AgentStateChanged(extension, state.value, time.time()))
        if state is AgentState.WRAP_UP:
            left = presence.wrap_up_left(extension, now=loop.time())
            loop.call_later(left + 0.01, wrap_up_over, extension)

    def wrap_up_over(extension: str) -> None:
        # Wrap-up ends by itself (presence computes it): tell the board when it has.
        state = presence.state(extension, now=loop.time())
        if state is AgentState.AVAILABLE:
            bus.publish(AgentStateChanged(extension, state.value, time.time()))

    def call_started(started: pbx_events.CallStarted) -> None:
        summary = started.summary
        bus.publish(
            CallStarted(
                summary.call_id,
                summary.caller,
                summary.callee,
                summary.direction,
                summary.started_at.timestamp(),
                campaign_id=summary.campaign_id,
                lead_id=summary.lead_id,
            )
        )

    def connected(answered_event: pbx_events.CallAnswered | pbx_events.CallTransferred) -> None:
        bridged = answered_event.bridged
        answered = bridged.summary.answered_at
        bus.publish(
            CallAnswered(
                bridged.summary.call_id,
                bridged.caller,
                bridged.callee,
                answered.timestamp() if answered else time.time(),
            )
        )

    def ended(ended_event: pbx_events.CallEnded) -> None:
        summary = ended_event.summary
        bus.publish(
            CallEnded(
                summary.call_id,
                call_agent(summary),
                summary.outcome,
                summary.talk_seconds,
                (summary.ended_at or datetime.now(UTC)).timestamp(),
            )
        )

    def ringing(event: pbx_events.CallRinging) -> None:
        call_id = event.summary.call_id
        if call_id in bus.board.calls:
            bus.publish(CallRinging(call_id, tuple(sorted(event.agents))))

    events.subscribe(pbx_events.PresenceChanged, agent_changed)
    events.subscribe(pbx_events.CallRinging, ringing)
    events.subscribe(pbx_events.CallStarted, call_started)
    events.subscribe(pbx_events.CallAnswered, connected)
    events.subscribe(pbx_events.CallTransferred, connected)  # the row shows the new agent
    events.subscribe(pbx_events.CallEnded, ended)
    for kind in (pbx_events.CallStarted, pbx_events.CallAnswered, pbx_events.CallEnded):
        events.subscribe(kind, channels_changed)  # a trunk's channels in use
    return bus


def call_agent(summary: CallSummary) -> str | None:
    """The party that is not the customer, once someone answered (as the journal says)."""
    if summary.answered_at is None:
        return None
    return summary.caller if summary.callee == summary.customer else summary.callee


class LiveFeed:
    """Polls the database for the board while at least one dashboard is open."""

    def __init__(
        self,
        bus: LiveBus,
        *,
        spawn: Callable[[Coroutine[Any, Any, None]], object],
        database: Database | None,
        store: CrmStore | None,
        campaigns: CampaignSupervisor | None,
        leads: PgLeadStore | None = None,
        queues: QueueDesk | None = None,
    ) -> None:
        self.bus = bus
        self.queues = queues
        self.spawn = spawn
        self.database = database
        self.store = store
        self.campaigns = campaigns
        self.leads = leads
        self._seeded: date | None = None
        self._polling = False
        self._lock = asyncio.Lock()

    def watch(self) -> None:
        """Keep polling while anyone subscribes (started by each new stream; idempotent)."""
        if not self._polling:
            self._polling = True
            self.spawn(self._poll())

    async def _poll(self) -> None:
        try:
            while self.bus.subscribers:
                await asyncio.sleep(POLL_SECONDS)
                try:
                    await self.refresh()
                except Exception:
                    logger.exception("live: refresh failed")
        finally:
            self._polling = False

    async def refresh(self) -> None:
        async with self._lock:
            today = local_today()
            if self._seeded != today:
                await self._seed(today)
            self._queues()
            await self._campaigns()
            await self._tasks()

    async def _seed(self, today: date) -> None:
        database = self.database
        if database is None:
            self._seeded = today
            return
        midnight = datetime.combine(today, datetime.min.time()).astimezone()
        month_start = midnight.replace(day=1)
        rows = await database.pool.fetch(_COUNTS, midnight, month_start)
        day = {r["agent"]: (r["today"], r["talk"]) for r in rows}
        month = {r["agent"]: r["month"] for r in rows}
        self.bus.publish_deltas(self.bus.board.seed_counts(today, day, month))
        self._seeded = today

    async def _campaigns(self) -> None:
        campaigns, store = self.campaigns, self.leads
        if campaigns is None or store is None:
            return
        seen = set()
        for stored in await store.list_campaigns():
            if stored.state not in SHOWN_CAMPAIGN_STATES:
                continue
            seen.add(stored.row_id)
            progress = await store.campaign_progress(stored.row_id)
            runner = campaigns.runners.get(stored.row_id)
            rate = runner.ledger.rate(time.time()) if runner is not None else progress.abandon_rate
            amd = await store.amd_summary(stored.row_id)
            quality = amd["quality"]
            self.bus.publish(
                CampaignProgress(
                    stored.row_id,
                    stored.name,
                    stored.state,
                    total=progress.total,
                    dialled=progress.dialled,
                    done=progress.done,
                    remaining=progress.remaining,
                    connected=progress.connected,
                    abandoned=progress.abandoned,
                    in_flight=progress.in_flight,
                    abandon_rate=round(rate, 4),
                    abandon_cap=stored.abandon_cap,
                    amd_machines=amd["machine"],
                    amd_judged=quality["judged"],
                    amd_false_person_rate=quality["false_person_rate"],
                    amd_false_machine_rate=quality["false_machine_rate"],
                )
            )
        for gone in set(self.bus.board.campaigns) - seen:
            self.bus.publish(CampaignGone(gone))

    def _queues(self) -> None:
        desk = self.queues
        if desk is None:
            return
        now = desk.sb.ua.loop.time()
        for queue in desk.queues.values():
            self.bus.publish(
                QueueProgress(
                    queue.name,
                    waiting=len(queue.callers),
                    longest_wait=round(queue.longest_wait(now=now)),
                    members_logged_in=len(queue.logged_in()),
                    answered=queue.stats.answered,
                    abandoned=queue.stats.abandoned,
                    service_level=queue.service_level,
                    service_level_seconds=queue.config.service_level,
                    average_speed_of_answer=queue.average_speed_of_answer,
                    abandon_rate=queue.abandon_rate,
                )
            )

    async def _tasks(self) -> None:
        store = self.store
        if store is None:
            return
        tasks = await store.list_tasks(TaskFilter(status="open", limit=TASK_LIMIT))
        seen = set()
        for task in tasks:
            seen.add(task.id)
            self.bus.publish(
                TaskCreated(
                    task.id,
                    task.type,
                    task.contact_phone,
                    task.assignee,
                    task.text,
                    task.created_at.timestamp(),
                    task.due_at.timestamp(),
                    task.missed_calls,
                )
            )
        for gone in set(self.bus.board.tasks) - seen:
            self.bus.publish(TaskDone(gone))
