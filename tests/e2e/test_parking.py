"""Parking (issue 14, part 5) with baresip phones: 102 talks to 101; the API parks the call
(101 hears music, 102 hears the slot and is hung up); 103 dials *71 and the slot and talks to
101 on the same call (one calls row, the park in its transfers). Left parked too long, the
call rings its parker back."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import asyncpg
import pytest

from callcenter.runtime import Engine
from sip_test_env.baresip import BaresipPeer

from .conftest import api_url, bearer, connect, registrar_of
from .test_trunk import _idle, _poll

pytestmark = pytest.mark.peers


def phone(engine: Engine, ext: str, workdir: Path) -> BaresipPeer:
    return BaresipPeer(
        ext, workdir=workdir / ext, registrar=registrar_of(engine), password=f"pass{ext}"
    )


async def park(engine: Engine, call_id: str) -> str:
    async with aiohttp.ClientSession() as http:
        url = api_url(engine, f"/calls/{call_id}/park")
        async with http.post(url, headers=bearer()) as r:
            assert r.status == 200, await r.text()
            return str((await r.json())["slot"])


async def test_park_and_retrieve_from_another_phone(
    engine: Engine, tmp_path: Path, db: asyncpg.Connection
) -> None:
    async with (
        phone(engine, "101", tmp_path) as a101,
        phone(engine, "102", tmp_path) as a102,
        phone(engine, "103", tmp_path) as a103,
    ):
        await a103.wait_registered()
        await connect(a101, a102)
        bridged = next(iter(engine.switchboard.active.values()))
        slot = await park(engine, bridged.a.call_id)
        assert slot == "701"
        await a102.wait_event("CALL_CLOSED", timeout=10)  # after hearing the slot
        assert not a101.events_of("CALL_CLOSED")
        assert engine.switchboard.parking.parked() == {"701": bridged.a.call_id}
        assert not engine.switchboard.busy("102")  # the parker is free meanwhile
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
        await a103.hangup()
        await a101.wait_event("CALL_CLOSED", timeout=5)
    await _idle(engine)
    row = await _poll(
        db, "SELECT * FROM calls WHERE call_id = $1 AND ended_at IS NOT NULL", bridged.a.call_id
    )
    assert (row["from_number"], row["agent"], row["outcome"]) == ("101", "103", "answered")


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
    await _idle(engine)
