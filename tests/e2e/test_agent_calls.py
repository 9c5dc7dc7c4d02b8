"""Agents on real softphones call each other through the engine: baresip <-> pyVoIP.

Audio is checked for real: each side plays its own tone and the other side's recording must
contain it within 1 s of answer; DTMF sent as RFC 4733 by baresip must reach pyVoIP and show up
as call events in the engine.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from callcenter.runtime import Engine
from sip_test_env.audio import first_tone_time, read_wav, write_tone_wav
from sip_test_env.baresip import BaresipPeer
from sip_test_env.pyvoip_phone import PyVoipPhone
from telephony.call import Answered, Dtmf

from .conftest import api_url, bearer, calls_settled, registrar_of

pytestmark = pytest.mark.peers
DIGITS = "1234567890*#"


async def _wait_bridged(engine: Engine, timeout: float = 5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for bridged in engine.switchboard.active.values():
            if bridged.b is not None:
                return bridged
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("no bridged call")
        await asyncio.sleep(0.02)


async def _http_status(engine: Engine) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(api_url(engine, "/api/status"), headers=bearer()) as response,
    ):
        assert response.status == 200
        result: dict[str, Any] = await response.json()
        return result


async def test_baresip_calls_pyvoip_tones_and_dtmf(engine: Engine, tmp_path: Path, db) -> None:
    tone = write_tone_wav(tmp_path / "1k.wav", 1000, 6.0)
    async with (
        BaresipPeer(
            "101",
            workdir=tmp_path,
            registrar=registrar_of(engine),
            password="pass101",
            audio_source=tone,
        ) as agent101,
        PyVoipPhone("102", "pass102", server_port=engine.sip_port) as agent102,
    ):
        await agent101.wait_registered()
        await agent101.dial("102")
        incoming = await agent102.wait_incoming(timeout=5)
        await incoming.answer()
        incoming.play_tone(600, 6.0)
        await agent101.wait_event("CALL_ESTABLISHED", timeout=5)
        bridged = await _wait_bridged(engine)
        assert (bridged.caller, bridged.callee) == ("101", "102")
        status = await _http_status(engine)
        assert status["calls"] == [
            {"call_id": bridged.a.call_id, "caller": "101", "callee": "102", "state": "talking"}
        ]
        registered = {e["extension"] for e in status["extensions"] if e["registered"]}
        assert registered == {"101", "102"}

        await asyncio.sleep(1.5)
        await agent101.send_dtmf(DIGITS)
        received = await incoming.wait_dtmf(len(DIGITS), timeout=8)
        assert received == DIGITS

        events = []
        while not bridged.a._events.empty():
            events.append(bridged.a._events.get_nowait())
        assert isinstance(events[0], Answered)
        assert "".join(e.digit for e in events if isinstance(e, Dtmf)) == DIGITS

        await asyncio.sleep(0.5)
        await agent101.hangup()
        await incoming.wait_ended(timeout=5)
        await agent101.wait_event("CALL_CLOSED", timeout=5)

        heard_by_102 = incoming.recorded_samples()
        at_102 = first_tone_time(heard_by_102, 1000, 8000)
        assert at_102 is not None and at_102 < 1.0, f"1 kHz reached pyVoIP at {at_102}"
        rate, heard_by_101, _ = read_wav(agent101.recorded_wav())
        at_101 = first_tone_time(heard_by_101, 600, rate)
        assert at_101 is not None and at_101 < 1.0, f"600 Hz reached baresip at {at_101}"
    await calls_settled(engine)
    row = await db.fetchrow("SELECT * FROM calls WHERE call_id = $1", bridged.a.call_id)
    assert (
        row["outcome"] == "answered" and row["from_number"] == "101" and row["to_number"] == "102"
    )


async def test_pyvoip_calls_baresip_tones(engine: Engine, tmp_path: Path) -> None:
    tone = write_tone_wav(tmp_path / "600.wav", 600, 6.0)
    async with (
        BaresipPeer(
            "101",
            workdir=tmp_path,
            registrar=registrar_of(engine),
            password="pass101",
            audio_source=tone,
        ) as agent101,
        PyVoipPhone("102", "pass102", server_port=engine.sip_port) as agent102,
    ):
        await agent101.wait_registered()
        call = await agent102.call("101")
        await agent101.wait_event("CALL_INCOMING", timeout=5)
        await agent101.accept()
        await call.wait_answered(timeout=5)
        call.play_tone(1000, 6.0)
        await asyncio.sleep(2.5)
        await call.hangup()
        await agent101.wait_event("CALL_CLOSED", timeout=5)

        at_102 = first_tone_time(call.recorded_samples(), 600, 8000)
        assert at_102 is not None and at_102 < 1.0, f"600 Hz reached pyVoIP at {at_102}"
        rate, heard_by_101, _ = read_wav(agent101.recorded_wav())
        at_101 = first_tone_time(heard_by_101, 1000, rate)
        assert at_101 is not None and at_101 < 1.0, f"1 kHz reached baresip at {at_101}"
    await calls_settled(engine)


async def test_out_of_rtp_ports_the_caller_gets_503_not_488(
    engine: Engine, tmp_path: Path, db: Any
) -> None:
    """The port pool runs dry between the callee's leg and the caller's answer (calls held
    elsewhere took the rest): that is the engine's shortage, 503, not an unacceptable offer;
    the callee who answered is hung up and the row says failed with 503."""
    pool = engine.ua.ports
    held = []
    try:
        while True:
            held.append(await pool.open())
    except OSError:
        pass
    assert held, "the pool gave nothing"
    pool.release(held.pop())  # one port: the callee's leg takes it, the caller's finds none
    tone = write_tone_wav(tmp_path / "t.wav", 600, 3.0)
    try:
        async with (
            BaresipPeer("101", workdir=tmp_path, registrar=registrar_of(engine),
                        password="pass101", audio_source=tone) as caller,
            BaresipPeer("102", workdir=tmp_path, registrar=registrar_of(engine),
                        password="pass102", answermode="auto", audio_source=tone) as callee,
        ):  # fmt: skip
            await caller.wait_registered()
            await callee.wait_registered()
            await caller.dial("102")
            closed = await caller.wait_event("CALL_CLOSED", timeout=10)
            assert "503" in str(closed.get("param", "")), closed
            await callee.wait_event("CALL_CLOSED", timeout=5)
    finally:
        for endpoint in held:
            pool.release(endpoint)
    await calls_settled(engine)
    row = await db.fetchrow(
        "SELECT outcome, sip_status FROM calls WHERE from_number = '101' AND to_number = '102'"
        " ORDER BY id DESC LIMIT 1"
    )
    assert (row["outcome"], row["sip_status"]) == ("failed", 503)
