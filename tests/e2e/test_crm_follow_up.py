"""The rule "no open contact without a task" through the running engine: the API listing, the
metric, and the follow-up job that repairs a breach for the contact's responsible manager."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp

from callcenter.runtime import Engine
from crm_bridge import FOLLOW_UP_TEXT, CallbackRequest, CallEnded, CallStarted, open_follow_ups

from .conftest import AGENT_KEY, api_url, bearer
from .test_metrics import parse


async def test_contacts_without_a_task_are_listed_counted_and_followed_up(
    lone_engine: Engine,
) -> None:
    engine = lone_engine
    store = engine.store
    assert store is not None
    now = datetime.now(UTC)
    phone = "+12125550999"
    await store.upsert_contact(phone, responsible="102")
    row = await store.call_started(
        CallStarted("fu-1", "inbound", phone, "15550100", now, customer_phone=phone)
    )
    task = await store.call_ended(
        row,
        CallEnded(now + timedelta(seconds=20), "missed", 487),
        callback=CallbackRequest("101", now + timedelta(minutes=15), "Call back"),
    )
    assert task is not None
    await store.complete_task(task.id)  # closed without calling back: a breach

    async with aiohttp.ClientSession(headers=bearer()) as http:
        async with http.get(api_url(engine, "/contacts/without-task")) as r:
            assert r.status == 200
            listed = await r.json()
        async with http.get(
            api_url(engine, "/contacts/without-task"), headers=bearer(AGENT_KEY)
        ) as r:
            assert r.status == 403  # managers and supervisors
        async with http.get(api_url(engine, "/metrics")) as r:
            metrics = parse(await r.text())
        assert [c["phone"] for c in listed["contacts"]] == [phone]
        assert metrics["callcenter_contacts_without_open_task"] == 1

        assert await open_follow_ups(store, due_in=timedelta(minutes=15)) == 1
        async with http.get(api_url(engine, "/contacts/without-task")) as r:
            assert (await r.json())["contacts"] == []
        async with http.get(api_url(engine, "/metrics")) as r:
            assert parse(await r.text())["callcenter_contacts_without_open_task"] == 0
        async with http.get(api_url(engine, "/tasks?status=open")) as r:
            (follow_up,) = [t for t in (await r.json())["tasks"] if t["contact_phone"] == phone]
    assert follow_up["text"] == FOLLOW_UP_TEXT and follow_up["assignee"] == "102"
    assert await open_follow_ups(store, due_in=timedelta(minutes=15)) == 0
