"""The adapter hook: an adapter classifies each answer (status and body) as delivered, retry,
dead or "next request", and the remote ids it learns are stored with the delivery and handed
to later attempts and later events of the same call (real PostgreSQL, real HTTP receiver)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web

from crm_bridge import (
    DEFAULT_ADAPTERS,
    Attempt,
    CallEnded,
    CallStarted,
    CrmEndpoint,
    CrmStore,
    HttpRequest,
    OutboxEvent,
    OutboxWorker,
    Outcome,
    RetryPolicy,
    Verdict,
)

from ._helpers import FakeClock, Receiver

POLICY = RetryPolicy(base_delay=1.0, max_delay=1.0, jitter=0.0, batch_size=8, lanes=1)


class TwoStep:
    """Creates the call remotely (once: the id is kept), then posts each event to it; reads
    `{"ok": false, "retry": bool}` in a 200 body as a per-item failure."""

    events = frozenset({"call.started", "call.ended"})

    def render(self, endpoint: CrmEndpoint, event: OutboxEvent, attempt: Attempt) -> HttpRequest:
        if "remote_call" not in attempt.refs:
            return HttpRequest("POST", endpoint.url + "/create", {}, b"{}")
        body = json.dumps({"call": attempt.refs["remote_call"], "event": event.event_type})
        headers = {"Idempotency-Key": event.idempotency_key}
        return HttpRequest("POST", endpoint.url + "/event", headers, body.encode())

    def classify(
        self,
        endpoint: CrmEndpoint,
        event: OutboxEvent,
        attempt: Attempt,
        status: int,
        body: bytes,
    ) -> Outcome:
        answer = json.loads(body) if body else {}
        if "created" in answer:
            return Outcome(Verdict.NEXT, {"remote_call": answer["created"]})
        if answer.get("ok") is False:
            verdict = Verdict.RETRY if answer.get("retry") else Verdict.DEAD
            return Outcome(verdict, error=answer.get("error", "refused"))
        return Outcome(Verdict.DELIVERED if status == 200 else Verdict.RETRY)


ADAPTERS: Mapping[str, Any] = {**DEFAULT_ADAPTERS, "twostep": TwoStep()}


async def test_steps_refs_and_per_item_errors_in_a_2xx(
    pool: asyncpg.Pool, receiver_factory
) -> None:
    created: list[int] = []
    answers = iter([{"ok": False, "retry": True, "error": "busy"}, {"ok": True}, {"ok": True}])

    def reply(request: web.Request, body: bytes) -> object:
        if request.path == "/create":
            created.append(700 + len(created))
            return {"created": created[-1]}
        return next(answers)

    receiver: Receiver = await receiver_factory(reply=reply)
    endpoint = CrmEndpoint("two", "twostep", receiver.url)
    store = CrmStore(pool, endpoints=[endpoint], adapters=ADAPTERS, default_country_code="44")
    now = datetime.now(UTC)
    row = await store.call_started(
        CallStarted("c1", "inbound", "+442079460958", "1555", now, customer_phone="+442079460958")
    )
    await store.call_ended(row, CallEnded(now, "missed", 487))
    clock = FakeClock()
    worker = OutboxWorker(pool, [endpoint], adapters=ADAPTERS, policy=POLICY, now=clock)
    try:
        assert await worker.run_once() == 1  # create, then a 200 whose body says "retry"
        assert worker.stats.retried == 1
        clock.advance(2)
        assert await worker.run_once() == 1  # the retry reuses the remote id: no second create
        assert await worker.run_once() == 1  # call.ended: the id comes from call.started
    finally:
        await worker.stop()
    assert created == [700]
    paths = [r.path for r in receiver.requests]
    assert paths == ["/create", "/event", "/event", "/event"]
    events = [json.loads(r.body) for r in receiver.requests[1:]]
    assert [e["call"] for e in events] == [700, 700, 700]
    assert [e["event"] for e in events] == ["call.started", "call.started", "call.ended"]
    rows = await pool.fetch(
        "SELECT e.event_type, d.remote_ref, d.delivered_at IS NOT NULL AS ok, d.attempts"
        " FROM outbox_deliveries d JOIN outbox e ON e.id = d.event_id ORDER BY e.id"
    )
    got = [(r["event_type"], r["remote_ref"], r["ok"], r["attempts"]) for r in rows]
    # call.started keeps the id; call.ended learned nothing new and reads it from there.
    assert got == [
        ("call.started", '{"remote_call": 700}', True, 2),
        ("call.ended", None, True, 1),
    ]


async def test_a_per_item_refusal_in_a_2xx_dead_letters(
    pool: asyncpg.Pool, receiver_factory
) -> None:
    def reply(request: web.Request, body: bytes) -> object:
        if request.path == "/create":
            return {"created": 1}
        return {"ok": False, "retry": False, "error": "invalid phone"}

    receiver: Receiver = await receiver_factory(reply=reply)
    endpoint = CrmEndpoint("two", "twostep", receiver.url, events=frozenset({"call.started"}))
    store = CrmStore(pool, endpoints=[endpoint], adapters=ADAPTERS, default_country_code="44")
    await store.call_started(
        CallStarted("c1", "inbound", "+442079460958", "1555", datetime.now(UTC))
    )
    worker = OutboxWorker(pool, [endpoint], adapters=ADAPTERS, policy=POLICY)
    try:
        assert await worker.run_once() == 1
    finally:
        await worker.stop()
    dead = await pool.fetchrow("SELECT dead_at, last_error FROM outbox_deliveries")
    assert dead["dead_at"] is not None and dead["last_error"] == "invalid phone"
