"""The running engine: one typed object holding the services `runtime.start_engine` built,
complete from the moment it exists. The API, the CLI and tests reach the engine's parts
through it; it knows nothing of the API (the HTTP app holds the engine, not the reverse)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiohttp import web

from crm_bridge import CrmStore, MonitoringStore, OutboxWorker, PgAgentBookings
from dialer import CampaignSupervisor, PgLeadStore
from ivr import IvrService, PromptCache
from pbx import ClickToCall, Switchboard
from telephony.aio import TaskSet, UserAgent

from .config import Config
from .database import Database
from .dialogs import PersistentDialogs
from .events import AgentEvents, LiveBus
from .forwarding import SharedForwarding
from .journal import CallJournal, MonitorAudit
from .keepalive import Keepalives
from .live import LiveFeed
from .live_share import LiveShare
from .recording import Recordings
from .registrations import PersistentBindings
from .shared_presence import SharedPresence
from .status_callbacks import StatusCallbacks

logger = logging.getLogger(__name__)


@dataclass
class Engine:
    """A running engine: SIP user agent, PBX and the services around it. A service whose
    feature is off is None: no database (store, journal, outbox, monitoring, audit, campaigns,
    bindings, dialogs), recording disabled, no IVR flows."""

    config: Config
    ua: UserAgent
    switchboard: Switchboard
    click_to_call: ClickToCall
    events: AgentEvents
    """Per-agent streams (screen pops, presence)."""
    live: LiveBus
    """The dashboard's event bus (agents, calls, campaigns, tasks)."""
    live_feed: LiveFeed
    background: TaskSet
    """Work running beside the engine (cancelled at stop)."""
    database: Database | None = None
    store: CrmStore | None = None
    journal: CallJournal | None = None
    outbox: OutboxWorker | None = None
    monitoring: MonitoringStore | None = None
    audit: MonitorAudit | None = None
    """Pickups (with their CRM event) and the monitoring audit."""
    recordings: Recordings | None = None
    campaigns: CampaignSupervisor | None = None
    leads: PgLeadStore | None = None
    """The dialer's store: campaigns, leads, attempts, DNC (with the database)."""
    ivr: IvrService | None = None
    """IVR flows: DIDs routed to `ivr:FLOW`, and the runners broadcasts use."""
    bindings: PersistentBindings | None = None
    forwarding: SharedForwarding | None = None
    """DND and forwarding kept in the database, shared by every node."""
    bookings: PgAgentBookings | None = None
    presence_sync: SharedPresence | None = None
    """Away and wrap-up shared with the other nodes (on a cluster)."""
    live_share: LiveShare | None = None
    """Every node's calls on this node's dashboard (on a cluster)."""
    keepalives: Keepalives | None = None
    """OPTIONS pings to registered phones ([sip] keepalive_interval > 0)."""
    dialogs: PersistentDialogs | None = None
    """Answered dialogs kept in the database (BYE after a crash)."""
    status_callbacks: StatusCallbacks | None = None
    """Per-call status URLs (click-to-call's `status_callback`)."""
    prompts: PromptCache | None = None
    """Prompts the API plays to a live call (text spoken by espeak-ng), cached on disk."""
    call_outcomes: Counter[str] = field(default_factory=Counter)
    """Calls ended since start, by outcome (GET /metrics)."""
    http: web.AppRunner | None = None
    """The HTTP listener, once started (the app holds the engine, so it comes after)."""

    @property
    def sip_port(self) -> int:
        return self.ua.endpoint.port

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` beside the engine; cancelled at stop, forgotten once done."""
        self.background.spawn(work)

    async def stop(self) -> None:
        for task in self.background:
            task.cancel()
        if self.http is not None:
            await self.http.cleanup()
        if self.campaigns is not None:
            await self.campaigns.stop()
        if self.ivr is not None:
            await self.ivr.shutdown()
        await self.click_to_call.shutdown()
        await self.switchboard.shutdown()
        await self.switchboard.providers.stop()  # our bindings at providers removed
        await self.switchboard.events.drain()
        if self.recordings is not None:  # every call's recording finished with its call
            await self.recordings.close()
        if self.audit is not None:
            await self.audit.drain(timeout=5)
        if self.status_callbacks is not None:
            await self.status_callbacks.close()
        # Let the BYEs leave before the sockets close.
        await asyncio.sleep(0.05)
        await self.ua.close()
        if self.bindings is not None:
            await self.bindings.flush()
            await self.bindings.close()
        if self.live_share is not None:
            await self.live_share.stop()
        if self.presence_sync is not None:
            await self.presence_sync.stop()
        if self.bookings is not None:
            await self.bookings.close()
            try:
                await self.bookings.leave()
            except (OSError, asyncpg.PostgresError) as exc:  # its lease lapses by itself
                logger.warning("cluster: node not removed: %s", exc)
        if self.forwarding is not None:
            await self.forwarding.stop()
        if self.dialogs is not None:
            await self.dialogs.stop()
        if self.outbox is not None:
            await self.outbox.stop()
        if self.database is not None:
            await self.database.close()


__all__ = ["Engine"]
