"""DND and call forwarding per extension kept in PostgreSQL: one row per extension shared by
every node; a change is announced to the other nodes by NOTIFY in the same transaction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from .listener import ChannelListener

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
        self._listener = ChannelListener(pool, CHANNEL)

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
        await self._listener.listen(changed, lost)

    @property
    def listener_pid(self) -> int | None:
        """The PostgreSQL backend that listens (None: not listening)."""
        return self._listener.pid

    async def close(self) -> None:
        await self._listener.close()
