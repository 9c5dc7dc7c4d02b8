"""Agents' presence shared by the nodes of one database (`agent_presence`): one row per
extension with the away flag and the end of wrap-up as the last node to change them left
them; a trigger announces each write on 'agent_presence' as "node\\nextension"."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from .listener import ChannelListener

CHANNEL = "agent_presence"


@dataclass(frozen=True)
class StoredPresence:
    extension: str
    away: bool
    wrap_up_until: datetime | None
    node: str


class PresenceStore:
    def __init__(self, pool: asyncpg.Pool, *, node: str) -> None:
        self._pool = pool
        self.node = node
        self._listener = ChannelListener(pool, CHANNEL)

    async def save(self, extension: str, away: bool, wrap_up_until: datetime | None) -> None:
        await self._pool.execute(
            "INSERT INTO agent_presence (extension, away, wrap_up_until, node)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (extension) DO UPDATE SET away = $2,"
            " wrap_up_until = $3, node = $4, updated_at = now()",
            extension,
            away,
            wrap_up_until,
            self.node,
        )

    async def load(self, extension: str | None = None) -> list[StoredPresence]:
        """Every stored row (or `extension`'s)."""
        rows = await self._pool.fetch(
            "SELECT extension, away, wrap_up_until, node FROM agent_presence"
            " WHERE $1::text IS NULL OR extension = $1 ORDER BY extension",
            extension,
        )
        return [StoredPresence(**dict(r)) for r in rows]

    async def listen(self, changed: Callable[[str], None], lost: Callable[[], None]) -> None:
        """`changed(extension)` for every other node's write from now on; `lost()` when the
        listening connection dies (then listen again and load every row)."""

        def notified(payload: str) -> None:
            node, _, extension = payload.partition("\n")
            if node != self.node:
                changed(extension)

        await self._listener.listen(notified, lost)

    async def close(self) -> None:
        await self._listener.close()
