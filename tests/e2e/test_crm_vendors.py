"""Missed calls through the whole engine reach an amoCRM-shaped and a Bitrix24-shaped account
(sip_test_env.amocrm / .bitrix24) and a Standard Webhooks receiver: a new number rings with
amoCRM's call notification, lands in amoCRM's unsorted inbox and as a Bitrix24 lead, each
with its callback task linked to that lead, once and after its call; a withheld caller is
journaled and reaches the webhook in order (call.started, call.ended) with no callback task.
A power campaign's call to a known contact reaches both accounts as an outbound call. A call
transferred from 101 to 102 reaches each once, filed under 102 (amoCRM's call_responsible,
Bitrix24's finish USER_ID: "pass the one who talked last", as integrators put it in
https://github.com/mikopbx/ModuleBitrix24Integration/issues/102). The recording links the
vendors get play without a key (Bitrix24's portal downloads its MP3 while attaching it) until
they expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import shutil
import time
import urllib.parse
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from callcenter.config import Config
from callcenter.runtime import start_engine
from dialer import Campaign, NewLead, PgLeadStore
from sip_test_env import carrier
from sip_test_env.amocrm import AmoAccount
from sip_test_env.audio import first_tone_time, mp3_frames, read_wav, write_tone_wav
from sip_test_env.baresip import BaresipPeer
from sip_test_env.bitrix24 import BitrixPortal
from sip_test_env.crm import WebhookReceiver
from sip_test_env.ports import free_port
from sip_test_env.scripted_carrier import Customer, ScriptedCarrier
from sip_test_env.voices import person_wav, speak

from .callfloor import bridged_call, idle, wait_for
from .conftest import ADMIN_KEY, api_url, engine_config, registrar_of
from .test_campaign import PROMPT, calling_hours_around_now, run_to_the_end
from .test_trunk import DID, agent, trunk_config

pytestmark = pytest.mark.peers

NEW_NUMBER = "+12125557700"
ENDPOINTS = ["vendors-hook", "vendors-amo", "vendors-b24"]


@pytest.fixture(name="db")
def own_db(crm_db: asyncpg.Connection) -> asyncpg.Connection:
    """The database of this test's engine, of its own: the tests count every outbox delivery
    (none dead, none left), which other tests' engines on a shared database leave too."""
    return crm_db


@contextlib.asynccontextmanager
async def _vendors(
    *, fetch_records: bool = False
) -> AsyncIterator[tuple[AmoAccount, BitrixPortal, WebhookReceiver]]:
    """An amoCRM-shaped account, a Bitrix24-shaped portal and a webhook receiver, running."""
    amo = await AmoAccount().start()
    b24 = await BitrixPortal(fetch_records=fetch_records).start()
    hook = WebhookReceiver(secret="whsec_aG9vay1zZWNyZXQ=")
    await hook.start()
    try:
        yield amo, b24, hook
    finally:
        await hook.stop()
        await amo.stop()
        await b24.stop()


async def _missed(caller_number: str, engine_port: int, a101, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async with carrier.customer(caller_number, workdir=tmp_path) as caller:
        await caller.dial(carrier.did_uri(DID, engine_port))
        await a101.wait_event("CALL_INCOMING", timeout=5)
        # Nobody answers within the group's 4 s: the auto-reply answers, then hangs up.
        await caller.wait_event("CALL_ESTABLISHED", timeout=8)
        await a101.wait_event("CALL_CLOSED", timeout=5)
        await caller.wait_event("CALL_CLOSED", timeout=15)


@pytest.mark.slow
async def test_missed_calls_reach_amocrm_bitrix24_and_the_webhook(
    crm_url: str, tmp_path: Path, db: asyncpg.Connection
) -> None:
    amo = await AmoAccount().start()
    b24 = await BitrixPortal().start()
    hook = WebhookReceiver(secret="whsec_aG9vay1zZWNyZXQ=")
    await hook.start()
    crm = (
        hook.config("vendors-hook")
        + f'[[crm.endpoints]]\nname = "vendors-amo"\nkind = "amocrm"\nurl = "{amo.url}"\n'
        f'secret = "{amo.access_token}"\nuser_map = {{"101" = 5001}}\ntimeout = 3\n'
        f'[[crm.endpoints]]\nname = "vendors-b24"\nkind = "bitrix24"\nurl = "{b24.webhook_url}"\n'
        'user_map = {"*" = 1, "101" = 7}\ntimeout = 3\n'
        "[crm.retry]\nbase_delay = 0.2\nmax_delay = 0.5\n"
    )
    config = engine_config(extra=trunk_config(free_port("both")), crm=crm)
    engine = await start_engine(config, database_url=crm_url, data_dir=tmp_path)
    try:
        async with agent("101", engine, tmp_path) as a101:
            await a101.wait_registered()
            await _missed(NEW_NUMBER, engine.sip_port, a101, tmp_path)
            await _missed("anonymous", engine.sip_port, a101, tmp_path)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while (
            not (amo.unsorted and amo.tasks and b24.tasks)
            or len([d for d in hook.received if d.event == "call.ended"]) < 2
            or await engine.store._pool.fetchval(
                "SELECT count(*) FROM outbox_deliveries WHERE delivered_at IS NULL"
                " AND dead_at IS NULL"
            )
        ):
            assert loop.time() < deadline, (amo.requests, b24.hits, hook.received)
            await asyncio.sleep(0.1)
        calls = await engine.store._pool.fetch(  # this engine's only: the database is shared
            "SELECT id, from_number, outcome, contact_id FROM calls WHERE node = $1 ORDER BY id",
            config.crm.node,
        )
        keys = {
            r["aggregate"]: r["idempotency_key"]
            for r in await engine.store._pool.fetch(
                "SELECT aggregate, idempotency_key FROM outbox WHERE event_type = 'call.ended'"
            )
        }
        dead = await engine.store._pool.fetchval(
            "SELECT count(*) FROM outbox_deliveries WHERE dead_at IS NOT NULL"
        )
    finally:
        await engine.stop()
        await hook.stop()
        await amo.stop()
        await b24.stop()
    assert dead == 0
    mine = [c for c in calls if c["from_number"] in (NEW_NUMBER, "anonymous")]
    by_number = {c["from_number"]: c for c in mine}
    assert {c["outcome"] for c in mine} == {"missed"}
    assert by_number["anonymous"]["contact_id"] is None  # journaled all the same
    new_row = by_number[NEW_NUMBER]["id"]

    # amoCRM: the unknown number went to the unsorted inbox (a call to /api/v4/calls would
    # have been dropped), once, with the outbox key as uniq; its task is on that lead, after it.
    (entry,) = amo.unsorted
    assert entry["metadata"]["uniq"] == keys[f"call/{new_row}"]
    assert entry["metadata"]["phone"] == NEW_NUMBER
    (task,) = amo.tasks.values()
    assert (task["entity_type"], task["entity_id"]) == ("leads", entry["lead_id"])
    # While it rang, amoCRM's call notification went out (to everyone: an unknown caller).
    assert amo.notifications == [{"type": "phone_call", "phone_number": NEW_NUMBER}]
    posts = [p for m, p, _ in amo.requests if m == "POST"]
    assert posts == ["/api/v2/events/", "/api/v4/leads/unsorted/sip", "/api/v4/tasks"]
    # Bitrix24: one registered and finished call (a new lead), its task bound to the lead.
    (b24_call,) = b24.calls.values()
    assert b24_call["finished"] and b24_call["STATUS_CODE"] == "304"
    (b24_task,) = b24.tasks.values()
    assert b24_task["UF_CRM_TASK"] == [f"L_{b24_call['created_lead']}"]
    # The webhook: both calls, each once and in order; the withheld one has no task.
    assert len(hook.received) == len(hook.unique()) and hook.bad_signatures == 0
    order: dict[int, list[str]] = {}
    for delivery in hook.received:
        if delivery.event.startswith("call."):
            order.setdefault(delivery.data["id"], []).append(delivery.event)
    for events in (order[c["id"]] for c in mine):
        assert events[0] == "call.started" and events[-1] == "call.ended"
    tasks = [d for d in hook.received if d.event == "task.created"]
    assert [t.data["contact_phone"] for t in tasks] == [NEW_NUMBER]


LINK_SECRET = "vendors-links-0123456789"
LINK = 'recording_link = "BASE/recordings/{id}.{format}?expires={expires}&signature={signature}"\n'
"""An endpoint's signed recording link; BASE becomes the engine's HTTP address (`_linked`)."""


def _linked(config: Config) -> Config:
    """`config` with BASE in its endpoints' recording links replaced by its HTTP address."""
    base = f"http://{config.http_listen.host}:{config.http_listen.port}"
    endpoints = tuple(
        dataclasses.replace(e, recording_link=e.recording_link.replace("BASE", base))
        if e.recording_link
        else e
        for e in config.crm.endpoints
    )
    return dataclasses.replace(config, crm=dataclasses.replace(config.crm, endpoints=endpoints))


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng for voices")
async def test_a_dialer_call_reaches_amocrm_and_bitrix24(
    crm_url: str, tmp_path: Path, db: asyncpg.Connection
) -> None:
    """A power campaign dials a lead who is a known amoCRM contact; a person answers and talks
    to agent 101: amoCRM gets the outbound call on the contact (call_responsible: the agent),
    Bitrix24 an outgoing call (TYPE 1) finished with status 200, each once; the recording links
    both got play without a key (Bitrix24's portal downloads its MP3 while attaching it)."""
    phone = "12125556600"
    amo = await AmoAccount().start()
    b24 = await BitrixPortal(fetch_records=True).start()
    contact = amo.add_contact("+" + phone, responsible_user_id=5002)
    b24.add_entity("+" + phone, "CONTACT", 77, assigned=9)
    hello = speak("Hello?", tmp_path / "hello.wav")
    person = person_wav(tmp_path / "person.wav", hello)
    opens, closes = calling_hours_around_now()
    async with ScriptedCarrier(
        {phone: Customer("human", answer_after=0.5, speech=person, hang_up_after=4)}
    ) as scripted:
        host, port = scripted.address
        extra = (
            f'[[trunks]]\nname = "carrier"\noutbound = "{host}:{port}"\ncaller_id = "12125550100"\n'
        )
        crm = (
            f'link_secret = "{LINK_SECRET}"\n'
            f'[[crm.endpoints]]\nname = "dial-amo"\nkind = "amocrm"\nurl = "{amo.url}"\n'
            f'secret = "{amo.access_token}"\nuser_map = {{"101" = 5001}}\ntimeout = 10\n{LINK}'
            f'[[crm.endpoints]]\nname = "dial-b24"\nkind = "bitrix24"\n'
            f'url = "{b24.webhook_url}"\nuser_map = {{"*" = 1, "101" = 7}}\ntimeout = 10\n'
            f'{LINK}recording_format = "mp3"\n'
            "[crm.retry]\nbase_delay = 0.2\nmax_delay = 0.5\n"
        )
        engine = await start_engine(
            _linked(engine_config(extra=extra, crm=crm)), database_url=crm_url, data_dir=tmp_path
        )
        assert engine.database is not None
        store = PgLeadStore(engine.database.pool)
        now = datetime.now(UTC)
        try:
            campaign = await store.create_campaign(
                Campaign(
                    name=f"crm-{now.timestamp():.0f}", caller_id="12125550100", trunk="carrier",
                    agents=("101",), mode="power", ratio=1.0, max_attempts=1,
                    window_start=opens, window_end=closes, tz_default="UTC",
                    max_ring_seconds=15, voicemail_prompt=str(PROMPT),
                    safe_harbor_prompt=str(PROMPT),
                ),
                now=now,
            )  # fmt: skip
            await store.import_leads(campaign.id, [NewLead("+" + phone, "UTC")], now=now)
            async with BaresipPeer(
                "101", workdir=tmp_path, registrar=registrar_of(engine), password="pass101",
                answermode="auto", audio_source=write_tone_wav(tmp_path / "a.wav", 1000, 60.0),
            ) as a101:  # fmt: skip
                await a101.wait_registered()
                await store.set_state(campaign.id, "start", now=datetime.now(UTC))
                await run_to_the_end(store, campaign.id, left=0, timeout=60)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 20
                while not (amo.calls and any(c.get("records") for c in b24.calls.values())):
                    assert loop.time() < deadline, (amo.requests, b24.hits, b24.downloads)
                    await asyncio.sleep(0.1)
                await store.set_state(campaign.id, "stop", now=datetime.now(UTC))
                async with aiohttp.ClientSession() as http, http.get(amo.calls[0]["link"]) as r:
                    assert r.status == 200 and r.content_type == "audio/wav", await r.text()
                    (tmp_path / "amo.wav").write_bytes(await r.read())
        finally:
            await engine.stop()
            await amo.stop()
            await b24.stop()
    (call,) = amo.calls
    assert (call["direction"], call["phone"], call["entity_id"]) == (
        "outbound",
        "+" + phone,
        contact,
    )
    assert call["call_status"] == 4 and call["call_responsible"] == 5001
    assert not amo.unsorted
    (b24_call,) = b24.calls.values()
    assert b24_call["params"]["TYPE"] == "1" and b24_call["STATUS_CODE"] == "200"
    assert b24_call["params"]["USER_ID"] == "7" and b24_call["CRM_ENTITY_ID"] == 77
    (download,) = b24.downloads
    assert (download["status"], download["content_type"]) == (200, "audio/mpeg")
    assert mp3_frames(download["body"])[2] > 1.0
    # The call as the link plays it: the agent's tone on the agent channel (right), not on the
    # customer's (the dialer's customer is leg A of its call, unlike an agent's own call out).
    rate, stereo, channels = read_wav(tmp_path / "amo.wav")
    assert channels == 2 and first_tone_time(stereo[:, 1].copy(), 1000, rate) is not None
    assert first_tone_time(stereo[:, 0].copy(), 1000, rate) is None
    dead = await db.fetchval(
        "SELECT count(*) FROM outbox_deliveries WHERE dead_at IS NOT NULL"
        " AND endpoint IN ('dial-amo', 'dial-b24')"
    )
    assert dead == 0


TRANSFER_DID = "+12025550101"
TRANSFER_CUSTOMER = "+12125558800"
CUSTOMER_HZ, HZ_101, HZ_102 = 600, 1000, 1400


def _transfer_config(amo: AmoAccount, b24: BitrixPortal, hook: WebhookReceiver) -> Config:
    """Customers from the carrier ring agent 101, recorded; the three receivers get links to
    the recording (amoCRM the WAV master, Bitrix24 an MP3) that work for about 26 s."""
    extra = (
        f'[[trunks]]\nname = "carrier"\nallow_from = ["{carrier.CARRIER_IP}"]\n'
        f'outbound = "127.0.0.1:{free_port("both")}"\n\n'
        f'[[dids]]\nnumber = "{TRANSFER_DID}"\ntrunk = "carrier"\nroute = "agent:101"\n'
        "record = true\n"
    )
    crm = (
        f'link_secret = "{LINK_SECRET}"\nlink_ttl_days = 0.0003\n'
        + hook.config("xfer-hook")
        + f'[[crm.endpoints]]\nname = "xfer-amo"\nkind = "amocrm"\nurl = "{amo.url}"\n'
        f'secret = "{amo.access_token}"\nuser_map = {{"101" = 5001, "102" = 5002}}\n'
        f'timeout = 10\n{LINK}recording_format = "wav"\n'
        f'[[crm.endpoints]]\nname = "xfer-b24"\nkind = "bitrix24"\nurl = "{b24.webhook_url}"\n'
        f'user_map = {{"*" = 1, "101" = 7, "102" = 9}}\ntimeout = 10\n{LINK}'
        'recording_format = "mp3"\n'
        "[crm.retry]\nbase_delay = 0.2\nmax_delay = 0.5\n"
    )
    return _linked(engine_config(extra=extra, crm=crm))


@pytest.mark.slow
async def test_a_transferred_call_reaches_amocrm_and_bitrix24_once_with_the_final_agent(
    crm_url: str, tmp_path: Path, db: asyncpg.Connection
) -> None:
    """A customer (a known amoCRM contact, new to Bitrix24) talks to 101, who is handed over to
    102 by the API's blind transfer. amoCRM gets the ringing notification for the contact's
    manager, then the call once on the contact with 102 as `call_responsible`; Bitrix24 one
    batch: register, finish (USER_ID 102's user, who also becomes the new lead's responsible)
    and attachRecord, whose MP3 link the portal downloads without a key; the durations are
    the call's talk time; the webhook has the call's events in order, once each. The WAV link
    amoCRM holds plays both agents in turn, and stops working when it expires."""
    async with _vendors(fetch_records=True) as (amo, b24, hook):
        contact = amo.add_contact(TRANSFER_CUSTOMER, responsible_user_id=5009)
        config = _transfer_config(amo, b24, hook)
        engine = await start_engine(config, database_url=crm_url, data_dir=tmp_path)
        loop = asyncio.get_running_loop()
        endpoints = ["xfer-hook", "xfer-amo", "xfer-b24"]
        try:
            async with (
                carrier.customer(TRANSFER_CUSTOMER, workdir=tmp_path,
                                 audio_source=write_tone_wav(tmp_path / "c.wav", CUSTOMER_HZ, 30.0))
                as caller,
                agent("101", engine, tmp_path, write_tone_wav(tmp_path / "1.wav", HZ_101, 30.0))
                as a101,
                agent("102", engine, tmp_path, write_tone_wav(tmp_path / "2.wav", HZ_102, 30.0))
                as a102,
                aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http,
            ):  # fmt: skip
                await a101.wait_registered()
                await a102.wait_registered()
                await caller.dial(carrier.did_uri(TRANSFER_DID, engine.sip_port))
                await a101.wait_event("CALL_INCOMING", timeout=5)
                await a101.accept()
                await caller.wait_event("CALL_ESTABLISHED", timeout=5)
                talk_from = loop.time()
                bridged = bridged_call(engine)
                await asyncio.sleep(1.5)  # the customer talks to 101
                url = api_url(engine, f"/calls/{bridged.a.call_id}/transfer")
                async with http.post(url, json={"to": "102"}) as response:
                    assert response.status == 202, await response.text()
                await a102.wait_event("CALL_INCOMING", timeout=5)
                await a102.accept()
                await a102.wait_event("CALL_ESTABLISHED", timeout=5)
                await a101.wait_event("CALL_CLOSED", timeout=5)
                await wait_for(lambda: bridged.callee == "102", what="102 bridged")
                await asyncio.sleep(1.5)  # the customer talks to 102
                await caller.hangup()
                talked = loop.time() - talk_from
                await a102.wait_event("CALL_CLOSED", timeout=5)
                await idle(engine)
            deadline = loop.time() + 30
            while not (
                amo.calls
                and any(c.get("records") for c in b24.calls.values())
                and any(d.event == "call.ended" for d in hook.received)
            ) or await db.fetchval(
                "SELECT count(*) FROM outbox_deliveries WHERE delivered_at IS NULL"
                " AND dead_at IS NULL AND endpoint = ANY($1::text[])",
                endpoints,
            ):
                assert loop.time() < deadline, (
                    amo.requests,
                    b24.hits,
                    b24.downloads,
                    hook.received,
                )
                await asyncio.sleep(0.1)
            row = await db.fetchrow("SELECT * FROM calls WHERE call_id = $1", bridged.a.call_id)
            assert row is not None
            keys = {
                r["event_type"]: r["idempotency_key"]
                for r in await db.fetch(
                    "SELECT event_type, idempotency_key FROM outbox WHERE aggregate = $1",
                    f"call/{row['id']}",
                )
            }
            dead = await db.fetchval(
                "SELECT count(*) FROM outbox_deliveries WHERE dead_at IS NOT NULL"
                " AND endpoint = ANY($1::text[])",
                endpoints,
            )
            # The link amoCRM's player will fetch: no key; then, once it has expired, refused.
            (call,) = amo.calls
            async with aiohttp.ClientSession() as http:
                async with http.get(call["link"]) as r:
                    assert r.status == 200 and r.content_type == "audio/wav", await r.text()
                    (tmp_path / "amo.wav").write_bytes(await r.read())
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(call["link"]).query)
                expires = int(query["expires"][0])
                assert expires <= time.time() + 0.0003 * 86400 + 1
                while time.time() <= expires + 0.5:  # the deadline is the link's own
                    await asyncio.sleep(0.25)
                async with http.get(call["link"]) as r:
                    assert r.status == 410
        finally:
            await engine.stop()
    assert dead == 0
    transfers = row["transfers"]
    transfers = json.loads(transfers) if isinstance(transfers, str) else transfers
    assert [(t["from"], t["to"], t["result"]) for t in transfers] == [("101", "102", "completed")]
    assert (row["agent"], row["outcome"]) == ("102", "answered")
    duration = round(row["talk_seconds"])
    assert abs(row["talk_seconds"] - talked) < 1.5, (row["talk_seconds"], talked)

    # amoCRM: the notification for the contact's manager while it rang, then the call, once, on
    # the contact, with the agent who ended it responsible and the chain in its result.
    assert amo.notifications == [
        {"type": "phone_call", "phone_number": TRANSFER_CUSTOMER, "users": [5009]}
    ]
    assert [p for m, p, _ in amo.requests if m == "POST"] == ["/api/v2/events/", "/api/v4/calls"]
    assert (call["uniq"], call["direction"], call["entity_id"]) == (
        keys["call.ended"], "inbound", contact,
    )  # fmt: skip
    assert (call["call_responsible"], call["responsible_user_id"]) == (5002, 5002)
    assert (call["call_status"], call["duration"]) == (4, duration)
    assert call["call_result"] == "Conversation (101 → 102)"
    assert not amo.unsorted
    # Bitrix24: one batch; a lead made for the new number, ending with 102's user responsible.
    assert [m for m, _ in b24.hits] == ["batch"]
    (b24_call,) = b24.calls.values()
    assert b24_call["params"]["TYPE"] == "2" and b24_call["params"]["USER_ID"] == "9"
    assert b24_call["finish_params"]["USER_ID"] == "9"
    assert (b24_call["STATUS_CODE"], b24_call["DURATION"]) == ("200", duration)
    lead = b24.entities[TRANSFER_CUSTOMER.lstrip("+")]
    assert (lead["CRM_ENTITY_ID"], lead["ASSIGNED_BY_ID"]) == (b24_call["created_lead"], 9)
    (download,) = b24.downloads
    assert download["status"] == 200 and download["RECORD_URL"] == b24_call["records"][0]
    assert download["FILENAME"].endswith(".mp3") and download["content_type"] == "audio/mpeg"
    # The webhook: the call's events in order, each once; the transfer before the end.
    assert len(hook.received) == len(hook.unique()) and hook.bad_signatures == 0
    events = [d.event for d in hook.received if d.data.get("id") == row["id"]]
    assert events[0] == "call.started" and events[-1] == "call.ended", events
    assert events.count("call.transferred") == 1 and events.index("call.answered") < events.index(
        "call.transferred"
    )

    # What the links play: the whole call, 101 then 102 on the agent channel, the customer
    # throughout; the MP3 Bitrix24 downloaded is the same length.
    rate, stereo, channels = read_wav(tmp_path / "amo.wav")
    assert channels == 2
    agents = stereo[:, 1].copy()
    at_101, at_102 = first_tone_time(agents, HZ_101, rate), first_tone_time(agents, HZ_102, rate)
    assert at_101 is not None and at_102 is not None and at_101 < at_102
    assert first_tone_time(stereo[:, 0].copy(), CUSTOMER_HZ, rate) is not None
    _, mp3_rate, seconds = mp3_frames(download["body"])
    assert mp3_rate == rate and 0 <= seconds - len(stereo) / rate <= (1105 + 2 * 576) / rate
