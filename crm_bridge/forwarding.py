"""DND and call forwarding per extension kept in PostgreSQL: one row per extension shared by
every node; a change is announced to the other nodes by NOTIFY in the same transaction."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

CHANNEL = "agent_forwarding"
"""NOTIFY channel of a change; the payload is the extension."""


@dataclass(frozen=True)
class StoredForwarding:
    extension: str
    dnd: bool
    forward_always: str | None
    forward_busy: str | None
    forward_no_answer: str | None
    no_answer_after: float
    node: str
    """The node that took the change."""


_COLUMNS = "extension, dnd, forward_always, forward_busy, forward_no_answer, no_answer_after, node"


class ForwardingStore:
    def __init__(self, pool: asyncpg.Pool, *, node: str) -> None:
        self._pool = pool
        self.node = node
        self._listener: asyncpg.Connection | None = None
        self._callback: Callable[..., None] | None = None
        self._on_lost: Callable[[Any], None] | None = None

    async def save(self, stored: StoredForwarding) -> None:
        """Write an extension's settings (this node took the change) and tell the others."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"INSERT INTO agent_forwarding ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT (extension) DO UPDATE SET dnd = $2, forward_always = $3,"
                " forward_busy = $4, forward_no_answer = $5, no_answer_after = $6, node = $7,"
                " updated_at = now()",
                stored.extension,
                stored.dnd,
                stored.forward_always,
                stored.forward_busy,
                stored.forward_no_answer,
                stored.no_answer_after,
                self.node,
            )
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, stored.extension)

    async def load(self, extension: str | None = None) -> list[StoredForwarding]:
        """Every extension's row (or the one of `extension`, when it has one)."""
        if extension is None:
            rows = await self._pool.fetch(
                f"SELECT {_COLUMNS} FROM agent_forwarding ORDER BY extension"
            )
        else:
            rows = await self._pool.fetch(
                f"SELECT {_COLUMNS} FROM agent_forwarding WHERE extension = $1", extension
            )
        return [StoredForwarding(**dict(r)) for r in rows]

    async def listen(self, changed: Callable[[str], None], lost: Callable[[], None]) -> None:
        """Call `changed(extension)` for every change any node stores from now on, `lost()`
        if the listening connection dies (changes made meanwhile are not told: listen again,
        then read every row)."""

        def notified(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            changed(payload)

        await self.close()
        self._callback = notified
        conn = await self._pool.acquire()
        try:
            await conn.add_listener(CHANNEL, notified)
        except BaseException:
            await self._pool.release(conn)
            raise
        self._on_lost = lambda _conn: lost()
        conn.add_termination_listener(self._on_lost)
        self._listener = conn

    @property
    def listener_pid(self) -> int | None:
        """The PostgreSQL backend that listens (None: not listening)."""
        return self._listener.get_server_pid() if self._listener is not None else None

    async def close(self) -> None:
        conn, self._listener = self._listener, None
        if conn is None:
            return
        # A connection whose backend died went back to the pool by itself: nothing to undo.
        with contextlib.suppress(asyncpg.InterfaceError):
            if self._on_lost is not None:
                conn.remove_termination_listener(self._on_lost)
            if self._callback is not None and not conn.is_closed():
                await conn.remove_listener(CHANNEL, self._callback)
        with contextlib.suppress(asyncpg.InterfaceError):
            await self._pool.release(conn)
