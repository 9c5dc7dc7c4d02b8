"""Secrets the nodes of one database share (crm_bridge/cluster_secrets.py), on a real
PostgreSQL: the SIP digest nonce key is made once and every node reads the same bytes."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from crm_bridge import NONCE_KEY, shared_secret


async def test_every_node_gets_the_secret_the_first_one_made(pool: asyncpg.Pool) -> None:
    # Eight nodes starting at once: one INSERT wins, all read its value.
    got = await asyncio.gather(*(shared_secret(pool, NONCE_KEY) for _ in range(8)))
    assert len(set(got)) == 1 and len(got[0]) == 32
    assert await shared_secret(pool, NONCE_KEY) == got[0]  # a restart reads it again
    other = await shared_secret(pool, "another", size=16)
    assert len(other) == 16 and other != got[0]


async def test_a_short_secret_is_refused(pool: asyncpg.Pool) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        await shared_secret(pool, "weak", size=8)
    with pytest.raises(asyncpg.CheckViolationError):  # the table holds none either
        await pool.execute(
            "INSERT INTO cluster_secrets (name, value) VALUES ('weak', $1)", b"short"
        )
