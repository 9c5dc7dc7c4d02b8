"""The engine's pool skips asyncpg's reset query on release: what it still must guarantee."""

from __future__ import annotations

from pathlib import Path

from callcenter.database import open_database


async def test_a_released_connection_comes_back_clean(crm_url: str, tmp_path: Path) -> None:
    database = await open_database(crm_url, tmp_path, min_size=1, max_size=1)
    try:
        pool = database.pool
        conn = await pool.acquire()
        tx = conn.transaction()
        await tx.start()  # left open by a caller that forgot it
        await conn.execute("CREATE TEMP TABLE leak (x int)")
        await pool.release(conn)
        async with pool.acquire() as again:  # max_size=1: the same connection
            assert again.is_in_transaction() is False
            # The transaction was rolled back, so its work is gone.
            assert await again.fetchval("SELECT to_regclass('pg_temp.leak')") is None

        def heard(*_: object) -> None:
            raise AssertionError("a released connection still calls back")

        conn = await pool.acquire()
        await conn.add_listener("events", heard)
        await conn.remove_listener("events", heard)
        await pool.release(conn)
        async with pool.acquire() as again:
            channels = await again.fetch("SELECT pg_listening_channels()")
            assert channels == []
    finally:
        await database.close()
