"""Presence shared by the nodes of a cluster (issue 18, item 4): an agent set away or
available on one node, or in wrap-up after a call there, is away or in wrap-up for every
node's hunts, dialers and dashboard; and an agent on another node's call shows on a call.

The agent_presence rows are kept in step by crm_bridge.row_sync.RowSync (one task, in order,
retried, listening again when the connection dies). Wrap-up ends are stored as wall-clock
times and applied on each node's own loop clock.

Another node's call ending (its booking released) frees the agent here once their row is read:
the release wrote the wrap-up the call began into that row in the same statement
(PgAgentBookings.release, asking `wrap_up_end` of the node that held the call), and the
release is heard only once committed, so the agent never looks free here in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

from crm_bridge import PresenceStore, StoredPresence
from crm_bridge.row_sync import DB_ERRORS, RowSync
from pbx import Presence


class SharedPresence(RowSync):
    name = "presence"

    def __init__(
        self,
        store: PresenceStore,
        presence: Presence,
        loop: asyncio.AbstractEventLoop,
        *,
        retry_delay: float = 1.0,
    ) -> None:
        super().__init__(retry_delay=retry_delay)
        self.store = store
        self.presence = presence
        self.loop = loop
        self._freed: set[str] = set()
        """Agents whose call on another node ended: shown off it once their row is read."""
        presence.on_share = self._changed

    async def start(self) -> None:
        """Listen, then apply every stored row (a change between the two is heard and read
        again, never lost); the worker runs until `stop`."""
        await self._start_listening()
        for row in await self.store.load():
            self._apply(row)
        self._start_worker()

    async def stop(self, timeout: float = 5.0) -> None:
        await self._stop_worker(timeout)
        with contextlib.suppress(*DB_ERRORS):
            await self.store.close()

    def call_elsewhere(self, extension: str, on_call: bool) -> None:
        """Another node's call took the agent, or let them go (PgAgentBookings tells)."""
        if on_call:
            self._freed.discard(extension)
            self.presence.set_elsewhere(extension, True, now=self.loop.time())
        else:
            self._freed.add(extension)
            self._heard(extension)

    def wrap_up_end(self, extension: str) -> datetime | None:
        """The end of the agent's wrap-up here, on the wall clock (None: not in one): what
        this node's release of the agent's booking writes into their row."""
        try:
            _, until = self.presence.shared(extension)
        except KeyError:  # not an agent of this node
            return None
        return self._wall(until) if until > self.loop.time() else None

    def _wall(self, until: float) -> datetime:
        return datetime.fromtimestamp(time.time() + until - self.loop.time(), UTC)

    async def _listen(self) -> None:
        await self.store.listen(self._heard, self._lost)

    async def _all_keys(self) -> list[str]:
        return [row.extension for row in await self.store.load()]

    async def _write(self, extension: str) -> None:
        away, until = self.presence.shared(extension)
        await self.store.save(extension, away, self._wall(until) if until > 0 else None)

    async def _read(self, extension: str) -> None:
        rows = await self.store.load(extension)
        if rows and extension not in self._writes:
            self._apply(rows[0])
        if extension in self._freed:
            self._freed.discard(extension)
            self.presence.set_elsewhere(extension, False, now=self.loop.time())

    def _apply(self, row: StoredPresence) -> None:
        now = self.loop.time()
        until = 0.0
        if row.wrap_up_until is not None:
            until = now + (row.wrap_up_until.timestamp() - time.time())
        self.presence.apply_shared(row.extension, row.away, until, now=now)
