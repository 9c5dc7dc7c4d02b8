"""Fixtures for the CRM bridge: a fresh migrated database per test (cloned from a template, so
no test sees another's rows) and a real aiohttp webhook receiver on 127.0.0.1."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from crm_bridge import apply_migrations

from ._helpers import Receiver

_TEMPLATES: dict[str, str] = {}


def _url(pg_url: str, name: str) -> str:
    return pg_url.replace("/postgres?", f"/{name}?")


async def _template(pg_url: str) -> str:
    """A migrated database to clone (CREATE DATABASE ... TEMPLATE is much faster than
    migrating each time); made once per PostgreSQL server."""
    if pg_url not in _TEMPLATES:
        name = f"crm_tpl_{secrets.token_hex(4)}"
        admin = await asyncpg.connect(pg_url)
        try:
            await admin.execute(f"CREATE DATABASE {name}")
        finally:
            await admin.close()
        conn = await asyncpg.connect(_url(pg_url, name))
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()
        _TEMPLATES[pg_url] = name
    return _TEMPLATES[pg_url]


@pytest.fixture
async def crm_url(pg_url: str) -> AsyncIterator[str]:
    """URL of a fresh, migrated database of this test's own."""
    template = await _template(pg_url)
    name = f"crm_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        yield _url(pg_url, name)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


@pytest.fixture
async def pool(crm_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(crm_url, min_size=1, max_size=8)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def receiver_factory() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    made: list[Receiver] = []

    async def make(**kwargs: Any) -> Receiver:
        receiver = Receiver(**kwargs)
        made.append(receiver)
        return await receiver.start()

    try:
        yield make
    finally:
        for receiver in made:
            await receiver.stop()
