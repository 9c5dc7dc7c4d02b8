"""kill -9 of the engine in the middle of a campaign, then a restart: the attempts cut off are
closed as outcome-unknown, the campaign resumes and finishes, and the carrier never sees two
INVITEs for one attempt."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from sip_test_env.baresip import BaresipPeer
from sip_test_env.scripted_carrier import Customer, ScriptedCarrier

from .conftest import ADMIN_KEY, engine_config_text
from .test_crash import EngineProcess

pytestmark = pytest.mark.peers

NUMBERS = [f"1212555{n:04d}" for n in range(10, 16)]


@pytest.fixture
async def carrier() -> AsyncIterator[ScriptedCarrier]:
    # People who pick up after 2 s and hang up 3 s later: calls are in flight all the time.
    customers = {n: Customer("human", answer_after=2.0, hang_up_after=3.0) for n in NUMBERS}
    async with ScriptedCarrier(customers) as running:
        yield running


@pytest.mark.slow
async def test_kill9_mid_campaign_resumes_without_double_dialing(
    pg_url: str, tmp_path: Path, carrier: ScriptedCarrier
) -> None:
    host, port = carrier.address
    text = engine_config_text(extra=f'[[trunks]]\nname = "carrier"\noutbound = "{host}:{port}"\n')
    config = tmp_path / "engine.toml"
    config.write_text(text)
    sip_port = int(text.split('listen = "127.0.0.1:', 1)[1].split('"', 1)[0])
    http_port = int(text.split('[http]\nlisten = "127.0.0.1:', 1)[1].split('"', 1)[0])
    (tmp_path / "var").mkdir()
    engine = EngineProcess(config, pg_url, tmp_path / "var", sip_port)
    api = f"http://127.0.0.1:{http_port}"
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}

    def phones(generation: int) -> list[BaresipPeer]:
        registrar = f"127.0.0.1:{sip_port}"
        return [
            BaresipPeer(ext, workdir=tmp_path, registrar=registrar, password=f"pass{ext}",
                        answermode="auto", name=f"agent-{ext}-{generation}")
            for ext in ("101", "102")
        ]  # fmt: skip

    agents = phones(1)
    await engine.start()
    try:
        async with aiohttp.ClientSession(api, headers=headers) as http:
            for agent in agents:
                await agent.start()
                await agent.wait_registered()
            settings = {
                "name": f"crash-{tmp_path.name}", "agents": ["101", "102"], "ratio": 1.0,
                "max_attempts": 3, "window_start": "00:00", "window_end": "23:59",
                "max_ring_seconds": 15, "retry_delays": {"outcome-unknown": 1},
            }  # fmt: skip
            async with http.post("/campaigns", json=settings) as r:
                cid = (await r.json())["id"]
            csv = "phone\n" + "".join(f"+{n}\n" for n in NUMBERS)
            async with http.post(f"/campaigns/{cid}/leads", data=csv.encode()) as r:
                assert (await r.json())["imported"] == len(NUMBERS)
            async with http.post(f"/campaigns/{cid}/start") as r:
                assert r.status == 200
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while sum(carrier.record(n).invites for n in NUMBERS) < 2:
                assert loop.time() < deadline, "the campaign never dialled"
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # calls ringing or talking right now
            await engine.kill9()
            for agent in agents:
                await agent.stop()
            await asyncio.sleep(0.5)
            await engine.start()
            # Registrations live in the engine's memory: after a restart the agents log in again.
            agents = phones(2)
            for agent in agents:
                await agent.start()
                await agent.wait_registered()
            deadline = loop.time() + 90
            while True:
                async with http.get(f"/campaigns/{cid}") as r:
                    progress = (await r.json())["progress"]
                if progress["remaining"] == 0 and progress["in_flight"] == 0:
                    break
                assert loop.time() < deadline, progress
                await asyncio.sleep(0.5)
    finally:
        for agent in agents:
            await agent.stop()
        await engine.stop()

    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch(
            "SELECT l.phone, a.attempt_no, a.outcome, a.call_id FROM attempts a"
            " JOIN leads l ON l.id = a.lead_id WHERE l.campaign_id = $1"
            " ORDER BY l.phone, a.attempt_no",
            cid,
        )
    finally:
        await conn.close()
    attempts: dict[str, list[str]] = {}
    for row in rows:
        attempts.setdefault(row["phone"].lstrip("+"), []).append(row["outcome"])
    assert set(attempts) == set(NUMBERS)
    assert any("outcome-unknown" in outcomes for outcomes in attempts.values()), attempts
    for number in NUMBERS:
        # Every attempt sent at most one INVITE: the carrier saw no more INVITEs than attempts.
        assert carrier.record(number).invites <= len(attempts[number]), (number, attempts[number])
        assert attempts[number][-1] in ("answered-human", "abandoned"), attempts[number]
