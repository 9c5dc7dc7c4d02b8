"""The composition root: builds the engine from a Config and runs it until told to stop."""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import socket
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from crm_bridge import (
    CrmStore,
    DialogStore,
    MonitoringStore,
    OutboxWorker,
    PgLeadStore,
    RegistrationStore,
    StoredDialog,
)
from dialer import BeepDetector, Campaign, CampaignSupervisor, Claim
from pbx import (
    Authenticator,
    AuthFailureBan,
    BanPolicy,
    BridgedCall,
    CallSummary,
    Extension,
    MonitorEvent,
    Pickup,
    PickupGroups,
    Presence,
    Registrar,
    Routing,
    Switchboard,
)
from pbx import events as pbx_events
from pbx.events import EventBus
from recordings import RecordingStore
from telephony.aio import Call, EndpointConfig, TaskSet, UserAgent, UserAgentConfig
from telephony.sip import DigestConfig, DigestServer, SipUri, TimerConfig

from .api import start_http
from .click_to_call import manual_dial_refusal
from .config import Config
from .database import Database, open_database
from .dialing import PbxLines
from .dialogs import PersistentDialogs
from .events import AgentEvents, LiveBus
from .follow_up import follow_up_forever
from .ivr_glue import IvrService, SwitchboardActions, load_flows
from .journal import CallJournal, close_interrupted_calls, responsible_of
from .live import LiveFeed, wire_live
from .recording import Recordings
from .registrations import PersistentBindings

logger = logging.getLogger(__name__)


@dataclass
class Engine:
    """A running engine: SIP user agent, PBX, database."""

    config: Config
    ua: UserAgent
    switchboard: Switchboard
    database: Database | None
    store: CrmStore | None
    recordings: Recordings | None = None
    journal: CallJournal | None = None
    campaigns: CampaignSupervisor | None = None
    bindings: PersistentBindings | None = None
    dialogs: PersistentDialogs | None = None
    """Answered dialogs kept in the database (BYE after a crash)."""
    events: AgentEvents = field(default_factory=AgentEvents)
    call_outcomes: Counter[str] = field(default_factory=Counter)
    """Calls ended since start, by outcome (GET /metrics)."""
    live: LiveBus | None = None
    """The dashboard's event bus (agents, calls, campaigns, tasks)."""
    live_feed: LiveFeed | None = None
    outbox: OutboxWorker | None = None
    monitoring: MonitoringStore | None = None
    ivr: IvrService | None = None
    """IVR flows: DIDs routed to `ivr:FLOW`, and the runners broadcasts use."""
    """Pickups (with their CRM event) and the monitoring audit."""
    http: web.AppRunner | None = None
    _background: TaskSet = field(default_factory=lambda: TaskSet("engine"))
    _audit_order: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Keeps a session's audit entries in the order they happened."""
    _audit_writes: set[asyncio.Task[None]] = field(default_factory=set)
    """Audit entries being written: finished (not cancelled) when the engine stops."""
    _monitored_rows: dict[int, int | None] = field(default_factory=dict)
    """calls row of each monitor session (the row is looked up once, at the start)."""

    @property
    def sip_port(self) -> int:
        return self.ua.endpoint.port

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` beside the engine; cancelled at stop, forgotten once done."""
        self._background.spawn(work)

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        if self.http is not None:
            await self.http.cleanup()
        if self.campaigns is not None:
            await self.campaigns.stop()
        if self.ivr is not None:
            await self.ivr.shutdown()
        await self.switchboard.shutdown()
        await self.switchboard.providers.stop()  # our bindings at providers removed
        await self.switchboard.events.drain()
        if self._audit_writes:
            await asyncio.wait(self._audit_writes, timeout=5)
        # Let the BYEs leave before the sockets close.
        await asyncio.sleep(0.05)
        await self.ua.close()
        if self.bindings is not None:
            await self.bindings.flush()
        if self.dialogs is not None:
            await self.dialogs.stop()
        if self.outbox is not None:
            await self.outbox.stop()
        if self.database is not None:
            await self.database.close()


async def start_engine(
    config: Config,
    *,
    database_url: str | None = None,
    data_dir: Path | None = None,
    with_database: bool = True,
    with_http: bool = True,
) -> Engine:
    sip = config.sip
    recordings_root = config.recordings.directory or (data_dir or config.data_dir) / "recordings"
    database = None
    store = None
    dialog_store = None
    left_dialogs: list[StoredDialog] = []
    if with_database:
        database = await open_database(
            database_url or config.database_url, data_dir or config.data_dir
        )
        store = CrmStore(
            database.pool,
            endpoints=config.crm.endpoints,
            node=config.crm.node or socket.gethostname(),
            default_country_code=config.crm.default_country_code,
        )
        closed = await close_interrupted_calls(
            store, recordings_root=recordings_root, now=datetime.now(UTC)
        )
        if closed:
            logger.warning("closed %d calls left open by an earlier crash", closed)
        # Read before this run answers anything: every row now is a dialog a crash left.
        dialog_store = DialogStore(database.pool, node=store.node)
        left_dialogs = await dialog_store.load()
    ua_config = UserAgentConfig(
        endpoint=EndpointConfig(
            host=sip.listen.host, port=sip.listen.port, timers=TimerConfig(t1=sip.t1)
        ),
        rtp_ports=sip.rtp_ports,
        rtp_inactivity_timeout=sip.rtp_inactivity_timeout,
    )
    ua = UserAgent(ua_config)
    try:
        await ua.start()
    except OSError:
        if database is not None:
            await database.close()
        raise
    dialogs = None
    if dialog_store is not None:
        dialogs = PersistentDialogs(dialog_store, ua)
        dialogs.start()
    registrar = Registrar(min_expires=sip.min_registration, max_expires=sip.max_registration)
    for account in config.accounts:
        if account.static_contact:
            uri = SipUri.parse(account.static_contact)
            registrar.add_static(account.extension, uri)
    bindings = None
    if database is not None:
        bindings = PersistentBindings(
            RegistrationStore(database.pool, node=config.crm.node or socket.gethostname()),
            registrar,
            ua.loop,
        )
        await bindings.restore()
    digest = DigestServer(
        secrets.token_bytes(32),
        DigestConfig(nonce_lifetime=sip.nonce_lifetime, algorithms=sip.digest_algorithms),
    )
    sec = config.security
    ban = AuthFailureBan(
        BanPolicy(
            max_failures=sec.max_auth_failures, window=sec.window, ban_seconds=sec.ban_seconds
        )
    )
    # Registering carriers authenticate like phones, under the trunk's name.
    passwords = {a.extension: a.password for a in config.accounts}
    passwords |= {t.name: t.password for t in config.trunks if t.password}
    authenticator = Authenticator(passwords, realm=sip.realm, digest=digest, ban=ban)
    extensions = {
        a.extension: Extension(a.extension, a.display_name, a.role, a.max_calls, a.team)
        for a in config.accounts
    }
    engine = Engine(config, ua, None, database, store)  # type: ignore[arg-type]
    engine.bindings = bindings
    engine.dialogs = dialogs
    if store is not None and database is not None:
        engine.journal = CallJournal(
            store,
            callback_due=timedelta(minutes=config.crm.callback_due_minutes),
            recordings_root=recordings_root,
        )
        engine.outbox = OutboxWorker(database.pool, config.crm.endpoints, policy=config.crm.retry)
        engine.monitoring = MonitoringStore(
            database.pool,
            node=config.crm.node or socket.gethostname(),
            endpoints=config.crm.endpoints,
        )
        await engine.outbox.start()
        if config.crm.follow_up_minutes is not None:
            engine.spawn(
                follow_up_forever(
                    store,
                    every=60 * config.crm.follow_up_minutes,
                    due_in=timedelta(minutes=config.crm.callback_due_minutes),
                )
            )
    if config.recordings.enabled:
        engine.recordings = Recordings(
            RecordingStore(recordings_root, config.recordings.retention_days), ua.clock
        )
        engine.spawn(engine.recordings.purge_forever())
    unrecorded = {d.number for d in config.dids if not d.record}
    presence = Presence(
        extensions, wrap_up_seconds=config.presence.wrap_up_seconds, now=ua.loop.time()
    )
    engine.switchboard = Switchboard(
        ua,
        extensions=extensions,
        registrar=registrar,
        authenticator=authenticator,
        ring_timeout=sip.ring_timeout,
        presence=presence,
        routing=Routing(config.trunks, config.dids, config.ring_groups),
        pickup_groups=PickupGroups(config.pickup_groups),
        monitor=config.monitor,
        music_on_hold=sip.music_on_hold,
    )
    _subscribe(engine, engine.switchboard.events, unrecorded)
    await engine.switchboard.providers.start()  # provider registrations and qualify
    # Numbers agents dial on their phones keep to the DNC list and calling hours, per role.
    engine.switchboard.outbound_check = functools.partial(manual_dial_refusal, engine)
    if store is not None:
        # A known customer's responsible manager rings first when the call is for their group.
        engine.switchboard.first_for = functools.partial(responsible_of, store)
    if config.ivr.flows:
        try:
            flows = await asyncio.to_thread(
                load_flows, config.ivr, data_dir=data_dir or config.data_dir
            )
        except Exception:
            await engine.stop()
            raise
        actions = SwitchboardActions(
            engine.switchboard,
            store=store,
            leads=PgLeadStore(database.pool, default_country_code=config.crm.default_country_code)
            if database is not None
            else None,
            journal=engine.journal,
            beep_detector=lambda: BeepDetector().feed,
        )
        engine.ivr = IvrService(flows, actions)
        engine.switchboard.on_ivr = engine.ivr.serve
    engine.live = wire_live(engine)
    if store is not None:
        for extension, plan in (await store.daily_plans()).items():
            if extension in engine.live.board.agents:
                engine.live.board.set_plan(extension, plan)  # set over the API: it wins
    engine.live_feed = LiveFeed(engine, engine.live)
    if database is not None:
        switchboard = engine.switchboard
        supervisor = engine.campaigns = CampaignSupervisor(
            PgLeadStore(database.pool, default_country_code=config.crm.default_country_code),
            PbxLines(
                switchboard,
                screen_pop=lambda agent, call, claim, campaign: _screen_pop(
                    engine, agent, call, claim, campaign
                ),
                ivr=engine.ivr,
            ),
            node=config.crm.node or socket.gethostname(),
            group_members=lambda name: (
                switchboard.groups[name].members if name in switchboard.groups else None
            ),
            trunk_cps=lambda name: _trunk_cps(switchboard, name),
        )
        switchboard.events.subscribe(pbx_events.PresenceChanged, lambda _: supervisor.wake())
        await supervisor.start()
    if with_http:
        try:
            engine.http = await start_http(engine, config.http_listen.host, config.http_listen.port)
        except OSError:
            await engine.stop()
            raise
    if dialogs is not None and left_dialogs:
        # Both phones of each call the crash cut off are still on it: hang them up.
        engine.spawn(_end_interrupted(dialogs, left_dialogs))
    return engine


async def _end_interrupted(dialogs: PersistentDialogs, left: list[StoredDialog]) -> None:
    await dialogs.end_interrupted(left)


def _trunk_cps(switchboard: Switchboard, name: str) -> float | None:
    """Calls per second of the trunk `name` ('' the first that can place calls)."""
    trunks = switchboard.trunks
    chosen = trunks.get(name) or next(
        (t for t in trunks.values() if t.signalling or t.password), None
    )
    return chosen.cps if chosen is not None else None


def _subscribe(engine: Engine, events: EventBus, unrecorded: set[str]) -> None:
    """What the engine does on the PBX's events (the dashboard and campaigns subscribe on
    their own): the journal first, so a call's row is opened before anything refers to it."""
    journal = engine.journal
    if journal is not None:
        events.subscribe(pbx_events.CallStarted, lambda e: journal.started(e.summary))
        events.subscribe(
            pbx_events.CallRinging, lambda e: journal.ringing(e.summary) if e.first else None
        )
        events.subscribe(pbx_events.CallAnswered, lambda e: journal.answered(e.summary))
    events.subscribe(pbx_events.CallAnswered, lambda e: _record(engine, e.bridged, unrecorded))
    events.subscribe(pbx_events.CallEnded, lambda e: _log_call(engine, e.summary))
    events.subscribe(
        pbx_events.CallPickedUp, lambda e: _log_pickup(engine, e.bridged, e.pickup, e.picker)
    )
    events.subscribe(pbx_events.MonitorChanged, lambda e: _track_audit(engine, e.event))
    events.subscribe(
        pbx_events.PresenceChanged,
        lambda e: engine.events.publish(e.extension, "presence", {"state": e.state.value}),
    )


def _record(engine: Engine, bridged: BridgedCall, unrecorded: set[str]) -> None:
    if engine.recordings is not None and bridged.summary.did not in unrecorded:
        engine.recordings.start(bridged)
        path = bridged.summary.recording
        if path is not None and engine.journal is not None:
            engine.spawn(engine.journal.recording_started(bridged.a.call_id, path))


async def _call_row(engine: Engine, call_id: str) -> int | None:
    if engine.journal is None:
        return None
    try:
        return await engine.journal.row_id(call_id)
    except Exception as exc:  # the row's INSERT failed: the journal logged it already
        logger.info("call %s: no calls row: %s", call_id, exc)
        return None


async def _log_pickup(engine: Engine, bridged: BridgedCall, pickup: Pickup, picker: str) -> None:
    """A pickup is an event in the CRM delivery (the calls row names the picker at its end)."""
    if engine.monitoring is None:
        return
    try:
        await engine.monitoring.record_pickup(
            call_row_id=await _call_row(engine, bridged.a.call_id),
            call_id=bridged.a.call_id,
            picker=picker,
            picked_from=pickup.picked_from,
            at=bridged.summary.answered_at or datetime.now(UTC),
        )
    except Exception:
        logger.exception("call %s: pickup by %s not stored", bridged.a.call_id, picker)


def _track_audit(engine: Engine, event: MonitorEvent) -> None:
    task = engine.ua.loop.create_task(_audit_monitor(engine, event))
    engine._audit_writes.add(task)
    task.add_done_callback(engine._audit_writes.discard)


async def _audit_monitor(engine: Engine, event: MonitorEvent) -> None:
    if engine.monitoring is None:
        return
    try:
        async with engine._audit_order:
            await _write_audit(engine, event)
    except Exception:
        # The audit is required: an entry that cannot be written is an error to see.
        logger.exception("monitor %d: audit entry %s not stored", event.session, event.action)


async def _write_audit(engine: Engine, event: MonitorEvent) -> None:
    rows = engine._monitored_rows
    if event.session not in rows:
        rows[event.session] = await _call_row(engine, event.call_id)
    row = rows.pop(event.session) if event.action == "ended" else rows[event.session]
    if engine.monitoring is not None:
        await engine.monitoring.audit(
            session=event.session,
            call_row_id=row,
            call_id=event.call_id,
            supervisor=event.supervisor,
            agent=event.agent,
            action=event.action,
            mode=event.mode.value,
            at=event.at,
        )


async def _log_call(engine: Engine, summary: CallSummary) -> None:
    engine.call_outcomes[summary.outcome] += 1
    if engine.recordings is not None:
        engine.recordings.finish(summary.call_id)
    if engine.journal is not None:
        await engine.journal.ended(summary)


def _screen_pop(engine: Engine, agent: str, call: Call, claim: Claim, campaign: Campaign) -> None:
    """Tell the agent's screen who is on the line (lead data, campaign, attempt)."""

    async def pop() -> None:
        row = await engine.journal.row_id(call.call_id) if engine.journal is not None else None
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
        engine.events.publish(
            agent, "screen-pop", {"call": row, "call_id": call.call_id, **details}
        )
        # And to the CRMs (webhook), through the outbox like every call event.
        if row is not None and engine.store is not None:
            try:
                await engine.store.screen_pop(row, agent, details, now=datetime.now(UTC))
            except Exception as exc:  # the agent has the pop already; the CRM copy is extra
                logger.error("call %s: screen pop not queued for the CRMs: %s", call.call_id, exc)

    engine.spawn(pop())
