"""A clean stop journals every call before the database closes: an answered call whose row
writes are held up (a slow database), a click-to-call ringing an agent whose phone swallows
INVITEs (its task cancelled by the stop) and a customer ringing that phone all end up as calls
rows with the outcome the journal gives a call the stop ended, each with exactly one call.ended
event in the outbox; nothing is logged as not journaled."""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
from pathlib import Path

import asyncpg
import pytest

from callcenter.click_to_call import click_to_call
from callcenter.runtime import Engine, start_engine
from sip_test_env.baresip import BaresipPeer
from sip_test_env.carrier import CARRIER_IP
from sip_test_env.ports import free_port

from .callfloor import wait_for
from .conftest import crm_taking, engine_config, registrar_of
from .rawsip import RawSipClient

pytestmark = pytest.mark.peers

DID = "+12025550177"
CUSTOMER = "12125550144"
NUMBER = "12125550001"
DEAF = "150"
"""The agent whose phone takes INVITEs and never answers one (not even 100 Trying)."""


async def _invite_to(deaf: RawSipClient, call_ids: set[str]) -> str:
    """The Call-ID of the next new INVITE the deaf phone gets (retransmissions skipped)."""
    while True:
        message = await deaf.receive(timeout=5)
        assert message is not None, "the deaf phone got no INVITE"
        if getattr(message, "method", None) == "INVITE" and message.call_id not in call_ids:
            call_ids.add(message.call_id)
            return message.call_id


async def _row(engine: Engine, call_id: str) -> int:
    assert engine.journal is not None
    row = await engine.journal.row_id(call_id)
    assert row is not None
    return row


async def test_a_stop_journals_every_call_before_the_database_closes(
    pg_url: str, tmp_path: Path, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    deaf = await RawSipClient.open()
    carrier = await RawSipClient.open(CARRIER_IP)
    extra = (
        f'[[trunks]]\nname = "carrier"\nallow_from = ["{CARRIER_IP}"]\n'
        f'outbound = "{CARRIER_IP}:{free_port("udp")}"\n\n'
        f'[[dids]]\nnumber = "{DID}"\ntrunk = "carrier"\nroute = "agent:{DEAF}"\n'
    )
    config = engine_config(
        extra=extra,
        static={DEAF: f"sip:{DEAF}@127.0.0.1:{deaf.port}"},
        crm=crm_taking("call.ended"),
    )
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    stop: asyncio.Task[None] | None = None
    lock = db.transaction()
    locked = False
    try:
        registrar = registrar_of(engine)
        async with (
            BaresipPeer("101", workdir=tmp_path / "a", registrar=registrar,
                        password="pass101") as a,
            BaresipPeer("102", workdir=tmp_path / "b", registrar=registrar,
                        password="pass102") as b,
        ):  # fmt: skip
            await a.wait_registered()
            await b.wait_registered()
            # 1. Agents' call whose row is locked from its first ring: its ringing, answer
            # and end are written only once the lock goes (a database that falls behind).
            await a.dial("102")
            await wait_for(lambda: engine.switchboard.active, timeout=10.0, what="call")
            answered = next(iter(engine.switchboard.active))
            row = await _row(engine, answered)
            await lock.start()
            locked = True
            await db.execute("SELECT 1 FROM calls WHERE id = $1 FOR UPDATE", row)
            await b.wait_event("CALL_INCOMING", timeout=5)
            await b.accept()
            await a.wait_event("CALL_ESTABLISHED", timeout=5)
            # 2. A click-to-call ringing the deaf phone: its task is the click-to-call's.
            seen: set[str] = set()
            placed = await click_to_call(engine, agent=DEAF, number=NUMBER)
            assert await _invite_to(deaf, seen) == placed.call_id
            # 3. A customer ringing the deaf phone.
            customer = secrets.token_hex(8)
            server = ("127.0.0.1", engine.sip_port)
            carrier.send(carrier.invite(CUSTOMER, DID, server, call_id=customer), server)
            await _invite_to(deaf, seen)
            rows = {"answered": row, "click": await _row(engine, placed.call_id)}
            rows["customer"] = await _row(engine, customer)

            stop = asyncio.create_task(engine.stop())
            # The lock goes once the stop waits for the ends to be written (or, should it
            # never say so, after 8 s: well past its 5 s grace).
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 8
            while loop.time() < deadline and not any(
                "call ends to be written" in r.getMessage() for r in caplog.records
            ):
                await asyncio.sleep(0.02)
            await lock.rollback()
            locked = False
            await asyncio.wait_for(stop, 45)
    finally:
        if locked:  # the test failed before it let go
            await lock.rollback()
        if stop is None:
            await engine.stop()
        deaf.close()
        carrier.close()
    gc.collect()  # a forgotten task's exception is reported when the task is collected

    found = {
        name: await db.fetchrow(
            "SELECT outcome, hangup_cause, ended_at, answered_at, agent FROM calls WHERE id = $1",
            id_,
        )
        for name, id_ in rows.items()
    }
    assert found["answered"]["outcome"] == "answered", found
    assert found["answered"]["answered_at"] is not None and found["answered"]["agent"] == "102"
    assert found["click"]["outcome"] == "cancelled", found  # our side ended it before answer
    assert found["click"]["hangup_cause"] == "shutdown", found
    assert found["customer"]["outcome"] == "missed", found  # a customer we hung up on
    assert found["customer"]["hangup_cause"] == "shutdown", found
    assert all(r["ended_at"] is not None for r in found.values()), found
    events = await db.fetch(
        "SELECT aggregate, count(*) AS n FROM outbox WHERE event_type = 'call.ended'"
        " AND aggregate = ANY($1::text[]) GROUP BY aggregate",
        [f"call/{id_}" for id_ in rows.values()],
    )
    assert sorted(e["n"] for e in events) == [1, 1, 1], events
    task = await db.fetchval(
        "SELECT count(*) FROM tasks WHERE last_call = $1 AND type = 'callback'", rows["customer"]
    )
    assert task == 1  # the missed customer is called back
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "not journaled" in m], messages
    assert not [m for m in messages if "exception was never retrieved" in m], messages
