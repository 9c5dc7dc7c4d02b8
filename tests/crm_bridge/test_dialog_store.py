"""DialogStore on a real PostgreSQL: a node's answered dialogs survive the process, per node,
with a CSeq that never goes back."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import asyncpg

from crm_bridge import DialogStore, StoredDialog
from telephony.sip import DialogRecord

T0 = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)


def dialog(call_id: str, *, seq: int = 1, uac: bool = False) -> StoredDialog:
    record = DialogRecord(
        call_id=call_id,
        local_tag="ours",
        remote_tag="theirs",
        local_seq=seq,
        local_uri="<sip:102@127.0.0.1:5060>",
        remote_uri='"Agent 101" <sip:101@127.0.0.1:5060>',
        remote_target="sip:101@127.0.0.1:40001",
        route_set=("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"),
        local_contact="<sip:127.0.0.1:5060>",
        is_uac=uac,
    )
    return StoredDialog(record, "udp", "127.0.0.1", 40001, T0)


async def test_dialogs_round_trip_per_node(pool: asyncpg.Pool) -> None:
    here, there = DialogStore(pool, node="n1"), DialogStore(pool, node="n2")
    a, b = dialog("a@x"), dialog("b@x", seq=7, uac=True)
    await here.apply([a, b], [])
    await there.apply([dialog("c@x")], [])
    assert await here.load() == [a, b]
    assert [d.record.call_id for d in await there.load()] == ["c@x"]


async def test_a_newer_state_replaces_the_row_and_the_cseq_never_goes_back(
    pool: asyncpg.Pool,
) -> None:
    store = DialogStore(pool, node="n1")
    first = dialog("a@x", seq=3)
    await store.apply([first], [])
    refreshed = dataclasses.replace(
        first,
        record=dataclasses.replace(first.record, local_seq=5, remote_target="sip:101@10.0.0.9"),
        port=40009,
    )
    await store.apply([refreshed], [])
    assert await store.load() == [refreshed]
    # A late write of an older state (two writers racing) must not lower the CSeq.
    await store.apply([first], [])
    (row,) = await store.load()
    assert row.record.local_seq == 5


async def test_delete_and_save_in_one_go(pool: asyncpg.Pool) -> None:
    store, other = DialogStore(pool, node="n1"), DialogStore(pool, node="n2")
    a, b = dialog("a@x"), dialog("b@x")
    await store.apply([a], [])
    await other.apply([a], [])
    await store.apply([b], [a.dialog_id])
    assert await store.load() == [b]
    assert await other.load() == [a]  # the same dialog id on another node is its own row
    await store.delete(b.dialog_id)
    await store.delete(b.dialog_id)  # twice is harmless
    assert await store.load() == []
