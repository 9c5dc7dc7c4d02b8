"""kill -9 of the engine in the middle of a recorded call: the WAV on disk is valid and holds all
but the last second; after a restart the interrupted call is closed in the database."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sip_test_env.audio import write_tone_wav
from sip_test_env.baresip import BaresipPeer
from sip_test_env.crm import WebhookReceiver

from .conftest import connect, engine_config_text

pytestmark = pytest.mark.peers

ROOT = Path(__file__).resolve().parents[2]


class EngineProcess:
    """`callcenter serve` as its own process, the way an operator runs it."""

    def __init__(self, config: Path, pg_url: str, data_dir: Path, sip_port: int) -> None:
        self.args = [
            sys.executable, "-m", "callcenter.cli", "serve", "--config", str(config),
            "--database-url", pg_url, "--data-dir", str(data_dir),
        ]  # fmt: skip
        self.sip_port = sip_port
        self.proc: asyncio.subprocess.Process | None = None
        self.log = data_dir / "engine.log"

    async def start(self) -> None:
        seen = (
            self.log.read_text(errors="replace").count("callcenter serving")
            if self.log.exists()
            else 0
        )
        log = self.log.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            *self.args, stderr=log, stdout=log, cwd=ROOT,
        )  # fmt: skip
        log.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while self.log.read_text(errors="replace").count("callcenter serving") == seen:
            assert self.proc.returncode is None, self.log.read_text()
            assert loop.time() < deadline, self.log.read_text()
            await asyncio.sleep(0.1)

    async def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@pytest.fixture
async def crm() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver(secret="s3cret", fail_first=3)  # the CRM stumbles at first
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


@pytest.fixture
async def engine_process(
    pg_url: str, tmp_path: Path, crm: WebhookReceiver
) -> AsyncIterator[EngineProcess]:
    text = engine_config_text(crm=crm.config() + "[crm.retry]\nbase_delay = 0.2\nmax_delay = 1\n")
    config = tmp_path / "engine.toml"
    config.write_text(text)
    sip_port = int(text.split('listen = "127.0.0.1:', 1)[1].split('"', 1)[0])
    process = EngineProcess(config, pg_url, tmp_path / "var", sip_port)
    (tmp_path / "var").mkdir()
    try:
        yield process
    finally:
        await process.stop()


async def test_kill9_mid_call_keeps_the_recording_and_closes_the_call(
    engine_process: EngineProcess, tmp_path: Path, crm: WebhookReceiver, db
) -> None:
    await engine_process.start()
    registrar = f"127.0.0.1:{engine_process.sip_port}"
    tone = write_tone_wav(tmp_path / "tone.wav", 700, 30.0)
    async with (
        BaresipPeer(
            "101", workdir=tmp_path, registrar=registrar, password="pass101", audio_source=tone
        ) as a,
        BaresipPeer(
            "102", workdir=tmp_path, registrar=registrar, password="pass102", audio_source=tone
        ) as b,
    ):
        await connect(a, b)
        await asyncio.sleep(10.0)
        await engine_process.kill9()
        wavs = sorted((tmp_path / "var" / "recordings").rglob("*.wav"))
        assert len(wavs) == 1, wavs
        with wave.open(str(wavs[0]), "rb") as recording:
            assert recording.getnchannels() == 2 and recording.getframerate() == 8000
            seconds = recording.getnframes() / recording.getframerate()
        assert seconds >= 9.0, f"only {seconds:.2f} s survived the kill"
        # The header may lag the data by one flush (sizes are written after the audio), never lead.
        assert os.path.getsize(wavs[0]) >= 44 + recording.getnframes() * 4

    # The engine comes back: the call the crash cut off is closed as failed and delivered.
    await engine_process.start()
    row = await db.fetchrow(
        "SELECT * FROM calls WHERE from_number = '101' ORDER BY id DESC LIMIT 1"
    )
    assert (row["outcome"], row["hangup_cause"]) == ("failed", "engine-restart")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while not any(d.event == "call.ended" and d.data["id"] == row["id"] for d in crm.received):
        assert loop.time() < deadline, [(d.event, d.data.get("id")) for d in crm.received]
        await asyncio.sleep(0.1)
    events = [d.event for d in crm.unique() if d.data.get("id") == row["id"]]
    assert events == ["call.started", "call.ended"]
    assert crm.refused == 3 and crm.bad_signatures == 0
