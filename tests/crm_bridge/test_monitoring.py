"""Pickups with their call.pickup outbox event (one transaction), and the append-only
monitoring audit."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from crm_bridge import CallStarted, CrmEndpoint, CrmStore, MonitoringStore

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
ENDPOINTS = (
    CrmEndpoint("hook", "webhook", "http://127.0.0.1:9/hook", secret="s"),
    CrmEndpoint("amo", "amocrm", "http://127.0.0.1:9", secret="token"),
)


async def _call_row(pool: asyncpg.Pool) -> int:
    store = CrmStore(pool, endpoints=ENDPOINTS)
    return await store.call_started(
        CallStarted(
            call_id="c-1",
            direction="inbound",
            from_number="+12125550000",
            to_number="15550103",
            started_at=T0,
        )
    )


async def test_a_pickup_is_stored_with_its_event(pool: asyncpg.Pool) -> None:
    row = await _call_row(pool)
    store = MonitoringStore(pool, node="n1", endpoints=ENDPOINTS)
    at = T0 + timedelta(seconds=4)
    record = await store.record_pickup(
        call_row_id=row, call_id="c-1", picker="104", picked_from="103", at=at
    )
    assert (await store.pickups("c-1")) == [record]
    events = await pool.fetch(
        "SELECT o.event_type, o.payload, o.aggregate, d.endpoint FROM outbox o"
        " JOIN outbox_deliveries d ON d.event_id = o.id WHERE o.event_type = 'call.pickup'"
    )
    # The generic webhook takes every call event; amoCRM only call.ended and tasks.
    assert [(e["aggregate"], e["endpoint"]) for e in events] == [(f"call/{row}", "hook")]
    payload = json.loads(events[0]["payload"])
    assert (payload["id"], payload["picker"], payload["picked_from"]) == (row, "104", "103")
    with pytest.raises(ValueError):
        await store.record_pickup(call_row_id=row, call_id="c-1", picker="104",
                                  picked_from="103", at=at.replace(tzinfo=None))  # fmt: skip


async def test_the_audit_is_append_only(pool: asyncpg.Pool) -> None:
    row = await _call_row(pool)
    store = MonitoringStore(pool, node="n1")
    steps = [("started", "whisper"), ("mode", "listen"), ("ended", "listen")]
    for i, (action, mode) in enumerate(steps):
        await store.audit(session=7, call_row_id=row, call_id="c-1", supervisor="191",
                          agent="103", action=action, mode=mode,
                          at=T0 + timedelta(seconds=i))  # fmt: skip
    entries = await store.audit_entries(call_id="c-1")
    assert [(e.action, e.mode, e.supervisor, e.agent, e.session) for e in entries] == [
        (a, m, "191", "103", 7) for a, m in steps
    ]
    assert await store.audit_entries(supervisor="190") == []
    for sql in ("UPDATE monitor_audit SET mode = 'barge'", "DELETE FROM monitor_audit"):
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await pool.execute(sql)
    with pytest.raises(ValueError):
        await store.audit(session=7, call_row_id=row, call_id="c-1", supervisor="191",
                          agent="103", action="paused", mode="listen", at=T0)  # fmt: skip
