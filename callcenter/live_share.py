"""Every node's live calls on every node's dashboard (issue 18, item 4), on a cluster.

A node announces its own calls' board events (started, ringing, answered, ended) on the
channel 'live_calls' as JSON; the other nodes fold them into their boards as they fold their
own, so `/api/live` and `/api/live/snapshot` show every node's calls and every agent ringing
or talking anywhere. At start, and when the listening connection was lost, the open calls of
the live nodes are read from the `calls` rows (the journal's); a node whose liveness lease ran
out has its calls taken off the boards. Announcing is one task, in order, in batches, so the
call path never waits for the database. A single node never builds this.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from typing import Any

import asyncpg

from crm_bridge.listener import ChannelListener
from crm_bridge.row_sync import DB_ERRORS

from .events import CallAnswered, CallEnded, CallRinging, CallStarted, LiveBus, LiveEvent

logger = logging.getLogger(__name__)

CHANNEL = "live_calls"
KINDS: dict[str, type[Any]] = {
    kind.__name__: kind for kind in (CallStarted, CallRinging, CallAnswered, CallEnded)
}
BACKLOG = 10_000
"""Announcements kept at most while the database is away (the oldest go first)."""
SWEEP_EVERY = 5.0
"""Seconds between looks for dead nodes whose calls are still shown."""


def encode(node: str, event: LiveEvent) -> str:
    # The call events are flat (scalars and a tuple of extensions): their fields as they are,
    # not dataclasses.asdict's recursive deep copy, which was 5 % of a cluster node's CPU at
    # 150 calls/s.
    fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    return json.dumps({"node": node, "kind": type(event).__name__, **fields})


def decode(payload: str) -> tuple[str, LiveEvent] | None:
    """(node, event) of an announcement; None when it is not one (logged)."""
    try:
        data = json.loads(payload)
        node, kind = data.pop("node"), KINDS[data.pop("kind")]
        if kind is CallRinging:
            data["ringing"] = tuple(data["ringing"])
        return str(node), kind(**data)
    except (ValueError, KeyError, TypeError) as exc:
        logger.error("live calls: an announcement is unusable (%s): %.200s", exc, payload)
        return None


class LiveShare:
    def __init__(self, pool: asyncpg.Pool, bus: LiveBus, *, node: str) -> None:
        self._pool = pool
        self.bus = bus
        self.node = node
        self._listener = ChannelListener(pool, CHANNEL)
        self._out: list[str] = []
        self._wake = asyncio.Event()
        self._sent = asyncio.Event()
        self._sent.set()
        self._remote: dict[str, str] = {}
        """Other nodes' calls on the board: call_id -> node."""
        self._applying = False
        self._listening = False
        self._tasks: list[asyncio.Task[None]] = []
        bus.on_event.append(self._local)

    async def start(self) -> None:
        try:
            await self._listen()
        except DB_ERRORS as exc:
            logger.error("live calls: cannot LISTEN yet (retrying): %s", exc)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._send_forever(), name="live-share-send"),
            loop.create_task(self._watch_forever(), name="live-share-watch"),
        ]

    async def flush(self, timeout: float = 5.0) -> None:
        """Until every announcement so far is sent."""
        await asyncio.wait_for(self._sent.wait(), timeout)

    async def stop(self) -> None:
        with contextlib.suppress(TimeoutError):
            await self.flush()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(*DB_ERRORS):
            await self._listener.close()

    def remote_calls(self) -> dict[str, str]:
        return dict(self._remote)

    # -- this node's calls out ---------------------------------------------------------------

    def _local(self, event: LiveEvent) -> None:
        if self._applying or type(event).__name__ not in KINDS:
            return
        self._out.append(encode(self.node, event))
        if len(self._out) > BACKLOG:
            del self._out[: len(self._out) - BACKLOG]
            logger.warning("live calls: announcements dropped (the database is away)")
        self._sent.clear()
        self._wake.set()

    async def _send_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._out:
                batch = self._out[:100]
                try:
                    await self._pool.execute(
                        "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p",
                        CHANNEL,
                        batch,
                    )
                except DB_ERRORS as exc:
                    logger.error("live calls: not announced (retrying): %s", exc)
                    await asyncio.sleep(1.0)
                    continue
                del self._out[: len(batch)]
            self._sent.set()

    # -- other nodes' calls in ---------------------------------------------------------------

    async def _listen(self) -> None:
        await self._listener.listen(self._heard, self._lost)
        self._listening = True
        await self._load()

    def _lost(self) -> None:
        if self._listening:
            logger.error("live calls: the LISTEN connection is gone; listening again")
            self._listening = False

    def _heard(self, payload: str) -> None:
        decoded = decode(payload)
        if decoded is None or decoded[0] == self.node:
            return
        node, event = decoded
        if isinstance(event, CallStarted):
            self._remote[event.call_id] = node
        elif isinstance(event, CallEnded):
            self._remote.pop(event.call_id, None)
        self._publish(event)

    def _publish(self, event: LiveEvent) -> None:
        self._applying = True
        try:
            self.bus.publish(event)
        finally:
            self._applying = False

    async def _load(self) -> None:
        """Other live nodes' open calls from their rows (at start, after a lost LISTEN)."""
        rows = await self._pool.fetch(
            "SELECT c.call_id, c.direction, c.from_number, c.to_number, c.started_at,"
            " c.answered_at, c.agent, c.campaign_id, c.lead_id, c.node FROM calls c"
            " JOIN cluster_nodes n ON n.node = c.node WHERE c.ended_at IS NULL"
            " AND c.node <> $1 AND n.lease_until >= now()",
            self.node,
        )
        for row in rows:
            call_id = row["call_id"]
            if call_id in self.bus.board.calls:
                continue
            self._remote[call_id] = row["node"]
            self._publish(
                CallStarted(
                    call_id, row["from_number"], row["to_number"], row["direction"],
                    row["started_at"].timestamp(), campaign_id=row["campaign_id"],
                    lead_id=row["lead_id"],
                )
            )  # fmt: skip
            if row["answered_at"] is not None:
                callee = row["agent"] or row["to_number"]
                self._publish(
                    CallAnswered(
                        call_id, row["from_number"], callee, row["answered_at"].timestamp()
                    )
                )

    async def _watch_forever(self) -> None:
        """Listen again when the connection was lost; take dead nodes' calls off."""
        while True:
            await asyncio.sleep(SWEEP_EVERY if self._listening else 1.0)
            try:
                if not self._listening:
                    await self._listen()
                    logger.info("live calls: listening again")
                if self._remote:
                    await self._sweep()
            except DB_ERRORS as exc:
                logger.error("live calls: database error (retrying): %s", exc)

    async def _sweep(self) -> None:
        rows = await self._pool.fetch(
            "SELECT node FROM cluster_nodes WHERE node = ANY($1::text[]) AND lease_until < now()",
            sorted(set(self._remote.values())),
        )
        dead = {r["node"] for r in rows}
        for call_id, node in list(self._remote.items()):
            if node in dead:
                del self._remote[call_id]
                self._publish(CallEnded(call_id, None, "node-lost", 0.0, time.time()))
