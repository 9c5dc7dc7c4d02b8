"""The campaign supervisor: which campaigns dial on this node, each with its runner, pacer,
abandon ledger (shared across nodes through the store) and the trunk's calls-per-second bucket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from telephony.aio.tasks import cancel_and_wait

from .ledger import AbandonLedger, AbandonPolicy
from .model import Attempt, Campaign, LeadStore
from .pacing import Bucket, TokenBucket, make_pacer
from .runner import CampaignRunner, Lines, RunnerConfig

logger = logging.getLogger(__name__)

# Seconds between reads of the other nodes' abandon ledgers (each saves after every answer).
PEER_LEDGER_EVERY = 5.0

# Calls per second when no configured trunk says (carriers cap this).
DEFAULT_CPS = 10.0

# Seconds between looks for dead nodes' attempts in flight (on a cluster).
DEAD_NODES_EVERY = 2.0


class SupervisorStore(LeadStore, Protocol):
    """What the supervisor needs from storage besides the runner's (dialer.PgLeadStore)."""

    async def list_campaigns(self) -> Sequence[Campaign]: ...

    async def close_interrupted_attempts(
        self, node: str, *, now: datetime
    ) -> Sequence[Attempt]: ...

    async def close_attempts_of_dead_nodes(self, *, now: datetime) -> Sequence[Attempt]: ...

    async def peer_ledgers(self, campaign_id: int, *, node: str) -> list[dict[str, Any]]: ...

    async def load_ledger(self, campaign_id: int, *, node: str) -> dict[str, Any] | None: ...

    async def save_ledger(self, campaign_id: int, state: dict[str, Any], *, node: str) -> None: ...


class CampaignSupervisor:
    """A runner for every campaign the database says is running, on this node.

    Campaign state lives in PostgreSQL, so the CLI, the API or another node can start and pause
    a campaign; every node runs a runner for each running campaign, and SKIP LOCKED claims keep
    them from dialing the same lead. At start this node's attempts cut off by a crash are closed;
    every `PEER_LEDGER_EVERY` seconds the other nodes' abandon ledgers are read, so the cap holds
    for the campaign across nodes. `wake()` when an agent may have come free.

    On a cluster (`shared_bucket` given): each trunk's calls-per-second bucket is the one
    every node takes from, and every `DEAD_NODES_EVERY` seconds the attempts in flight of
    nodes whose liveness lease ran out are closed, so a killed node's leads go on without
    its restart."""

    def __init__(
        self,
        store: SupervisorStore,
        lines: Lines,
        *,
        node: str,
        group_members: Callable[[str], tuple[str, ...] | None],
        trunk_cps: Callable[[str], float | None],
        poll: float = 1.0,
        shared_bucket: Callable[[str, float], Bucket] | None = None,
    ) -> None:
        self.store = store
        self.lines = lines
        self.node = node
        self.poll = poll
        self.runners: dict[int, CampaignRunner] = {}
        self._group_members = group_members
        """Members of a ring group by name (None: no such group here)."""
        self._trunk_cps = trunk_cps
        """Calls per second of a trunk by name ('' the default outbound one; None: unknown)."""
        self._shared_bucket = shared_bucket
        """Makes the bucket of (trunk, cps) every node shares; None: this node's own."""
        self._buckets: dict[str, Bucket] = {}
        """Calls-per-second budget per trunk, shared by all campaigns dialing through it."""
        self._peers_read_at = float("-inf")
        self._dead_read_at = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self._saves: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """An agent may have come free: every runner paces now."""
        for runner in self.runners.values():
            runner.wake()

    async def start(self) -> None:
        closed = await self.store.close_interrupted_attempts(self.node, now=datetime.now(UTC))
        if closed:
            logger.warning(
                "closed %d dialer attempts cut off by a crash (outcome-unknown)", len(closed)
            )
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        for runner in list(self.runners.values()):
            await runner.stop(hang_up=True)
        self.runners.clear()
        if self._saves:
            await asyncio.wait(self._saves, timeout=5)

    async def _watch(self) -> None:
        while True:
            try:
                await self.sync()
            except Exception:
                logger.exception("campaigns: sync failed")
            await asyncio.sleep(self.poll)

    async def sync(self) -> None:
        """Start runners for running campaigns, stop those of paused or finished ones."""
        running = {c.row_id: c for c in await self.store.list_campaigns() if c.state == "running"}
        for campaign_id in [c for c in self.runners if c not in running]:
            runner = self.runners.pop(campaign_id)
            logger.info("campaign %s: dialing stops", runner.campaign.name)
            await runner.stop()
        for campaign_id, stored in running.items():
            if campaign_id not in self.runners:
                self.runners[campaign_id] = await self._runner(stored)
                self._peers_read_at = float("-inf")  # a new runner reads its peers now
        loop = asyncio.get_running_loop()
        if self._shared_bucket is not None and loop.time() >= self._dead_read_at + DEAD_NODES_EVERY:
            self._dead_read_at = loop.time()
            closed = await self.store.close_attempts_of_dead_nodes(now=datetime.now(UTC))
            if closed:
                self.wake()  # their leads (and agents, once the lease lapses) are free again
        if loop.time() >= self._peers_read_at + PEER_LEDGER_EVERY:
            self._peers_read_at = loop.time()
            for runner in self.runners.values():
                await self._read_peers(runner)

    async def _read_peers(self, runner: CampaignRunner) -> None:
        """The other nodes' abandon ledgers of the campaign: the cap holds for all nodes."""
        ledger = runner.ledger
        try:
            states = await self.store.peer_ledgers(runner.campaign_id, node=self.node)
            ledger.peers = tuple(AbandonLedger.from_dict(s, ledger.policy) for s in states)
        except (ValueError, KeyError) as exc:
            logger.error(
                "campaign %s: a peer's abandon ledger is unusable: %s", runner.campaign.name, exc
            )

    async def _runner(self, campaign: Campaign) -> CampaignRunner:
        if campaign.ring_group:
            # A campaign staffed by a ring group: its members (as configured now) take the calls.
            members = self._group_members(campaign.ring_group)
            if members is None:
                logger.error(
                    "campaign %s: no ring group %s on this engine",
                    campaign.name,
                    campaign.ring_group,
                )
            else:
                campaign = dataclasses.replace(
                    campaign, agents=tuple(dict.fromkeys((*campaign.agents, *members)))
                )
        policy = AbandonPolicy(
            cap=campaign.abandon_cap,
            window_seconds=campaign.abandon_window_days * 86400.0,
            tz=campaign.tz_default,
            connect_deadline=campaign.connect_seconds,
        )
        saved = await self.store.load_ledger(self.campaign_id(campaign), node=self.node)
        try:
            ledger = AbandonLedger.from_dict(saved, policy) if saved else AbandonLedger(policy)
        except (ValueError, KeyError) as exc:
            logger.error(
                "campaign %s: saved abandon ledger unusable (%s): starting afresh",
                campaign.name,
                exc,
            )
            ledger = AbandonLedger(policy)
        config = RunnerConfig(node=self.node)
        runner = CampaignRunner(
            campaign,
            self.store,
            self.lines,
            pacer=make_pacer(
                campaign.mode, ratio=campaign.ratio, ledger=ledger, lines=campaign.lines
            ),
            ledger=ledger,
            bucket=self._bucket(campaign.trunk, now=config.clock()),
            config=config,
        )
        runner.on_ledger_change = lambda changed: self._save(campaign, changed)
        runner.start()
        logger.info(
            "campaign %s: dialing (%s, ratio %.1f)", campaign.name, campaign.mode, campaign.ratio
        )
        return runner

    def _bucket(self, trunk: str, *, now: float) -> Bucket:
        """The trunk's token bucket, shared by the campaigns (and on a cluster by the nodes)
        dialing through it (an empty name: the trunk the PBX routes through)."""
        if trunk not in self._buckets:
            cps = self._trunk_cps(trunk)
            rate = cps if cps is not None else DEFAULT_CPS
            self._buckets[trunk] = (
                self._shared_bucket(trunk, rate)
                if self._shared_bucket is not None
                else TokenBucket(rate, now=now)
            )
        return self._buckets[trunk]

    @staticmethod
    def campaign_id(campaign: Campaign) -> int:
        assert campaign.id is not None
        return campaign.id

    def _save(self, campaign: Campaign, ledger: AbandonLedger) -> None:
        """Persist the ledger after each live answer: the 30-day abandon rate outlives restarts."""

        async def save() -> None:
            try:
                await self.store.save_ledger(
                    self.campaign_id(campaign), ledger.to_dict(), node=self.node
                )
            except Exception as exc:
                logger.error("campaign %s: abandon ledger not saved: %s", campaign.name, exc)

        task = asyncio.get_running_loop().create_task(save())
        self._saves.add(task)
        task.add_done_callback(self._saves.discard)


__all__ = [
    "DEAD_NODES_EVERY",
    "DEFAULT_CPS",
    "PEER_LEDGER_EVERY",
    "CampaignSupervisor",
    "SupervisorStore",
]
