"""Outbox delivery on a real PostgreSQL to real aiohttp receivers on 127.0.0.1: signed webhooks,
at-least-once with one idempotency key, order per aggregate, restarts, two workers sharing the
database, backoff and dead letters (on a fake clock), and amoCRM-shaped payloads."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from multidict import CIMultiDict

from crm_bridge import (
    SIGNATURE_HEADER,
    CallbackRequest,
    CallEnded,
    CallStarted,
    CrmEndpoint,
    CrmStore,
    OutboxWorker,
    RetryPolicy,
    Verdict,
    backoff_delay,
    classify_status,
    verify_signature,
    webhooks,
)

from ._helpers import FakeClock, Receiver, free_port, wait_until

SECRET = "s3cret"
FAST = RetryPolicy(base_delay=0.02, max_delay=0.1, poll_interval=0.05, batch_size=8, lanes=2)


def hook(url: str, **kwargs: object) -> CrmEndpoint:
    return CrmEndpoint("hook", "webhook", url + "/hook", secret=SECRET, timeout=2.0, **kwargs)  # type: ignore[arg-type]


async def make_calls(store: CrmStore, count: int, *, missed_every: int = 3) -> None:
    """`count` inbound calls through the whole life cycle: 4 call events each, and a callback
    task (created, then updated by the next missed call from the same number) for some."""
    t0 = datetime.now(UTC)
    for i in range(count):
        phone = f"+4477009001{i % 2:02d}"
        at = t0 + timedelta(seconds=i)
        row = await store.call_started(
            CallStarted(f"c{i}", "inbound", phone, "15550100", at, customer_phone=phone)
        )
        await store.call_ringing(row, at + timedelta(seconds=1))
        if i % missed_every:
            await store.call_answered(row, at + timedelta(seconds=2), agent="101")
            await store.call_ended(row, CallEnded(at + timedelta(seconds=9), "answered", 200))
        else:
            await store.call_ringing(row, at + timedelta(seconds=1))
            await store.call_ended(
                row,
                CallEnded(at + timedelta(seconds=9), "missed", 487),
                callback=CallbackRequest("102", at + timedelta(minutes=30), f"call {i}"),
            )


async def event_order(pool: asyncpg.Pool) -> dict[str, tuple[str, int]]:
    rows = await pool.fetch("SELECT idempotency_key, aggregate, id FROM outbox")
    return {r["idempotency_key"]: (r["aggregate"], r["id"]) for r in rows}


def assert_in_order_per_aggregate(keys: list[str], order: dict[str, tuple[str, int]]) -> None:
    """First arrivals of each aggregate's events come in outbox order (a repeat after a lost
    ack may arrive later, never an event before its predecessor)."""
    seen: set[str] = set()
    firsts: dict[str, list[int]] = defaultdict(list)
    for key in keys:
        if key not in seen:
            seen.add(key)
            aggregate, event_id = order[key]
            firsts[aggregate].append(event_id)
    for aggregate, ids in firsts.items():
        assert ids == sorted(ids), f"{aggregate} delivered out of order: {ids}"


async def pending(pool: asyncpg.Pool) -> int:
    return await pool.fetchval(
        "SELECT count(*) FROM outbox_deliveries WHERE delivered_at IS NULL AND dead_at IS NULL"
    )


def test_status_classes() -> None:
    assert [classify_status(s) for s in (200, 201, 204, 299)] == [Verdict.DELIVERED] * 4
    retry = (401, 403, 408, 429, 500, 502, 503, 504)
    assert [classify_status(s) for s in retry] == [Verdict.RETRY] * len(retry)
    dead = (301, 400, 404, 410, 413, 422)
    assert [classify_status(s) for s in dead] == [Verdict.DEAD] * len(dead)


def test_backoff_grows_exponentially_within_jitter_and_cap() -> None:
    policy = RetryPolicy(base_delay=1.0, factor=2.0, max_delay=60.0, jitter=0.25)
    rng = random.Random(7)
    for attempt, nominal in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (30, 60.0)]:
        for _ in range(50):
            assert 0.75 * nominal <= backoff_delay(attempt, policy, rng) <= nominal
    no_jitter = RetryPolicy(base_delay=0.5, jitter=0.0)
    assert backoff_delay(3, no_jitter, rng) == 2.0
    with pytest.raises(ValueError):
        RetryPolicy(jitter=1.0)


async def test_webhook_is_signed_and_carries_the_event(
    pool: asyncpg.Pool, receiver_factory
) -> None:
    receiver: Receiver = await receiver_factory()
    endpoint = hook(receiver.url, recording_link="https://pbx.example/calls/{id}/recording")
    store = CrmStore(pool, endpoints=[endpoint], default_country_code="44")
    row = await store.call_started(
        CallStarted(
            "c1",
            "inbound",
            "02079460958",
            "15550100",
            datetime.now(UTC),
            customer_phone="02079460958",
        )
    )
    await store.call_ended(
        row,
        CallEnded(
            datetime.now(UTC),
            "answered",
            200,
            answered_at=datetime.now(UTC),
            agent="101",
            recording_path="2024/05/06/c1.wav",
        ),
    )
    worker = OutboxWorker(pool, [endpoint], policy=FAST)
    try:
        assert await worker.run_once() == 1  # only the head of call/<row>
        assert await worker.run_once() == 1
    finally:
        await worker.stop()
    order = await event_order(pool)
    assert len(receiver.requests) == 2
    for request in receiver.requests:
        assert request.method == "POST" and request.path == "/hook"
        assert request.headers["Content-Type"] == "application/json"
        # Standard Webhooks, and the legacy header for one release.
        headers = CIMultiDict(request.headers)
        key = webhooks.verify([SECRET], headers, request.body, now=time.time())
        with pytest.raises(webhooks.WebhookVerificationError):
            webhooks.verify(["wrong"], headers, request.body, now=time.time())
        assert verify_signature(SECRET, request.body, request.headers[SIGNATURE_HEADER])
        assert not verify_signature("wrong", request.body, request.headers[SIGNATURE_HEADER])
        body = json.loads(request.body)
        assert set(body) == {"type", "timestamp", "event", "idempotency_key", "occurred_at", "data"}
        assert body["idempotency_key"] == request.headers["Idempotency-Key"] == key
        assert body["type"] == body["event"]
        assert order[body["idempotency_key"]][0] == f"call/{row}"
        datetime.fromisoformat(body["occurred_at"])
    started, ended = (json.loads(r.body) for r in receiver.requests)
    assert (started["event"], ended["event"]) == ("call.started", "call.ended")
    data = ended["data"]
    assert (data["id"], data["contact_phone"], data["outcome"], data["agent"]) == (
        row,
        "+442079460958",
        "answered",
        "101",
    )
    assert data["recording_url"] == f"https://pbx.example/calls/{row}/recording"
    assert worker.stats.delivered == 2 and worker.stats.attempts == 2


async def test_receiver_down_then_up_and_a_restart_lose_nothing(
    pool: asyncpg.Pool, receiver_factory
) -> None:
    port = free_port()
    endpoint = hook(f"http://127.0.0.1:{port}")
    store = CrmStore(pool, endpoints=[endpoint], default_country_code="44")
    await make_calls(store, 12)
    order = await event_order(pool)
    assert len(order) == 48 and sum(a.startswith("task/") for a, _ in order.values()) == 4

    first = OutboxWorker(pool, [endpoint], policy=FAST)
    await first.start()
    # Nobody listens: every head is refused a few times.
    heads_tried = "SELECT count(*) FROM outbox_deliveries WHERE attempts >= 3"
    await wait_until(lambda: _at_least(pool, heads_tried, 12), what="3 refused attempts per call")
    assert first.stats.delivered == 0 and first.stats.retried >= 36

    receiver: Receiver = await receiver_factory(port=port, delay=0.005)
    await wait_until(lambda: _at_least_n(receiver, 15), what="some deliveries")
    await first.stop(grace=0)  # as abrupt as a crash: in-flight rounds roll back
    await store.call_started(CallStarted("late", "internal", "101", "102", datetime.now(UTC)))
    order = await event_order(pool)

    second = OutboxWorker(pool, [endpoint], policy=FAST)  # the engine after its restart
    await second.start()
    try:
        await wait_until(lambda: _none_pending(pool), what="every event delivered")
    finally:
        await second.stop()

    keys = receiver.keys()
    assert set(keys) == set(order)  # every event arrived...
    assert_in_order_per_aggregate(keys, order)  # ...in order per call and task
    duplicates = len(keys) - len(set(keys))
    # Only events whose 200 was lost when the first worker was cut off arrive twice.
    assert duplicates <= FAST.batch_size * FAST.lanes
    assert (
        await pool.fetchval("SELECT count(*) FROM outbox_deliveries WHERE dead_at IS NOT NULL") == 0
    )
    assert receiver.overlaps == []


async def _at_least(pool: asyncpg.Pool, sql: str, n: int) -> bool:
    return await pool.fetchval(sql) >= n


async def _at_least_n(receiver: Receiver, n: int) -> bool:
    return len(receiver.requests) >= n


async def _none_pending(pool: asyncpg.Pool) -> bool:
    return await pending(pool) == 0


async def test_two_workers_share_the_work_and_never_send_one_event_twice(
    pool: asyncpg.Pool, receiver_factory
) -> None:
    receiver: Receiver = await receiver_factory(delay=0.01)
    endpoint = hook(receiver.url)
    store = CrmStore(pool, endpoints=[endpoint], default_country_code="44")
    await make_calls(store, 20)
    order = await event_order(pool)
    workers = [OutboxWorker(pool, [endpoint], policy=FAST) for _ in range(2)]
    for worker in workers:
        await worker.start()
    try:
        await wait_until(lambda: _none_pending(pool), what="every event delivered")
    finally:
        for worker in workers:
            await worker.stop()
    keys = receiver.keys()
    assert sorted(keys) == sorted(order)  # each exactly once: nobody crashed
    assert receiver.overlaps == []
    assert_in_order_per_aggregate(keys, order)
    assert all(w.stats.delivered > 0 for w in workers), [w.stats for w in workers]


async def test_new_events_wake_a_running_worker(pool: asyncpg.Pool, receiver_factory) -> None:
    receiver: Receiver = await receiver_factory()
    endpoint = hook(receiver.url)
    store = CrmStore(pool, endpoints=[endpoint], default_country_code="44")
    # A poll interval far beyond the test's patience: only NOTIFY can bring the event in time.
    worker = OutboxWorker(pool, [endpoint], policy=RetryPolicy(poll_interval=600.0))
    await worker.start()
    try:
        await store.open_callback_task(
            "+447700900123", assignee="101", due_at=datetime.now(UTC), call_row_id=None
        )
        await wait_until(lambda: _at_least_n(receiver, 1), timeout=5, what="the task event")
    finally:
        await worker.stop()
    assert json.loads(receiver.requests[0].body)["event"] == "task.created"


async def test_backoff_schedule_and_dead_letter_after_max_age(
    pool: asyncpg.Pool, receiver_factory
) -> None:
    statuses: list[int] = [503]
    receiver: Receiver = await receiver_factory(respond=lambda req, body: statuses[0])
    endpoint = hook(receiver.url)
    store = CrmStore(pool, endpoints=[endpoint], default_country_code="44")
    task = await store.open_callback_task(
        "+447700900123", assignee="101", due_at=datetime.now(UTC), call_row_id=None
    )
    await store.complete_task(task.id)  # task.done queued behind task.created
    clock = FakeClock(datetime.now(UTC).timestamp() + 1)
    policy = RetryPolicy(base_delay=10.0, factor=2.0, max_delay=100.0, jitter=0.0, max_age=600.0)
    worker = OutboxWorker(pool, [endpoint], policy=policy, now=clock)
    state = (
        "SELECT attempts, next_attempt_at, delivered_at, dead_at, last_error"
        " FROM outbox_deliveries ORDER BY event_id"
    )
    try:
        waits = []
        while True:
            assert await worker.run_once() == 1  # the head only, never task.done before it
            head, tail = await pool.fetch(state)
            assert tail["attempts"] == 0
            if head["dead_at"] is not None:
                break
            wait = head["next_attempt_at"].timestamp() - clock()
            waits.append(round(wait, 3))
            assert await worker.run_once() == 0  # not due yet
            clock.advance(wait)
        assert waits[:5] == [10.0, 20.0, 40.0, 80.0, 100.0]
        assert head["attempts"] == len(waits) + 1
        assert head["last_error"].startswith("HTTP 503")
        assert (
            clock() - (await pool.fetchval("SELECT min(created_at) FROM outbox")).timestamp() >= 600
        )

        # The dead head no longer holds its aggregate back.
        statuses[0] = 200
        assert await worker.run_once() == 1
        _, tail = await pool.fetch(state)
        assert tail["delivered_at"] is not None and tail["attempts"] == 1
        assert await pending(pool) == 0
    finally:
        await worker.stop()
    assert worker.stats.dead == 1 and worker.stats.delivered == 1


@pytest.mark.parametrize(("status", "dead"), [(400, True), (422, True), (401, False), (429, False)])
async def test_permanent_refusals_dead_letter_at_once(
    pool: asyncpg.Pool, receiver_factory, status: int, dead: bool
) -> None:
    receiver: Receiver = await receiver_factory(respond=lambda req, body: status)
    endpoint = hook(receiver.url)
    store = CrmStore(pool, endpoints=[endpoint], default_country_code="44")
    await store.open_callback_task(
        "+447700900123", assignee="1", due_at=datetime.now(UTC), call_row_id=None
    )
    worker = OutboxWorker(pool, [endpoint], policy=FAST, now=FakeClock())
    try:
        assert await worker.run_once() == 1
    finally:
        await worker.stop()
    row = await pool.fetchrow("SELECT attempts, dead_at, last_error FROM outbox_deliveries")
    assert row["attempts"] == 1 and (row["dead_at"] is not None) is dead
    assert row["last_error"].startswith(f"HTTP {status}")


async def test_retry_after_is_honoured(pool: asyncpg.Pool, receiver_factory) -> None:
    async def busy(request: web.Request, body: bytes) -> int:
        return 429

    receiver: Receiver = await receiver_factory(respond=busy)
    original = receiver._handle

    async def with_header(request: web.Request) -> web.StreamResponse:
        response = await original(request)
        response.headers["Retry-After"] = "30"
        return response

    receiver._handle = with_header  # type: ignore[method-assign]
    await receiver.stop()
    await receiver.start()
    endpoint = hook(receiver.url)
    store = CrmStore(pool, endpoints=[endpoint], default_country_code="44")
    await store.open_callback_task(
        "+447700900123", assignee="1", due_at=datetime.now(UTC), call_row_id=None
    )
    clock = FakeClock()
    worker = OutboxWorker(
        pool, [endpoint], policy=RetryPolicy(base_delay=1.0, jitter=0.0), now=clock
    )
    try:
        await worker.run_once()
    finally:
        await worker.stop()
    due = await pool.fetchval("SELECT next_attempt_at FROM outbox_deliveries")
    assert due.timestamp() - clock() == pytest.approx(30.0, abs=0.01)


_ENGINE_NODE = """
import asyncio, sys
from datetime import UTC, datetime
import asyncpg
from crm_bridge import CallStarted, CrmEndpoint, CrmStore, OutboxWorker, RetryPolicy

async def main(db_url, hook_url):
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=6)
    endpoint = CrmEndpoint("hook", "webhook", hook_url, secret="s3cret", timeout=2.0)
    store = CrmStore(pool, endpoints=[endpoint], node="n1", default_country_code="44")
    await store.call_started(
        CallStarted("on-air", "inbound", "+447700900999", "15550100", datetime.now(UTC),
                    customer_phone="+447700900999")
    )
    worker = OutboxWorker(pool, [endpoint], policy=RetryPolicy(
        base_delay=0.02, max_delay=0.1, poll_interval=0.05, batch_size=4, lanes=2))
    await worker.start()
    print("running", flush=True)
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_kill_9_mid_delivery_then_restart_loses_nothing(
    pool: asyncpg.Pool, crm_url: str, receiver_factory
) -> None:
    receiver: Receiver = await receiver_factory(delay=0.02)
    endpoint = hook(receiver.url)
    store = CrmStore(pool, endpoints=[endpoint], node="n1", default_country_code="44")
    await make_calls(store, 10)
    node = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _ENGINE_NODE,
        crm_url,
        endpoint.url,
        cwd=Path(__file__).resolve().parents[2],
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert node.stdout is not None
        assert await asyncio.wait_for(node.stdout.readline(), 30) == b"running\n"
        await wait_until(lambda: _at_least_n(receiver, 12), what="the node delivering")
    finally:
        node.send_signal(signal.SIGKILL)  # mid-round: row locks die with its connections
        await node.wait()
    assert await pending(pool) > 0
    assert await pool.fetchval("SELECT count(*) FROM calls WHERE ended_at IS NULL") == 1

    # The restarted engine: close what the crash left open, then deliver everything.
    assert await store.close_interrupted_calls(datetime.now(UTC)) == 1
    worker = OutboxWorker(pool, [endpoint], policy=FAST)
    await worker.start()
    try:
        await wait_until(lambda: _none_pending(pool), what="every event delivered")
    finally:
        await worker.stop()
    order = await event_order(pool)
    keys = receiver.keys()
    assert set(keys) == set(order)
    assert_in_order_per_aggregate(keys, order)
    last = [json.loads(r.body) for r in receiver.requests if b"on-air" in r.body]
    assert [b["event"] for b in last][-1] == "call.ended"
    assert (last[-1]["data"]["outcome"], last[-1]["data"]["hangup_cause"]) == (
        "failed", "engine-restart",
    )  # fmt: skip
