"""One pooled connection that LISTENs on a channel for the stores that share rows between
nodes (forwarding, presence): a callback per notification, another when the connection dies
(what was announced meanwhile is not told: listen again, then read every row)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import asyncpg


class ChannelListener:
    def __init__(self, pool: asyncpg.Pool, channel: str) -> None:
        self._pool = pool
        self.channel = channel
        self._conn: Any = None
        self._notified: Callable[[Any, int, str, str], None] | None = None
        self._on_lost: Callable[[Any], None] | None = None

    async def listen(self, notified: Callable[[str], None], lost: Callable[[], None]) -> None:
        """`notified(payload)` for every notification from now on, `lost()` if the
        connection dies; a connection listening already is given back first."""
        await self.close()

        def deliver(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            notified(payload)

        conn = await self._pool.acquire()
        try:
            await conn.add_listener(self.channel, deliver)
        except BaseException:
            await self._pool.release(conn)
            raise
        self._notified = deliver
        self._on_lost = lambda _conn: lost()
        conn.add_termination_listener(self._on_lost)
        self._conn = conn

    @property
    def pid(self) -> int | None:
        """The PostgreSQL backend that listens (None: not listening)."""
        return self._conn.get_server_pid() if self._conn is not None else None

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        # A connection whose backend died went back to the pool by itself: nothing to undo.
        with contextlib.suppress(asyncpg.InterfaceError):
            if self._on_lost is not None:
                conn.remove_termination_listener(self._on_lost)
            if self._notified is not None and not conn.is_closed():
                await conn.remove_listener(self.channel, self._notified)
        with contextlib.suppress(asyncpg.InterfaceError):
            await self._pool.release(conn)
