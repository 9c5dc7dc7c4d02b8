"""Click-to-call keeps to the DNC list and the number's calling hours, per the key's role
([crm] manual_policy): an agent is refused (403, with the reason), a manager or admin is let
through with a warning. The hours are the number's local time from libphonenumber."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp

from callcenter.runtime import start_engine

from .conftest import ADMIN_KEY, AGENT_KEY, api_url, bearer, engine_config

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
