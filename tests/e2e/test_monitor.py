"""Supervisor listen / whisper / barge on real phones, checked in what each phone heard.

The customer plays 600 Hz, agent 103 plays 1000 Hz, supervisor 191 plays 1500 Hz. Whisper: the
agent hears 600 + 1500, the customer 1000 and no trace of 1500 (below -40 dB relative to 1000).
Listen: nobody hears 1500. Barge: everyone hears everyone. Modes switch with DTMF mid-session,
and over the REST API; every step lands in the append-only audit. Non-supervisors and
supervisors of another team are refused and nothing is mixed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import asyncpg
import numpy as np
import pytest

from sip_test_env.audio import band_energy_db, read_wav, write_tone_wav

from .callfloor import (
    SUPERVISOR_KEY,
    bridged_call,
    call_in,
    customer,
    floor_engine,
    idle,
    phone,
    wait_for,
)
from .conftest import api_url

pytestmark = pytest.mark.peers

PHASE = 3.0  # seconds per mode
MARGIN = 0.7  # seconds left out at each end of a phase (switch time, timing of the dumps)
# mode: listener -> (frequencies heard, frequency that must be absent)
HEARD = {
    "whisper": {
        "customer": ((1000,), 1500),
        "agent": ((600, 1500), None),
        "sup": ((600, 1000), None),
    },
    "listen": {"customer": ((1000,), 1500), "agent": ((600,), 1500), "sup": ((600, 1000), None)},
    "barge": {"customer": ((1000, 1500), None), "agent": ((600, 1500), None),
              "sup": ((600, 1000), None)},
}  # fmt: skip


def _check(
    samples: np.ndarray, rate: int, heard: tuple[int, ...], absent: int | None, what: str
) -> None:
    for freq in heard:
        level = band_energy_db(samples, freq, rate)
        assert level > -30, f"{what}: {freq} Hz at {level:.1f} dBFS"
    if absent is not None:
        rel = band_energy_db(samples, absent, rate, relative_to=heard[0])
        assert rel < -40, f"{what}: {absent} Hz at {rel:.1f} dB relative to {heard[0]} Hz"


class Timeline:
    """When each phone's call began (its dump starts then) and when each phase began."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.starts: dict[str, float] = {}
        self.phases: list[tuple[str, float, float]] = []

    def mark(self, who: str) -> None:
        self.starts[who] = self.loop.time()

    async def phase(self, mode: str) -> None:
        start = self.loop.time()
        await asyncio.sleep(PHASE)
        self.phases.append((mode, start, self.loop.time()))

    def window(self, who: str, wav: Path, since: str, seconds: float) -> np.ndarray:
        """What `who` heard from shortly before `since`'s call began, `seconds` long."""
        rate, samples, _ = read_wav(wav)
        a = max(0, round((self.starts[since] - self.starts[who] - 0.2) * rate))
        return samples[a : a + round(seconds * rate)]

    def check(self, who: str, wav: Path) -> None:
        rate, samples, _ = read_wav(wav)
        for mode, start, end in self.phases:
            a = round((start - self.starts[who] + MARGIN) * rate)
            b = round((end - self.starts[who] - MARGIN) * rate)
            assert b - a > rate and b <= samples.size, f"{who}/{mode}: recording too short"
            heard, absent = HEARD[mode][who]
            _check(samples[a:b], rate, heard, absent, f"{who} in {mode}")


async def _audit(db: asyncpg.Connection, call_id: str) -> list[tuple[str, str]]:
    rows = await db.fetch("SELECT action, mode FROM monitor_audit WHERE call_id = $1 ORDER BY id",
                          call_id)  # fmt: skip
    return [(r["action"], r["mode"]) for r in rows]


def _tones(tmp_path: Path) -> tuple[Path, Path, Path]:
    return tuple(  # type: ignore[return-value]
        write_tone_wav(tmp_path / f"{f}.wav", f, 40.0) for f in (600, 1000, 1500)
    )


def _clean_recording(path: str | None) -> None:
    """The engine's stereo recording: customer left, agent right, no supervisor in either."""
    rate, stereo, channels = read_wav(Path(path or ""))
    assert channels == 2
    left, right = stereo[:, 0].copy(), stereo[:, 1].copy()
    assert band_energy_db(left, 1500, rate, relative_to=600) < -40
    assert band_energy_db(right, 1500, rate, relative_to=1000) < -40


async def test_whisper_then_listen_then_barge_by_dtmf(pg_url: str, tmp_path: Path, db) -> None:
    tone_c, tone_a, tone_s = _tones(tmp_path)
    timeline = Timeline()
    async with (
        floor_engine(pg_url, tmp_path, beep=True) as engine,
        customer(tmp_path, tone_c) as caller,
        phone("103", engine, tmp_path, tone_a) as agent,
        phone("191", engine, tmp_path, tone_s) as sup,
    ):
        await agent.wait_registered()
        await sup.wait_registered()
        await call_in(engine, caller)
        await agent.wait_event("CALL_INCOMING", timeout=5)
        await agent.accept()
        timeline.mark("agent")
        await caller.wait_event("CALL_ESTABLISHED", timeout=5)
        timeline.mark("customer")
        bridged = bridged_call(engine)
        await asyncio.sleep(1.0)
        await sup.dial("*2103")
        await sup.wait_event("CALL_ESTABLISHED", timeout=5)
        timeline.mark("sup")
        await wait_for(lambda: bool(engine.switchboard.monitors), what="the session")
        await timeline.phase("whisper")
        await sup.send_dtmf("4")
        await asyncio.sleep(0.3)
        await timeline.phase("listen")
        await sup.send_dtmf("6")
        await asyncio.sleep(0.3)
        await timeline.phase("barge")
        await sup.hangup()
        await wait_for(lambda: not engine.switchboard.monitors, what="the session's end")
        # Back on the packet relay, the call goes on.
        assert bridged.a.media is not None and bridged.a.media.peer is bridged.b.media  # type: ignore[union-attr]
        await asyncio.sleep(0.5)
        await caller.hangup()
        await agent.wait_event("CALL_CLOSED", timeout=5)
        await idle(engine)
    # The phones have stopped: their recordings of what they heard are complete.
    timeline.check("customer", caller.recorded_wav())
    timeline.check("agent", agent.recorded_wav())
    timeline.check("sup", sup.recorded_wav())
    # The agent heard the join beep; the customer did not (the second after the join).
    beep_agent = timeline.window("agent", agent.recorded_wav(), "sup", 1.2)
    beep_customer = timeline.window("customer", caller.recorded_wav(), "sup", 1.2)
    assert band_energy_db(beep_agent, 1400, 8000) > -35
    # At the customer: nothing beyond the broadband click of the switch to the mix (measured
    # -58 dB at worst in that band, against the agent's beep above -35 dB).
    assert band_energy_db(beep_customer, 1400, 8000) < -50
    assert band_energy_db(beep_agent, 1400, 8000) - band_energy_db(beep_customer, 1400, 8000) > 20
    _clean_recording(bridged.summary.recording)
    audit = await _audit(db, bridged.a.call_id)
    assert audit == [
        ("started", "whisper"),
        ("mode", "listen"),
        ("mode", "barge"),
        ("ended", "barge"),
    ]
    row = await db.fetchrow(
        "SELECT supervisor, agent, call_row_id FROM monitor_audit WHERE call_id = $1 LIMIT 1",
        bridged.a.call_id,
    )
    call_row = await db.fetchval("SELECT id FROM calls WHERE call_id = $1", bridged.a.call_id)
    assert (row["supervisor"], row["agent"], row["call_row_id"]) == ("191", "103", call_row)
    with pytest.raises(asyncpg.RaiseError):
        await db.execute("DELETE FROM monitor_audit WHERE call_id = $1", bridged.a.call_id)


async def test_listen_by_code_and_barge_over_the_api(pg_url: str, tmp_path: Path, db) -> None:
    tone_c, tone_a, tone_s = _tones(tmp_path)
    timeline = Timeline()
    async with (
        floor_engine(pg_url, tmp_path) as engine,
        customer(tmp_path, tone_c) as caller,
        phone("103", engine, tmp_path, tone_a) as agent,
        phone("191", engine, tmp_path, tone_s) as sup,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {SUPERVISOR_KEY}"}) as http,
    ):
        await agent.wait_registered()
        await sup.wait_registered()
        await call_in(engine, caller)
        await agent.wait_event("CALL_INCOMING", timeout=5)
        await agent.accept()
        timeline.mark("agent")
        await caller.wait_event("CALL_ESTABLISHED", timeout=5)
        timeline.mark("customer")
        bridged = bridged_call(engine)
        row = await _call_row(db, bridged.a.call_id)
        url = api_url(engine, f"/calls/{row}/monitor")
        # The engine rings the supervisor's phone first, then joins.
        join = asyncio.create_task(http.post(url, json={"supervisor": "191", "mode": "listen"}))
        await sup.wait_event("CALL_INCOMING", timeout=5)
        await sup.accept()
        timeline.mark("sup")
        response = await join
        assert response.status == 201, await response.text()
        session = (await response.json())["session"]
        await timeline.phase("listen")
        async with http.patch(f"{url}/{session}", json={"mode": "barge"}) as changed:
            assert changed.status == 200 and (await changed.json())["mode"] == "barge"
        await asyncio.sleep(0.2)
        await timeline.phase("barge")
        async with http.delete(f"{url}/{session}") as left:
            assert left.status == 200
        await sup.wait_event("CALL_CLOSED", timeout=5)
        await wait_for(lambda: not engine.switchboard.monitors, what="the session's end")
        async with http.get(url) as audit:
            entries = (await audit.json())["entries"]
        assert [(e["action"], e["mode"]) for e in entries] == [
            ("started", "listen"),
            ("mode", "barge"),
            ("ended", "barge"),
        ]
        await caller.hangup()
        await agent.wait_event("CALL_CLOSED", timeout=5)
        await idle(engine)
    timeline.check("customer", caller.recorded_wav())
    timeline.check("agent", agent.recorded_wav())
    timeline.check("sup", sup.recorded_wav())
    _clean_recording(bridged.summary.recording)


async def _call_row(db: asyncpg.Connection, call_id: str) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3
    while (row := await db.fetchval("SELECT id FROM calls WHERE call_id = $1", call_id)) is None:
        assert loop.time() < deadline
        await asyncio.sleep(0.02)
    return int(row)


async def test_non_supervisors_are_refused_and_nothing_is_mixed(
    pg_url: str, tmp_path: Path, db
) -> None:
    tone_c, tone_a, tone_s = _tones(tmp_path)
    async with (
        floor_engine(pg_url, tmp_path) as engine,
        customer(tmp_path, tone_c) as caller,
        phone("103", engine, tmp_path, tone_a) as agent,
        phone("104", engine, tmp_path, tone_s) as intruder,
        phone("190", engine, tmp_path, tone_s) as other_team,
        aiohttp.ClientSession(headers={"Authorization": "Bearer test-agent-key-0001"}) as http,
    ):
        for p in (agent, intruder, other_team):
            await p.wait_registered()
        await call_in(engine, caller)
        await agent.wait_event("CALL_INCOMING", timeout=5)
        await agent.accept()
        await caller.wait_event("CALL_ESTABLISHED", timeout=5)
        bridged = bridged_call(engine)
        # An agent is no supervisor; supervisor 190 has no team with 103.
        for peer in (intruder, other_team):
            await peer.dial("*2103")
            closed = await peer.wait_event("CALL_CLOSED", timeout=5)
            assert "403" in str(closed), closed
            assert not peer.events_of("CALL_ESTABLISHED")
        # The API: an agent's key may not; an admin naming a non-supervisor is refused too.
        row = await _call_row(db, bridged.a.call_id)
        url = api_url(engine, f"/calls/{row}/monitor")
        async with http.post(url, json={"supervisor": "104", "mode": "whisper"}) as refused:
            assert refused.status == 403
        admin = {"Authorization": "Bearer test-admin-key-0001"}
        body = {"supervisor": "104", "mode": "whisper"}
        async with http.post(url, json=body, headers=admin) as refused:
            assert refused.status == 403, await refused.text()
        assert not engine.switchboard.monitors
        assert bridged.a.media is not None and bridged.a.media.peer is bridged.b.media  # type: ignore[union-attr]
        await asyncio.sleep(1.5)
        await caller.hangup()
        await agent.wait_event("CALL_CLOSED", timeout=5)
        await idle(engine)
    rate, heard, _ = read_wav(caller.recorded_wav())
    assert heard.size > rate and band_energy_db(heard, 1000, rate) > -30
    assert band_energy_db(heard, 1500, rate, relative_to=1000) < -40
    rate, heard, _ = read_wav(agent.recorded_wav())
    assert heard.size > rate and band_energy_db(heard, 600, rate) > -30
    assert band_energy_db(heard, 1500, rate, relative_to=600) < -40
    assert await _audit(db, bridged.a.call_id) == []


async def test_the_call_ending_ends_the_session(pg_url: str, tmp_path: Path, db) -> None:
    """Nothing to monitor: a fast busy tone. The customer hanging up mid-session hangs up the
    supervisor too, and the audit closes the session."""
    async with (
        floor_engine(pg_url, tmp_path) as engine,
        customer(tmp_path) as caller,
        phone("103", engine, tmp_path) as agent,
        phone("191", engine, tmp_path) as sup,
    ):
        await agent.wait_registered()
        await sup.wait_registered()
        await sup.dial("*1103")  # 103 is not in a call
        await sup.wait_event("CALL_ESTABLISHED", timeout=5)
        await sup.wait_event("CALL_CLOSED", timeout=5)
        assert not engine.switchboard.monitors
        await call_in(engine, caller)
        await agent.wait_event("CALL_INCOMING", timeout=5)
        await agent.accept()
        await caller.wait_event("CALL_ESTABLISHED", timeout=5)
        bridged = bridged_call(engine)
        await sup.dial("*1103")
        await sup.wait_event("CALL_ESTABLISHED", timeout=5)
        await wait_for(lambda: bool(engine.switchboard.monitors), what="the session")
        await asyncio.sleep(0.5)
        await caller.hangup()
        await agent.wait_event("CALL_CLOSED", timeout=5)
        await sup.wait_event("CALL_CLOSED", timeout=5)
        await idle(engine)
    assert await _audit(db, bridged.a.call_id) == [("started", "listen"), ("ended", "listen")]
