"""Parking (issue 14, part 5) with baresip phones: 102 talks to 101; the API parks the call
(101 hears music, 102 hears the slot and is hung up); 103 dials *71 and the slot and talks to
101 on the same call (one calls row, the park in its transfers, one recording: 102 then 103 on
its agent channel, checked by the tones each phone sends). Left parked too long, the
call rings its parker back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import asyncpg
import numpy as np
import pytest

from callcenter.runtime import Engine
from pbx.b2bua import RINGBACK
from pbx.parking import ParkingLot, announcement
from sip_test_env.audio import first_tone_time, normalized_xcorr, read_wav, write_tone_wav
from sip_test_env.baresip import BaresipPeer

from .conftest import api_url, bearer, calls_settled, connect, registrar_of
from .test_trunk import _poll

pytestmark = pytest.mark.peers


HZ = {"101": 600.0, "102": 1000.0, "103": 1400.0}


def phone(engine: Engine, ext: str, workdir: Path, audio: Path | None = None) -> BaresipPeer:
    return BaresipPeer(ext, workdir=workdir / ext, registrar=registrar_of(engine),
                       password=f"pass{ext}", audio_source=audio)  # fmt: skip


async def park(engine: Engine, call_id: str) -> str:
    async with aiohttp.ClientSession() as http:
        url = api_url(engine, f"/calls/{call_id}/park")
        async with http.post(url, headers=bearer()) as r:
            assert r.status == 200, await r.text()
            return str((await r.json())["slot"])


async def test_park_and_retrieve_from_another_phone(
    engine: Engine, tmp_path: Path, db: asyncpg.Connection
) -> None:
    tones = {ext: write_tone_wav(tmp_path / f"{ext}.wav", hz, 30.0) for ext, hz in HZ.items()}
    async with (
        phone(engine, "101", tmp_path, tones["101"]) as a101,
        phone(engine, "102", tmp_path, tones["102"]) as a102,
        phone(engine, "103", tmp_path, tones["103"]) as a103,
    ):
        await a103.wait_registered()
        await connect(a101, a102)
        bridged = next(iter(engine.switchboard.active.values()))
        await asyncio.sleep(1.0)  # 101 talks to 102
        slot = await park(engine, bridged.a.call_id)
        assert slot == "701"
        await a102.wait_event("CALL_CLOSED", timeout=10)  # after hearing the slot
        assert not a101.events_of("CALL_CLOSED")
        assert engine.switchboard.parking.parked() == {"701": bridged.a.call_id}
        assert not engine.switchboard.busy("102")  # the parker is free meanwhile
        await asyncio.sleep(1.0)  # 101 waits, parked
        await a103.dial(f"*71{slot}")
        await a103.wait_event("CALL_ESTABLISHED", timeout=5)
        assert bridged.callee == "103" and engine.switchboard.parking.parked() == {}
        (record,) = bridged.summary.transfers
        assert (record["mode"], record["parker"], record["to"], record["result"]) == (
            "park", "102", "103", "completed",
        )  # fmt: skip
        # Nothing parked there any more: the reorder tone.
        await a102.dial("701")
        await a102.wait_event("CALL_CLOSED", timeout=5)
        await asyncio.sleep(1.0)  # 101 talks to 103
        await a103.hangup()
        await a101.wait_event("CALL_CLOSED", timeout=5)
        heard = a101.recorded_wav()
    await calls_settled(engine)
    row = await _poll(
        db, "SELECT * FROM calls WHERE call_id = $1 AND ended_at IS NOT NULL", bridged.a.call_id
    )
    assert (row["from_number"], row["agent"], row["outcome"]) == ("101", "103", "answered")
    # 101 heard 102, then the waiting tone of the lot (ringback without music on hold), then 103.
    rate, samples, _ = read_wav(heard)
    at_102 = first_tone_time(samples, HZ["102"], rate)
    at_wait = first_tone_time(samples, RINGBACK[0], rate, min_ratio=0.3)
    at_103 = first_tone_time(samples, HZ["103"], rate)
    assert at_102 is not None and at_wait is not None and at_103 is not None
    assert at_102 < at_wait < at_103, (at_102, at_wait, at_103)
    # One recording: 101 on the customer channel, 102 then 103 on the agent channel.
    assert row["recording_path"]
    rate, stereo, channels = read_wav(Path(bridged.summary.recording or ""))
    assert channels == 2
    agent = stereo[:, 1].copy()
    rec_102, rec_103 = (
        first_tone_time(agent, HZ["102"], rate),
        first_tone_time(agent, HZ["103"], rate),
    )
    assert rec_102 is not None and rec_103 is not None and rec_102 < rec_103
    assert first_tone_time(stereo[:, 0].copy(), HZ["101"], rate) is not None


async def test_a_call_parked_too_long_rings_its_parker_back(engine: Engine, tmp_path: Path) -> None:
    engine.switchboard.park_timeout = 1.0
    async with phone(engine, "101", tmp_path) as a101, phone(engine, "102", tmp_path) as a102:
        await connect(a101, a102)
        bridged = next(iter(engine.switchboard.active.values()))
        await park(engine, bridged.a.call_id)
        await a102.wait_event("CALL_CLOSED", timeout=10)
        await a102.wait_event("CALL_INCOMING", timeout=10)  # rung back
        await a102.accept()
        await a102.wait_event("CALL_ESTABLISHED", timeout=5)
        assert bridged.callee == "102" and bridged.b is not None
        assert bridged.summary.transfers[-1]["result"] == "completed"
        await a101.hangup()
        await a102.wait_event("CALL_CLOSED", timeout=5)
    await calls_settled(engine)


def _heard_slot(peer: BaresipPeer, engine: Engine, slot: str) -> None:
    """The phone heard "Parked on SLOT" (espeak-ng's prompt, found in its recording), and
    better than it would match the next slot's."""
    assert engine.switchboard.speak is not None and engine.prompts is not None
    rate, heard, _ = read_wav(peer.recorded_wav())
    # The phone records from its first packet: the slot may start at once. Silence around it
    # lets the prompt line up anywhere.
    silence = np.zeros(rate, dtype=heard.dtype)
    heard = np.concatenate([silence, heard, silence])
    _, mine, _ = read_wav(engine.prompts.speak(announcement(slot)))
    peak, _ = normalized_xcorr(heard, mine)
    assert peak > 0.6, (slot, peak)
    _, other, _ = read_wav(engine.prompts.speak(announcement(str(int(slot) + 1))))
    assert normalized_xcorr(heard, other)[0] < peak


async def test_a_phone_parks_by_transfer_to_700_or_by_hash_72(
    engine: Engine, tmp_path: Path, db: asyncpg.Connection
) -> None:
    """102 blind-transfers its call to 700 (baresip's REFER): 101 is parked on 701 and 102
    hears the slot before its transfer succeeds; 103 takes 701 and, talking to 101, presses #72: 101
    is parked again and 103 hears the slot; 104 takes it with *71701. One call throughout."""
    async with (
        phone(engine, "101", tmp_path) as a101,
        phone(engine, "102", tmp_path) as a102,
        phone(engine, "103", tmp_path) as a103,
        phone(engine, "104", tmp_path) as a104,
    ):
        await a103.wait_registered()
        await a104.wait_registered()
        await connect(a101, a102)
        bridged = next(iter(engine.switchboard.active.values()))
        reply = await a102.command("transfer", f"sip:700@127.0.0.1:{engine.sip_port}")
        assert reply.get("ok") is not False, reply
        # 102 hears the slot, then the final NOTIFY (200) ends its transfer.
        closed = await a102.wait_event("CALL_CLOSED", timeout=15)
        assert "transfered" in str(closed.get("param")), closed
        assert engine.switchboard.parking.parked() == {"701": bridged.a.call_id}
        assert not a101.events_of("CALL_CLOSED")

        await a103.dial("701")
        await a103.wait_event("CALL_ESTABLISHED", timeout=5)
        assert bridged.callee == "103" and engine.switchboard.parking.parked() == {}
        await a103.send_dtmf("#72")
        await a103.wait_event("CALL_CLOSED", timeout=15)
        assert engine.switchboard.parking.parked() == {"701": bridged.a.call_id}

        await a104.dial("*71701")
        await a104.wait_event("CALL_ESTABLISHED", timeout=5)
        assert bridged.callee == "104"
        await a104.hangup()
        await a101.wait_event("CALL_CLOSED", timeout=5)
    # The phones have stopped: their recordings are complete.
    _heard_slot(a102, engine, "701")
    _heard_slot(a103, engine, "701")
    await calls_settled(engine)
    row = await _poll(
        db, "SELECT * FROM calls WHERE call_id = $1 AND ended_at IS NOT NULL", bridged.a.call_id
    )
    assert (row["from_number"], row["agent"], row["outcome"]) == ("101", "104", "answered")
    assert [(t["mode"], t["by"], t["parker"], t["to"]) for t in bridged.summary.transfers] == [
        ("park", "102", "102", "103"),
        ("park", "103", "103", "104"),
    ]


async def test_a_full_lot_refuses_the_phones_park_and_the_call_goes_on(
    engine: Engine, tmp_path: Path
) -> None:
    """One slot, taken: #72 from 104 does nothing (103 and 104 still exchange keys after it),
    and 104's REFER to 700 gets 503 (baresip then ends its call itself)."""
    engine.switchboard.parking = ParkingLot(count=1)
    async with (
        phone(engine, "101", tmp_path) as a101,
        phone(engine, "102", tmp_path) as a102,
        phone(engine, "103", tmp_path) as a103,
        phone(engine, "104", tmp_path) as a104,
    ):
        await connect(a101, a102)
        first = next(iter(engine.switchboard.active.values()))
        assert await park(engine, first.a.call_id) == "701"
        await a102.wait_event("CALL_CLOSED", timeout=10)
        await connect(a103, a104)
        second = next(b for b in engine.switchboard.active.values() if b is not first)
        await a104.send_dtmf("#72")
        await a103.send_dtmf("1")  # after #72: the call goes on
        await a104.wait_event("CALL_DTMF_START", timeout=5)
        assert engine.switchboard.parking.parked() == {"701": first.a.call_id}
        assert second.b is not None and second.callee == "104" and not second.transferring
        reply = await a104.command("transfer", f"sip:700@127.0.0.1:{engine.sip_port}")
        assert reply.get("ok") is not False, reply
        failed = await a104.wait_event("TRANSFER_FAILED", timeout=5)
        assert "503" in str(failed.get("param")), failed
        assert engine.switchboard.parking.parked() == {"701": first.a.call_id}
        await a103.wait_event("CALL_CLOSED", timeout=5)
        await a101.hangup()
    await calls_settled(engine)
