"""The composition root: builds the engine from a Config and runs it until told to stop."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import secrets
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crm_bridge import (
    NONCE_KEY,
    CrmStore,
    DialogStore,
    ForwardingStore,
    MonitoringStore,
    OutboxWorker,
    PgAgentBookings,
    PresenceStore,
    RegistrationStore,
    StoredDialog,
    follow_up_forever,
    purge_outbox_forever,
    shared_secret,
)
from dialer import BeepDetector, CampaignSupervisor, PgLeadStore, PgTokenBucket
from ivr import IvrService, PromptCache
from pbx import (
    Authenticator,
    AuthFailureBan,
    BanPolicy,
    BridgedCall,
    CallSummary,
    ClickToCall,
    Extension,
    PickupGroups,
    Presence,
    Registrar,
    Routing,
    Switchboard,
)
from pbx import events as pbx_events
from pbx.blf import EVENT as BLF_EVENT
from pbx.blf import WatchPolicy
from pbx.events import EventBus
from recordings import RecordingStore
from telephony.aio import EndpointConfig, TaskSet, UserAgent, UserAgentConfig
from telephony.aio.endpoint import DEFAULT_METHODS
from telephony.call import SessionTimerConfig
from telephony.sip import DigestConfig, DigestServer, SipUri, TimerConfig

from .api import start_http
from .click_to_call import manual_dial_refusal
from .config import Config
from .database import open_database
from .dialing import PbxLines, ScreenPops
from .dialogs import PersistentDialogs
from .engine import Engine
from .events import AgentEvents
from .forwarding import SharedForwarding
from .ivr_glue import SwitchboardActions, load_flows, serve_dids
from .journal import CallJournal, MonitorAudit, close_interrupted_calls, responsible_of
from .keepalive import Keepalives
from .live import LiveFeed, wire_live
from .live_share import LiveShare
from .recording import Recordings
from .registrations import PersistentBindings
from .screen_pop import RingingPops, pop_of_row
from .shared_presence import SharedPresence
from .status_callbacks import StatusCallbacks
from .tls import tls_contexts

logger = logging.getLogger(__name__)


GC_YOUNG_THRESHOLD = 7000
"""Allocations between young collections once the engine runs (CPython's default is 700: a
call set up allocates thousands of containers, most of them freed by reference count)."""


def settle_heap() -> None:
    """For the process that runs one engine (`callcenter serve`, the benches), once it is up:
    what start-up built (modules, config, pools, prompts) lives as long as the process, so it
    moves to the collector's permanent generation (gc.freeze) and full collections stop walking
    it again and again (each took ~150 ms, stalling the loop, with 1.3 s of 12 s of CPU in the
    collector at 100 calls/s); young collections run a tenth as often. Not for processes that
    start many engines (the tests): a frozen object that later becomes cyclic garbage is never
    collected."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


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
    # Flows first: a prompt that cannot be made fails the start before anything listens.
    flows = (
        await asyncio.to_thread(load_flows, config.ivr, data_dir=data_dir or config.data_dir)
        if config.ivr.flows
        else {}
    )
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
    tls_server, tls_client = tls_contexts(sip)
    ua_config = UserAgentConfig(
        endpoint=EndpointConfig(
            host=sip.listen.host,
            port=sip.listen.port,
            timers=TimerConfig(t1=sip.t1),
            external_address=sip.external_address,
            local_networks=sip.networks,
            tls_port=sip.tls_listen.port if sip.tls_listen is not None else None,
            tls_server=tls_server,
            tls_client=tls_client,
            overload=sip.overload,
            allowed_methods=DEFAULT_METHODS | {"SUBSCRIBE"},  # BLF (pbx.blf_service)
            allow_events=frozenset({BLF_EVENT}),
        ),
        rtp_ports=sip.rtp_ports,
        rtp_inactivity_timeout=sip.rtp_inactivity_timeout,
        session_timer=SessionTimerConfig(session_expires=sip.session_expires, min_se=sip.min_se),
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
    ua.endpoint.flow_closed.append(registrar.drop_flow)  # a browser phone's WebSocket closed
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
        if sip.cluster:
            await bindings.share()
    # Nodes of one cluster share the nonce key: a phone challenged by one may answer another.
    nonce_key = (
        await shared_secret(database.pool, NONCE_KEY)
        if database is not None and sip.cluster
        else secrets.token_bytes(32)
    )
    digest = DigestServer(
        nonce_key,
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
    authenticator = Authenticator(
        passwords,
        realm=sip.realm,
        digest=digest,
        ban=ban,
        trusted=ua.endpoint.flow_identity,  # browser phones' WebSockets opened with a token
        trusted_proxies=sip.trusted_proxies,
    )
    extensions = {
        a.extension: Extension(
            a.extension,
            a.display_name,
            a.role,
            a.max_calls,
            a.team,
            a.session_timers,
            srtp=a.srtp,
            forwarding=a.forwarding,
        )
        for a in config.accounts
    }
    background = TaskSet("engine")
    journal = outbox = monitoring = audit = None
    if store is not None and database is not None:
        journal = CallJournal(
            store,
            callback_due=timedelta(minutes=config.crm.callback_due_minutes),
            recordings_root=recordings_root,
        )
        outbox = OutboxWorker(database.pool, config.crm.endpoints, policy=config.crm.retry)
        monitoring = MonitoringStore(
            database.pool,
            node=config.crm.node or socket.gethostname(),
            endpoints=config.crm.endpoints,
        )
        audit = MonitorAudit(monitoring, journal)
        await outbox.start()
        if config.crm.outbox_retention_days is not None:
            dead_days = config.crm.dead_letter_retention_days
            background.spawn(
                purge_outbox_forever(
                    store,
                    keep=timedelta(days=config.crm.outbox_retention_days),
                    keep_dead=None if dead_days is None else timedelta(days=dead_days),
                )
            )
        if config.crm.follow_up_minutes is not None:
            background.spawn(
                follow_up_forever(
                    store,
                    every=60 * config.crm.follow_up_minutes,
                    due_in=timedelta(minutes=config.crm.callback_due_minutes),
                )
            )
    recordings = None
    if config.recordings.enabled:
        recordings = Recordings(
            RecordingStore(recordings_root, config.recordings.retention_days), ua.clock
        )
        background.spawn(recordings.purge_forever())
    unrecorded = {d.number for d in config.dids if not d.record}
    presence = Presence(
        extensions, wrap_up_seconds=config.presence.wrap_up_seconds, now=ua.loop.time()
    )
    switchboard = Switchboard(
        ua,
        extensions=extensions,
        registrar=registrar,
        authenticator=authenticator,
        ring_timeout=sip.ring_timeout,
        presence=presence,
        routing=Routing(config.trunks, config.dids, config.ring_groups, config.queues),
        pickup_groups=PickupGroups(config.pickup_groups),
        monitor=config.monitor,
        music_on_hold=sip.music_on_hold,
    )
    # Prompts spoken by espeak-ng (in a thread; each text made once, kept on disk): the parked
    # slot, queue positions, the API's /play.
    prompts = PromptCache(
        config.ivr.prompt_cache or (data_dir or config.data_dir) / "prompts",
        espeak="espeak-ng" if config.ivr.tts else None,
    )
    if prompts.espeak is not None:

        async def speak(text: str) -> Path:
            return await asyncio.to_thread(prompts.speak, text)

        switchboard.speak = speak
    if (
        config.queues
        or config.voicemail
        or any(d.route.startswith("voicemail:") for d in config.dids)
    ):
        _wire_queues(switchboard, config, recordings_root)
    forwarding = None
    if database is not None:
        # DND and forwarding as phones and the API left them, on any node.
        forwarding = SharedForwarding(
            ForwardingStore(database.pool, node=config.crm.node or socket.gethostname()),
            switchboard,
        )
        await forwarding.start()
    switchboard.blf.policy = WatchPolicy(config.blf_groups)
    if store is not None:
        # A known customer's responsible manager rings first when the call is for their group.
        switchboard.first_for = functools.partial(responsible_of, store)
    leads = (
        PgLeadStore(database.pool, default_country_code=config.crm.default_country_code)
        if database is not None
        else None
    )
    ivr = actions = None
    if flows:
        actions = SwitchboardActions(
            switchboard,
            store=store,
            leads=leads,
            journal=journal,
            beep_detector=lambda: BeepDetector().feed,
        )
        ivr = IvrService(flows, actions)
        switchboard.on_ivr = serve_dids(
            ivr,
            actions,
            responsible=functools.partial(responsible_of, store) if store is not None else None,
        )
    events = AgentEvents()
    campaigns = None
    dialer_pops = ScreenPops(events, journal=journal, store=store, spawn=background.spawn)
    if leads is not None:
        campaigns = CampaignSupervisor(
            leads,
            PbxLines(
                switchboard,
                screen_pop=dialer_pops,
                ivr=ivr,
                ivr_actions=actions,
            ),
            node=config.crm.node or socket.gethostname(),
            group_members=lambda name: (
                switchboard.groups[name].members if name in switchboard.groups else None
            ),
            trunk_cps=lambda name: _trunk_cps(switchboard, name),
            shared_bucket=(
                functools.partial(PgTokenBucket, database.pool)
                if sip.cluster and database is not None
                else None
            ),
        )
    live = wire_live(switchboard, config.accounts)
    engine = Engine(
        config,
        ua,
        switchboard,
        ClickToCall(switchboard),
        events=events,
        live=live,
        live_feed=LiveFeed(
            live,
            spawn=background.spawn,
            database=database,
            store=store,
            campaigns=campaigns,
            leads=leads,
            queues=switchboard.queues if switchboard.queues.queues else None,
        ),
        background=background,
        database=database,
        store=store,
        journal=journal,
        outbox=outbox,
        monitoring=monitoring,
        audit=audit,
        recordings=recordings,
        campaigns=campaigns,
        leads=leads,
        ivr=ivr,
        bindings=bindings,
        forwarding=forwarding,
        dialogs=dialogs,
        status_callbacks=StatusCallbacks(switchboard.events),
        prompts=prompts,
    )
    if database is not None and sip.cluster:
        bookings = PgAgentBookings(
            database.pool,
            node=config.crm.node or socket.gethostname(),
            exclusive={a.extension for a in config.accounts if a.max_calls == 1},
            lease=sip.cluster_lease,
        )
        await bookings.join()
        if cleared := await bookings.clear():
            logger.warning("dropped %d agent bookings left by an earlier crash", cleared)
        # Away and wrap-up set on any node hold on every node; other nodes' calls show.
        engine.presence_sync = SharedPresence(
            PresenceStore(database.pool, node=bookings.node), presence, ua.loop
        )
        await engine.presence_sync.start()
        bookings.on_call_elsewhere = engine.presence_sync.call_elsewhere
        bookings.wrap_up_end = engine.presence_sync.wrap_up_end  # released with the booking
        # Every node's calls on every node's dashboard.
        engine.live_share = LiveShare(database.pool, live, node=bookings.node)
        await engine.live_share.start()
        await bookings.follow()
        switchboard.bookings = engine.bookings = bookings
        engine.spawn(bookings.renew_forever())
    if sip.keepalive_interval > 0:
        engine.keepalives = Keepalives(ua, registrar, interval=sip.keepalive_interval)
        engine.spawn(engine.keepalives.run_forever())
    _subscribe(engine, switchboard.events, unrecorded)
    if journal is not None:
        # Every call's screen pop, to each agent its phone rings for (after the journal's row).
        RingingPops(engine, switchboard.events, journal=journal, spawn=engine.spawn)
        dialer_pops.enrich = functools.partial(pop_of_row, engine)
    await switchboard.providers.start()  # provider registrations and qualify
    # Numbers agents dial on their phones keep to the DNC list and calling hours, per role.
    switchboard.outbound_check = functools.partial(manual_dial_refusal, engine)
    if store is not None:
        for extension, plan in (await store.daily_plans()).items():
            if extension in live.board.agents:
                live.board.set_plan(extension, plan)  # set over the API: it wins
    if campaigns is not None:
        supervisor = campaigns
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


def _wire_queues(switchboard: Switchboard, config: Config, recordings_root: Path) -> None:
    """The queues speak with the switchboard's prompts and leave voicemail beside the
    recordings."""
    desk = switchboard.queues
    if switchboard.speak is not None:
        desk.speak = switchboard.speak
    else:
        logger.warning("queues: espeak-ng is missing, callers hear tones instead of positions")
    desk.voicemail_dir = recordings_root / "voicemail"
    desk.voicemail_boxes = {box.owner: box for box in config.voicemail}


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
    if engine.recordings is not None:
        recordings = engine.recordings
        events.subscribe(pbx_events.CallTransferred, lambda e: recordings.follow(e.bridged))
    if journal is not None:
        events.subscribe(
            pbx_events.CallTransferred, lambda e: journal.transferred(e.summary, e.transfer)
        )
    events.subscribe(pbx_events.CallEnded, lambda e: _log_call(engine, e.summary))
    audit = engine.audit
    if audit is not None:
        events.subscribe(
            pbx_events.CallPickedUp, lambda e: audit.pickup(e.bridged, e.pickup, e.picker)
        )
        events.subscribe(pbx_events.MonitorChanged, lambda e: audit.monitor(e.event))
    events.subscribe(
        pbx_events.PresenceChanged,
        lambda e: engine.events.publish(e.extension, "presence", {"state": e.state.value}),
    )


def _record(engine: Engine, bridged: BridgedCall, unrecorded: set[str]) -> None:
    if engine.recordings is not None and bridged.summary.did not in unrecorded:
        engine.recordings.start(bridged)
        path = bridged.summary.recording
        if path is not None and engine.journal is not None:
            engine.spawn(engine.journal.recording_started(bridged.call_id, path))


async def _log_call(engine: Engine, summary: CallSummary) -> None:
    engine.call_outcomes[summary.outcome] += 1
    if engine.recordings is not None:
        engine.recordings.finish(summary.call_id)
    if engine.journal is not None:
        await engine.journal.ended(summary)
