"""Missed calls through the whole engine reach an amoCRM-shaped and a Bitrix24-shaped account
(sip_test_env.amocrm / .bitrix24) and a Standard Webhooks receiver: a new number rings with
amoCRM's call notification, lands in amoCRM's unsorted inbox and as a Bitrix24 lead, each
with its callback task linked to that lead, once and after its call; a withheld caller is
journaled and reaches the webhook in order (call.started, call.ended) with no callback task.
A power campaign's call to a known contact reaches both accounts as an outbound call."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from callcenter.runtime import start_engine
from dialer import Campaign, NewLead, PgLeadStore
from sip_test_env import carrier
from sip_test_env.amocrm import AmoAccount
from sip_test_env.audio import write_tone_wav
from sip_test_env.baresip import BaresipPeer
from sip_test_env.bitrix24 import BitrixPortal
from sip_test_env.crm import WebhookReceiver
from sip_test_env.ports import free_port
from sip_test_env.scripted_carrier import Customer, ScriptedCarrier
from sip_test_env.voices import person_wav, speak

from .conftest import engine_config, registrar_of
from .test_campaign import PROMPT, calling_hours_around_now, run_to_the_end
from .test_trunk import DID, agent, trunk_config

pytestmark = pytest.mark.peers

NEW_NUMBER = "+12125557700"
ENDPOINTS = ["vendors-hook", "vendors-amo", "vendors-b24"]


async def _missed(caller_number: str, engine_port: int, a101, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async with carrier.customer(caller_number, workdir=tmp_path) as caller:
        await caller.dial(carrier.did_uri(DID, engine_port))
        await a101.wait_event("CALL_INCOMING", timeout=5)
        # Nobody answers within the group's 4 s: the auto-reply answers, then hangs up.
        await caller.wait_event("CALL_ESTABLISHED", timeout=8)
        await a101.wait_event("CALL_CLOSED", timeout=5)
        await caller.wait_event("CALL_CLOSED", timeout=15)


async def test_missed_calls_reach_amocrm_bitrix24_and_the_webhook(
    pg_url: str, tmp_path: Path, db: asyncpg.Connection
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
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
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


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng for voices")
async def test_a_dialer_call_reaches_amocrm_and_bitrix24(
    pg_url: str, tmp_path: Path, db: asyncpg.Connection
) -> None:
    """A power campaign dials a lead who is a known amoCRM contact; a person answers and talks
    to agent 101: amoCRM gets the outbound call on the contact (call_responsible: the agent),
    Bitrix24 an outgoing call (TYPE 1) finished with status 200, each once."""
    phone = "12125556600"
    amo = await AmoAccount().start()
    b24 = await BitrixPortal().start()
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
            f'[[crm.endpoints]]\nname = "dial-amo"\nkind = "amocrm"\nurl = "{amo.url}"\n'
            f'secret = "{amo.access_token}"\nuser_map = {{"101" = 5001}}\ntimeout = 3\n'
            f'[[crm.endpoints]]\nname = "dial-b24"\nkind = "bitrix24"\n'
            f'url = "{b24.webhook_url}"\nuser_map = {{"*" = 1, "101" = 7}}\ntimeout = 3\n'
            "[crm.retry]\nbase_delay = 0.2\nmax_delay = 0.5\n"
        )
        engine = await start_engine(
            engine_config(extra=extra, crm=crm), database_url=pg_url, data_dir=tmp_path
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
                while not (amo.calls and any(c.get("finished") for c in b24.calls.values())):
                    assert loop.time() < deadline, (amo.requests, b24.hits)
                    await asyncio.sleep(0.1)
                await store.set_state(campaign.id, "stop", now=datetime.now(UTC))
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
    dead = await db.fetchval(
        "SELECT count(*) FROM outbox_deliveries WHERE dead_at IS NOT NULL"
        " AND endpoint IN ('dial-amo', 'dial-b24')"
    )
    assert dead == 0
