"""Customers call the company's number through the carrier trunk: ring groups, missed calls with
the auto-reply prompt, presence feature codes, refusals of calls that are not ours; agents call
out through the trunk."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from callcenter.runtime import Engine, start_engine
from pbx import BridgedCall
from sip_test_env import carrier
from sip_test_env.audio import first_tone_time, normalized_xcorr, read_wav, write_tone_wav
from sip_test_env.baresip import BaresipPeer
from sip_test_env.crm import WebhookReceiver
from sip_test_env.ports import free_port

from .conftest import calls_settled, crm_taking, engine_config, registrar_of

pytestmark = pytest.mark.peers

ROOT = Path(__file__).resolve().parents[2]
PROMPT = ROOT / "callcenter" / "prompts" / "we-will-call-you-back.wav"
CARRIER_IP = carrier.CARRIER_IP  # "another machine": agents live on 127.0.0.1
DID = "+12025550100"
CUSTOMER = "+12125551234"
"""Numbers are E.164 in the engine (the journal, contacts); the carrier sends these as they are."""


def trunk_config(
    carrier_port: int, strategy: str = "ringall", hours: str = "", record: bool = True
) -> str:
    return f"""
[[trunks]]
name = "carrier"
allow_from = ["{CARRIER_IP}"]
outbound = "127.0.0.1:{carrier_port}"
caller_id = "{DID}"

[[ring_groups]]
name = "sales"
members = ["101", "102", "103"]
strategy = "{strategy}"
ring_timeout = 4
member_timeout = 2
owner = "103"
auto_reply = "{PROMPT}"
{hours}

[[dids]]
number = "{DID}"
trunk = "carrier"
route = "ringgroup:sales"
label = "Sales"
record = {"true" if record else "false"}
"""


@pytest.fixture
def carrier_port() -> int:
    return free_port("both")


@pytest.fixture
async def trunk_engine(pg_url: str, tmp_path: Path, carrier_port: int) -> AsyncIterator[Engine]:
    crm = crm_taking("task.created", "task.updated")  # (read from the outbox)
    config = engine_config(extra=trunk_config(carrier_port), crm=crm)
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        yield engine
    finally:
        await engine.stop()


def customer(tmp_path: Path, tone: Path | None = None) -> BaresipPeer:
    return carrier.customer(CUSTOMER, workdir=tmp_path, audio_source=tone)


def agent(ext: str, engine: Engine, tmp_path: Path, tone: Path | None = None) -> BaresipPeer:
    return BaresipPeer(
        ext,
        workdir=tmp_path,
        registrar=registrar_of(engine),
        password=f"pass{ext}",
        audio_source=tone,
    )


@contextlib.asynccontextmanager
async def group_call(
    engine: Engine, tmp_path: Path
) -> AsyncIterator[tuple[BaresipPeer, BaresipPeer, BaresipPeer]]:
    """The customer dials the DID of the ring group while agents 101 and 102 are registered:
    (customer, 101, 102), the call placed, nobody answered yet."""
    async with (
        customer(tmp_path) as caller,
        agent("101", engine, tmp_path) as a101,
        agent("102", engine, tmp_path) as a102,
    ):
        await a101.wait_registered()
        await a102.wait_registered()
        await caller.dial(carrier.did_uri(DID, engine.sip_port))
        yield caller, a101, a102


async def answered_by(phone: BaresipPeer, caller: BaresipPeer, engine: Engine) -> BridgedCall:
    """The customer dials the DID and the agent's `phone` answers: the call, bridged."""
    await phone.wait_registered()
    await caller.dial(carrier.did_uri(DID, engine.sip_port))
    await phone.wait_event("CALL_INCOMING", timeout=5)
    await phone.accept()
    await caller.wait_event("CALL_ESTABLISHED", timeout=5)
    return next(iter(engine.switchboard.active.values()))


async def test_ring_group_call_answered_by_one_agent(
    trunk_engine: Engine, tmp_path: Path, db
) -> None:
    customer_tone = write_tone_wav(tmp_path / "600.wav", 600, 10.0)
    agent_tone = write_tone_wav(tmp_path / "1000.wav", 1000, 10.0)
    async with (
        customer(tmp_path, customer_tone) as caller,
        agent("101", trunk_engine, tmp_path) as a101,
        agent("102", trunk_engine, tmp_path, agent_tone) as a102,
    ):
        await a101.wait_registered()
        await a102.wait_registered()
        await caller.dial(carrier.did_uri(DID, trunk_engine.sip_port))
        incoming = await a101.wait_event("CALL_INCOMING", timeout=5)
        await a102.wait_event("CALL_INCOMING", timeout=5)
        assert f"sip:{CUSTOMER}@" in str(incoming.get("peeruri", "")) or CUSTOMER in str(incoming)
        await a102.accept()
        await caller.wait_event("CALL_ESTABLISHED", timeout=5)
        await a101.wait_event("CALL_CLOSED", timeout=5)  # the other phone stops ringing
        bridged = next(iter(trunk_engine.switchboard.active.values()))
        assert bridged.callee == "102"
        await asyncio.sleep(2.0)
        await caller.hangup()
        await a102.wait_event("CALL_CLOSED", timeout=5)
        rate, heard_by_agent, _ = read_wav(a102.recorded_wav())
        rate2, heard_by_customer, _ = read_wav(caller.recorded_wav())
    at_agent = first_tone_time(heard_by_agent, 600, rate)
    at_customer = first_tone_time(heard_by_customer, 1000, rate2)
    assert at_agent is not None and at_agent < 1.0
    assert at_customer is not None and at_customer < 1.0
    await calls_settled(trunk_engine)
    # The journal closes the row after the call (a write of its own): wait for it.
    row = await _poll(
        db, "SELECT * FROM calls WHERE call_id = $1 AND ended_at IS NOT NULL", bridged.a.call_id
    )
    assert (
        row["direction"], row["from_number"], row["to_number"], row["did"], row["ring_group"],
        row["agent"], row["outcome"], row["sip_status"],
    ) == ("inbound", CUSTOMER, DID, DID, "sales", "102", "answered", 200)  # fmt: skip
    assert row["answered_at"] is not None and row["ended_at"] > row["answered_at"]
    assert row["talk_seconds"] > 1.5 and row["contact_id"] is not None
    assert row["recording_path"] and row["analytics"]
    # The stereo recording: the customer on the left, the agent on the right, nothing crossed.
    summary = bridged.summary
    assert summary.recording is not None and summary.analytics is not None
    rate, stereo, channels = read_wav(Path(summary.recording))
    assert (rate, channels) == (8000, 2)
    left, right = stereo[:, 0].copy(), stereo[:, 1].copy()
    assert (
        first_tone_time(left, 600, rate) is not None and first_tone_time(left, 1000, rate) is None
    )
    assert (
        first_tone_time(right, 1000, rate) is not None and first_tone_time(right, 600, rate) is None
    )
    assert abs(len(left) / rate - summary.talk_seconds) < 0.5
    assert abs(summary.analytics["duration_seconds"] - len(left) / rate) < 0.05


async def test_missed_call_auto_reply_and_callback_task(
    trunk_engine: Engine, tmp_path: Path, db
) -> None:
    """Nobody answers: the caller hears the auto-reply; within 1 s of the hang-up the group
    owner (the contact has no manager yet) has a callback task; a second missed call from the
    same number updates that task instead of adding one."""
    phone = CUSTOMER
    await db.execute(
        "DELETE FROM tasks WHERE contact_id IN (SELECT id FROM contacts WHERE phone = $1)", phone
    )
    async with (
        customer(tmp_path) as caller,
        agent("101", trunk_engine, tmp_path) as a101,
    ):
        await a101.wait_registered()
        await caller.dial(carrier.did_uri(DID, trunk_engine.sip_port))
        await a101.wait_event("CALL_INCOMING", timeout=5)
        # Nobody answers within the group's 4 s: the caller is answered with the prompt.
        await caller.wait_event("CALL_ESTABLISHED", timeout=8)
        await a101.wait_event("CALL_CLOSED", timeout=5)
        await caller.wait_event("CALL_CLOSED", timeout=15)
        hung_up = asyncio.get_running_loop().time()
        task = await _poll(db, "SELECT t.* FROM tasks t JOIN contacts c ON c.id = t.contact_id"
                               " WHERE c.phone = $1 AND t.status = 'open'", phone)  # fmt: skip
        assert asyncio.get_running_loop().time() - hung_up < 1.0, "task later than 1 s"
        assert (task["type"], task["assignee"], task["missed_calls"]) == ("callback", "103", 1)
        _rate, heard, _ = read_wav(caller.recorded_wav())

        # The customer tries again and gives up while it rings: still missed, same task.
        await caller.dial(carrier.did_uri(DID, trunk_engine.sip_port))
        await a101.wait_event("CALL_INCOMING", timeout=5)
        await caller.hangup()
        await a101.wait_event("CALL_CLOSED", timeout=5)
        again = await _poll(db, "SELECT t.* FROM tasks t JOIN contacts c ON c.id = t.contact_id"
                                " WHERE c.phone = $1 AND t.missed_calls = 2", phone)  # fmt: skip
        assert again["id"] == task["id"]
    _, prompt, _ = read_wav(PROMPT)
    peak, _lag = normalized_xcorr(heard, prompt)
    assert peak > 0.8, f"auto-reply not recognised in what the caller heard (xcorr {peak:.2f})"
    await calls_settled(trunk_engine)
    outcomes = await db.fetch(
        "SELECT outcome, hangup_cause FROM calls WHERE from_number = $1 ORDER BY id DESC LIMIT 2",
        CUSTOMER,
    )
    assert [r["outcome"] for r in outcomes] == ["missed", "missed"]
    events = await db.fetch(
        "SELECT event_type FROM outbox WHERE aggregate = $1 ORDER BY id", f"task/{task['id']}"
    )
    assert [e["event_type"] for e in events] == ["task.created", "task.updated"]


async def _poll(db, query: str, *args: object, timeout: float = 2.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (row := await db.fetchrow(query, *args)) is None:
        assert loop.time() < deadline, f"nothing for {query}"
        await asyncio.sleep(0.02)
    return row


async def test_after_hours_calls_are_missed_without_ringing(
    pg_url: str, tmp_path: Path, carrier_port: int, db
) -> None:
    closed_day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[
        (datetime.now(UTC).weekday() + 3) % 7
    ]
    config = engine_config(
        extra=trunk_config(carrier_port, hours=f'hours = "{closed_day} 09:00-17:00"')
    )
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        async with customer(tmp_path) as caller, agent("101", engine, tmp_path) as a101:
            await a101.wait_registered()
            await caller.dial(carrier.did_uri(DID, engine.sip_port))
            await caller.wait_event("CALL_ESTABLISHED", timeout=3)  # straight to the auto-reply
            await caller.hangup()
            assert not a101.events_of("CALL_INCOMING")
        await calls_settled(engine)
        row = await db.fetchrow(
            "SELECT outcome, hangup_cause FROM calls WHERE from_number = $1"
            " ORDER BY id DESC LIMIT 1",
            CUSTOMER,
        )
        assert (row["outcome"], row["hangup_cause"]) == ("missed", "after-hours")
    finally:
        await engine.stop()


async def test_a_route_can_opt_out_of_recording(
    pg_url: str, tmp_path: Path, carrier_port: int
) -> None:
    engine = await start_engine(
        engine_config(extra=trunk_config(carrier_port, record=False)), database_url=pg_url,
        data_dir=tmp_path,
    )  # fmt: skip
    try:
        async with customer(tmp_path) as caller, agent("102", engine, tmp_path) as a102:
            bridged = await answered_by(a102, caller, engine)
            await caller.hangup()
            await a102.wait_event("CALL_CLOSED", timeout=5)
        await calls_settled(engine)
        assert bridged.summary.outcome == "answered" and bridged.summary.recording is None
        assert not list((tmp_path / "recordings").rglob("*.wav"))
    finally:
        await engine.stop()


async def test_a_carrier_registering_with_digest_auth(pg_url: str, tmp_path: Path) -> None:
    """A carrier that REGISTERs with digest credentials instead of a fixed address: its calls
    to its DIDs are accepted from where it registered; before that they are refused."""
    config = engine_config(
        extra='[[trunks]]\nname = "voipco"\npassword = "voipco-secret"\n\n'
        '[[dids]]\nnumber = "+12025550199"\ntrunk = "voipco"\nroute = "agent:102"\n'
    )
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    registrar = registrar_of(engine)
    try:
        async with agent("102", engine, tmp_path) as a102:
            await a102.wait_registered()
            async with customer(tmp_path / "before") as early:  # carrier not registered yet
                await early.dial(carrier.did_uri("+12025550199", engine.sip_port))
                closed = await early.wait_event("CALL_CLOSED", timeout=5)
                assert "403" in str(closed)
            registration = BaresipPeer(
                "voipco", workdir=tmp_path, registrar=registrar, password="voipco-secret",
                host=CARRIER_IP,
            )  # fmt: skip
            async with registration as trunk_registration, customer(tmp_path / "after") as caller:
                await trunk_registration.wait_registered()
                await caller.dial(carrier.did_uri("+12025550199", engine.sip_port))
                await a102.wait_event("CALL_INCOMING", timeout=5)
                await a102.accept()
                await caller.wait_event("CALL_ESTABLISHED", timeout=5)
                await caller.hangup()
                await a102.wait_event("CALL_CLOSED", timeout=5)
        await calls_settled(engine)
    finally:
        await engine.stop()


async def test_away_agents_are_skipped(trunk_engine: Engine, tmp_path: Path) -> None:
    async with (
        customer(tmp_path) as caller,
        agent("101", trunk_engine, tmp_path) as a101,
        agent("102", trunk_engine, tmp_path) as a102,
    ):
        await a101.wait_registered()
        await a102.wait_registered()
        await a101.dial("*50")  # away: answered with a beep, then hung up
        await a101.wait_event("CALL_CLOSED", timeout=5)
        now = trunk_engine.ua.loop.time()
        assert trunk_engine.switchboard.presence.state("101", now=now).value == "away"
        await caller.dial(carrier.did_uri(DID, trunk_engine.sip_port))
        await a102.wait_event("CALL_INCOMING", timeout=5)
        await a102.accept()
        await caller.wait_event("CALL_ESTABLISHED", timeout=5)
        assert not a101.events_of("CALL_INCOMING")
        await caller.hangup()
        await a102.wait_event("CALL_CLOSED", timeout=5)
        # After a customer call the agent is in wrap-up, then available again.
        now = trunk_engine.ua.loop.time()
        assert trunk_engine.switchboard.presence.state("102", now=now).value == "wrap-up"
        await a101.dial("*51")
        await a101.wait_event("CALL_CLOSED", timeout=5)
        now = trunk_engine.ua.loop.time()
        assert trunk_engine.switchboard.presence.state("101", now=now).value == "available"
    await calls_settled(trunk_engine)


async def test_calls_that_are_not_ours_are_refused(
    trunk_engine: Engine, tmp_path: Path, db
) -> None:
    before = await db.fetchval("SELECT count(*) FROM calls")
    async with customer(tmp_path) as caller:
        await caller.dial(f"sip:12025559999@127.0.0.1:{trunk_engine.sip_port}")  # unknown DID
        closed = await caller.wait_event("CALL_CLOSED", timeout=5)
        assert "404" in str(closed)
    async with BaresipPeer(CUSTOMER, workdir=tmp_path / "elsewhere") as stranger:  # not the trunk
        await stranger.dial(f"sip:{DID}@127.0.0.1:{trunk_engine.sip_port}")
        closed = await stranger.wait_event("CALL_CLOSED", timeout=5)
        assert "403" in str(closed)
    await calls_settled(trunk_engine)
    assert await db.fetchval("SELECT count(*) FROM calls") == before


async def test_agent_calls_out_through_the_trunk(
    trunk_engine: Engine, tmp_path: Path, carrier_port: int, db
) -> None:
    async with (
        carrier.outbound_carrier(carrier_port, calls=1, workdir=tmp_path / "carrier") as uas,
        agent("101", trunk_engine, tmp_path) as a101,
    ):
        await a101.wait_registered()
        await a101.dial("15557654321")
        await a101.wait_event("CALL_ESTABLISHED", timeout=5)
        bridged = next(iter(trunk_engine.switchboard.active.values()))
        assert bridged.summary.direction == "outbound"
        outgoing = bridged.b
        assert outgoing is not None
        # Dialled as a US number, sent in the trunk's format (E.164 by default).
        assert str(outgoing.invite.uri) == f"sip:+15557654321@127.0.0.1:{carrier_port}"
        assert str(outgoing.invite.from_.uri).startswith(f"sip:{DID}@")  # the trunk's caller ID
        await asyncio.sleep(0.5)
        await a101.hangup()
        await a101.wait_event("CALL_CLOSED", timeout=5)
        served = await uas.wait(timeout=10)
    assert served.successful == 1, served.summary()
    await calls_settled(trunk_engine)
    # The journal closes the row after the call (a write of its own): wait for it.
    row = await _poll(
        db, "SELECT * FROM calls WHERE call_id = $1 AND ended_at IS NOT NULL", bridged.a.call_id
    )
    assert (row["direction"], row["from_number"], row["to_number"], row["outcome"]) == (
        "outbound", "101", "+15557654321", "answered",
    )  # fmt: skip


async def test_the_responsible_manager_rings_first(
    trunk_engine: Engine, tmp_path: Path, db: asyncpg.Connection
) -> None:
    """A known customer's responsible manager rings first (issue 16: amoCRM's responsible
    user, through user_map, becomes the contact's manager): 102 rings alone for the group's
    member timeout, and only then the others."""
    assert trunk_engine.store is not None
    await trunk_engine.store.upsert_contact(CUSTOMER, responsible="102")
    loop = asyncio.get_running_loop()
    try:
        async with group_call(trunk_engine, tmp_path) as (caller, a101, a102):
            await a102.wait_event("CALL_INCOMING", timeout=5)
            first = loop.time()
            await a101.wait_event("CALL_INCOMING", timeout=5)
            second = loop.time()
            await a102.accept()
            await caller.wait_event("CALL_ESTABLISHED", timeout=5)
            await caller.hangup()
            await a102.wait_event("CALL_CLOSED", timeout=5)
    finally:
        # Other tests of this database expect the customer without a manager.
        await db.execute("UPDATE contacts SET responsible = NULL WHERE phone = $1", CUSTOMER)
    # The group's member timeout is 2 s: 101 joins only after 102 rang alone.
    assert second - first > 1.5, second - first


async def test_an_answered_inbound_call_reaches_the_crm_as_four_events_in_order(
    pg_url: str, tmp_path: Path, carrier_port: int
) -> None:
    """call.started, call.ringing, call.answered, call.ended: once each, in that order, with
    ringing and answer times the calls row agrees with (issue 12: the PBX's typed events)."""
    crm = WebhookReceiver(secret="hook-secret")
    await crm.start()
    config = engine_config(extra=trunk_config(carrier_port), crm=crm.config())
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        async with (
            customer(tmp_path) as caller,
            agent("102", engine, tmp_path) as a102,
        ):
            bridged = await answered_by(a102, caller, engine)
            await caller.hangup()
            await a102.wait_event("CALL_CLOSED", timeout=5)
        call_id = bridged.a.call_id
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not any(
            d.event == "call.ended" and d.data["call_id"] == call_id for d in crm.received
        ):
            assert loop.time() < deadline, [(d.event, d.data.get("call_id")) for d in crm.received]
            await asyncio.sleep(0.05)
    finally:
        await engine.stop()
        await crm.stop()
    mine = [d for d in crm.received if d.data.get("call_id") == call_id]
    assert [d.event for d in mine] == [
        "call.started",
        "call.ringing",
        "call.answered",
        "call.ended",
    ]
    assert len(crm.received) == len(crm.unique())  # nothing twice
    ringing, answered, ended = mine[1].data, mine[2].data, mine[3].data
    assert ringing["ringing_at"] is not None and ringing["answered_at"] is None
    assert answered["answered_at"] is not None and answered["agent"] == "102"
    assert ringing["ringing_at"] <= answered["answered_at"] <= ended["ended_at"]
    assert ended["outcome"] == "answered" and ended["direction"] == "inbound"


async def test_the_dashboard_shows_which_phones_ring_as_it_changes(
    trunk_engine: Engine, tmp_path: Path
) -> None:
    """The PBX publishes who is being rung (pbx.events.CallRinging) and the live board follows:
    both agents of the ring group while they ring, nobody once one has answered."""
    board = trunk_engine.live.board
    seen: list[tuple[str, ...]] = []
    async with group_call(trunk_engine, tmp_path) as (caller, a101, a102):
        await a101.wait_event("CALL_INCOMING", timeout=5)
        await a102.wait_event("CALL_INCOMING", timeout=5)
        (call_id,) = trunk_engine.switchboard.active
        seen.append(board.calls[call_id].ringing)
        await a102.accept()
        await caller.wait_event("CALL_ESTABLISHED", timeout=5)
        await a101.wait_event("CALL_CLOSED", timeout=5)
        seen.append(board.calls[call_id].ringing)
        await caller.hangup()
        await a102.wait_event("CALL_CLOSED", timeout=5)
    assert seen == [("101", "102"), ()]
