"""Waiting queues with real phones (issue 14.2): three customers call a queue while its only
agent is busy; each hears the music and its position (the prompts found in the customer's own
recording), they are answered in arrival order as the agent frees, one presses 1 and is called
back at its turn; a caller over max wait overflows; the figures in /metrics match the calls."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from callcenter.runtime import Engine, start_engine
from ivr import PromptCache
from pbx.acd import position_text
from sip_test_env import carrier
from sip_test_env.audio import normalized_xcorr, read_wav, tone_present, write_tone_wav
from sip_test_env.baresip import BaresipPeer
from sip_test_env.tools import require

from .conftest import (
    AGENT_101_KEY,
    api_url,
    bearer,
    calls_settled,
    crm_taking,
    engine_config,
    registrar_of,
)

pytestmark = pytest.mark.peers

SALES_DID, SUPPORT_DID = "+12025550100", "+12025550102"
CUSTOMERS = ("+12125550001", "+12125550002", "+12125550003")
LATE = "+12125550009"
SERVICE_LEVEL = 16.0
MUSIC_HZ = 440.0


def queue_config(callback_phone: BaresipPeer, music: Path) -> str:
    return f"""
[presence]
wrap_up_seconds = 0

[[trunks]]
name = "carrier"
allow_from = ["{carrier.CARRIER_IP}"]
outbound = "{carrier.CARRIER_IP}:{callback_phone.sip_port}"
caller_id = "{SALES_DID}"

[[queues]]
name = "sales"
members = ["101"]
strategy = "longest-idle"
wrap_up = 0
member_timeout = 10
max_wait = 120
announce_every = 60
service_level = {SERVICE_LEVEL}
music = "{music}"
owner = "101"

[[queues]]
name = "support"
members = ["103"]
max_wait = 3
announce_every = 60
overflow = "callback"
owner = "103"

[[dids]]
number = "{SALES_DID}"
trunk = "carrier"
route = "queue:sales"

[[dids]]
number = "{SUPPORT_DID}"
trunk = "carrier"
route = "queue:support"
"""


def phone(ext: str, engine: Engine, tmp_path: Path) -> BaresipPeer:
    return BaresipPeer(ext, workdir=tmp_path, registrar=registrar_of(engine),
                       password=f"pass{ext}")  # fmt: skip


async def answer_next(agent: BaresipPeer, number: str, talk: float = 1.0) -> None:
    """The agent's phone rings with `number` as caller ID: answer, talk a moment, hang up."""
    incoming = await agent.wait_event("CALL_INCOMING", timeout=20)
    assert number in str(incoming), incoming
    await agent.accept()
    await asyncio.sleep(talk)  # the conversation
    await agent.hangup()
    await agent.wait_event("CALL_CLOSED", timeout=5)


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait for the engine's state to reach `condition` (it changes on the loop we share)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "the engine never got there"
        await asyncio.sleep(0.05)


def metric(text: str, name: str, queue: str) -> float:
    match = re.search(rf'^{name}{{queue="{queue}"}} (\S+)$', text, re.MULTILINE)
    assert match is not None, f"{name} for {queue} not in /metrics"
    return float(match.group(1))


@pytest.mark.slow
async def test_three_customers_wait_in_order_one_is_called_back_one_overflows(
    pg_url: str, tmp_path: Path, db
) -> None:
    require("espeak-ng")
    music = write_tone_wav(tmp_path / "music.wav", MUSIC_HZ, 2.0)
    cust = [carrier.customer(n, workdir=tmp_path) for n in CUSTOMERS]
    late = carrier.customer(LATE, workdir=tmp_path)
    config = engine_config(extra=queue_config(cust[2], music))
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    prompts = PromptCache(tmp_path / "prompts")  # the engine's cache: the same files
    try:
        async with (
            phone("101", engine, tmp_path) as a101,
            phone("102", engine, tmp_path) as a102,
            cust[0], cust[1], cust[2], late,
        ):  # fmt: skip
            # 101, the queue's only agent, is busy on a call with 102.
            await a101.wait_registered()
            await a102.wait_registered()
            await a101.dial(a102.user)
            await a102.wait_event("CALL_INCOMING", timeout=5)
            await a102.accept()
            await a101.wait_event("CALL_ESTABLISHED", timeout=5)
            sales = engine.switchboard.queues.queues["sales"]
            for position, customer in enumerate(cust, start=1):
                await customer.dial(carrier.did_uri(SALES_DID, engine.sip_port))
                await customer.wait_event("CALL_ESTABLISHED", timeout=5)
                await until(lambda n=position: len(sales.callers) == n)
            # The third presses 1 once it heard its place: called back, keeping it.
            await until(lambda: sales.callers[2].announced > 0)
            await asyncio.sleep(2.0)  # music it hears meanwhile
            await cust[2].send_dtmf("1")
            await cust[2].wait_event("CALL_CLOSED", timeout=15)
            assert [c.callback for c in sales.callers] == [False, False, True]

            # 101 frees: the customers reach it in arrival order; the third is called back.
            await a101.hangup()
            await a102.wait_event("CALL_CLOSED", timeout=5)
            await answer_next(a101, CUSTOMERS[0], talk=7.0)
            await cust[0].wait_event("CALL_CLOSED", timeout=5)
            await answer_next(a101, CUSTOMERS[1])
            await cust[1].wait_event("CALL_CLOSED", timeout=5)
            await cust[2].wait_event("CALL_INCOMING", timeout=20)
            await cust[2].accept()
            await answer_next(a101, CUSTOMERS[2])
            await cust[2].wait_event("CALL_CLOSED", timeout=5)
            recordings = [c.recorded_wavs() for c in cust]

            # A caller of the support queue, where nobody is logged in, overflows at max wait.
            await late.dial(carrier.did_uri(SUPPORT_DID, engine.sip_port))
            await late.wait_event("CALL_ESTABLISHED", timeout=5)
            await late.wait_event("CALL_CLOSED", timeout=20)

        # Each customer heard the music and its own position, in its own recording.
        for position, wavs in enumerate(recordings, start=1):
            rate, heard, _ = read_wav(wavs[0])
            assert tone_present(heard, MUSIC_HZ, rate, min_duration=1.0), position
            _, mine, _ = read_wav(prompts.speak(position_text(position)))
            peak, _ = normalized_xcorr(heard, mine)
            assert peak > 0.6, (position, peak)
            for other in {1, 2, 3} - {position}:
                _, theirs, _ = read_wav(prompts.speak(position_text(other)))
                assert normalized_xcorr(heard, theirs)[0] < peak, (position, other)

        await calls_settled(engine)
        rows = await db.fetch(
            "SELECT from_number, agent, outcome, hangup_cause, started_at, answered_at"
            " FROM calls WHERE did = $1 AND from_number = ANY($2) ORDER BY answered_at",
            SALES_DID,
            list(CUSTOMERS),
        )
        assert [(r["from_number"], r["agent"], r["outcome"]) for r in rows] == [
            (number, "101", "answered") for number in CUSTOMERS
        ]
        late_row = await db.fetchrow(
            "SELECT outcome, hangup_cause FROM calls WHERE from_number = $1 AND did = $2",
            LATE,
            SUPPORT_DID,
        )
        assert (late_row["outcome"], late_row["hangup_cause"]) == ("missed", "queue-max-wait")

        # The figures in /metrics are those of the calls.
        waits = [(r["answered_at"] - r["started_at"]).total_seconds() for r in rows]
        assert all(abs(w - SERVICE_LEVEL) > 1.0 for w in waits), waits  # no borderline call
        async with (
            aiohttp.ClientSession() as http,
            http.get(api_url(engine, "/metrics"), headers=bearer()) as response,
        ):
            text = await response.text()
        assert metric(text, "callcenter_queue_answered_total", "sales") == 3
        assert metric(text, "callcenter_queue_answered_within_sla_total", "sales") == sum(
            w <= SERVICE_LEVEL for w in waits
        )
        assert metric(text, "callcenter_queue_abandoned_total", "sales") == 0
        assert metric(text, "callcenter_queue_callbacks_total", "sales") == 1
        assert metric(text, "callcenter_queue_overflowed_total", "support") == 1
        asa = metric(text, "callcenter_queue_average_speed_of_answer_seconds", "sales")
        assert abs(asa - sum(waits) / 3) < 1.0, (asa, waits)
        assert metric(text, "callcenter_queue_waiting", "sales") == 0
    finally:
        await engine.stop()


VOICEMAIL_CONFIG = f"""
[presence]
wrap_up_seconds = 0

[[trunks]]
name = "carrier"
allow_from = ["{carrier.CARRIER_IP}"]

[[queues]]
name = "support"
members = ["101", "102"]
max_wait = 2
announce_every = 60
callback_digit = ""
overflow = "voicemail:101"

[[dids]]
number = "{SUPPORT_DID}"
trunk = "carrier"
route = "queue:support"
"""


async def test_members_log_in_and_out_and_an_overflow_leaves_a_voicemail_task(
    pg_url: str, tmp_path: Path, db
) -> None:
    """*46 and the API log members out; a caller nobody can take overflows to 101's voicemail:
    the message is the call's recording, and 101 has the callback task for it."""
    require("espeak-ng")
    voice = write_tone_wav(tmp_path / "voice.wav", 700.0, 20.0)
    number = "+12125550077"
    engine = await start_engine(
        engine_config(extra=VOICEMAIL_CONFIG), database_url=pg_url, data_dir=tmp_path
    )
    await db.execute(
        "DELETE FROM tasks WHERE contact_id IN (SELECT id FROM contacts WHERE phone = $1)",
        number,
    )
    support = engine.switchboard.queues.queues["support"]
    try:
        async with (
            phone("101", engine, tmp_path) as a101,
            carrier.customer(number, workdir=tmp_path, audio_source=voice) as caller,
            aiohttp.ClientSession() as http,
        ):
            await a101.wait_registered()
            await a101.dial(f"sip:*46@127.0.0.1:{engine.sip_port}")
            await a101.wait_event("CALL_CLOSED", timeout=10)
            assert support.logged_in() == ["102"]
            url = api_url(engine, "/queues/support/members")
            logout = {"extension": "102", "action": "logout"}
            async with http.post(url, json=logout, headers=bearer(AGENT_101_KEY)) as response:
                assert response.status == 403  # 101's own key acts for 101 only
            async with http.post(url, json=logout, headers=bearer()) as response:
                assert response.status == 200
                body = await response.json()
            assert [m["logged_in"] for m in body["members"]] == [False, False]
            async with http.post(url, json={"extension": "104", "action": "login"},
                                 headers=bearer()) as response:  # fmt: skip
                assert response.status == 404

            await caller.dial(carrier.did_uri(SUPPORT_DID, engine.sip_port))
            await caller.wait_event("CALL_ESTABLISHED", timeout=5)
            await until(lambda: support.stats.overflowed == 1)
            # The greeting and the beep, then the message: a few seconds of the caller's voice.
            await asyncio.sleep(6.0)
            await caller.hangup()
            await caller.wait_event("CALL_CLOSED", timeout=5)
            async with http.get(api_url(engine, "/queues"), headers=bearer()) as response:
                (listed,) = (await response.json())["queues"]
            assert (listed["name"], listed["entered"], listed["overflowed"]) == ("support", 1, 1)
        await assert_voicemail_kept(db, tmp_path, number, owner="101")
    finally:
        await engine.stop()


async def assert_voicemail_kept(db, tmp_path: Path, number: str, *, owner: str) -> None:
    """The call from `number` is a missed one whose recording is the message (the caller's
    700 Hz voice), and `owner` has the open callback task that points at it."""
    row = await poll(
        db, "SELECT * FROM calls WHERE from_number = $1 AND ended_at IS NOT NULL", number
    )
    assert (row["outcome"], row["hangup_cause"]) == ("missed", "voicemail")
    message = Path(row["recording_path"])
    if not message.is_absolute():
        message = tmp_path / "recordings" / message
    rate, kept, _ = read_wav(message)
    assert tone_present(kept, 700.0, rate, min_duration=1.0)
    task = await poll(
        db,
        "SELECT t.* FROM tasks t JOIN contacts c ON c.id = t.contact_id"
        " WHERE c.phone = $1 AND t.status = 'open'",
        number,
    )
    assert (task["type"], task["assignee"]) == ("callback", owner)
    assert row["id"] in (task["created_from_call"], task["last_call"])


async def poll(db, query: str, *args: object, timeout: float = 5.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (row := await db.fetchrow(query, *args)) is None:
        assert loop.time() < deadline, f"nothing for {query}"
        await asyncio.sleep(0.05)
    return row


async def test_an_ivr_transfer_node_hands_the_caller_to_a_queue(
    pg_url: str, tmp_path: Path, db
) -> None:
    """A flow's `queue:NAME` target: the caller waits in the queue (music) and reaches its
    agent; the call is journaled once, answered by that agent."""
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "toq.toml").write_text(
        'start = "q"\n\n[nodes.q]\nkind = "transfer"\ntarget = "queue:support"\ntimeout = 5\n'
    )
    music = write_tone_wav(tmp_path / "music.wav", MUSIC_HZ, 2.0)
    number = "+12125550088"
    extra = f"""
[ivr]
flows_dir = "{folder}"
prompt_cache = "{tmp_path / "prompts"}"

[[trunks]]
name = "carrier"
allow_from = ["{carrier.CARRIER_IP}"]

[[queues]]
name = "support"
members = ["101"]
announce_every = 0
music = "{music}"

[[dids]]
number = "{SUPPORT_DID}"
trunk = "carrier"
route = "ivr:toq"
"""
    engine = await start_engine(engine_config(extra=extra), database_url=pg_url,
                                data_dir=tmp_path)  # fmt: skip
    support = engine.switchboard.queues.queues["support"]
    support.log_out("101")  # the caller waits until 101 logs in
    try:
        async with (
            phone("101", engine, tmp_path) as a101,
            carrier.customer(number, workdir=tmp_path) as caller,
        ):
            await a101.wait_registered()
            await caller.dial(carrier.did_uri(SUPPORT_DID, engine.sip_port))
            await caller.wait_event("CALL_ESTABLISHED", timeout=5)
            await until(lambda: len(support.callers) == 1)
            await asyncio.sleep(1.5)  # music it hears meanwhile
            await a101.dial(f"sip:*45@127.0.0.1:{engine.sip_port}")
            await a101.wait_event("CALL_CLOSED", timeout=10)
            await answer_next(a101, number)
            await caller.wait_event("CALL_CLOSED", timeout=5)
            rate, heard, _ = read_wav(caller.recorded_wav())
        assert tone_present(heard, MUSIC_HZ, rate, min_duration=1.0)
        row = await poll(
            db, "SELECT * FROM calls WHERE from_number = $1 AND ended_at IS NOT NULL", number
        )
        assert (row["outcome"], row["agent"], row["did"]) == ("answered", "101", SUPPORT_DID)
        assert await db.fetchval("SELECT count(*) FROM calls WHERE from_number = $1", number) == 1
        assert support.stats.answered == 1
    finally:
        await engine.stop()


async def test_an_agents_voicemail_plays_its_greeting_and_keeps_the_message(
    pg_url: str, tmp_path: Path, db
) -> None:
    """A DID routed to `voicemail:102`: the caller hears 102's own greeting (found in the
    caller's recording), the tone, and what it says is kept; # ends the message."""
    require("espeak-ng")
    greeting = "You have reached Bob. Leave a message."
    voice = write_tone_wav(tmp_path / "voice.wav", 700.0, 20.0)
    number = "+12125550066"
    extra = f"""
[[trunks]]
name = "carrier"
allow_from = ["{carrier.CARRIER_IP}"]

[[voicemail]]
owner = "102"
greeting = "{greeting}"

[[dids]]
number = "{SUPPORT_DID}"
trunk = "carrier"
route = "voicemail:102"
"""
    engine = await start_engine(engine_config(extra=extra), database_url=pg_url,
                                data_dir=tmp_path)  # fmt: skip
    try:
        async with carrier.customer(number, workdir=tmp_path, audio_source=voice) as caller:
            await caller.dial(carrier.did_uri(SUPPORT_DID, engine.sip_port))
            await caller.wait_event("CALL_ESTABLISHED", timeout=5)
            await asyncio.sleep(6.0)  # the greeting, the tone, then a few seconds of message
            await caller.send_dtmf("#")
            await caller.wait_event("CALL_CLOSED", timeout=10)  # the engine hangs up on #
            _, heard, _ = read_wav(caller.recorded_wav())
        _, expected, _ = read_wav(PromptCache(tmp_path / "prompts").speak(greeting))
        assert normalized_xcorr(heard, expected)[0] > 0.6
        await assert_voicemail_kept(db, tmp_path, number, owner="102")
    finally:
        await engine.stop()


async def test_a_queue_overflows_to_its_own_voicemail_for_the_callers_manager(
    pg_url: str, tmp_path: Path, db
) -> None:
    """A queue nobody can answer (its member 104 has no phone) with `when_empty = "overflow"`
    and `overflow = "voicemail"`: at once (not after max wait) the caller hears the queue's
    own greeting (found in its recording) and leaves a message; the message is the call's
    recording, and the callback task goes to the queue's owner, `responsible`: the caller's
    manager in the CRM (105), with its task.created event in the outbox for the CRM."""
    require("espeak-ng")
    greeting = "Billing cannot answer now. Please leave a message after the tone."
    voice = write_tone_wav(tmp_path / "voice.wav", 700.0, 20.0)
    number = "+12125550078"
    extra = f"""
[[trunks]]
name = "carrier"
allow_from = ["{carrier.CARRIER_IP}"]

[[queues]]
name = "billing"
members = ["104"]
max_wait = 60
when_empty = "overflow"
announce_every = 60
callback_digit = ""
overflow = "voicemail"
owner = "responsible"
voicemail_greeting = "{greeting}"

[[dids]]
number = "{SUPPORT_DID}"
trunk = "carrier"
route = "queue:billing"
"""
    config = engine_config(extra=extra, crm=crm_taking("task.created"))
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    boxes = tmp_path / "recordings" / "voicemail"
    try:
        await db.execute(
            "INSERT INTO contacts (phone, responsible) VALUES ($1, '105')"
            " ON CONFLICT (phone) DO UPDATE SET responsible = '105'",
            number,
        )
        await db.execute(
            "DELETE FROM tasks WHERE contact_id IN (SELECT id FROM contacts WHERE phone = $1)",
            number,
        )
        async with carrier.customer(number, workdir=tmp_path, audio_source=voice) as caller:
            await caller.dial(carrier.did_uri(SUPPORT_DID, engine.sip_port))
            await caller.wait_event("CALL_ESTABLISHED", timeout=5)
            # Recording starts after the greeting and the tone; then two seconds of message.
            await until(lambda: any(boxes.glob("*-billing-*.wav")), timeout=20)
            await asyncio.sleep(2.0)  # the message itself
            await caller.send_dtmf("#")
            await caller.wait_event("CALL_CLOSED", timeout=10)  # the engine hangs up on #
            _, heard, _ = read_wav(caller.recorded_wav())
        _, expected, _ = read_wav(PromptCache(tmp_path / "prompts").speak(greeting))
        assert normalized_xcorr(heard, expected)[0] > 0.6
        stats = engine.switchboard.queues.queues["billing"].stats
        assert (stats.overflowed, stats.entered) == (1, 0)
        await assert_voicemail_kept(db, tmp_path, number, owner="105")
        task = await poll(
            db,
            "SELECT t.id FROM tasks t JOIN contacts c ON c.id = t.contact_id"
            " WHERE c.phone = $1 AND t.status = 'open'",
            number,
        )
        event = await poll(
            db,
            "SELECT payload FROM outbox WHERE aggregate = $1 AND event_type = 'task.created'",
            f"task/{task['id']}",
        )
        assert event is not None
    finally:
        await engine.stop()
