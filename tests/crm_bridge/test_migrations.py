"""Numbered migrations on a real PostgreSQL: applied once, in order, safe for concurrent nodes."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg

from crm_bridge import apply_migrations, migration_files


async def test_two_nodes_migrating_at_once_apply_each_migration_once(pg_url: str) -> None:
    admin = await asyncpg.connect(pg_url)
    name = f"mig_{secrets.token_hex(4)}"
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        url = pg_url.replace("/postgres?", f"/{name}?")
        first, second = await asyncpg.connect(url), await asyncpg.connect(url)
        try:
            applied = await asyncio.gather(apply_migrations(first), apply_migrations(second))
            names = [n for _, n, _ in migration_files()]
            assert sorted(applied, key=len) == [[], names]
            assert await apply_migrations(first) == []
            rows = await first.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
            assert [r["name"] for r in rows] == names
            assert await first.fetchval("SELECT count(*) FROM calls") == 0
        finally:
            await first.close()
            await second.close()
    finally:
        await admin.execute(f"DROP DATABASE {name}")
        await admin.close()
