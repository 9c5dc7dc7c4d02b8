"""amoCRM contract: the outbox worker against an amoCRM-shaped account (sip_test_env.amocrm,
a real HTTP server built from the documented requests and answers) on a real PostgreSQL.

Pages the shapes come from:
- https://www.amocrm.ru/developers/content/crm_platform/calls-api (POST /api/v4/calls, a batch;
  a number no entity has is "not added", reported in `errors` of the 200)
- https://www.amocrm.com/developers/content/api_v4/incoming-leads/ (POST
  /api/v4/leads/unsorted/sip, metadata uniq/duration/service_code/link/phone/called_at/from)
- https://www.amocrm.ru/developers/content/crm_platform/tasks-api (entity_id, entity_type,
  task_type_id, complete_till, request_id)
- https://www.amocrm.ru/developers/content/oauth/step-by-step and
  https://developers.kommo.com/reference/get-token (code exchange, refresh with rotation)
- https://www.amocrm.com/developers/content/api/errors (429 above 7 requests/s)
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from callcenter.cli import main
from crm_bridge import (
    CallbackRequest,
    CallEnded,
    CallStarted,
    CrmEndpoint,
    CrmStore,
    OAuthClient,
    OutboxWorker,
    RetryPolicy,
)
from crm_bridge.oauth import TokenStore
from sip_test_env.amocrm import AmoAccount

from ._helpers import FakeClock, wait_until

FAST = RetryPolicy(base_delay=0.05, max_delay=0.3, poll_interval=0.05, batch_size=8, lanes=2)
USERS = {"101": 5001, "102": 5002}
T0 = datetime(2026, 5, 6, 9, 0, tzinfo=UTC)


def amo_endpoint(account: AmoAccount, **kwargs: object) -> CrmEndpoint:
    options: dict[str, object] = {
        "secret": account.access_token,
        "user_map": USERS,
        "recording_link": "https://pbx.example/calls/{id}/recording",
        "timeout": 2.0,
        **kwargs,
    }
    return CrmEndpoint("amo", "amocrm", account.url, **options)  # type: ignore[arg-type]


async def answered_call(store: CrmStore, phone: str, *, agent: str = "101") -> int:
    row = await store.call_started(
        CallStarted(f"a{phone}", "inbound", phone, "15550100", T0, customer_phone=phone)
    )
    await store.call_answered(row, T0 + timedelta(seconds=3), agent=agent)
    await store.call_ended(
        row,
        CallEnded(T0 + timedelta(seconds=63), "answered", 200, recording_path=f"{row}.wav"),
    )
    return row


async def missed_call(store: CrmStore, phone: str) -> tuple[int, int]:
    row = await store.call_started(
        CallStarted(f"m{phone}", "inbound", phone, "15550100", T0, customer_phone=phone)
    )
    task = await store.call_ended(
        row,
        CallEnded(T0 + timedelta(seconds=20), "missed", 487),
        callback=CallbackRequest(None, T0 + timedelta(minutes=15), f"Call back {phone}"),
    )
    assert task is not None
    return row, task.id


async def drain(pool: asyncpg.Pool, worker: OutboxWorker, timeout: float = 20.0) -> None:
    async def done() -> bool:
        return not await pool.fetchval(
            "SELECT count(*) FROM outbox_deliveries WHERE delivered_at IS NULL AND dead_at IS NULL"
        )

    await worker.start()
    try:
        await wait_until(done, timeout=timeout, what="outbox drained")
    finally:
        await worker.stop()


async def refs_of(pool: asyncpg.Pool, aggregate: str) -> dict[str, object]:
    text = await pool.fetchval(
        "SELECT remote_ref FROM outbox_deliveries WHERE aggregate = $1 AND remote_ref IS NOT NULL"
        " ORDER BY event_id DESC LIMIT 1",
        aggregate,
    )
    return json.loads(text) if text else {}


async def test_known_caller_call_carries_responsible_and_the_task_attaches_to_the_contact(
    pool: asyncpg.Pool,
) -> None:
    account = await AmoAccount().start()
    try:
        contact = account.add_contact("+79151234567", responsible_user_id=5002)
        endpoint = amo_endpoint(account)
        store = CrmStore(pool, endpoints=[endpoint], default_country_code="7")
        answered = await answered_call(store, "+79151234567")
        _missed, task_id = await missed_call(store, "+79151234567")
        await drain(pool, OutboxWorker(pool, [endpoint], policy=FAST))
    finally:
        await account.stop()
    assert [c["direction"] for c in account.calls] == ["inbound", "inbound"]
    by_status = {c["call_status"]: c for c in account.calls}
    talk, lost = by_status[4], by_status[6]
    assert (talk["call_responsible"], talk["responsible_user_id"]) == (5001, 5001)
    assert talk["link"] == f"https://pbx.example/calls/{answered}/recording"
    assert talk["duration"] == 60 and talk["phone"] == "+79151234567"
    # Nobody answered: the contact's manager is responsible for the missed call.
    assert lost["call_responsible"] == 5002 and "responsible_user_id" not in lost
    assert not account.unsorted
    (task,) = account.tasks.values()
    assert (task["entity_type"], task["entity_id"]) == ("contacts", contact)
    assert task["responsible_user_id"] == 5002  # no assignee: the contact's manager
    assert task["task_type_id"] == 1 and task["text"] == "Call back +79151234567"
    assert task["complete_till"] == int((T0 + timedelta(minutes=15)).timestamp())
    assert (await refs_of(pool, f"call/{answered}"))["entity_id"] == contact
    assert (await refs_of(pool, f"task/{task_id}"))["task_id"] == task["id"]


async def test_unknown_caller_goes_to_the_unsorted_inbox_and_its_task_to_that_lead(
    pool: asyncpg.Pool,
) -> None:
    account = await AmoAccount().start()
    try:
        endpoint = amo_endpoint(account)
        store = CrmStore(pool, endpoints=[endpoint], default_country_code="7")
        row, _task_id = await missed_call(store, "+79161112233")
        await drain(pool, OutboxWorker(pool, [endpoint], policy=FAST))
    finally:
        await account.stop()
    assert not account.calls  # /api/v4/calls would have dropped it
    (entry,) = account.unsorted
    meta = entry["metadata"]
    assert meta["phone"] == meta["from"] == "+79161112233"
    assert meta["is_call_event_needed"] is True and meta["service_code"] == "callcenter"
    assert meta["called_at"] == int(T0.timestamp()) and meta["duration"] == 0
    (task,) = account.tasks.values()
    assert (task["entity_type"], task["entity_id"]) == ("leads", entry["lead_id"])
    refs = await refs_of(pool, f"call/{row}")
    assert refs["lead_id"] == entry["lead_id"] and refs["unsorted_uid"] == entry["uid"]


async def test_per_item_errors_in_a_2xx_are_read(pool: asyncpg.Pool) -> None:
    """A 200 whose `errors` say "not found" sends the call to the unsorted inbox; any other
    per-item refusal dead-letters it with amoCRM's reason instead of counting it delivered."""
    account = await AmoAccount().start()
    try:
        account.add_contact("+79150000001", responsible_user_id=5001)
        account.add_contact("+79150000002", responsible_user_id=5001)
        account.call_errors["79150000001"] = {"code": "NotFound", "title": "Entity not found"}
        account.call_errors["79150000002"] = {
            "code": "InvalidDuration",
            "title": "Bad Request",
            "detail": "duration is too long",
        }
        endpoint = amo_endpoint(account)
        store = CrmStore(pool, endpoints=[endpoint], default_country_code="7")
        await answered_call(store, "+79150000001")
        refused = await answered_call(store, "+79150000002")
        await drain(pool, OutboxWorker(pool, [endpoint], policy=FAST))
    finally:
        await account.stop()
    assert [u["metadata"]["phone"] for u in account.unsorted] == ["+79150000001"]
    dead = await pool.fetch(
        "SELECT aggregate, last_error FROM outbox_deliveries WHERE dead_at IS NOT NULL"
    )
    assert [(d["aggregate"], d["last_error"]) for d in dead] == [
        (f"call/{refused}", "amoCRM refused the call: duration is too long")
    ]


async def test_a_retry_after_a_timeout_does_not_duplicate_the_task(pool: asyncpg.Pool) -> None:
    account = await AmoAccount(hang_seconds=1.5).start()
    try:
        account.add_contact("+79151234567", responsible_user_id=5002)
        account.hang_after["/api/v4/tasks"] = 1  # made, but the answer comes after our timeout
        endpoint = amo_endpoint(account, timeout=0.5)
        store = CrmStore(pool, endpoints=[endpoint], default_country_code="7")
        _, task_id = await missed_call(store, "+79151234567")
        await drain(pool, OutboxWorker(pool, [endpoint], policy=FAST))
    finally:
        await account.stop()
    assert len(account.tasks) == 1
    (task,) = account.tasks.values()
    assert (await refs_of(pool, f"task/{task_id}"))["task_id"] == task["id"]
    posts = [p for m, p, _ in account.requests if m == "POST" and p == "/api/v4/tasks"]
    assert len(posts) == 1  # the retry listed the contact's tasks and adopted the first one


async def test_a_timed_out_unsorted_entry_is_found_not_posted_twice(pool: asyncpg.Pool) -> None:
    account = await AmoAccount(hang_seconds=1.5).start()
    try:
        account.hang_after["/api/v4/leads/unsorted/sip"] = 1
        endpoint = amo_endpoint(account, timeout=0.5, events=frozenset({"call.ended"}))
        store = CrmStore(pool, endpoints=[endpoint], default_country_code="7")
        row, _ = await missed_call(store, "+79161112233")
        await drain(pool, OutboxWorker(pool, [endpoint], policy=FAST))
    finally:
        await account.stop()
    assert len(account.unsorted) == 1
    assert (await refs_of(pool, f"call/{row}"))["lead_id"] == account.unsorted[0]["lead_id"]


async def test_429_backs_off_without_losing_or_duplicating(pool: asyncpg.Pool) -> None:
    """The account allows 3 requests/s while the endpoint is told 20: amoCRM answers 429, the
    worker pauses the account and retries; every call arrives exactly once."""
    account = await AmoAccount(rate=3).start()
    try:
        phones = [f"+7915000{i:04d}" for i in range(12)]
        for phone in phones:
            account.add_contact(phone, responsible_user_id=5001)
        endpoint = amo_endpoint(account, rate_limit=20.0, burst=20)
        store = CrmStore(pool, endpoints=[endpoint], default_country_code="7")
        for phone in phones:
            await answered_call(store, phone)
        worker = OutboxWorker(pool, [endpoint], policy=FAST)
        await drain(pool, worker, timeout=40)
    finally:
        await account.stop()
    assert account.throttled > 0 and worker.stats.throttled > 0
    assert sorted(c["phone"] for c in account.calls) == phones
    assert len({c["uniq"] for c in account.calls}) == len(phones)
    assert not await pool.fetchval(
        "SELECT count(*) FROM outbox_deliveries WHERE dead_at IS NOT NULL"
    )


async def test_the_default_limit_keeps_within_7_per_second(pool: asyncpg.Pool) -> None:
    account = await AmoAccount().start()
    try:
        phones = [f"+7916000{i:04d}" for i in range(15)]
        for phone in phones:
            account.add_contact(phone, responsible_user_id=5001)
        endpoint = amo_endpoint(account)
        store = CrmStore(pool, endpoints=[endpoint], default_country_code="7")
        for phone in phones:
            await answered_call(store, phone)
        await drain(pool, OutboxWorker(pool, [endpoint], policy=FAST), timeout=30)
    finally:
        await account.stop()
    assert account.throttled == 0 and account.peak_rate() <= 7
    assert len(account.calls) == len(phones)


async def test_oauth_code_exchange_and_refresh_rotation_shared_by_nodes(
    pool: asyncpg.Pool,
) -> None:
    """Tokens live in PostgreSQL. When the access token expires, two nodes asking at once make
    one refresh (the refresh token works once), and both use the new token; a 401 for a token
    the CRM revoked early refreshes at once."""
    account = await AmoAccount().start()
    clock = FakeClock()
    client = OAuthClient(account.client_id, account.client_secret, "https://pbx.example/oauth")
    endpoint = amo_endpoint(account, secret="", oauth=client)
    try:
        async with aiohttp.ClientSession() as session:
            node_a = TokenStore(pool, session, now=clock)
            node_b = TokenStore(pool, session, now=clock)
            await node_a.exchange_code(endpoint, "auth-code-1")
            first = account.access_token
            assert await node_b.access_token(endpoint) == first
            clock.advance(86400 - 60)  # within the refresh margin of the 24 h expiry
            spent = account.refresh_token
            a, b = await asyncio.gather(
                node_a.access_token(endpoint), node_b.access_token(endpoint)
            )
            assert a == b == account.access_token != first
            assert account.refreshes == 1 and account.spent_refresh_tokens == [spent]
            assert node_a.refreshes + node_b.refreshes == 1
            stored = await pool.fetchrow("SELECT * FROM crm_oauth_tokens WHERE endpoint = 'amo'")
            assert stored["refresh_token"] == account.refresh_token != spent

        account.add_contact("+79151234567", responsible_user_id=5002)
        account.access_token = "revoked-and-reissued"  # amoCRM no longer takes ours
        store = CrmStore(pool, endpoints=[endpoint], default_country_code="7")
        await answered_call(store, "+79151234567")
        await drain(pool, OutboxWorker(pool, [endpoint], policy=FAST, now=clock))
    finally:
        await account.stop()
    assert account.refreshes == 2 and len(account.calls) == 1
    statuses = [p for m, p, _ in account.requests if p == "/oauth2/access_token"]
    assert len(statuses) == 3  # the code, the expiry refresh, the refresh after the 401


async def test_task_life_cycle_internal_and_outbound_calls(pool: asyncpg.Pool) -> None:
    """A repeat missed call updates the amoCRM task (PATCH to the id amoCRM gave it), doing it
    completes it; internal calls are not sent; an outbound call carries its agent."""
    account = await AmoAccount().start()
    try:
        account.add_contact("+79161112233", responsible_user_id=5001)
        endpoint = amo_endpoint(account)
        store = CrmStore(pool, endpoints=[endpoint], default_country_code="7")
        _, task_id = await missed_call(store, "+79161112233")
        internal = await store.call_started(CallStarted("i", "internal", "101", "102", T0))
        await store.call_ended(internal, CallEnded(T0 + timedelta(seconds=5), "answered", 200))
        outbound = await store.call_started(
            CallStarted(
                "o",
                "outbound",
                "102",
                "+79161112233",
                T0,
                agent="102",
                customer_phone="+79161112233",
            )
        )
        await store.call_ended(outbound, CallEnded(T0 + timedelta(seconds=30), "busy", 486))
        await store.open_callback_task(
            "+79161112233",
            assignee="102",
            due_at=T0 + timedelta(hours=1),
            call_row_id=None,
            text="Called twice",
        )
        await store.complete_task(task_id)
        worker = OutboxWorker(pool, [endpoint], policy=FAST)
        await drain(pool, worker)
    finally:
        await account.stop()
    # The internal call is not sent; the inbound one's notification came too late (T0).
    assert sorted(c["direction"] for c in account.calls) == ["inbound", "outbound"]
    assert not account.notifications and worker.stats.skipped == 4
    (out,) = [c for c in account.calls if c["direction"] == "outbound"]
    assert (out["call_status"], out["duration"], out["call_responsible"]) == (7, 0, 5002)
    (task,) = account.tasks.values()
    assert (task["text"], task["responsible_user_id"], task["is_completed"]) == (
        "Called twice",
        5002,
        True,
    )
    assert task["result"] == {"text": "Done"}
    methods = [m for m, p, _ in account.requests if p == "/api/v4/tasks"]
    assert methods == ["POST", "PATCH", "PATCH"]


async def test_crm_auth_command_stores_the_first_tokens(
    pool: asyncpg.Pool, crm_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    account = await AmoAccount().start()
    config = tmp_path / "cc.toml"
    config.write_text(
        f'[[crm.endpoints]]\nname = "amo"\nkind = "amocrm"\nurl = "{account.url}"\n'
        f'oauth = {{client_id = "{account.client_id}", client_secret = "{account.client_secret}",'
        ' redirect_uri = "https://pbx.example/oauth"}\n'
    )
    base = ["crm-auth", "amo", "--config", str(config), "--database-url", crm_url]
    try:
        assert await asyncio.to_thread(main, [*base, "--code", "auth-code-1"]) == 0
        # A code works once: the second exchange fails with amoCRM's reason, nothing stored.
        assert await asyncio.to_thread(main, [*base, "--code", "auth-code-1"]) == 1
    finally:
        await account.stop()
    out = capsys.readouterr()
    assert "amo: OAuth tokens stored" in out.out
    assert "Token has been revoked" in out.err
    row = await pool.fetchrow("SELECT * FROM crm_oauth_tokens")
    assert (row["endpoint"], row["account"]) == ("amo", account.url)
    assert (row["access_token"], row["refresh_token"]) == (
        account.access_token,
        account.refresh_token,
    )


async def test_a_ringing_inbound_call_notifies_the_responsible_user(pool: asyncpg.Pool) -> None:
    """call.started raises amoCRM's call notification for the contact's manager (everyone for
    an unknown caller); the lookup serves the call's later events too; a notification that
    would come after the call could have stopped ringing is not sent."""
    account = await AmoAccount().start()
    try:
        account.add_contact("+79151234567", responsible_user_id=5002)
        endpoint = amo_endpoint(account)
        store = CrmStore(pool, endpoints=[endpoint], default_country_code="7")
        now = datetime.now(UTC)
        for call_id, phone, at in [
            ("k", "+79151234567", now),
            ("u", "+79161112233", now),
            ("old", "+79151234567", now - timedelta(minutes=5)),
        ]:
            row = await store.call_started(
                CallStarted(call_id, "inbound", phone, "15550100", at, customer_phone=phone)
            )
            await store.call_ended(row, CallEnded(at + timedelta(seconds=9), "missed", 487))
        await drain(pool, OutboxWorker(pool, [endpoint], policy=FAST))
    finally:
        await account.stop()
    # Events of different calls have no order between them (only a call's own are ordered).
    assert sorted(account.notifications, key=lambda n: n["phone_number"]) == [
        {"type": "phone_call", "phone_number": "+79151234567", "users": [5002]},
        {"type": "phone_call", "phone_number": "+79161112233"},
    ]
    lookups = [p for m, p, _ in account.requests if p == "/api/v4/contacts"]
    assert len(lookups) == 3  # one per call: call.ended reuses call.started's
    assert len(account.calls) == 2 and len(account.unsorted) == 1


async def test_calls_share_requests_under_the_rate_limit_and_a_bad_item_fails_alone(
    pool: asyncpg.Pool,
) -> None:
    """With a backlog, calls rendered while the limiter holds the first one back go out in one
    POST /api/v4/calls (amoCRM takes a batch), each getting its own answer back. A batch refused
    for one invalid item (400) is retried item by item: only that one is dead-lettered."""
    account = await AmoAccount().start()
    try:
        phones = [f"+7917000{i:04d}" for i in range(16)]
        for phone in phones:
            account.add_contact(phone, responsible_user_id=5001)
        account.invalid_phones.add(phones[5].lstrip("+"))
        endpoint = amo_endpoint(account, rate_limit=2.0, burst=2)
        store = CrmStore(pool, endpoints=[endpoint], default_country_code="7")
        rows = [await answered_call(store, phone) for phone in phones]
        worker = OutboxWorker(pool, [endpoint], policy=FAST)
        await drain(pool, worker, timeout=60)
    finally:
        await account.stop()
    assert max(account.batch_sizes) > 1 and worker.stats.batched > 1
    delivered = sorted(c["phone"] for c in account.calls)
    assert delivered == sorted(p for p in phones if p != phones[5])
    assert len({c["uniq"] for c in account.calls}) == len(delivered)
    dead = await pool.fetch("SELECT aggregate FROM outbox_deliveries WHERE dead_at IS NOT NULL")
    assert [d["aggregate"] for d in dead] == [f"call/{rows[5]}"]
    by_uniq = {c["uniq"]: c["id"] for c in account.calls}
    keys = {
        r["aggregate"]: r["idempotency_key"]
        for r in await pool.fetch("SELECT aggregate, idempotency_key FROM outbox"
                                  " WHERE event_type = 'call.ended'")
    }  # fmt: skip
    for row in rows:
        if row != rows[5]:  # each got its own call id back out of the shared answer
            refs = await refs_of(pool, f"call/{row}")
            assert refs["amo_call_id"] == by_uniq[keys[f"call/{row}"]]


async def test_amocrms_responsible_user_becomes_the_contacts_manager(pool: asyncpg.Pool) -> None:
    """The responsible user amoCRM names for a contact (mapped to an extension by user_map)
    becomes our contact's responsible manager: inbound routing and callbacks follow amoCRM."""
    account = await AmoAccount().start()
    try:
        account.add_contact("+79151234567", responsible_user_id=5002)
        endpoint = amo_endpoint(account)
        store = CrmStore(pool, endpoints=[endpoint], default_country_code="7")
        await store.upsert_contact("+79151234567", responsible="101")
        await answered_call(store, "+79151234567")
        await drain(pool, OutboxWorker(pool, [endpoint], policy=FAST))
    finally:
        await account.stop()
    contact = await store.get_contact("+79151234567")
    assert contact is not None and contact.responsible == "102"
