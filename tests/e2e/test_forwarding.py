"""DND and call forwarding with real phones (issue 14, part 5): baresip agents set them with
feature codes and over the API; SIPp plays the carrier a forward to an external number goes
out through.

- *78 puts 102 in DND: its presence reads away, 101's call to it gets 486 and 102's phone never
  rings; *79 ends it.
- Forward on no answer (API): 102 rings, does not answer, 103 rings and answers; the leg to 103
  says who diverted it (Diversion); one calls row, answered by 103.
- *72103 forwards everything: 103 rings at once, 102's phone not at all; *73 ends it.
- Forward to an external number: the call goes out through the trunk with the trunk's caller
  ID and a Diversion header, and is journaled as one call.
- A customer's call to a DID routed to 102, who forwards to a mobile: out through the trunk
  presenting the customer's number; one inbound row, 102 as its agent.
- Two nodes on one database: a code dialled on one and a PUT on the other reach both; a
  restarted node has them (DND still refuses 101's call), and a code dialled after the restart
  reaches the other node again.

The tests store settings in PostgreSQL, so each runs on a database of its own (`crm_url`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from callcenter.runtime import Engine, start_engine
from pbx.forwarding import Forwarding
from sip_test_env import carrier
from sip_test_env.baresip import BaresipPeer
from sip_test_env.ports import free_port
from sip_test_env.sipp import SippUas

from .conftest import api_url, bearer, calls_settled, engine_config, registrar_of
from .test_trunk import _poll

pytestmark = pytest.mark.peers

SCENARIOS = Path(__file__).resolve().parents[2] / "sip_test_env" / "scenarios"
EXTERNAL = "+12125550188"
DID = "+12125550111"
CUSTOMER = "+12125550177"


@pytest.fixture
def carrier_port() -> int:
    return free_port("both")


@pytest.fixture
async def db(crm_url: str) -> AsyncIterator[asyncpg.Connection]:
    """This module's own database: the settings its tests store must not reach other tests."""
    conn = await asyncpg.connect(crm_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def fwd_engine(crm_url: str, tmp_path: Path, carrier_port: int) -> AsyncIterator[Engine]:
    trunk = (
        f'[[trunks]]\nname = "carrier"\nallow_from = ["{carrier.CARRIER_IP}"]\n'
        f'outbound = "127.0.0.1:{carrier_port}"\ncaller_id = "+12125550100"\n\n'
        f'[[dids]]\nnumber = "{DID}"\ntrunk = "carrier"\nroute = "agent:102"\n'
    )
    engine = await start_engine(engine_config(extra=trunk), database_url=crm_url, data_dir=tmp_path)
    try:
        yield engine
    finally:
        await engine.stop()


def phone(engine: Engine, ext: str, workdir: Path) -> BaresipPeer:
    return BaresipPeer(
        ext, workdir=workdir / ext, registrar=registrar_of(engine), password=f"pass{ext}"
    )


async def feature(agent: BaresipPeer, code: str) -> None:
    """Dial a feature code: the engine answers, beeps and hangs up."""
    await agent.dial(code)
    await agent.wait_event("CALL_ESTABLISHED", timeout=5)
    await agent.wait_event("CALL_CLOSED", timeout=5)


async def test_dnd_and_forwarding_by_code_and_api(
    fwd_engine: Engine, tmp_path: Path, db: asyncpg.Connection
) -> None:
    engine = fwd_engine
    url = api_url(engine, "/agents/102/forwarding")
    async with (
        phone(engine, "101", tmp_path) as a101,
        phone(engine, "102", tmp_path) as a102,
        phone(engine, "103", tmp_path) as a103,
        aiohttp.ClientSession() as http,
    ):
        for agent in (a101, a102, a103):
            await agent.wait_registered()

        # DND by code: away in presence, callers refused busy, the phone silent.
        await feature(a102, "*78")
        async with http.get(api_url(engine, "/agents/102/presence"), headers=bearer()) as r:
            assert await r.json() == {"extension": "102", "state": "away", "dnd": True}
        async with http.get(url, headers=bearer()) as r:
            assert (await r.json())["dnd"] is True
        await a101.dial("102")
        closed = await a101.wait_event("CALL_CLOSED", timeout=5)
        assert "486" in str(closed.get("param")), closed
        assert not a102.events_of("CALL_INCOMING")
        await feature(a102, "*79")
        assert engine.switchboard.presence.available("102", now=engine.ua.loop.time())

        # No answer after 1 s (API): 102 rings, then 103 takes the call.
        body = {"no_answer": "103", "no_answer_after": 1}
        async with http.put(url, json=body, headers=bearer()) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["no_answer"] == "103"
        async with http.put(url, json={"busy": "102"}, headers=bearer()) as r:
            assert r.status == 400 and "itself" in (await r.json())["error"]["reason"]
        async with http.put(url, json={"always": "sip:x"}, headers=bearer()) as r:
            assert r.status == 400
        await a101.dial("102")
        await a102.wait_event("CALL_INCOMING", timeout=5)
        await a103.wait_event("CALL_INCOMING", timeout=5)
        bridged = next(iter(engine.switchboard.active.values()))
        await a103.accept()
        await a101.wait_event("CALL_ESTABLISHED", timeout=5)
        await a102.wait_event("CALL_CLOSED", timeout=5)  # its ringing stopped
        assert bridged.b is not None and bridged.callee == "103"
        diversion = bridged.b.invite.headers.get("Diversion") or ""
        assert diversion.startswith("<sip:102@") and "reason=no-answer" in diversion
        await a101.hangup()
        await a103.wait_event("CALL_CLOSED", timeout=5)
        await calls_settled(engine)
        row = await _poll(
            db, "SELECT * FROM calls WHERE call_id = $1 AND ended_at IS NOT NULL",
            bridged.a.call_id,
        )  # fmt: skip
        assert (row["from_number"], row["agent"], row["outcome"]) == ("101", "103", "answered")

        # Forward all by code: 103 rings at once, 102 not at all.
        async with http.put(url, json={"no_answer": None}, headers=bearer()) as r:
            assert r.status == 200
        await feature(a102, "*72103")
        rung_102 = len(a102.events_of("CALL_INCOMING"))
        await a101.dial("102")
        await a103.wait_event("CALL_INCOMING", timeout=5)
        await a103.accept()
        await a101.wait_event("CALL_ESTABLISHED", timeout=5)
        assert len(a102.events_of("CALL_INCOMING")) == rung_102
        forwarded = next(iter(engine.switchboard.active.values()))
        assert forwarded.b is not None
        assert "reason=unconditional" in (forwarded.b.invite.headers.get("Diversion") or "")
        await a103.hangup()
        await a101.wait_event("CALL_CLOSED", timeout=5)
        await feature(a102, "*73")
        async with http.get(url, headers=bearer()) as r:
            assert (await r.json())["always"] is None
        await calls_settled(engine)


async def test_forward_to_an_external_number_goes_out_through_the_trunk(
    fwd_engine: Engine, tmp_path: Path, carrier_port: int, db: asyncpg.Connection
) -> None:
    engine = fwd_engine
    uas = SippUas(SCENARIOS / "uas.xml", port=carrier_port, calls=1, workdir=tmp_path / "carrier")
    async with uas, phone(engine, "101", tmp_path) as a101, aiohttp.ClientSession() as http:
        await a101.wait_registered()
        # 102 has no phone registered: its unconditional forward takes the call regardless.
        url = api_url(engine, "/agents/102/forwarding")
        async with http.put(url, json={"always": EXTERNAL}, headers=bearer()) as r:
            assert r.status == 200, await r.text()
        await a101.dial("102")
        await a101.wait_event("CALL_ESTABLISHED", timeout=5)
        bridged = next(iter(engine.switchboard.active.values()))
        assert bridged.b is not None
        sent = bridged.b.invite
        assert str(sent.uri).startswith(f"sip:{EXTERNAL}@127.0.0.1:{carrier_port}")
        assert "reason=unconditional" in (sent.headers.get("Diversion") or "")
        assert str(sent.from_.uri).startswith("sip:+12125550100@")  # the trunk's caller ID
        await a101.hangup()
        await a101.wait_event("CALL_CLOSED", timeout=5)
        served = await uas.wait(timeout=10)
    assert served.successful == 1 and served.failed == 0, served.summary()
    await calls_settled(engine)
    rows = await db.fetch("SELECT * FROM calls WHERE call_id = $1", bridged.a.call_id)
    assert len(rows) == 1
    # The row names what 101 dialled; the agent is 101 (the number that answered is a customer).
    assert (rows[0]["from_number"], rows[0]["to_number"], rows[0]["agent"]) == ("101", "102", "101")
    assert rows[0]["outcome"] == "answered" and rows[0]["recording_path"]


async def test_a_customer_call_to_an_agent_follows_the_forward_to_a_mobile(
    fwd_engine: Engine, tmp_path: Path, carrier_port: int, db: asyncpg.Connection
) -> None:
    engine = fwd_engine
    engine.switchboard.set_forwarding("102", Forwarding(always=EXTERNAL))
    uas = SippUas(SCENARIOS / "uas.xml", port=carrier_port, calls=1, workdir=tmp_path / "carrier")
    async with uas, carrier.customer(CUSTOMER, workdir=tmp_path / "customer") as customer:
        await customer.dial(carrier.did_uri(DID, engine.sip_port))
        await customer.wait_event("CALL_ESTABLISHED", timeout=5)
        bridged = next(iter(engine.switchboard.active.values()))
        assert bridged.b is not None
        sent = bridged.b.invite
        assert str(sent.uri).startswith(f"sip:{EXTERNAL}@127.0.0.1:{carrier_port}")
        assert str(sent.from_.uri).startswith(f"sip:{CUSTOMER}@")  # the customer's number
        assert "reason=unconditional" in (sent.headers.get("Diversion") or "")
        await customer.hangup()
        await customer.wait_event("CALL_CLOSED", timeout=5)
        served = await uas.wait(timeout=10)
    assert served.successful == 1 and served.failed == 0, served.summary()
    await calls_settled(engine)
    rows = await db.fetch("SELECT * FROM calls WHERE call_id = $1", bridged.a.call_id)
    assert len(rows) == 1
    row = rows[0]
    assert (row["direction"], row["from_number"], row["did"], row["agent"], row["outcome"]) == (
        "inbound", CUSTOMER, DID, "102", "answered",
    )  # fmt: skip


async def test_the_configuration_sets_dnd_and_forwarding_at_start(
    pg_url: str, tmp_path: Path
) -> None:
    account = (
        '[[accounts]]\nextension = "106"\npassword = "pass106"\ndnd = true\n'
        'forward_busy = "103"\nforward_no_answer_after = 8\n'
    )
    engine = await start_engine(engine_config(extra=account), database_url=pg_url,
                                data_dir=tmp_path)  # fmt: skip
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(api_url(engine, "/agents/106/forwarding"), headers=bearer()) as r:
                assert await r.json() == {
                    "extension": "106", "dnd": True, "always": None, "busy": "103",
                    "no_answer": None, "no_answer_after": 8.0,
                }  # fmt: skip
            async with http.get(api_url(engine, "/agents/106/presence"), headers=bearer()) as r:
                assert (await r.json())["state"] == "away"
    finally:
        await engine.stop()


async def until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Wait for a change another node announced (NOTIFY) to reach `condition`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"not {what} within {timeout}s"
        await asyncio.sleep(0.02)


async def test_settings_survive_a_restart_and_reach_every_node(
    crm_url: str, tmp_path: Path, db: asyncpg.Connection
) -> None:
    config_a, config_b = engine_config(), engine_config()
    node_a = await start_engine(config_a, database_url=crm_url, data_dir=tmp_path / "a")
    node_b = await start_engine(config_b, database_url=crm_url, data_dir=tmp_path / "b")
    try:
        async with (
            phone(node_a, "101", tmp_path) as a101,
            phone(node_a, "102", tmp_path) as a102,
            aiohttp.ClientSession() as http,
        ):
            await a101.wait_registered()
            await a102.wait_registered()
            # A phone's code on A reaches B; B's API change reaches A.
            await feature(a102, "*78")
            await until(lambda: node_b.switchboard.presence.dnd("102"), "DND on node B")
            body = {"busy": "103", "no_answer_after": 7}
            async with http.put(
                api_url(node_b, "/agents/102/forwarding"), json=body, headers=bearer()
            ) as r:
                assert r.status == 200, await r.text()
            expected = Forwarding(dnd=True, busy="103", no_answer_after=7.0)
            await until(lambda: node_a.switchboard.forwarding["102"] == expected, "B's PUT on A")
            row = await db.fetchrow("SELECT * FROM agent_forwarding WHERE extension = '102'")
            assert row is not None and (row["dnd"], row["forward_busy"]) == (True, "103")
            assert row["node"] == config_b.crm.node

            # A restarted: the stored settings win over the configuration's (none here).
            await node_a.stop()
            node_a = await start_engine(config_a, database_url=crm_url, data_dir=tmp_path / "a")
            assert node_a.switchboard.forwarding["102"] == expected
            assert node_a.switchboard.presence.dnd("102")
            async with http.get(api_url(node_a, "/agents/102/forwarding"), headers=bearer()) as r:
                assert (await r.json())["dnd"] is True
            # DND with a busy forward: 101's call goes to 103, who has no phone: 480.
            await a101.dial("102")
            closed = await a101.wait_event("CALL_CLOSED", timeout=5)
            assert "480" in str(closed.get("param")), closed
            assert not a102.events_of("CALL_INCOMING")

            # After the restart, a code on A still reaches B.
            await feature(a102, "*79")
            await until(lambda: not node_b.switchboard.presence.dnd("102"), "DND off on B")
            assert node_b.switchboard.forwarding["102"].busy == "103"
    finally:
        await node_a.stop()
        await node_b.stop()


async def test_bad_rows_are_skipped_and_a_database_outage_loses_nothing(
    crm_url: str, tmp_path: Path, db: asyncpg.Connection
) -> None:
    """A hand-edited row that is not valid is ignored at start (the configuration's settings
    stay), as is one of an extension this node does not have. While the table cannot be
    written, PUT answers 503 and changes nothing; a phone's change waits and is stored once
    the database is back."""
    await db.execute(
        "INSERT INTO agent_forwarding (extension, forward_always, no_answer_after, node)"
        " VALUES ('102', 'sip:nowhere', 20, 'elsewhere'), ('777', '103', 20, 'elsewhere')"
    )
    engine = await start_engine(engine_config(), database_url=crm_url, data_dir=tmp_path)
    try:
        assert engine.switchboard.forwarding["102"] == Forwarding()
        assert "777" not in engine.switchboard.forwarding
        assert engine.forwarding is not None
        engine.forwarding.retry_delay = 0.1
        await db.execute("ALTER TABLE agent_forwarding RENAME TO agent_forwarding_away")
        url = api_url(engine, "/agents/103/forwarding")
        async with aiohttp.ClientSession() as http:
            async with http.put(url, json={"dnd": True}, headers=bearer()) as r:
                assert r.status == 503, await r.text()
                assert "database" in (await r.json())["error"]["reason"]
            assert engine.switchboard.forwarding["103"] == Forwarding()
            # What *78 does: the change holds at once and is written when it can be.
            engine.switchboard.set_forwarding("104", Forwarding(dnd=True))
            with pytest.raises(TimeoutError):
                await engine.forwarding.flush(timeout=0.5)
            await db.execute("ALTER TABLE agent_forwarding_away RENAME TO agent_forwarding")
            await engine.forwarding.flush(timeout=5)
        row = await db.fetchrow("SELECT dnd, node FROM agent_forwarding WHERE extension = '104'")
        assert row is not None and row["dnd"] is True
        assert row["node"] == engine.config.crm.node
    finally:
        await engine.stop()


async def test_a_node_whose_listen_connection_died_catches_up(
    crm_url: str, tmp_path: Path, db: asyncpg.Connection
) -> None:
    """PostgreSQL ends B's LISTEN connection (a restart, a network cut); A's change made
    meanwhile is not lost on B: B listens again, reads every row, and hears later changes."""
    node_a = await start_engine(engine_config(), database_url=crm_url, data_dir=tmp_path / "a")
    node_b = await start_engine(engine_config(), database_url=crm_url, data_dir=tmp_path / "b")
    try:
        assert node_a.forwarding is not None and node_b.forwarding is not None
        node_b.forwarding.retry_delay = 0.1
        pid = node_b.forwarding.store.listener_pid
        assert pid is not None
        await node_a.forwarding.save("102", Forwarding(always="103"))  # B hears this one
        await until(lambda: node_b.switchboard.forwarding["102"].always == "103", "on B")
        assert await db.fetchval("SELECT pg_terminate_backend($1)", pid)
        await node_a.forwarding.save("104", Forwarding(dnd=True))
        await until(lambda: node_b.switchboard.presence.dnd("104"), "B caught up", timeout=10)
        assert node_b.forwarding.store.listener_pid not in (None, pid)
        await node_a.forwarding.save("104", Forwarding())
        await until(lambda: not node_b.switchboard.presence.dnd("104"), "B hears again")
    finally:
        await node_a.stop()
        await node_b.stop()
