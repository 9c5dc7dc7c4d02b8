"""A phone that dies mid-call sends no BYE: the engine notices the missing RTP and hangs up the
other leg with BYE after the configured inactivity timeout, leaving no call state behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callcenter.runtime import Engine, start_engine
from sip_test_env.audio import write_tone_wav
from sip_test_env.baresip import BaresipPeer

from .conftest import assert_no_state_left, connect, engine_config, registrar_of

pytestmark = pytest.mark.peers


@pytest.fixture
async def quick_engine(pg_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    config = engine_config(extra_sip="rtp_inactivity_timeout = 2")
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        yield engine
    finally:
        await engine.stop()


async def test_killed_peer_is_hung_up_after_rtp_timeout(
    quick_engine: Engine, tmp_path: Path, db
) -> None:
    tone = write_tone_wav(tmp_path / "tone.wav", 440, 20.0)
    registrar = registrar_of(quick_engine)
    async with (
        BaresipPeer(
            "101", workdir=tmp_path, registrar=registrar, password="pass101", audio_source=tone
        ) as a,
        BaresipPeer(
            "102", workdir=tmp_path, registrar=registrar, password="pass102", audio_source=tone
        ) as b,
    ):
        await connect(a, b)
        await asyncio.sleep(1.0)
        call_id = next(iter(quick_engine.switchboard.active))
        await b.kill()  # no BYE, no more RTP
        closed = await a.wait_event("CALL_CLOSED", timeout=8)
        assert closed is not None
    deadline = asyncio.get_running_loop().time() + 5
    while quick_engine.ua.calls or quick_engine.switchboard.active:
        assert asyncio.get_running_loop().time() < deadline, quick_engine.ua.calls
        await asyncio.sleep(0.05)
    assert_no_state_left(quick_engine)
    await asyncio.sleep(0.2)
    row = await db.fetchrow("SELECT outcome, hangup_cause FROM calls WHERE call_id = $1", call_id)
    assert row["outcome"] == "answered"
    assert "rtp-timeout" in row["hangup_cause"]
