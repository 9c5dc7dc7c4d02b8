"""An agent's daily plan set over the API outlives a restart of the engine."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from callcenter.runtime import start_engine

from .conftest import AGENT_KEY, api_url, bearer, engine_config


async def test_a_plan_set_over_the_api_outlives_a_restart(pg_url: str, tmp_path: Path) -> None:
    config = engine_config()
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        async with aiohttp.ClientSession(headers=bearer()) as http:
            url = api_url(engine, "/agents/105/plan")
            async with http.put(url, json={"daily_plan": 37}, headers=bearer(AGENT_KEY)) as r:
                assert r.status == 403  # managers set plans
            async with http.put(url, json={"daily_plan": -1}) as r:
                assert r.status == 400
            async with http.put(url, json={"daily_plan": 37}) as r:
                assert r.status == 200
    finally:
        await engine.stop()
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        async with aiohttp.ClientSession(headers=bearer()) as http:
            async with http.get(api_url(engine, "/api/live/snapshot")) as r:
                agents = {a["extension"]: a for a in (await r.json())["agents"]}
        assert agents["105"]["daily_plan"] == 37
    finally:
        await engine.stop()
