"""How the PBX treats calls between agents on real baresip phones: busy, unregistered, ring
timeout, caller hang-up while ringing, hold/unhold re-INVITEs, SIP over TCP, shutdown BYE."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callcenter.runtime import Engine, start_engine
from sip_test_env.audio import first_tone_time, read_wav, tone_frames, write_tone_wav
from sip_test_env.baresip import BaresipPeer

from .conftest import calls_settled, connect, engine_config, registrar_of

pytestmark = pytest.mark.peers


def _closed_reason(event: dict[str, object]) -> str:
    return str(event.get("param", "")) + " " + str(event.get("data", ""))


@pytest.fixture
async def short_ring_engine(pg_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    engine = await start_engine(
        engine_config(extra_sip="ring_timeout = 2"), database_url=pg_url, data_dir=tmp_path
    )
    try:
        yield engine
    finally:
        await engine.stop()


async def test_busy_unregistered_and_unknown(engine: Engine, tmp_path: Path, db) -> None:
    registrar = registrar_of(engine)
    async with (
        BaresipPeer("101", workdir=tmp_path, registrar=registrar, password="pass101") as a,
        BaresipPeer("102", workdir=tmp_path, registrar=registrar, password="pass102") as b,
        BaresipPeer("103", workdir=tmp_path, registrar=registrar, password="pass103") as c,
    ):
        for peer in (a, b, c):
            await peer.wait_registered()
        # 104 exists but no phone is registered: 480.
        await c.dial("104")
        closed = await c.wait_event("CALL_CLOSED", timeout=5)
        assert "480" in _closed_reason(closed)
        # 999 is no extension: 404.
        await c.dial("999")
        closed = await c.wait_event("CALL_CLOSED", timeout=5)
        assert "404" in _closed_reason(closed)
        # 101 talks to 102; 103 calling 102 gets 486 Busy Here.
        await a.dial("102")
        await b.wait_event("CALL_INCOMING", timeout=5)
        await b.accept()
        await a.wait_event("CALL_ESTABLISHED", timeout=5)
        await c.dial("102")
        closed = await c.wait_event("CALL_CLOSED", timeout=5)
        assert "486" in _closed_reason(closed)
        await a.hangup()
        await b.wait_event("CALL_CLOSED", timeout=5)
    await calls_settled(engine)
    outcomes = {
        r["to_number"]: (r["outcome"], r["sip_status"])
        for r in await db.fetch(
            "SELECT to_number, outcome, sip_status FROM calls WHERE from_number = '103'"
            " AND started_at > now() - interval '1 minute'"
        )
    }
    assert outcomes.get("102") == ("busy", 486)


async def test_ring_timeout_and_caller_cancel(
    short_ring_engine: Engine,
    tmp_path: Path,
) -> None:
    registrar = registrar_of(short_ring_engine)
    async with (
        BaresipPeer("101", workdir=tmp_path, registrar=registrar, password="pass101") as a,
        BaresipPeer("102", workdir=tmp_path, registrar=registrar, password="pass102") as b,
    ):
        await a.wait_registered()
        await b.wait_registered()
        # Nobody answers: after ring_timeout (2 s) the caller gets 480, the callee a CANCEL.
        await a.dial("102")
        await b.wait_event("CALL_INCOMING", timeout=5)
        await a.wait_event("CALL_RINGING", timeout=5)
        closed = await a.wait_event("CALL_CLOSED", timeout=6)
        assert "480" in _closed_reason(closed)
        await b.wait_event("CALL_CLOSED", timeout=5)
        # The caller gives up while it rings: the callee's phone stops ringing.
        await a.dial("102")
        await b.wait_event("CALL_INCOMING", timeout=5)
        await a.wait_event("CALL_RINGING", timeout=5)
        await a.hangup()
        await b.wait_event("CALL_CLOSED", timeout=5)
    await calls_settled(short_ring_engine)


async def test_an_answer_that_meets_the_ring_deadline_in_a_late_loop_wins(
    short_ring_engine: Engine, tmp_path: Path, db
) -> None:
    # Overload: the loop is held up across the ring deadline while the callee's 200 OK waits in
    # the socket. When the loop runs again, the deadline's timer comes before the datagram; the
    # phone answered in time, so the call is answered (not a 480, not a missed call).
    loop = asyncio.get_running_loop()
    registrar = registrar_of(short_ring_engine)
    async with (
        BaresipPeer("101", workdir=tmp_path, registrar=registrar, password="pass101") as a,
        BaresipPeer("102", workdir=tmp_path, registrar=registrar, password="pass102") as b,
    ):
        await a.wait_registered()
        await b.wait_registered()
        await a.dial("102")
        await b.wait_event("CALL_INCOMING", timeout=5)
        rang = loop.time()  # the ring deadline is 2 s after the engine took the INVITE
        await asyncio.sleep(max(0.0, rang + 1.6 - loop.time()))
        accepting = asyncio.ensure_future(b.accept())
        await asyncio.sleep(0)  # the accept command is written to the phone
        time.sleep(1.0)  # the engine's loop held up past the deadline
        await accepting
        await a.wait_event("CALL_ESTABLISHED", timeout=5)
        await b.wait_event("CALL_ESTABLISHED", timeout=5)
        (a_call_id,) = short_ring_engine.switchboard.active
        await a.hangup()
        await b.wait_event("CALL_CLOSED", timeout=5)
    await calls_settled(short_ring_engine)
    call_id = a_call_id
    row = None
    for _ in range(100):  # the journal closes the row just after the call ends
        row = await db.fetchrow(
            "SELECT outcome, sip_status FROM calls WHERE call_id = $1 AND ended_at IS NOT NULL",
            call_id,
        )
        if row is not None:
            break
        await asyncio.sleep(0.05)
    assert row is not None, "the call's row was not closed"
    assert (row["outcome"], row["sip_status"]) == ("answered", 200), dict(row)


async def test_hold_and_unhold_keep_the_call(engine: Engine, tmp_path: Path) -> None:
    registrar = registrar_of(engine)
    tone = write_tone_wav(tmp_path / "800.wav", 800, 20.0)
    async with (
        BaresipPeer("101", workdir=tmp_path, registrar=registrar, password="pass101") as a,
        BaresipPeer(
            "102", workdir=tmp_path, registrar=registrar, password="pass102", audio_source=tone
        ) as b,
    ):
        await connect(a, b)
        bridged = next(iter(engine.switchboard.active.values()))
        await asyncio.sleep(0.5)
        await a.command("hold")
        await _until(lambda: bridged.a.media is not None and bridged.a.media.held)
        await a.command("resume")
        await _until(lambda: bridged.a.media is not None and not bridged.a.media.held)
        await asyncio.sleep(1.0)
        await b.hangup()
        await a.wait_event("CALL_CLOSED", timeout=5)
        rate, heard, _ = read_wav(a.recorded_wav())
        assert first_tone_time(heard, 800, rate) is not None
    await calls_settled(engine)


async def _until(condition, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_agents_over_tcp(engine: Engine, tmp_path: Path) -> None:
    registrar = registrar_of(engine)
    tone_a = write_tone_wav(tmp_path / "1k.wav", 1000, 10.0)
    tone_b = write_tone_wav(tmp_path / "600.wav", 600, 10.0)
    async with (
        BaresipPeer(
            "101", workdir=tmp_path, registrar=registrar, password="pass101",
            audio_source=tone_a, transport="tcp",
        ) as a,
        BaresipPeer(
            "102", workdir=tmp_path, registrar=registrar, password="pass102",
            audio_source=tone_b, transport="tcp",
        ) as b,
    ):  # fmt: skip
        await a.wait_registered()
        await b.wait_registered()
        assert all(
            binding.peer[0] == "tcp"
            for binding in engine.switchboard.registrar.lookup("102", now=engine.ua.loop.time())
        )
        await a.dial("102")
        await b.wait_event("CALL_INCOMING", timeout=5)
        await b.accept()
        await a.wait_event("CALL_ESTABLISHED", timeout=5)
        await asyncio.sleep(2.0)
        await a.hangup()
        await b.wait_event("CALL_CLOSED", timeout=5)
        rate, heard_by_b, _ = read_wav(b.recorded_wav())
        at_b = first_tone_time(heard_by_b, 1000, rate)
        assert at_b is not None and at_b < 1.0
        rate, heard_by_a, _ = read_wav(a.recorded_wav())
        at_a = first_tone_time(heard_by_a, 600, rate)
        assert at_a is not None and at_a < 1.0
    await calls_settled(engine)


async def test_shutdown_hangs_up_calls_with_bye(pg_url: str, tmp_path: Path) -> None:
    engine = await start_engine(engine_config(), database_url=pg_url, data_dir=tmp_path)
    registrar = registrar_of(engine)
    stopped = False
    try:
        async with (
            BaresipPeer("101", workdir=tmp_path, registrar=registrar, password="pass101") as a,
            BaresipPeer("102", workdir=tmp_path, registrar=registrar, password="pass102") as b,
        ):
            await connect(a, b)
            await engine.stop()
            stopped = True
            await a.wait_event("CALL_CLOSED", timeout=5)
            await b.wait_event("CALL_CLOSED", timeout=5)
    finally:
        if not stopped:
            await engine.stop()


async def test_the_held_party_hears_music_on_hold(pg_url: str, tmp_path: Path) -> None:
    music = write_tone_wav(tmp_path / "music.wav", 450, 2.0)  # looped while on hold
    config = engine_config(extra_sip=f'music_on_hold = "{music}"')
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        registrar = registrar_of(engine)
        async with (
            BaresipPeer("101", workdir=tmp_path, registrar=registrar, password="pass101",
                        audio_source=write_tone_wav(tmp_path / "1k.wav", 1000, 30.0)) as a,
            BaresipPeer("102", workdir=tmp_path, registrar=registrar, password="pass102") as b,
        ):  # fmt: skip
            await connect(a, b)
            bridged = next(iter(engine.switchboard.active.values()))
            await asyncio.sleep(1.0)
            await a.command("hold")
            await _until(lambda: bridged.a.media is not None and bridged.a.media.held)
            await asyncio.sleep(3.0)  # longer than the music: it loops
            await a.command("resume")
            await _until(lambda: bridged.a.media is not None and not bridged.a.media.held)
            await asyncio.sleep(1.5)
            await a.hangup()
            await b.wait_event("CALL_CLOSED", timeout=5)
            rate, heard, _ = read_wav(b.recorded_wav())
        await calls_settled(engine)
    finally:
        await engine.stop()
    music_at = first_tone_time(heard, 450, rate)
    assert music_at is not None and first_tone_time(heard, 1000, rate) < music_at
    held = heard[int(music_at * rate) : int((music_at + 2.8) * rate)]
    assert tone_frames(held, 450, rate).mean() > 0.9  # music all along, looped past its end
    assert tone_frames(held, 1000, rate).mean() < 0.1  # and not the holding phone
    after = heard[-int(1.0 * rate) :]
    assert tone_frames(after, 1000, rate).mean() > 0.5  # resumed: 101 again, the music gone
    assert tone_frames(after, 450, rate).mean() < 0.1
