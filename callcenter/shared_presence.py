"""Presence shared by the nodes of a cluster (issue 18, item 4): an agent set away or
available on one node, or in wrap-up after a call there, is away or in wrap-up for every
node's hunts, dialers and dashboard; and an agent on another node's call shows on a call.

The agent_presence rows are kept in step by crm_bridge.row_sync.RowSync (one task, in order,
retried, listening again when the connection dies). Wrap-up ends are stored as wall-clock
times and applied on each node's own loop clock.

Another node's call ending (its booking released) frees the agent here only after SETTLE
seconds and a read of the agent's row: that node releases the booking a moment before it
writes the wrap-up the call began, and the agent must not look free here in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

from crm_bridge import PresenceStore, StoredPresence
from crm_bridge.row_sync import DB_ERRORS, RowSync
from pbx import Presence

SETTLE = 0.5
"""Seconds an agent stays on another node's call here after its booking is released."""


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
        self._settling: dict[str, asyncio.TimerHandle] = {}
        """Agents whose call on another node ended, until SETTLE has passed."""
        self._freed: set[str] = set()
        """Agents to show off that call once their row is read."""
        presence.on_share = self._changed

    async def start(self) -> None:
        """Listen, then apply every stored row (a change between the two is heard and read
        again, never lost); the worker runs until `stop`."""
        await self._start_listening()
        for row in await self.store.load():
            self._apply(row)
        self._start_worker()

    async def stop(self, timeout: float = 5.0) -> None:
        for handle in self._settling.values():
            handle.cancel()
        self._settling.clear()
        await self._stop_worker(timeout)
        with contextlib.suppress(*DB_ERRORS):
            await self.store.close()

    def call_elsewhere(self, extension: str, on_call: bool) -> None:
        """Another node's call took the agent, or let them go (PgAgentBookings tells)."""
        handle = self._settling.pop(extension, None)
        if handle is not None:
            handle.cancel()
        self._freed.discard(extension)
        if on_call:
            self.presence.set_elsewhere(extension, True, now=self.loop.time())
        else:
            self._settling[extension] = self.loop.call_later(SETTLE, self._settled, extension)

    def _settled(self, extension: str) -> None:
        del self._settling[extension]
        self._freed.add(extension)
        self._heard(extension)

    async def _listen(self) -> None:
        await self.store.listen(self._heard, self._lost)

    async def _all_keys(self) -> list[str]:
        return [row.extension for row in await self.store.load()]

    async def _write(self, extension: str) -> None:
        away, until = self.presence.shared(extension)
        wall = datetime.fromtimestamp(time.time() + until - self.loop.time(), UTC)
        await self.store.save(extension, away, wall if until > 0 else None)

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
