"""Transfers on real phones (baresip): a trunk customer answered by agent 103 is handed to 104,
by 103's own REFER (baresip's `transfer` command) or over the API. The customer hears 103's
tone, ringback while 104 rings, then 104's tone; one recording holds both agents on its agent
channel and the customer throughout; the calls row names both agents; the CRM outbox gets
call.transferred. The API also holds, resumes and hangs up a live call."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from callcenter.runtime import Engine
from pbx.b2bua import RINGBACK
from sip_test_env.audio import first_tone_time, read_wav, write_tone_wav
from sip_test_env.baresip import BaresipPeer
from sip_test_env.carrier import CARRIER_IP
from sip_test_env.ports import free_port
from sip_test_env.sipp import run_sipp, start_sipp_uas, write_inf_csv

from . import callfloor
from .callfloor import CUSTOMER, DID_103, bridged_call, call_in, customer, idle, phone, wait_for
from .conftest import ADMIN_KEY, api_url, crm_taking

pytestmark = pytest.mark.peers

SCENARIOS = Path(__file__).resolve().parent / "scenarios"


def floor_engine(pg_url: str, tmp_path: Path, **kwargs: Any) -> AbstractAsyncContextManager[Engine]:
    """The call floor's engine, with a CRM taking call.transferred (read from the outbox)."""
    return callfloor.floor_engine(pg_url, tmp_path, crm=crm_taking("call.transferred"), **kwargs)


CUSTOMER_HZ, HZ_103, HZ_104 = 600, 1000, 1400


@asynccontextmanager
async def _customer_talks_to_103(
    engine: Engine, tmp_path: Path, *, with_104: bool = True
) -> AsyncIterator[tuple[BaresipPeer, BaresipPeer, BaresipPeer | None, Any]]:
    """A trunk customer (600 Hz) answered by 103 (1000 Hz), 104 (1400 Hz) registered too:
    (customer, 103, 104, the bridged call)."""
    async with contextlib.AsyncExitStack() as stack:
        caller = await stack.enter_async_context(
            customer(tmp_path, write_tone_wav(tmp_path / "c.wav", CUSTOMER_HZ, 30.0))
        )
        a103 = await stack.enter_async_context(
            phone("103", engine, tmp_path, write_tone_wav(tmp_path / "3.wav", HZ_103, 30.0))
        )
        a104 = None
        if with_104:
            a104 = await stack.enter_async_context(
                phone("104", engine, tmp_path, write_tone_wav(tmp_path / "4.wav", HZ_104, 30.0))
            )
            await a104.wait_registered()
        await a103.wait_registered()
        await call_in(engine, caller, DID_103)
        await a103.wait_event("CALL_INCOMING", timeout=5)
        await a103.accept()
        await caller.wait_event("CALL_ESTABLISHED", timeout=5)
        yield caller, a103, a104, bridged_call(engine)


async def _hand_to_104(
    engine: Engine, bridged: Any, a103: BaresipPeer, a104: BaresipPeer, start: Any
) -> None:
    """103 talks to the customer 1.5 s, `start` transfers the call, 104 rings 1.5 s (the
    customer hears ringback) and answers, 103 is gone and 104 is bridged."""
    await asyncio.sleep(1.5)  # the customer talks to 103
    await start(engine, bridged, a103)
    await a104.wait_event("CALL_INCOMING", timeout=5)
    await asyncio.sleep(1.5)  # the customer hears ringback meanwhile
    await a104.accept()
    await a104.wait_event("CALL_ESTABLISHED", timeout=5)
    await a103.wait_event("CALL_CLOSED", timeout=5)
    await wait_for(lambda: bridged.callee == "104" and bridged.media is not None,
                   what="104 bridged")  # fmt: skip


async def _transfer(
    engine: Engine, tmp_path: Path, db: Any, start: Any
) -> tuple[Path, Path, dict[str, Any], str]:
    """Customer -> 103, then `start(engine, bridged, a103)` hands the call to 104, who answers
    after 1.5 s of ringing. Returns (what the customer heard, the recording, the row, Call-ID)."""
    async with _customer_talks_to_103(engine, tmp_path) as (caller, a103, a104, bridged):
        assert a104 is not None
        await _hand_to_104(engine, bridged, a103, a104, start)
        # The dashboard's row of the call names the new agent.
        await wait_for(
            lambda: engine.live.board.calls[bridged.a.call_id].callee == "104", what="dashboard"
        )
        await asyncio.sleep(1.5)  # the customer talks to 104
        await caller.hangup()
        await a104.wait_event("CALL_CLOSED", timeout=5)
        heard = caller.recorded_wav()
        await idle(engine)
    row = await _closed_row(db, bridged.a.call_id)
    assert row is not None
    return heard, Path(bridged.summary.recording or ""), dict(row), bridged.a.call_id


def _check(heard: Path, recording: Path, row: dict[str, Any]) -> None:
    rate, samples, _ = read_wav(heard)
    at_103 = first_tone_time(samples, HZ_103, rate)
    at_ring = first_tone_time(samples, RINGBACK[0], rate, min_ratio=0.3)
    at_104 = first_tone_time(samples, HZ_104, rate)
    assert at_103 is not None and at_ring is not None and at_104 is not None
    assert at_103 < at_ring < at_104, (at_103, at_ring, at_104)
    _check_recording(recording, HZ_103, HZ_104)
    assert [(t["from"], t["to"], t["result"]) for t in _chain(row, "104")] == [
        ("103", "104", "completed")
    ]


def _heard_in_order(heard: Path, *tones: float) -> None:
    """Each of `tones` is in what a phone heard, each first heard after the one before
    (ringback's first tone counts at a lower share of the frame's energy)."""
    rate, samples, _ = read_wav(heard)
    times = [
        first_tone_time(samples, hz, rate, min_ratio=0.3 if hz == RINGBACK[0] else 0.6)
        for hz in tones
    ]
    assert None not in times and times == sorted(times), dict(zip(tones, times, strict=True))


def _check_recording(recording: Path, first_hz: float, then_hz: float,
                     customer_hz: float = CUSTOMER_HZ) -> None:  # fmt: skip
    """One file: the customer channel throughout, the agent channel `first_hz` then
    `then_hz` (the agent who had the call, then the one it was transferred to)."""
    assert [p.name for p in recording.parent.glob("*.wav")] == [recording.name]
    rate, stereo, channels = read_wav(recording)
    assert channels == 2
    agent = stereo[:, 1].copy()
    before, after = first_tone_time(agent, first_hz, rate), first_tone_time(agent, then_hz, rate)
    assert before is not None and after is not None and before < after, (before, after)
    assert first_tone_time(stereo[:, 0].copy(), customer_hz, rate) is not None


async def _closed_row(db: Any, call_id: str) -> Any:
    """The call's row once it is closed (a queue journals its caller on its own task)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while True:
        row = await db.fetchrow(
            "SELECT * FROM calls WHERE call_id = $1 AND ended_at IS NOT NULL", call_id
        )
        if row is not None or loop.time() > deadline:
            assert row is not None, f"call {call_id} never closed"
            return row
        await asyncio.sleep(0.05)


def _chain(row: Any, agent: str, direction: str = "inbound") -> list[dict[str, Any]]:
    """The row of an answered call whose last agent is `agent`: its transfer chain."""
    assert (row["agent"], row["outcome"], row["direction"]) == (agent, "answered", direction)
    transfers = row["transfers"]
    return list(json.loads(transfers) if isinstance(transfers, str) else transfers)


async def _transferred_events(db: Any, row_id: int) -> list[dict[str, Any]]:
    """The call.transferred events of a call's row in the CRM outbox, in order."""
    events = await db.fetch(
        "SELECT payload FROM outbox WHERE event_type = 'call.transferred' AND aggregate = $1"
        " ORDER BY id",
        f"call/{row_id}",
    )
    return [dict(json.loads(e["payload"])) for e in events]


async def _outbox(db: Any, row_id: int) -> dict[str, Any]:
    """The call's one call.transferred event."""
    (event,) = await _transferred_events(db, row_id)
    return event


def _refer_to(user: str) -> Any:
    """A `start` for the helpers: 103's baresip transfers its call to `user` (its REFER)."""

    async def refer(engine: Engine, _bridged: Any, a103: BaresipPeer) -> None:
        reply = await a103.command("transfer", f"sip:{user}@127.0.0.1:{engine.sip_port}")
        assert reply.get("ok") is not False, reply

    return refer


def _admin() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_KEY}"})


def _api_transfer(
    http: aiohttp.ClientSession, to: str, refused: list[tuple[dict[str, str], int]] = ()
) -> Any:
    """A `start` for the helpers: the API refuses each of `refused` (body, status), then
    transfers the call to `to` (202, transferring)."""

    async def over_api(engine: Engine, bridged: Any, _a103: BaresipPeer) -> None:
        url = api_url(engine, f"/calls/{bridged.call_id}/transfer")
        for body, status in refused:
            async with http.post(url, json=body) as response:
                assert response.status == status, await response.text()
        async with http.post(url, json={"to": to}) as response:
            assert response.status == 202, await response.text()
            assert (await response.json())["state"] == "transferring"

    return over_api


async def test_blind_transfer_by_refer_from_a_baresip_phone(
    pg_url: str, tmp_path: Path, db: Any
) -> None:
    refer = _refer_to("104")
    async with floor_engine(pg_url, tmp_path) as engine:
        heard, recording, row, _ = await _transfer(engine, tmp_path, db, refer)
    _check(heard, recording, row)
    payload = await _outbox(db, row["id"])
    assert payload["transfer"]["by"] == "103" and payload["agent"] == "104"


async def test_blind_transfer_hold_and_hangup_over_the_api(
    pg_url: str, tmp_path: Path, db: Any
) -> None:
    async with (
        floor_engine(pg_url, tmp_path) as engine,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http,
    ):

        async def over_api(engine: Engine, bridged: Any, _a103: BaresipPeer) -> None:
            url = api_url(engine, f"/calls/{bridged.a.call_id}/transfer")
            async with http.post(url, json={"to": "nobody"}) as refused:
                assert refused.status == 404, await refused.text()
            async with http.post(url, json={"to": "104", "mode": "sideways"}) as bad:
                assert bad.status == 400
            async with http.post(url, json={"to": "104"}) as response:
                assert response.status == 202, await response.text()
                body = await response.json()
            assert body["state"] == "transferring"
            async with http.post(url, json={"to": "105"}) as again:
                assert again.status == 409  # one transfer at a time

        heard, recording, row, _ = await _transfer(engine, tmp_path, db, over_api)
        _check(heard, recording, row)
        payload = await _outbox(db, row["id"])
        assert payload["transfer"]["by"] == "api"
        async with http.post(api_url(engine, "/calls/no-such-call/hangup")) as gone:
            assert gone.status == 409


async def _consult_104_and_complete(
    http: aiohttp.ClientSession,
    engine: Engine,
    bridged: Any,
    a103: BaresipPeer,
    a104: BaresipPeer,
) -> None:
    """A warm transfer over the API: 103 consults 104 for 2.5 s (the API refuses to complete
    it early or by a wrong id), then completes it; 103 leaves and the customer talks to 104
    for 1.5 s."""
    await asyncio.sleep(1.0)
    url = api_url(engine, f"/calls/{bridged.call_id}/transfer")
    async with http.post(url, json={"to": "104", "mode": "warm"}) as response:
        assert response.status == 202, await response.text()
        tid = (await response.json())["transfer"]
    async with http.post(f"{url}/{tid}/complete") as early:
        assert early.status == 409  # still ringing: nothing to complete yet
    await a104.wait_event("CALL_INCOMING", timeout=5)
    await a104.accept()
    await wait_for(lambda: bridged.consulting == "104", what="consultation")
    await asyncio.sleep(2.5)  # 103 and 104 talk; the customer waits
    assert bridged.callee == "103"
    async with http.post(f"{url}/{tid + 1}/complete") as wrong:
        assert wrong.status == 409
    async with http.post(f"{url}/{tid}/complete") as done:
        assert done.status == 200, await done.text()
        assert (await done.json())["callee"] == "104"
    await a103.wait_event("CALL_CLOSED", timeout=5)
    await asyncio.sleep(1.5)


def _waited_without_the_consultation(heard: Path) -> None:
    """104 answered, then 103 consulted it for 2.5 s: the customer heard 104 only after
    that, and nothing of 103 meanwhile."""
    rate, samples, _ = read_wav(heard)
    at_waiting = first_tone_time(samples, RINGBACK[0], rate, min_ratio=0.3)
    at_104 = first_tone_time(samples, HZ_104, rate)
    assert at_waiting is not None and at_104 is not None
    assert at_104 - at_waiting > 2.0, (at_waiting, at_104)
    window = samples[round((at_waiting + 0.3) * rate) : round((at_104 - 0.1) * rate)]
    assert first_tone_time(window, HZ_103, rate) is None


async def test_warm_transfer_over_the_api_consults_without_the_customer(
    pg_url: str, tmp_path: Path, db: Any
) -> None:
    async with (
        floor_engine(pg_url, tmp_path) as engine,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http,
        _customer_talks_to_103(engine, tmp_path) as (caller, a103, a104, bridged),
    ):
        assert a104 is not None
        await _consult_104_and_complete(http, engine, bridged, a103, a104)
        await caller.hangup()
        await a104.wait_event("CALL_CLOSED", timeout=5)
        heard_by_customer, heard_by_104 = caller.recorded_wav(), a104.recorded_wav()
        await idle(engine)
    _waited_without_the_consultation(heard_by_customer)
    rate, samples, _ = read_wav(heard_by_104)
    at_consult, at_customer = (
        first_tone_time(samples, HZ_103, rate),
        first_tone_time(samples, CUSTOMER_HZ, rate),
    )
    assert at_consult is not None and at_customer is not None and at_consult < at_customer
    row = await _closed_row(db, bridged.a.call_id)
    transfers = row["transfers"]
    transfers = json.loads(transfers) if isinstance(transfers, str) else transfers
    assert row["agent"] == "104"
    assert [(t["from"], t["to"], t["mode"], t["result"]) for t in transfers] == [
        ("103", "104", "warm", "completed")
    ]


async def test_an_invite_with_replaces_from_sipp_takes_over_the_agents_dialog(
    pg_url: str, tmp_path: Path, db: Any
) -> None:
    """SIPp, authenticated as 104, sends an INVITE whose Replaces names the engine's dialog with
    103's phone (RFC 3891): 104 takes 103's place, 103 gets BYE, the customer stays."""
    async with (
        floor_engine(pg_url, tmp_path) as engine,
        _customer_talks_to_103(engine, tmp_path, with_104=False) as (caller, a103, _, bridged),
    ):
        assert bridged.b is not None and bridged.b.dialog is not None
        dialog = bridged.b.dialog
        auth = "[authentication username=104 password=pass104]"
        row = ("104", "103", "pass104", auth, dialog.call_id, dialog.local_tag, dialog.remote_tag)
        csv = write_inf_csv(tmp_path / "replaces.csv", [row])
        result = await run_sipp(
            SCENARIOS / "uac_replaces.xml",
            f"127.0.0.1:{engine.sip_port}",
            inf_csv=csv,
            duration_ms=2000,
            workdir=tmp_path / "sipp",
            timeout=20,
        )
        assert result.ok, result.summary()
        await a103.wait_event("CALL_CLOSED", timeout=5)
        await caller.wait_event("CALL_CLOSED", timeout=5)  # SIPp's BYE ended the call
        await idle(engine)
    row = await _closed_row(db, bridged.a.call_id)
    transfers = row["transfers"]
    transfers = json.loads(transfers) if isinstance(transfers, str) else transfers
    assert row["agent"] == "104" and row["hangup_cause"] == "callee-remote-bye"
    assert [(t["from"], t["to"], t["mode"]) for t in transfers] == [("103", "104", "replaces")]


async def test_attended_transfer_by_refer_with_replaces(
    pg_url: str, tmp_path: Path, db: Any
) -> None:
    """103 talks to a customer and, on a second call, to 104; the REFER of 103's attended
    transfer (SIPp sends it in 103's dialog with the engine: baresip 1.0 has no attended
    transfer command) names the 103-104 dialog in its Replaces: the customer and 104 are
    joined, both of 103's calls end, one recording and one row for the customer's call."""
    async with (
        floor_engine(pg_url, tmp_path) as engine,
        _customer_talks_to_103(engine, tmp_path) as (caller, a103, a104, customer_call),
    ):
        assert a104 is not None
        await a103.dial(f"sip:104@127.0.0.1:{engine.sip_port}")  # the consultation call
        await a104.wait_event("CALL_INCOMING", timeout=5)
        await a104.accept()
        await a104.wait_event("CALL_ESTABLISHED", timeout=5)
        consult = next(b for b in engine.switchboard.active.values() if b is not customer_call)
        await wait_for(lambda: consult.media is not None, what="consultation bridged")
        to_103, from_103 = customer_call.b.dialog, consult.a.dialog  # type: ignore[union-attr]
        assert to_103 is not None and from_103 is not None
        replaces = quote(
            f"{from_103.call_id};to-tag={from_103.local_tag};from-tag={from_103.remote_tag}",
            safe="",
        )
        refer_to = f"sip:104@127.0.0.1:{engine.sip_port}?Replaces={replaces}"
        csv = write_inf_csv(
            tmp_path / "refer.csv", [(to_103.remote_tag, to_103.local_tag, refer_to, "103")]
        )
        result = await run_sipp(
            SCENARIOS / "uac_refer_replaces.xml",
            f"127.0.0.1:{engine.sip_port}",
            inf_csv=csv,
            duration_ms=None,
            extra_args=["-cid_str", to_103.call_id],
            workdir=tmp_path / "sipp",
            timeout=20,
        )
        assert result.ok, result.summary()
        await a103.wait_event("CALL_CLOSED", timeout=5)
        await a103.wait_event("CALL_CLOSED", timeout=5)  # both of 103's calls end
        await wait_for(lambda: customer_call.callee == "104", what="104 joined")
        await asyncio.sleep(1.5)
        await caller.hangup()
        await a104.wait_event("CALL_CLOSED", timeout=5)
        heard = caller.recorded_wav()
        await idle(engine)
    rate, samples, _ = read_wav(heard)
    at_103, at_104 = first_tone_time(samples, HZ_103, rate), first_tone_time(samples, HZ_104, rate)
    assert at_103 is not None and at_104 is not None and at_103 < at_104
    row = await _closed_row(db, customer_call.a.call_id)
    transfers = row["transfers"]
    transfers = json.loads(transfers) if isinstance(transfers, str) else transfers
    assert row["agent"] == "104"
    assert [(t["from"], t["to"], t["mode"]) for t in transfers] == [("103", "104", "attended")]
    consult_row = await _closed_row(db, consult.a.call_id)
    assert consult_row["hangup_cause"] == "transferred"


async def _back_with_103(engine: Engine, caller: BaresipPeer, a103: BaresipPeer) -> Path:
    """103 and the customer talk again for 1.5 s, then the customer hangs up; what the
    customer heard (see _never_104_then_103)."""
    await asyncio.sleep(1.5)
    heard_from = caller.recorded_wav()
    await caller.hangup()
    await a103.wait_event("CALL_CLOSED", timeout=5)
    await idle(engine)
    return heard_from


def _never_104_then_103(heard: Path) -> None:
    rate, samples, _ = read_wav(heard)
    assert first_tone_time(samples, HZ_104, rate) is None  # the customer never heard 104
    assert first_tone_time(samples[-rate:], HZ_103, rate) is not None  # 103 in its last second


async def test_a_refused_transfer_and_a_cancelled_consultation_give_the_customer_back(
    pg_url: str, tmp_path: Path, db: Any
) -> None:
    """104 refuses a blind transfer (486): the customer is back with 103. A warm transfer
    103 cancels after consulting 104: 104 leaves, 103 and the customer talk again."""
    async with (
        floor_engine(pg_url, tmp_path) as engine,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http,
        _customer_talks_to_103(engine, tmp_path) as (caller, a103, a104, bridged),
    ):
        assert a104 is not None
        url = api_url(engine, f"/calls/{bridged.a.call_id}/transfer")
        async with http.post(url, json={"to": "105"}) as nobody:  # 105 has no phone
            assert nobody.status == 409, await nobody.text()
        async with http.post(url, json={"to": "104"}) as response:
            assert response.status == 202
        await a104.wait_event("CALL_INCOMING", timeout=5)
        await a104.hangup()  # busy
        await wait_for(lambda: not bridged.transferring and bridged.media is not None,
                       what="back to 103")  # fmt: skip
        assert bridged.callee == "103" and bridged.summary.transfers[-1]["result"] == "failed"
        async with http.post(url, json={"to": "104", "mode": "warm"}) as response:
            tid = (await response.json())["transfer"]
        await a104.wait_event("CALL_INCOMING", timeout=5)
        await a104.accept()
        await wait_for(lambda: bridged.consulting == "104", what="consultation")
        async with http.post(f"{url}/{tid}/cancel") as cancelled:
            assert cancelled.status == 200, await cancelled.text()
            assert (await cancelled.json())["callee"] == "103"
        await a104.wait_event("CALL_CLOSED", timeout=5)
        heard = await _back_with_103(engine, caller, a103)
    _never_104_then_103(heard)
    row = await _closed_row(db, bridged.a.call_id)
    assert row["agent"] == "103"
    # The row's chain keeps every attempt with how it went; only a completed transfer is a
    # call.transferred event (the CRM's agent never changed here).
    transfers = row["transfers"]
    transfers = json.loads(transfers) if isinstance(transfers, str) else transfers
    assert [(t["to"], t["result"], t.get("outcome")) for t in transfers] == [
        ("105", "failed", "unavailable"),
        ("104", "failed", "busy"),
        ("104", "cancelled", None),
    ]
    assert transfers[1]["status"] == 486
    assert not await _transferred_events(db, row["id"])


@pytest.mark.parametrize(
    ("target", "status", "outcome"),
    [("104", 486, "busy"), ("105", 480, "unavailable")],
    ids=["refused-after-ringing", "refused-at-once"],
)
async def test_a_failed_refer_rings_the_transferor_back(
    pg_url: str, tmp_path: Path, db: Any, target: str, status: int, outcome: str
) -> None:
    """103's REFER to 104, who refuses (486), or to 105, who has no phone (the REFER itself
    is refused, 480): 103's baresip gets TRANSFER_FAILED with that status and hangs up, so
    the engine rings 103 back: the customer, who heard ringback meanwhile, talks to 103
    again. The chain has the failed attempt and the ring-back."""
    async with (
        floor_engine(pg_url, tmp_path) as engine,
        _customer_talks_to_103(engine, tmp_path) as (caller, a103, a104, bridged),
    ):
        assert a104 is not None
        await asyncio.sleep(1.0)
        await _refer_to(target)(engine, bridged, a103)
        if target == "104":
            await a104.wait_event("CALL_INCOMING", timeout=5)
            await a104.hangup()  # 486
        failed = await a103.wait_event("TRANSFER_FAILED", timeout=5)
        assert str(status) in str(failed.get("param")), failed
        await a103.wait_event("CALL_INCOMING", timeout=10)  # rung back
        await a103.accept()
        await wait_for(lambda: bridged.media is not None and not bridged.transferring,
                       what="103 back")  # fmt: skip
        heard = await _back_with_103(engine, caller, a103)
    _never_104_then_103(heard)
    row = await _closed_row(db, bridged.call_id)
    chain = _chain(row, "103")
    assert [(t["to"], t["mode"], t["result"], t.get("outcome")) for t in chain] == [
        (target, "blind", "failed", outcome),
        ("103", "ring-back", "completed", None),
    ]


# -- into a queue ---------------------------------------------------------------------------

SALES_DID = "+12025550120"
MUSIC_HZ = 500


def _sales_queue(music: Path) -> str:
    """A `sales` queue of 104 on its own DID, with a tone as its music."""
    return f"""
[[queues]]
name = "sales"
members = ["104"]
member_timeout = 10
announce_every = 0
wrap_up = 0
music = "{music}"

[[dids]]
number = "{SALES_DID}"
trunk = "carrier"
route = "queue:sales"
"""


async def _into_queue(pg_url: str, tmp_path: Path, db: Any, start: Any) -> None:
    """Customer -> 103, then `start(engine, bridged, a103)` hands the caller to the `sales`
    queue, where it waits (music) until 104 logs in and answers. The caller heard 103, the
    music, then 104; one recording (customer throughout, agent channel 103 then 104); the
    row's chain names 103 -> 104 through the queue; call.transferred reached the outbox."""
    music = write_tone_wav(tmp_path / "music.wav", MUSIC_HZ, 3.0)
    async with (
        floor_engine(pg_url, tmp_path, extra=_sales_queue(music)) as engine,
        _customer_talks_to_103(engine, tmp_path) as (caller, a103, a104, bridged),
    ):
        assert a104 is not None
        sales = engine.switchboard.queues.queues["sales"]
        sales.log_out("104")  # the caller waits until 104 logs in
        await asyncio.sleep(1.5)  # the customer talks to 103
        await start(engine, bridged, a103)
        await a103.wait_event("CALL_CLOSED", timeout=5)
        await wait_for(lambda: len(sales.callers) == 1, what="the caller queued")
        assert bridged.a.state.value == "connected"  # the same leg, never hung up
        await asyncio.sleep(2.0)  # the music meanwhile
        engine.switchboard.queues.log_in("104", "sales", login=True)
        await a104.wait_event("CALL_INCOMING", timeout=5)
        await a104.accept()
        await a104.wait_event("CALL_ESTABLISHED", timeout=5)
        answered = engine.switchboard.active[bridged.a.call_id]
        await wait_for(lambda: answered.media is not None, what="104 bridged")
        await asyncio.sleep(1.5)  # the customer talks to 104
        await caller.hangup()
        await a104.wait_event("CALL_CLOSED", timeout=5)
        heard = caller.recorded_wav()
        await idle(engine)
        assert sales.stats.answered == 1
    _heard_in_order(heard, HZ_103, MUSIC_HZ, HZ_104)
    _check_recording(Path(bridged.summary.recording or ""), HZ_103, HZ_104)
    row = await _closed_row(db, bridged.a.call_id)
    assert [(t["from"], t["to"], t["queue"], t["result"]) for t in _chain(row, "104")] == [
        ("103", "104", "sales", "completed")
    ]
    assert await db.fetchval("SELECT count(*) FROM calls WHERE call_id = $1",
                             bridged.a.call_id) == 1  # fmt: skip
    payload = await _outbox(db, row["id"])
    assert payload["transfer"]["queue"] == "sales" and payload["agent"] == "104"


async def test_a_live_call_transferred_into_a_queue_over_the_api(
    pg_url: str, tmp_path: Path, db: Any
) -> None:
    refused = [({"to": "queue:nosuch"}, 404), ({"to": "queue:sales", "mode": "warm"}, 400)]
    async with _admin() as http:
        await _into_queue(pg_url, tmp_path, db, _api_transfer(http, "queue:sales", refused))


async def test_a_phone_refers_its_caller_to_the_queues_number(
    pg_url: str, tmp_path: Path, db: Any
) -> None:
    await _into_queue(pg_url, tmp_path, db, _refer_to(SALES_DID))


async def test_a_caller_who_hangs_up_in_the_queue_stays_an_answered_call(
    pg_url: str, tmp_path: Path, db: Any
) -> None:
    """The customer 103 sent to the queue hangs up while waiting: an abandoned caller for
    the queue, an answered call of 103's in the row, whose chain says the transfer failed
    (queue-abandoned); no call.transferred."""
    music = write_tone_wav(tmp_path / "music.wav", MUSIC_HZ, 3.0)
    async with (
        floor_engine(pg_url, tmp_path, extra=_sales_queue(music)) as engine,
        _admin() as http,
        _customer_talks_to_103(engine, tmp_path, with_104=False) as (caller, a103, _, bridged),
    ):
        sales = engine.switchboard.queues.queues["sales"]
        sales.log_out("104")
        await asyncio.sleep(1.0)
        await _api_transfer(http, "queue:sales")(engine, bridged, a103)
        await a103.wait_event("CALL_CLOSED", timeout=5)
        await wait_for(lambda: len(sales.callers) == 1, what="the caller queued")
        await caller.hangup()
        await idle(engine)
        await wait_for(lambda: not sales.callers, what="the queue empty")
        assert sales.stats.abandoned == 1
    row = await _closed_row(db, bridged.call_id)
    assert row["hangup_cause"] == "queue-abandoned"
    assert [(t["from"], t["to"], t["result"], t["outcome"]) for t in _chain(row, "103")] == [
        ("103", "queue:sales", "failed", "queue-abandoned")
    ]
    assert not await _transferred_events(db, row["id"])


async def test_an_agents_call_out_is_transferred_into_a_queue(
    pg_url: str, tmp_path: Path, db: Any
) -> None:
    """103 calls a customer out through the trunk and hands the customer to the `sales`
    queue over the API: the customer waits (music) and 104 answers, seeing the customer's
    number; the outbound row's chain names 103 -> 104 through the queue."""
    music = write_tone_wav(tmp_path / "music.wav", MUSIC_HZ, 3.0)
    sip_port = free_port("both")
    async with contextlib.AsyncExitStack() as stack:
        engine = await stack.enter_async_context(
            floor_engine(
                pg_url, tmp_path, outbound=f"{CARRIER_IP}:{sip_port}", extra=_sales_queue(music)
            )
        )
        http = await stack.enter_async_context(_admin())
        tone = write_tone_wav(tmp_path / "c.wav", CUSTOMER_HZ, 30.0)
        callee = await stack.enter_async_context(
            customer(tmp_path, tone, sip_port=sip_port, answermode="auto")
        )
        a103 = await stack.enter_async_context(phone("103", engine, tmp_path))
        a104 = await stack.enter_async_context(phone("104", engine, tmp_path))
        await a103.wait_registered()
        await a104.wait_registered()
        await a103.dial(f"sip:{CUSTOMER}@127.0.0.1:{engine.sip_port}")
        await a103.wait_event("CALL_ESTABLISHED", timeout=10)
        bridged = bridged_call(engine)
        await asyncio.sleep(1.0)
        sales = engine.switchboard.queues.queues["sales"]
        sales.log_out("104")  # the customer waits until 104 logs in
        await _api_transfer(http, "queue:sales")(engine, bridged, a103)
        await a103.wait_event("CALL_CLOSED", timeout=5)
        await wait_for(lambda: len(sales.callers) == 1, what="the customer queued")
        await asyncio.sleep(1.5)  # the music meanwhile
        engine.switchboard.queues.log_in("104", "sales", login=True)
        incoming = await a104.wait_event("CALL_INCOMING", timeout=10)
        assert CUSTOMER in str(incoming.get("peeruri")), incoming
        await a104.accept()
        await a104.wait_event("CALL_ESTABLISHED", timeout=5)
        await asyncio.sleep(1.0)
        await a104.hangup()
        await callee.wait_event("CALL_CLOSED", timeout=5)
        heard = callee.recorded_wav()
        await idle(engine)
    _heard_in_order(heard, MUSIC_HZ)
    row = await _closed_row(db, bridged.call_id)
    chain = _chain(row, "104", "outbound")
    assert [(t["from"], t["to"], t["queue"], t["result"]) for t in chain] == [
        ("103", "104", "sales", "completed")
    ]


# -- from the caller's side -----------------------------------------------------------------


@asynccontextmanager
async def _agent_talks_to_customer(
    engine: Engine, tmp_path: Path, sip_port: int
) -> AsyncIterator[tuple[BaresipPeer, BaresipPeer, BaresipPeer, Any]]:
    """Agent 103 (1000 Hz) dials a customer (600 Hz) through the trunk (the carrier: a
    baresip customer on `sip_port` that answers); 104 (1400 Hz) registered too: (customer,
    103, 104, the bridged call)."""
    async with contextlib.AsyncExitStack() as stack:
        tone = write_tone_wav(tmp_path / "c.wav", CUSTOMER_HZ, 30.0)
        callee = await stack.enter_async_context(
            customer(tmp_path, tone, sip_port=sip_port, answermode="auto")
        )
        a103 = await stack.enter_async_context(
            phone("103", engine, tmp_path, write_tone_wav(tmp_path / "3.wav", HZ_103, 30.0))
        )
        a104 = await stack.enter_async_context(
            phone("104", engine, tmp_path, write_tone_wav(tmp_path / "4.wav", HZ_104, 30.0))
        )
        await a103.wait_registered()
        await a104.wait_registered()
        await a103.dial(f"sip:{CUSTOMER}@127.0.0.1:{engine.sip_port}")
        await a103.wait_event("CALL_ESTABLISHED", timeout=10)
        bridged = bridged_call(engine)
        assert (bridged.caller, bridged.callee) == ("103", CUSTOMER)
        yield callee, a103, a104, bridged


async def _agent_calls_out(pg_url: str, tmp_path: Path, db: Any, start: Any) -> None:
    """103 calls a customer out, then `start(engine, bridged, a103)` hands the customer to
    104: 103's leg, the caller's, is the one replaced. The customer heard 103, ringback,
    then 104; one recording (customer channel throughout, agent channel 103 then 104); the
    row, outbound, names 104 and the chain 103 -> 104."""
    sip_port = free_port("both")
    async with (
        floor_engine(pg_url, tmp_path, outbound=f"{CARRIER_IP}:{sip_port}") as engine,
        _agent_talks_to_customer(engine, tmp_path, sip_port) as (callee, a103, a104, bridged),
    ):
        await _hand_to_104(engine, bridged, a103, a104, start)
        assert bridged.a.state.value == "connected"  # the customer's leg, never hung up
        await asyncio.sleep(1.5)  # the customer talks to 104
        await a104.hangup()
        await callee.wait_event("CALL_CLOSED", timeout=5)
        heard = callee.recorded_wav()
        await idle(engine)
    _heard_in_order(heard, HZ_103, RINGBACK[0], HZ_104)
    _check_recording(Path(bridged.summary.recording or ""), HZ_103, HZ_104)
    row = await _closed_row(db, bridged.call_id)
    assert row["to_number"] == CUSTOMER
    assert [(t["from"], t["to"], t["result"]) for t in _chain(row, "104", "outbound")] == [
        ("103", "104", "completed")
    ]
    assert row["hangup_cause"] == "caller-remote-bye"  # 104 hung up: the agents' side
    payload = await _outbox(db, row["id"])
    assert payload["agent"] == "104"


async def test_the_agent_who_placed_the_call_transfers_it_by_refer(
    pg_url: str, tmp_path: Path, db: Any
) -> None:
    await _agent_calls_out(pg_url, tmp_path, db, _refer_to("104"))


async def test_an_agents_call_out_is_transferred_over_the_api(
    pg_url: str, tmp_path: Path, db: Any
) -> None:
    async with _admin() as http:
        await _agent_calls_out(pg_url, tmp_path, db, _api_transfer(http, "104"))


async def test_a_warm_transfer_of_an_agents_call_out_over_the_api(
    pg_url: str, tmp_path: Path, db: Any
) -> None:
    """103 calls a customer out and consults 104 over the API (warm): the customer waits
    and hears none of the consultation; completed, the customer talks to 104."""
    sip_port = free_port("both")
    async with (
        floor_engine(pg_url, tmp_path, outbound=f"{CARRIER_IP}:{sip_port}") as engine,
        _admin() as http,
        _agent_talks_to_customer(engine, tmp_path, sip_port) as (callee, a103, a104, bridged),
    ):
        await _consult_104_and_complete(http, engine, bridged, a103, a104)
        await a104.hangup()
        await callee.wait_event("CALL_CLOSED", timeout=5)
        heard = callee.recorded_wav()
        await idle(engine)
    _waited_without_the_consultation(heard)
    row = await _closed_row(db, bridged.call_id)
    assert [(t["from"], t["to"], t["mode"]) for t in _chain(row, "104", "outbound")] == [
        ("103", "104", "warm")
    ]


async def test_an_agent_who_called_a_colleague_transfers_the_colleague_by_refer(
    pg_url: str, tmp_path: Path, db: Any
) -> None:
    """103 calls 104, then 103's REFER sends 104 to 105: 104's leg stays, 103's is replaced
    by 105's; 104 hears 103, then 105."""
    hz_105 = 1800
    async with contextlib.AsyncExitStack() as stack:
        engine = await stack.enter_async_context(floor_engine(pg_url, tmp_path))
        peers = {}
        for ext, hz in (("103", HZ_103), ("104", HZ_104), ("105", hz_105)):
            tone = write_tone_wav(tmp_path / f"{ext}.wav", hz, 30.0)
            peers[ext] = await stack.enter_async_context(phone(ext, engine, tmp_path, tone))
            await peers[ext].wait_registered()
        a103, a104, a105 = peers["103"], peers["104"], peers["105"]
        await a103.dial(f"sip:104@127.0.0.1:{engine.sip_port}")
        await a104.wait_event("CALL_INCOMING", timeout=5)
        await a104.accept()
        await a103.wait_event("CALL_ESTABLISHED", timeout=5)
        bridged = bridged_call(engine)
        await asyncio.sleep(1.0)
        await _refer_to("105")(engine, bridged, a103)
        await a105.wait_event("CALL_INCOMING", timeout=5)
        await a105.accept()
        await a103.wait_event("CALL_CLOSED", timeout=5)
        await wait_for(lambda: bridged.callee == "105" and bridged.media is not None,
                       what="105 bridged")  # fmt: skip
        await asyncio.sleep(1.0)
        await a104.hangup()
        await a105.wait_event("CALL_CLOSED", timeout=5)
        heard = a104.recorded_wav()
        await idle(engine)
    _heard_in_order(heard, HZ_103, hz_105)
    row = await _closed_row(db, bridged.call_id)
    assert [(t["from"], t["to"], t["by"]) for t in _chain(row, "105", "internal")] == [
        ("103", "105", "103")
    ]


# -- to an external number through a trunk ---------------------------------------------------

EXTERNAL = "+12125550199"


async def _out_through_the_trunk(pg_url: str, tmp_path: Path, db: Any, start: Any) -> None:
    """Customer -> 103, then `start(engine, bridged, a103)` transfers the customer to an
    external number: the carrier is a SIPp UAS that answers and echoes the RTP it gets. The
    customer hears 103, then its own tone back from the far end; one recording (the agent
    channel has 103, then the far end's echo of the customer); the row names the number."""
    far_end = start_sipp_uas(
        "uas.xml", port=free_port("both"), service="far", extra_args=["-rtp_echo"],
        workdir=tmp_path / "uas",
    )  # fmt: skip
    async with far_end as uas:
        async with (
            floor_engine(pg_url, tmp_path, outbound=uas.uri_host) as engine,
            _customer_talks_to_103(engine, tmp_path, with_104=False) as (caller, a103, _, bridged),
        ):
            await asyncio.sleep(1.5)  # the customer talks to 103
            await start(engine, bridged, a103)
            await a103.wait_event("CALL_CLOSED", timeout=5)
            await wait_for(lambda: bridged.callee == EXTERNAL and bridged.media is not None,
                           what="the number bridged")  # fmt: skip
            await asyncio.sleep(2.0)  # the customer talks to the far end
            await caller.hangup()
            heard = caller.recorded_wav()
            await idle(engine)
        result = await uas.stop()
    assert result.successful >= 1, result.summary()
    _heard_in_order(heard, HZ_103, CUSTOMER_HZ)  # then its own tone, echoed
    _check_recording(Path(bridged.summary.recording or ""), HZ_103, CUSTOMER_HZ)
    row = await _closed_row(db, bridged.call_id)
    assert [(t["from"], t["to"], t["result"]) for t in _chain(row, EXTERNAL)] == [
        ("103", EXTERNAL, "completed")
    ]
    payload = await _outbox(db, row["id"])
    assert payload["transfer"]["to"] == EXTERNAL


async def test_a_blind_transfer_over_the_api_to_an_external_number(
    pg_url: str, tmp_path: Path, db: Any
) -> None:
    async with _admin() as http:
        await _out_through_the_trunk(pg_url, tmp_path, db, _api_transfer(http, EXTERNAL))


async def test_a_phone_refers_its_caller_to_an_external_number(
    pg_url: str, tmp_path: Path, db: Any
) -> None:
    await _out_through_the_trunk(pg_url, tmp_path, db, _refer_to(EXTERNAL))
