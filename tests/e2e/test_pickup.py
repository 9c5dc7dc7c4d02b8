"""Call pickup on real phones: 104 takes a call ringing 103 with *8 or **103; the ringing phone
gets CANCEL, tones pass both ways, the calls row names 104, the CRM outbox gets call.pickup.
A non-member's **103 is refused and changes nothing; *8 with nothing ringing gets a tone."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pbx import CallSummary
from sip_test_env.audio import band_energy_db, first_tone_time, read_wav, write_tone_wav
from sip_test_env.carrier import CARRIER_IP
from sip_test_env.ports import free_port
from telephony.call import Answered

from .callfloor import (
    CUSTOMER,
    DID_103,
    DID_GROUP,
    bridged_call,
    call_in,
    customer,
    floor_engine,
    idle,
    phone,
)

pytestmark = pytest.mark.peers


async def _pickup_and_talk(
    engine, tmp_path: Path, db, *, did: str, code: str, ringing: tuple[str, ...]
) -> None:
    tone_c = write_tone_wav(tmp_path / "600.wav", 600, 30.0)
    tone_p = write_tone_wav(tmp_path / "1000.wav", 1000, 30.0)
    async with (
        customer(tmp_path, tone_c) as caller,
        phone("104", engine, tmp_path, tone_p) as picker,
    ):
        rung = [phone(ext, engine, tmp_path) for ext in ringing]
        for p in rung:
            await p.start()
        try:
            for p in (picker, *rung):
                await p.wait_registered()
            await call_in(engine, caller, did)
            for p in rung:
                await p.wait_event("CALL_INCOMING", timeout=5)
            await picker.dial(code)
            await picker.wait_event("CALL_ESTABLISHED", timeout=5)
            for p in rung:  # every ringing phone got CANCEL
                closed = await p.wait_event("CALL_CLOSED", timeout=5)
                assert "established" not in str(closed).lower()
            bridged = bridged_call(engine)
            assert bridged.callee == "104" and bridged.summary.callee == "104"
            await asyncio.sleep(2.5)
            await caller.hangup()
            await picker.wait_event("CALL_CLOSED", timeout=5)
        finally:
            for p in rung:
                await p.stop()
        rate, heard_by_picker, _ = read_wav(picker.recorded_wav())
        rate2, heard_by_customer, _ = read_wav(caller.recorded_wav())
    at_picker = first_tone_time(heard_by_picker, 600, rate)
    at_customer = first_tone_time(heard_by_customer, 1000, rate2)
    assert at_picker is not None and at_picker < 1.0, at_picker
    assert at_customer is not None and at_customer < 1.0, at_customer
    await idle(engine)
    row = await db.fetchrow("SELECT * FROM calls WHERE call_id = $1", bridged.a.call_id)
    assert (row["agent"], row["outcome"], row["direction"]) == ("104", "answered", "inbound")
    # The recording names the picker too: the agent channel holds 104's tone.
    rate, stereo, _ = read_wav(Path(bridged.summary.recording or ""))
    assert first_tone_time(stereo[:, 1].copy(), 1000, rate) is not None
    assert first_tone_time(stereo[:, 0].copy(), 600, rate) is not None
    event = await db.fetchrow(
        "SELECT * FROM outbox WHERE event_type = 'call.pickup' AND aggregate = $1",
        f"call/{row['id']}",
    )
    assert event is not None
    payload = json.loads(event["payload"])
    assert (payload["picker"], payload["picked_from"], payload["id"]) == (
        "104",
        ringing[0],
        row["id"],
    )


async def test_group_pickup_of_a_trunk_call(pg_url: str, tmp_path: Path, db) -> None:
    async with floor_engine(pg_url, tmp_path) as engine:
        await _pickup_and_talk(engine, tmp_path, db, did=DID_103, code="*8", ringing=("103",))


async def test_directed_pickup_of_a_ring_group_call(pg_url: str, tmp_path: Path, db) -> None:
    async with floor_engine(pg_url, tmp_path) as engine:
        await _pickup_and_talk(
            engine, tmp_path, db, did=DID_GROUP, code="**103", ringing=("103", "105")
        )


async def test_directed_pickup_of_an_agent_to_agent_call(pg_url: str, tmp_path: Path, db) -> None:
    async with (
        floor_engine(pg_url, tmp_path) as engine,
        phone("101", engine, tmp_path, write_tone_wav(tmp_path / "6.wav", 600, 30.0)) as a101,
        phone("103", engine, tmp_path) as a103,
        phone("104", engine, tmp_path, write_tone_wav(tmp_path / "1k.wav", 1000, 30.0)) as a104,
    ):
        for p in (a101, a103, a104):
            await p.wait_registered()
        await a101.dial("103")
        await a103.wait_event("CALL_INCOMING", timeout=5)
        await a104.dial("**103")
        await a104.wait_event("CALL_ESTABLISHED", timeout=5)
        await a101.wait_event("CALL_ESTABLISHED", timeout=5)
        await a103.wait_event("CALL_CLOSED", timeout=5)
        bridged = bridged_call(engine)
        assert bridged.parties == ("101", "104")
        await asyncio.sleep(2.0)
        await a104.hangup()
        await a101.wait_event("CALL_CLOSED", timeout=5)
        rate, heard_by_101, _ = read_wav(a101.recorded_wav())
        rate2, heard_by_104, _ = read_wav(a104.recorded_wav())
        assert first_tone_time(heard_by_101, 1000, rate) is not None
        assert first_tone_time(heard_by_104, 600, rate2) is not None
        await idle(engine)
    row = await db.fetchrow("SELECT * FROM calls WHERE call_id = $1", bridged.a.call_id)
    assert (row["agent"], row["outcome"], row["to_number"]) == ("104", "answered", "103")


async def test_pickup_refused_or_empty_changes_nothing(pg_url: str, tmp_path: Path, db) -> None:
    async with (
        floor_engine(pg_url, tmp_path) as engine,
        customer(tmp_path) as caller,
        phone("102", engine, tmp_path) as outsider,
        phone("103", engine, tmp_path) as a103,
        phone("104", engine, tmp_path) as a104,
    ):
        for p in (outsider, a103, a104):
            await p.wait_registered()
        before = await db.fetchval("SELECT count(*) FROM calls")
        # Nothing rings: *8 is answered with a fast busy tone, then BYE.
        await a104.dial("*8")
        await a104.wait_event("CALL_ESTABLISHED", timeout=5)
        await a104.wait_event("CALL_CLOSED", timeout=5)
        rate, heard, _ = read_wav(a104.recorded_wav())
        assert first_tone_time(heard, 480, rate, min_ratio=0.3) is not None
        # 102 shares no pickup group with 103: **103 is refused with 403 while 103 rings on.
        await call_in(engine, caller)
        await a103.wait_event("CALL_INCOMING", timeout=5)
        await outsider.dial("**103")
        closed = await outsider.wait_event("CALL_CLOSED", timeout=5)
        assert "403" in str(closed), closed
        assert not outsider.events_of("CALL_ESTABLISHED")
        ringing = next(iter(engine.switchboard.active.values()))
        assert ringing.ringing == {"103"} and ringing.b is None
        await a103.accept()
        await caller.wait_event("CALL_ESTABLISHED", timeout=5)
        assert bridged_call(engine).callee == "103"
        await caller.hangup()
        await a103.wait_event("CALL_CLOSED", timeout=5)
        await idle(engine)
    after = await db.fetchval("SELECT count(*) FROM calls")
    assert after == before + 1  # the customer's call; the refused codes left no row
    assert await db.fetchval("SELECT count(*) FROM call_pickups WHERE picker = '102'") == 0


async def test_pickup_and_barge_on_a_dialer_call(pg_url: str, tmp_path: Path, db) -> None:
    """The dialer's way: a customer answers an originated call, then it rings an agent (103);
    104 picks it up with *8, and supervisor 191 barges in on 104 with *3104."""
    tone_c = write_tone_wav(tmp_path / "600.wav", 600, 30.0)
    tone_p = write_tone_wav(tmp_path / "1000.wav", 1000, 30.0)
    tone_s = write_tone_wav(tmp_path / "1500.wav", 1500, 30.0)
    sip_port = free_port("both")
    async with (
        floor_engine(pg_url, tmp_path, outbound=f"{CARRIER_IP}:{sip_port}") as engine,
        customer(tmp_path, tone_c, sip_port=sip_port, answermode="auto") as lead,
        phone("103", engine, tmp_path) as a103,
        phone("104", engine, tmp_path, tone_p) as a104,
        phone("191", engine, tmp_path, tone_s) as sup,
    ):
        for p in (a103, a104, sup):
            await p.wait_registered()
        leg = await engine.switchboard.originate(CUSTOMER)
        while not isinstance(await leg.next_event(5), Answered):
            pass
        summary = CallSummary(leg.call_id, "campaign", CUSTOMER, datetime.now(UTC),
                              direction="outbound", customer=CUSTOMER)  # fmt: skip
        engine.switchboard.announce(summary)
        engine.switchboard.connect(leg, ["103"], summary=summary, timeout=10)
        await a103.wait_event("CALL_INCOMING", timeout=5)
        await a104.dial("*8")
        await a104.wait_event("CALL_ESTABLISHED", timeout=5)
        await a103.wait_event("CALL_CLOSED", timeout=5)
        bridged = bridged_call(engine)
        assert bridged.callee == "104"
        await asyncio.sleep(1.5)
        await sup.dial("*3104")
        await sup.wait_event("CALL_ESTABLISHED", timeout=5)
        await asyncio.sleep(2.5)
        await sup.hangup()
        await asyncio.sleep(0.3)
        await a104.hangup()
        await lead.wait_event("CALL_CLOSED", timeout=5)
        await idle(engine)
    _, heard_by_customer, _ = read_wav(lead.recorded_wav())
    _, heard_by_104, _ = read_wav(a104.recorded_wav())
    _, heard_by_sup, _ = read_wav(sup.recorded_wav())
    assert first_tone_time(heard_by_customer, 1000, 8000) is not None
    assert band_energy_db(heard_by_customer, 1500, 8000) > -35  # barge: the customer hears her
    assert first_tone_time(heard_by_104, 600, 8000) is not None
    assert band_energy_db(heard_by_sup, 600, 8000) > -30
    assert band_energy_db(heard_by_sup, 1000, 8000) > -30
    row = await db.fetchrow("SELECT * FROM calls WHERE call_id = $1", leg.call_id)
    assert (row["agent"], row["outcome"], row["direction"]) == ("104", "answered", "outbound")
    audit = await db.fetch(
        "SELECT action, mode, agent FROM monitor_audit WHERE call_id = $1 ORDER BY id", leg.call_id
    )
    assert [tuple(r) for r in audit] == [("started", "barge", "104"), ("ended", "barge", "104")]
