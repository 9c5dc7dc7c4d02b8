"""Registrations kept in PostgreSQL: the registrar's bindings survive an engine restart, and
nodes sharing the database see each other's (a call on one node reaches a phone that
registered through another). A change is announced on the `registrations` channel
(LISTEN/NOTIFY) with the node and extension, so the other nodes reread just that extension."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "registrations"

_COLUMNS = "node, extension, contact, transport, host, port, expires_at, call_id, cseq, path"


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
    path: tuple[str, ...] = ()
    """The REGISTER's Path (RFC 3327): Route headers for requests to the binding."""
    node: str = ""
    """The node holding the registration (empty: the store's own, when writing)."""


def _binding(row: asyncpg.Record) -> StoredBinding:
    values = dict(row)
    values["path"] = tuple(values["path"] or ())
    return StoredBinding(**values)


class RegistrationStore:
    """One node's bindings, and a read of the others'; each REGISTER replaces the extension's
    rows of this node."""

    def __init__(self, pool: asyncpg.Pool, *, node: str) -> None:
        self._pool = pool
        self.node = node
        self._listener: asyncpg.pool.PoolConnectionProxy | None = None
        self._notified: Callable[[object, int, str, str], None] | None = None

    async def replace(self, extension: str, bindings: Iterable[StoredBinding]) -> None:
        rows = [(self.node, extension, b.contact, b.transport, b.host, b.port, b.expires_at,
                 b.call_id, b.cseq, list(b.path)) for b in bindings]  # fmt: skip
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM registrations WHERE node = $1 AND extension = $2", self.node, extension
            )
            if rows:
                await conn.executemany(
                    f"INSERT INTO registrations ({_COLUMNS})"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    rows,
                )
            # Delivered at commit, to every node listening (this one ignores its own).
            await conn.execute(
                "SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, f"{self.node}\n{extension}"
            )

    async def load(self, *, now: datetime) -> list[StoredBinding]:
        """Unexpired bindings of this node (expired ones are deleted)."""
        async with self._pool.acquire() as conn:
            await conn.execute(
                "DELETE FROM registrations WHERE node = $1 AND expires_at <= $2", self.node, now
            )
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM registrations WHERE node = $1 ORDER BY extension",
                self.node,
            )
        return [_binding(r) for r in rows]

    async def load_others(
        self, *, now: datetime, extension: str | None = None
    ) -> list[StoredBinding]:
        """Unexpired bindings the other nodes hold (of `extension` only, when given)."""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM registrations"
            " WHERE node <> $1 AND expires_at > $2 AND ($3::text IS NULL OR extension = $3)"
            " ORDER BY extension",
            self.node,
            now,
            extension,
        )
        return [_binding(r) for r in rows]

    async def listen(self, changed: Callable[[str, str], None]) -> None:
        """Call `changed(node, extension)` whenever another node replaces an extension's
        bindings (holds one pooled connection until `close`)."""

        def notified(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            node, _, extension = payload.partition("\n")
            if node != self.node:
                changed(node, extension)

        self._notified = notified
        self._listener = await self._pool.acquire()
        await self._listener.add_listener(NOTIFY_CHANNEL, notified)

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        try:
            if self._notified is not None:
                await listener.remove_listener(NOTIFY_CHANNEL, self._notified)
        except (OSError, asyncpg.PostgresError) as exc:  # the connection is gone anyway
            logger.debug("registrations: UNLISTEN failed: %s", exc)
        finally:
            await self._pool.release(listener)
