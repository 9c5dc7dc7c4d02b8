"""Bitrix24 contract: the outbox worker against a Bitrix24-shaped portal
(sip_test_env.bitrix24, a real HTTP server built from the documented methods and answers) on a
real PostgreSQL.

Pages the shapes come from:
- https://dev.1c-bitrix.ru/rest_help/scope_telephony/telephony/telephony_externalcall_register.php
- https://dev.1c-bitrix.ru/rest_help/scope_telephony/telephony/telephony_externalcall_finish.php
- https://dev.1c-bitrix.ru/rest_help/scope_telephony/telephony/index.php (attachRecord,
  searchCrmEntities)
- https://apidocs.bitrix24.com/api-reference/how-to-call-rest-api/batch.html
- https://apidocs.bitrix24.com/settings/performance/limits.html (QUERY_LIMIT_EXCEEDED, 50 / 2 s)
- https://apidocs.bitrix24.com/api-reference/tasks/tasks-task-add.html (UF_CRM_TASK)
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from callcenter.cli import main
from crm_bridge import (
    CallEnded,
    CallStarted,
    CrmEndpoint,
    CrmStore,
    OAuthClient,
    OutboxWorker,
)
from sip_test_env.bitrix24 import BitrixPortal

from .test_amocrm_contract import FAST, T0, drain, missed_call, refs_of

USERS = {"101": 7, "102": 9, "*": 1}


def b24(portal: BitrixPortal, **kwargs: object) -> CrmEndpoint:
    options: dict[str, object] = {
        "user_map": USERS,
        "recording_link": "https://pbx.example/calls/{id}/recording",
        "timeout": 2.0,
        **kwargs,
    }
    return CrmEndpoint("b24", "bitrix24", portal.webhook_url, **options)  # type: ignore[arg-type]


async def answered(store: CrmStore, phone: str, agent: str = "101") -> int:
    row = await store.call_started(
        CallStarted(f"a{phone}", "inbound", phone, "15550100", T0, customer_phone=phone)
    )
    await store.call_answered(row, T0 + timedelta(seconds=2), agent=agent)
    await store.call_ended(
        row, CallEnded(T0 + timedelta(seconds=47), "answered", 200, recording_path=f"{row}.wav")
    )
    return row


async def test_one_batch_per_call_and_tasks_bound_to_the_entity(pool: asyncpg.Pool) -> None:
    portal = await BitrixPortal().start()
    try:
        portal.add_entity("+79151234567", "CONTACT", 42, assigned=9)
        endpoint = b24(portal)
        store = CrmStore(pool, endpoints=[endpoint], default_country_code="7")
        talk = await answered(store, "+79151234567")
        _, known_task = await missed_call(store, "+79151234567")
        new_row, new_task = await missed_call(store, "+79169990000")
        await store.complete_task(new_task)
        await drain(pool, OutboxWorker(pool, [endpoint], policy=FAST))
    finally:
        await portal.stop()
    methods = [m for m, _ in portal.hits]
    assert methods.count("batch") == 3  # register + finish (+ attachRecord) in one request each
    calls = {c["params"]["PHONE_NUMBER"]: c for c in portal.calls.values()}
    answered_call = next(c for c in portal.calls.values() if c.get("records"))
    assert answered_call["records"] == [f"https://pbx.example/calls/{talk}/recording"]
    assert (answered_call["DURATION"], answered_call["STATUS_CODE"]) == (45, "200")
    assert answered_call["params"]["USER_ID"] == "7" and answered_call["params"]["TYPE"] == "2"
    assert all(c["finished"] for c in portal.calls.values())
    lost = [c for c in portal.calls.values() if c["STATUS_CODE"] == "304"]
    assert len(lost) == 2 and all(c["params"]["USER_ID"] == "1" for c in lost)
    # The unknown number became a lead; its task is bound to that lead, the known one's to
    # the contact and its responsible user.
    lead = calls["+79169990000"]["created_lead"]
    tasks = {t["TITLE"]: t for t in portal.tasks.values()}
    assert tasks["Call back +79151234567"]["UF_CRM_TASK"] == ["C_42"]
    assert tasks["Call back +79151234567"]["RESPONSIBLE_ID"] == 9
    assert tasks["Call back +79169990000"]["UF_CRM_TASK"] == [f"L_{lead}"]
    assert tasks["Call back +79169990000"]["status"] == "done"
    assert (await refs_of(pool, f"task/{known_task}"))["task_id"] in portal.tasks
    assert (await refs_of(pool, f"call/{new_row}"))["created_lead"] == lead


async def test_a_failed_command_in_a_batch_is_retried_alone(pool: asyncpg.Pool) -> None:
    portal = await BitrixPortal(fail_finish=1).start()
    try:
        endpoint = b24(portal)
        store = CrmStore(pool, endpoints=[endpoint], default_country_code="7")
        row = await answered(store, "+79151234567")
        await drain(pool, OutboxWorker(pool, [endpoint], policy=FAST))
    finally:
        await portal.stop()
    (call,) = portal.calls.values()  # registered once
    assert call["finished"] and call["records"] == [f"https://pbx.example/calls/{row}/recording"]
    refs = await refs_of(pool, f"call/{row}")
    assert refs["b24_call_id"] == call["CALL_ID"] and refs["finished"] and refs["recorded"]


async def test_query_limit_exceeded_backs_off_without_losing_or_duplicating(
    pool: asyncpg.Pool,
) -> None:
    """The portal's bucket holds 4; the endpoint is told it may burst 50: the portal answers
    503 QUERY_LIMIT_EXCEEDED, the worker pauses the portal and retries; each call arrives once."""
    portal = await BitrixPortal(capacity=4, drain=4.0).start()
    try:
        endpoint = b24(portal, events=frozenset({"call.ended"}), rate_limit=50.0, burst=50)
        store = CrmStore(pool, endpoints=[endpoint], default_country_code="7")
        phones = [f"+7915100{i:04d}" for i in range(12)]
        for phone in phones:
            await answered(store, phone)
        worker = OutboxWorker(pool, [endpoint], policy=FAST)
        await drain(pool, worker, timeout=40)
    finally:
        await portal.stop()
    assert portal.limited > 0 and worker.stats.throttled > 0
    assert sorted(c["params"]["PHONE_NUMBER"] for c in portal.calls.values()) == phones
    assert all(c["finished"] and len(c["records"]) == 1 for c in portal.calls.values())


async def test_local_app_oauth_refreshes_an_expired_token(pool: asyncpg.Pool) -> None:
    portal = await BitrixPortal().start()
    try:
        client = OAuthClient(
            portal.client_id, portal.client_secret, token_url=f"{portal.url}/oauth/token/"
        )
        endpoint = CrmEndpoint(
            "b24", "bitrix24", portal.url, user_map=USERS, oauth=client, timeout=2.0
        )
        # Tokens stored earlier (the install step); the portal has expired the access token.
        await pool.execute(
            "INSERT INTO crm_oauth_tokens (endpoint, account, access_token, refresh_token,"
            " expires_at) VALUES ('b24', $1, 'old-token', $2, now() + interval '1 hour')",
            portal.url,
            portal.refresh_token,
        )
        store = CrmStore(pool, endpoints=[endpoint], default_country_code="7")
        await answered(store, "+79151234567")
        await drain(pool, OutboxWorker(pool, [endpoint], policy=FAST))
    finally:
        await portal.stop()
    assert portal.refreshes == 1 and len(portal.calls) == 1
    stored = await pool.fetchval("SELECT access_token FROM crm_oauth_tokens")
    assert stored == portal.access_token


async def test_a_retry_after_a_timeout_does_not_duplicate_the_task(pool: asyncpg.Pool) -> None:
    portal = await BitrixPortal(hang_seconds=1.5).start()
    try:
        portal.add_entity("+79151234567", "CONTACT", 42, assigned=9)
        portal.hang_after["tasks.task.add"] = 1  # made, but the answer comes after our timeout
        endpoint = b24(portal, timeout=0.5)
        store = CrmStore(pool, endpoints=[endpoint], default_country_code="7")
        _, task_id = await missed_call(store, "+79151234567")
        await drain(pool, OutboxWorker(pool, [endpoint], policy=FAST))
    finally:
        await portal.stop()
    (task,) = portal.tasks.values()  # the retry listed same-title tasks and adopted it
    assert (await refs_of(pool, f"task/{task_id}"))["task_id"] == task["id"]
    assert [m for m, _ in portal.hits].count("tasks.task.add") == 1


async def test_the_portals_responsible_user_becomes_the_contacts_manager(
    pool: asyncpg.Pool,
) -> None:
    """The user Bitrix24 has assigned to the caller's contact (ASSIGNED_BY_ID of
    searchCrmEntities, mapped to an extension by user_map) becomes our contact's responsible
    manager, as with amoCRM: the next inbound call rings that manager first."""
    portal = await BitrixPortal().start()
    try:
        portal.add_entity("+79151234567", "CONTACT", 42, assigned=9)
        endpoint = b24(portal)
        store = CrmStore(pool, endpoints=[endpoint], default_country_code="7")
        await missed_call(store, "+79151234567")  # no manager of ours yet: the task searches
        assert (await store.get_contact("+79151234567")).responsible is None  # type: ignore[union-attr]
        await drain(pool, OutboxWorker(pool, [endpoint], policy=FAST))
    finally:
        await portal.stop()
    contact = await store.get_contact("+79151234567")
    assert contact is not None and contact.responsible == "102"


async def test_crm_auth_exchanges_a_portal_code_for_the_first_tokens(
    pool: asyncpg.Pool, crm_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`callcenter crm-auth` on a local app: the code from the portal's authorize redirect is
    exchanged once (GET oauth/token/?grant_type=authorization_code) and the tokens are stored
    for every node; the same code again is refused with the portal's reason."""
    portal = await BitrixPortal().start()
    config = tmp_path / "cc.toml"
    config.write_text(
        f'[[crm.endpoints]]\nname = "b24"\nkind = "bitrix24"\nurl = "{portal.url}"\n'
        'user_map = { "*" = 1 }\n'
        f'oauth = {{client_id = "{portal.client_id}", client_secret = "{portal.client_secret}",'
        f' token_url = "{portal.url}/oauth/token/"}}\n'
    )
    code = portal.issue_code()
    base = ["crm-auth", "b24", "--config", str(config), "--database-url", crm_url]
    try:
        assert await asyncio.to_thread(main, [*base, "--code", code]) == 0
        assert await asyncio.to_thread(main, [*base, "--code", code]) == 1
    finally:
        await portal.stop()
    out = capsys.readouterr()
    assert "b24: OAuth tokens stored" in out.out
    assert "Invalid authorization code" in out.err
    row = await pool.fetchrow("SELECT * FROM crm_oauth_tokens")
    assert (row["endpoint"], row["access_token"], row["refresh_token"]) == (
        "b24",
        portal.access_token,
        portal.refresh_token,
    )
    assert json.loads(row["extra"])["member_id"] == "m1"
