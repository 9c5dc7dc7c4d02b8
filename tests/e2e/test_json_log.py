"""`callcenter serve --log-format json`: every stderr line is one JSON object, and the lines
logged while serving an API request carry that request's id (the client's X-Request-Id)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp

from callcenter.config import parse_config

from .conftest import engine_config_text

ROOT = Path(__file__).resolve().parents[2]


async def test_serve_logs_json_with_request_ids(pg_url: str, tmp_path: Path) -> None:
    config = tmp_path / "cc.toml"
    text = engine_config_text()
    config.write_text(text)
    listen = parse_config(text).http_listen
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callcenter.cli", "serve", "--config", str(config),
        "--database-url", pg_url, "--data-dir", str(tmp_path / "var"), "--log-format", "json",
        stderr=asyncio.subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stderr is not None
    records = []
    try:
        while not any("callcenter serving" in r["message"] for r in records):
            line = await asyncio.wait_for(proc.stderr.readline(), 60)
            assert line, records
            records.append(json.loads(line))
        async with aiohttp.ClientSession(f"http://{listen.host}:{listen.port}") as http:
            headers = {"X-Request-Id": "json-log-test-1"}
            async with http.get("/calls", headers=headers) as response:
                assert response.status == 401
                assert response.headers["X-Request-Id"] == "json-log-test-1"
        proc.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(proc.stderr.read(), 30)
        assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    records += [json.loads(line) for line in rest.decode().splitlines()]
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record)
    refused = [r for r in records if r.get("request_id") == "json-log-test-1"]
    assert refused and "refused GET /calls" in refused[0]["message"]
    assert records[-1]["message"] == "stopped"
