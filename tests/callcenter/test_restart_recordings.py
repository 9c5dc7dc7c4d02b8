"""At start-up the calls a crash cut off are closed with their recordings' analytics; a
recording that is missing or damaged is reported and its call closed all the same."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from callcenter.journal import close_interrupted_calls
from crm_bridge import CallStarted, CrmStore, apply_migrations
from recordings import CallRecorder

T0 = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[CrmStore]:
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=2)
    async with pool.acquire() as conn:
        await apply_migrations(conn)
    try:
        yield CrmStore(pool, node=f"restart-{secrets.token_hex(4)}")
    finally:
        await pool.close()


def speech_recording(path: Path, seconds: int) -> None:
    """The customer side talks (a vowel-like harmonic series), the agent side is silent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(seconds * 8000) / 8000
    phase = 2 * np.pi * np.cumsum(120 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / 8000
    x = sum(np.sin(k * phase) / k for k in range(1, 29))
    voice = (np.asarray(x) / np.abs(x).max() * 8000).astype(np.int16)
    rec = CallRecorder(path)
    for i in range(0, voice.size, 160):
        rec.push("customer", voice[i : i + 160])
        rec.tick()
    rec.flush()  # and no close(): the engine was killed


async def test_interrupted_calls_get_their_recordings_analytics(
    store: CrmStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "recordings"
    rows = {}
    for name in ("good", "missing", "junk", "unrecorded"):
        rows[name] = await store.call_started(
            CallStarted(name, "internal", "101", "102", T0, agent="101")
        )
    speech_recording(root / "2024/05/06/good.wav", 4)
    (root / "2024/05/06/junk.wav").write_bytes(b"not a wav at all")
    await store.call_recording(rows["good"], "2024/05/06/good.wav")
    await store.call_recording(rows["missing"], "2024/05/06/missing.wav")
    await store.call_recording(rows["junk"], "2024/05/06/junk.wav")

    restart = T0 + timedelta(minutes=1)
    with caplog.at_level(logging.ERROR, logger="callcenter.journal"):
        closed = await close_interrupted_calls(store, recordings_root=root, now=restart)
    assert closed == 4
    good = await store.get_call(rows["good"])
    assert good is not None and good.analytics is not None
    assert good.analytics["duration_seconds"] == 4.0
    assert good.analytics["customer_talk_seconds"] > 3.5
    assert good.analytics["agent_talk_seconds"] == 0.0
    for name in ("missing", "junk", "unrecorded"):
        call = await store.get_call(rows[name])
        assert call is not None and call.analytics is None
        assert (call.outcome, call.hangup_cause) == ("failed", "engine-restart")
    missing = await store.get_call(rows["missing"])
    assert missing is not None and missing.recording_path == "2024/05/06/missing.wav"
    errors = " | ".join(r.getMessage() for r in caplog.records)
    assert "call missing: recording not analysed" in errors and "cannot open" in errors
    assert "call junk: recording not analysed" in errors and "too short" in errors
    assert (root / "2024/05/06/junk.wav").read_bytes() == b"not a wav at all"
