"""An engine restart keeps the phones' registrations: calls work at once, without waiting for
the phones' next REGISTER."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from callcenter.runtime import start_engine
from sip_test_env.baresip import BaresipPeer

from .conftest import engine_config

pytestmark = pytest.mark.peers


async def test_registrations_survive_a_restart(pg_url: str, tmp_path: Path) -> None:
    config = engine_config()
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    registrar = f"127.0.0.1:{engine.sip_port}"
    a = BaresipPeer("101", workdir=tmp_path, registrar=registrar, password="pass101")
    b = BaresipPeer("102", workdir=tmp_path, registrar=registrar, password="pass102")
    try:
        async with a, b:
            await a.wait_registered()
            await b.wait_registered()
            await engine.stop()
            engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
            now = engine.ua.loop.time()
            assert engine.switchboard.registrar.lookup("102", now=now)
            await a.dial("102")
            await b.wait_event("CALL_INCOMING", timeout=5)
            await b.accept()
            await a.wait_event("CALL_ESTABLISHED", timeout=5)
            await a.hangup()
            await b.wait_event("CALL_CLOSED", timeout=5)
            await asyncio.sleep(0.2)
    finally:
        await engine.stop()
