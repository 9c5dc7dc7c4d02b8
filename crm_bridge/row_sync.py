"""Rows shared by the nodes of one database, kept in step with this node's state (DND and
forwarding, presence): one task writes what changed here and reads what another node
announced, in order, so the call path never waits for the database. A failed round is
retried after `retry_delay`; a row another node wrote is not applied over a change of ours
still to be written (that write follows and wins). When the LISTEN connection dies the task
listens on a new one and reads every row again, so a change made meanwhile is not missed.

Subclasses say how to listen, write and read one key (an extension)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

import asyncpg

logger = logging.getLogger(__name__)

DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


class RowSync:
    name = "rows"
    """What the rows are, for the log."""

    def __init__(self, *, retry_delay: float = 1.0) -> None:
        self.retry_delay = retry_delay
        self._writes: set[str] = set()
        """Keys whose local change is not written yet."""
        self._reads: set[str] = set()
        """Keys another node changed, to read again."""
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._worker: asyncio.Task[None] | None = None
        self._listening = True
        self._stopping = False

    # -- what a subclass says ------------------------------------------------------------------

    async def _listen(self) -> None:
        """LISTEN for other nodes' changes, calling `_heard(key)` and `_lost()`."""
        raise NotImplementedError

    async def _all_keys(self) -> Iterable[str]:
        """Every stored key (read after listening again)."""
        raise NotImplementedError

    async def _write(self, key: str) -> None:
        raise NotImplementedError

    async def _read(self, key: str) -> None:
        """Read the key's row and apply it (`key in self._writes`: ours follows, keep it)."""
        raise NotImplementedError

    # -- the worker ------------------------------------------------------------------------------

    async def _start_listening(self) -> None:
        try:
            await self._listen()
        except DB_ERRORS as exc:
            logger.error("%s: cannot LISTEN (retrying): %s", self.name, exc)
            self._listening = False

    def _start_worker(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._work(), name=self.name)
        if not self._listening:
            self._kick()

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until every change so far is written and every announced one applied."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def _stop_worker(self, timeout: float) -> None:
        self._stopping = True
        try:
            await self.flush(timeout)
        except TimeoutError:
            logger.error("%s: changes of %s not stored at stop", self.name, sorted(self._writes))
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None

    def _changed(self, key: str) -> None:
        self._writes.add(key)
        self._kick()

    def _heard(self, key: str) -> None:
        self._reads.add(key)
        self._kick()

    def _lost(self) -> None:
        if self._listening and not self._stopping:
            logger.error("%s: the LISTEN connection is gone; listening again", self.name)
            self._listening = False
            self._kick()

    def _kick(self) -> None:
        self._idle.clear()
        self._wake.set()

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._round()
            except DB_ERRORS as exc:
                logger.error("%s: database error (retrying): %s", self.name, exc)
                await asyncio.sleep(self.retry_delay)
                self._wake.set()
                continue
            if not (self._writes or self._reads or not self._listening):
                self._idle.set()

    async def _round(self) -> None:
        if not self._listening:
            await self._listen()
            self._listening = True
            self._reads.update(await self._all_keys())
            logger.info("%s: listening again", self.name)
        await _each(self._writes, self._write)
        await _each(self._reads, self._read)


async def _each(keys: set[str], step: Callable[[str], Awaitable[None]]) -> None:
    """`step` for every key of `keys` until none is left. A key is taken off before its await:
    a change meanwhile puts it back for later; a failure puts it back for the retry."""
    while keys:
        key = min(keys)
        keys.discard(key)
        try:
            await step(key)
        except BaseException:
            keys.add(key)
            raise
