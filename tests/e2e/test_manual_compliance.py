"""Click-to-call keeps to the DNC list and the number's calling hours, per the key's role
([crm] manual_policy): an agent is refused (403, with the reason), a manager or admin is let
through with a warning. The hours are the number's local time from libphonenumber."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import pytest

from callcenter.runtime import start_engine
from sip_test_env import carrier
from sip_test_env.ports import free_port

from .conftest import ADMIN_KEY, AGENT_KEY, api_url, bearer, engine_config
from .test_trunk import agent, trunk_config

pytestmark = pytest.mark.peers

LONDON = "+442079460958"  # Europe/London by its area code


def _hours(opens_in: int, closes_in: int) -> str:
    now = datetime.now(UTC).astimezone(ZoneInfo("Europe/London"))
    opens = (now + timedelta(hours=opens_in)).strftime("%H:00")
    closes = (now + timedelta(hours=closes_in)).strftime("%H:00")
    return f"{opens}-{closes}"


async def _place(http: aiohttp.ClientSession, engine, key: str) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    async with http.post(
        api_url(engine, "/calls"), json={"agent": "101", "number": LONDON}, headers=bearer(key)
    ) as r:
        return r.status, await r.json()


async def test_dnc_and_hours_per_role(pg_url: str, tmp_path: Path) -> None:
    closed = (
        'manual_policy = {agent = "block", admin = "warn"}\n'
        f'manual_hours = "{_hours(2, 3)}"\n'  # closed now in London
    )
    engine = await start_engine(engine_config(crm=closed), database_url=pg_url, data_dir=tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            status, refused = await _place(http, engine, AGENT_KEY)
            assert status == 403
            assert "outside calling hours" in refused["error"]["reason"]
            assert "Europe/London" in refused["error"]["reason"]
            # An admin's call goes on to the next check (no phone registered: 409), not 403.
            status, _ = await _place(http, engine, ADMIN_KEY)
            assert status == 409
    finally:
        await engine.stop()

    open_now = (
        'manual_policy = {agent = "block"}\n'
        f'manual_hours = "{_hours(-1, 2)}"\n'  # open now in London
    )
    engine = await start_engine(engine_config(crm=open_now), database_url=pg_url, data_dir=tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            status, _ = await _place(http, engine, AGENT_KEY)
            assert status == 409  # within hours, not barred: only the phone is missing
            async with http.post(
                api_url(engine, "/dnc"),
                data=f"phone\n{LONDON}\n",
                headers={**bearer(), "Content-Type": "text/csv"},
            ) as r:
                assert r.status in (200, 201), await r.text()
            status, refused = await _place(http, engine, AGENT_KEY)
            assert status == 403 and "do-not-call" in refused["error"]["reason"]
            async with http.delete(api_url(engine, f"/dnc/{LONDON}"), headers=bearer()) as r:
                assert r.status == 200  # leave the shared database as we found it
    finally:
        await engine.stop()


async def test_numbers_dialled_on_the_phone_follow_the_roles_policy(
    pg_url: str, tmp_path: Path, db: asyncpg.Connection
) -> None:
    """An agent's phone dialling a New York number outside its calling hours gets 403 and the
    attempt is journaled; a supervisor (warn) gets through to the carrier."""
    now = datetime.now(UTC).astimezone(ZoneInfo("America/New_York"))
    closed = (
        (now + timedelta(hours=2)).strftime("%H:00"),
        (now + timedelta(hours=3)).strftime("%H:00"),
    )
    port = free_port("both")
    crm = (
        'manual_policy = {agent = "block", supervisor = "warn"}\n'
        f'manual_hours = "{closed[0]}-{closed[1]}"\n'
    )
    config = engine_config(extra=trunk_config(port), crm=crm)
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        async with (
            carrier.outbound_carrier(port, calls=1, workdir=tmp_path / "carrier") as uas,
            agent("101", engine, tmp_path) as a101,
            agent("190", engine, tmp_path) as s190,
        ):
            await a101.wait_registered()
            await a101.dial("12125550123")
            await a101.wait_event("CALL_CLOSED", timeout=5)
            await s190.wait_registered()
            await s190.dial("12125550123")
            await s190.wait_event("CALL_ESTABLISHED", timeout=5)
            await s190.hangup()
            await s190.wait_event("CALL_CLOSED", timeout=5)
            served = await uas.wait(timeout=10)
        assert served.successful == 1, served.summary()
        rows: list[asyncpg.Record] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while len(rows) < 2:  # the journal writes each row when its call ends
            assert loop.time() < deadline, rows
            rows = await db.fetch(
                "SELECT from_number, outcome, sip_status FROM calls"
                " WHERE node = $1 AND to_number = '+12125550123' AND ended_at IS NOT NULL"
                " ORDER BY id",
                config.crm.node,
            )
            await asyncio.sleep(0.05)
    finally:
        await engine.stop()
    assert [(r["from_number"], r["outcome"], r["sip_status"]) for r in rows] == [
        ("101", "rejected", 403),
        ("190", "answered", 200),
    ]
