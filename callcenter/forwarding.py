"""DND and call forwarding shared by every node and kept across restarts (issue 14, part 5).

The switchboard holds each extension's settings; what a phone's feature code or the API changes
is written to PostgreSQL (one row per extension) and announced with NOTIFY, and every node
applies the row when it hears of it. At start the stored rows replace the configuration's
settings: the configuration gives an extension its settings until someone changes them.

One worker task does the writing and the re-reading in order, so the call path never waits for
the database: a change not yet written is retried until it is, and a row another node wrote is
not applied over a newer local change still waiting to be written (that write follows and wins).
If the listening connection dies, the node listens on a new one and reads every row again, so
a change made meanwhile on another node is not missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from crm_bridge import ForwardingStore, StoredForwarding
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


class SharedForwarding:
    def __init__(
        self, store: ForwardingStore, switchboard: Switchboard, *, retry_delay: float = 1.0
    ) -> None:
        self.store = store
        self.switchboard = switchboard
        self.retry_delay = retry_delay
        self._writes: set[str] = set()
        """Extensions whose local change is not written yet."""
        self._reads: set[str] = set()
        """Extensions another node changed, to read again."""
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._worker: asyncio.Task[None] | None = None
        self._relisten: asyncio.Task[None] | None = None
        """Listening again after the connection died (then every row is read again)."""
        self._stopping = False
        switchboard.on_forwarding = self._changed

    async def start(self) -> int:
        """Listen for other nodes' changes, then load the stored settings over the
        configuration's; returns how many extensions had stored settings."""
        try:
            await self.store.listen(self._heard, self._lost)
        except (OSError, asyncpg.PostgresError):
            logger.exception("forwarding: cannot LISTEN; trying again")
            self._lost()
        loaded = 0
        for row in await self.store.load():
            loaded += self._apply(row)
        if loaded:
            logger.info("forwarding: stored settings of %d extension(s) loaded", loaded)
        self._worker = asyncio.get_running_loop().create_task(self._work(), name="forwarding")
        return loaded

    async def save(self, extension: str, settings: Forwarding) -> None:
        """Store a change, then make it (the API: its answer means every node has it)."""
        await self.store.save(to_row(extension, settings, self.store.node))
        self._writes.discard(extension)
        self.switchboard.set_forwarding(extension, settings, stored=True)

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until every change so far is written and every announced one applied."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def stop(self, timeout: float = 5.0) -> None:
        """Write what is left (for `timeout` seconds at most), stop listening."""
        self._stopping = True
        try:
            await self.flush(timeout)
        except TimeoutError:
            logger.error("forwarding: changes of %s not stored at stop", sorted(self._writes))
        for task in (self._worker, self._relisten):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._worker = self._relisten = None
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await self.store.close()

    # -- the worker ----------------------------------------------------------------------------

    def _changed(self, extension: str, _settings: Forwarding) -> None:
        self._writes.add(extension)
        self._kick()

    def _heard(self, extension: str) -> None:
        self._reads.add(extension)
        self._kick()

    def _lost(self) -> None:
        if self._stopping:
            return
        if self._relisten is None or self._relisten.done():
            logger.error("forwarding: the LISTEN connection is gone; listening again")
            self._relisten = asyncio.get_running_loop().create_task(self._listen_again())

    async def _listen_again(self) -> None:
        """Listen on a new connection, then read every row: what other nodes changed while
        nobody listened is applied too."""
        while True:
            try:
                await self.store.listen(self._heard, self._lost)
                rows = await self.store.load()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.error("forwarding: cannot LISTEN yet (retrying): %s", exc)
                await asyncio.sleep(self.retry_delay)
                continue
            self._reads.update(row.extension for row in rows)
            self._kick()
            logger.info("forwarding: listening again")
            return

    def _kick(self) -> None:
        self._idle.clear()
        self._wake.set()

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._round()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.error("forwarding: database error (retrying): %s", exc)
                await asyncio.sleep(self.retry_delay)
                self._wake.set()
                continue
            if not (self._writes or self._reads):
                self._idle.set()

    async def _round(self) -> None:
        while self._writes:
            extension = min(self._writes)
            settings = self.switchboard.forwarding.get(extension, Forwarding())
            await self.store.save(to_row(extension, settings, self.store.node))
            self._writes.discard(extension)
        while self._reads:
            extension = min(self._reads)
            rows = await self.store.load(extension)
            self._reads.discard(extension)
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
