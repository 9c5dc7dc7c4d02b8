"""DND and call forwarding per extension kept in PostgreSQL: one row per extension shared by
every node; a change is announced to the other nodes by NOTIFY in the same transaction."""

from __future__ import annotations

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

    async def listen(self, changed: Callable[[str], None]) -> None:
        """Call `changed(extension)` for every change any node stores from now on."""

        def notified(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            changed(payload)

        self._callback = notified
        self._listener = await self._pool.acquire()
        await self._listener.add_listener(CHANNEL, notified)

    async def close(self) -> None:
        conn, self._listener = self._listener, None
        if conn is None:
            return
        try:
            if self._callback is not None:
                await conn.remove_listener(CHANNEL, self._callback)
        finally:
            await self._pool.release(conn)
