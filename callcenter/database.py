"""PostgreSQL for the engine: an external URL, or the embedded server in the data dir.

Both paths end in the same asyncpg pool with the schema migrated, so the rest of the engine never
knows which one it got.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from crm_bridge import apply_migrations

from . import embedded_pg

logger = logging.getLogger(__name__)


@dataclass
class Database:
    pool: asyncpg.Pool
    url: str
    embedded: Any | None
    """The embedded server's handle when we started the server ourselves."""

    async def close(self) -> None:
        await self.pool.close()
        if self.embedded is not None:
            # The wrapper's cleanup stops the postmaster (blocking pg_ctl): keep the loop free.
            await asyncio.to_thread(embedded_pg.stop, self.embedded)


async def keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset, run on each release after asyncpg's own (which rolls back a transaction
    left open and drops the connection's listener callbacks): nothing more. asyncpg's default
    sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` as one more round
    trip on every release (five per call set up); the engine leaves no such state on a pooled
    connection: no SET, no cursor outside a transaction, advisory locks released by the code
    that took them (migrations), LISTEN undone by remove_listener (the outbox)."""


def _start_embedded(data_dir: Path) -> tuple[Any, str]:
    server = embedded_pg.start(data_dir / "pgdata")
    return server, server.get_uri()


async def open_database(
    url: str | None, data_dir: Path, *, min_size: int = 1, max_size: int = 8
) -> Database:
    """Connect (starting the embedded server when url is None) and apply migrations."""
    embedded = None
    if url is None:
        embedded, address = await asyncio.to_thread(_start_embedded, data_dir)
        logger.info("embedded PostgreSQL running in %s", data_dir / "pgdata")
    else:
        address = url
    try:
        pool = await asyncpg.create_pool(
            address, min_size=min_size, max_size=max_size, reset=keep_session
        )
        async with pool.acquire() as conn:
            applied = await apply_migrations(conn)
        if applied:
            logger.info("schema migrated: %s", ", ".join(applied))
    except BaseException:
        if embedded is not None:
            await asyncio.to_thread(embedded_pg.stop, embedded)
        raise
    return Database(pool=pool, url=address, embedded=embedded)
