"""Registrations kept in PostgreSQL: the registrar's bindings survive an engine restart."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class StoredBinding:
    extension: str
    contact: str
    transport: str
    host: str
    port: int
    expires_at: datetime
    call_id: str
    cseq: int


class RegistrationStore:
    """One node's bindings; each REGISTER replaces the extension's rows."""

    def __init__(self, pool: asyncpg.Pool, *, node: str) -> None:
        self._pool = pool
        self.node = node

    async def replace(self, extension: str, bindings: Iterable[StoredBinding]) -> None:
        rows = [(self.node, extension, b.contact, b.transport, b.host, b.port, b.expires_at,
                 b.call_id, b.cseq) for b in bindings]  # fmt: skip
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM registrations WHERE node = $1 AND extension = $2", self.node, extension
            )
            if rows:
                await conn.executemany(
                    "INSERT INTO registrations (node, extension, contact, transport, host, port,"
                    " expires_at, call_id, cseq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    rows,
                )

    async def load(self, *, now: datetime) -> list[StoredBinding]:
        """Unexpired bindings of this node (expired ones are deleted)."""
        async with self._pool.acquire() as conn:
            await conn.execute(
                "DELETE FROM registrations WHERE node = $1 AND expires_at <= $2", self.node, now
            )
            rows = await conn.fetch(
                "SELECT extension, contact, transport, host, port, expires_at, call_id, cseq"
                " FROM registrations WHERE node = $1 ORDER BY extension",
                self.node,
            )
        return [StoredBinding(**dict(r)) for r in rows]
