"""Secrets the nodes of one database share (table cluster_secrets): made once by whichever node
asks first, read by the others."""

from __future__ import annotations

import secrets

import asyncpg

NONCE_KEY = "sip-digest-nonce"
"""The key of the SIP digest nonces (telephony.sip.digest.NonceManager)."""


async def shared_secret(pool: asyncpg.Pool, name: str, *, size: int = 32) -> bytes:
    """The secret `name` of this database: a fresh random one of `size` bytes if no node made
    it yet (two nodes asking at once get the same one: the primary key decides)."""
    if size < 16:
        raise ValueError("a shared secret has at least 16 bytes")
    value = await pool.fetchval(
        "INSERT INTO cluster_secrets (name, value) VALUES ($1, $2)"
        " ON CONFLICT (name) DO NOTHING RETURNING value",
        name,
        secrets.token_bytes(size),
    )
    if value is None:  # made before
        value = await pool.fetchval("SELECT value FROM cluster_secrets WHERE name = $1", name)
    return bytes(value)
