"""`callcenter serve` as a user runs it: embedded PostgreSQL, SIP answering, clean SIGTERM stop;
a bad config file is refused with the line and the reason and exit status 2."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp

from sip_test_env.ports import free_port

from .rawsip import RawSipClient
from .test_conformance_udp import _options_answered

ROOT = Path(__file__).resolve().parents[2]
CALLCENTER = [sys.executable, "-m", "callcenter.cli"]


async def test_bad_config_prints_line_and_reason_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[sip]\nlisten = "127.0.0.1:5060"\n\n[[accounts]]\nextension = "101"\npassword = "x"\n'
    )
    proc = await asyncio.create_subprocess_exec(
        *CALLCENTER, "serve", "--config", str(bad), stderr=asyncio.subprocess.PIPE, cwd=ROOT
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert f"{bad}:6:" in err.decode() and "password" in err.decode()


async def test_serve_with_embedded_postgres_and_sigterm(tmp_path: Path) -> None:
    port, http_port = free_port("both"), free_port("tcp")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        *CALLCENTER,
        "serve",
        "--config",
        str(ROOT / "callcenter.example.toml"),
        "--data-dir",
        str(tmp_path / "var"),
        "--sip-listen",
        f"127.0.0.1:{port}",
        "--http-listen",
        f"127.0.0.1:{http_port}",
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    assert proc.stderr is not None
    log = []
    try:
        while True:
            line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
            assert line, "".join(log)
            log.append(line)
            if "callcenter serving" in line:
                break
        client = await RawSipClient.open()
        try:
            assert await _options_answered(client, ("127.0.0.1", port))
        finally:
            client.close()
        assert (tmp_path / "var" / "pgdata").is_dir()
        async with aiohttp.ClientSession(f"http://127.0.0.1:{http_port}") as http:
            async with http.get("/health") as response:
                assert response.status == 200
                assert await response.json() == {"status": "ok", "database": "ok"}
            async with http.get("/api/status") as response:
                assert response.status == 401
                assert (await response.json())["error"]["status"] == 401
            demo = {"Authorization": "Bearer demo-admin-key"}
            async with http.get("/api/status", headers=demo) as response:
                status = await response.json()
        assert [e["extension"] for e in status["extensions"]] == [
            "101", "102", "103", "104", "105", "190",
        ]  # fmt: skip
        assert status["calls"] == [] and status["legs"] == 0
        proc.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(proc.stderr.read(), 30)
        assert await proc.wait() == 0
        assert "stopped" in rest.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
