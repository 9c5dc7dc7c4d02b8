"""DND and call forwarding shared by every node and kept across restarts (issue 14, part 5).

The switchboard holds each extension's settings; what a phone's feature code or the API changes
is written to PostgreSQL (one row per extension) and announced with NOTIFY, and every node
applies the row when it hears of it. At start the stored rows replace the configuration's
settings: the configuration gives an extension its settings until someone changes them.

One worker task does the writing and the re-reading in order (crm_bridge.row_sync.RowSync), so
the call path never waits for the database: a change not yet written is retried until it is,
and a row another node wrote is not applied over a newer local change still waiting to be
written (that write follows and wins). If the listening connection dies, the node listens on a
new one and reads every row again, so a change made meanwhile on another node is not missed.
"""

from __future__ import annotations

import contextlib
import logging

from crm_bridge import ForwardingStore, StoredForwarding
from crm_bridge.row_sync import DB_ERRORS, RowSync
from pbx import Switchboard
from pbx.forwarding import Forwarding, ForwardingError

logger = logging.getLogger(__name__)


def to_row(extension: str, settings: Forwarding, node: str) -> StoredForwarding:
    return StoredForwarding(
        extension,
        settings.dnd,
        settings.always,
        settings.busy,
        settings.no_answer,
        settings.no_answer_after,
        node,
    )


def from_row(row: StoredForwarding) -> Forwarding:
    """The settings of a stored row (ForwardingError when a hand-edited row is not valid)."""
    return Forwarding().updated(
        {
            "dnd": row.dnd,
            "always": row.forward_always,
            "busy": row.forward_busy,
            "no_answer": row.forward_no_answer,
            "no_answer_after": row.no_answer_after,
        }
    )


class SharedForwarding(RowSync):
    name = "forwarding"

    def __init__(
        self, store: ForwardingStore, switchboard: Switchboard, *, retry_delay: float = 1.0
    ) -> None:
        super().__init__(retry_delay=retry_delay)
        self.store = store
        self.switchboard = switchboard
        switchboard.on_forwarding = lambda extension, _settings: self._changed(extension)

    async def start(self) -> int:
        """Listen for other nodes' changes, then load the stored settings over the
        configuration's; returns how many extensions had stored settings."""
        await self._start_listening()
        loaded = 0
        for row in await self.store.load():
            loaded += self._apply(row)
        if loaded:
            logger.info("forwarding: stored settings of %d extension(s) loaded", loaded)
        self._start_worker()
        return loaded

    async def save(self, extension: str, settings: Forwarding) -> None:
        """Store a change, then make it (the API: its answer means every node has it)."""
        await self.store.save(to_row(extension, settings, self.store.node))
        self._writes.discard(extension)
        self.switchboard.set_forwarding(extension, settings, stored=True)

    async def stop(self, timeout: float = 5.0) -> None:
        """Write what is left (for `timeout` seconds at most), stop listening."""
        await self._stop_worker(timeout)
        with contextlib.suppress(*DB_ERRORS):
            await self.store.close()

    async def _listen(self) -> None:
        await self.store.listen(self._heard, self._lost)

    async def _all_keys(self) -> list[str]:
        return [row.extension for row in await self.store.load()]

    async def _write(self, extension: str) -> None:
        settings = self.switchboard.forwarding.get(extension, Forwarding())
        await self.store.save(to_row(extension, settings, self.store.node))

    async def _read(self, extension: str) -> None:
        rows = await self.store.load(extension)
        if rows and extension not in self._writes:
            self._apply(rows[0])

    def _apply(self, row: StoredForwarding) -> bool:
        """Make a stored row the extension's settings; False when it is not ours to apply."""
        if row.extension not in self.switchboard.extensions:
            return False
        try:
            settings = from_row(row)
        except ForwardingError as exc:
            logger.error("forwarding: stored settings of %s ignored: %s", row.extension, exc)
            return False
        if self.switchboard.forwarding.get(row.extension) != settings:
            self.switchboard.set_forwarding(row.extension, settings, stored=True)
        return True
