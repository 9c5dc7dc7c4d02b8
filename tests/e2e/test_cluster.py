"""Two engine nodes behind a real Kamailio (deploy/kamailio/kamailio.cfg, started as
scripts/cluster does: callcenter.cluster), one PostgreSQL. Phones register through Kamailio
(which adds Path); each node keeps its bindings in the shared `registrations` table and reads
the other's, so a ring group on either node rings phones registered through either, and an
agent calls an agent registered through the other node, with audio both ways.

Which node a REGISTER reaches is the dispatcher's hash of its Call-ID; the tests make it
certain by stopping the other node first (Kamailio's OPTIONS probes then route around it)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import aiohttp
import asyncpg
import pytest

from callcenter.cluster import Cluster, NodeProcess, NodeSpec, kamailio_binary, kamailio_modules
from dialer import PgLeadStore
from sip_test_env import carrier
from sip_test_env.audio import first_tone_time, read_wav, write_tone_wav
from sip_test_env.baresip import BaresipPeer
from sip_test_env.ports import free_port
from sip_test_env.scripted_carrier import Customer, ScriptedCarrier

from .conftest import ENGINE_RTP_PORTS, bearer, engine_config_text, power_campaign
from .rawsip import RawSipClient, answer_challenge

T = TypeVar("T")

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(
        kamailio_binary() is None or kamailio_modules() is None,
        reason="kamailio not installed (sip_test_env/install-peers.sh: apt-get install kamailio)",
    ),
]

DID = "+12025550100"
CUSTOMER = "+12125551234"

# Kamailio is the trunk's address as the nodes see it: the carrier's calls enter through it.
TRUNK = f"""
[[trunks]]
name = "carrier"
allow_from = ["127.0.0.1"]

[[ring_groups]]
name = "sales"
members = ["101", "102"]
strategy = "ringall"
ring_timeout = 20

[[dids]]
number = "{DID}"
trunk = "carrier"
route = "ringgroup:sales"
"""


@pytest.fixture
async def cluster(crm_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    async with two_node_cluster(crm_url, tmp_path, extra=TRUNK) as running:
        yield running


@contextlib.asynccontextmanager
async def two_node_cluster(
    crm_url: str, tmp_path: Path, *, extra: str, extra_sip: str = ""
) -> AsyncIterator[Cluster]:
    config = tmp_path / "node.toml"
    config.write_text(engine_config_text(extra=extra, extra_sip=extra_sip))
    low, high = ENGINE_RTP_PORTS
    middle = (low + high) // 2
    tag = secrets.token_hex(3)
    specs = [
        NodeSpec(f"a-{tag}", "127.0.0.1", free_port("both"), free_port("tcp"), (low, middle)),
        NodeSpec(f"b-{tag}", "127.0.0.1", free_port("both"), free_port("tcp"), (middle + 1, high)),
    ]
    async with Cluster(
        config, specs, workdir=tmp_path / "cluster", port=free_port("udp"), database_url=crm_url
    ) as running:
        yield running


def phone(ext: str, cluster: Cluster, tmp_path: Path, tone: Path) -> BaresipPeer:
    return BaresipPeer(
        ext, workdir=tmp_path, registrar=cluster.address, password=f"pass{ext}", audio_source=tone
    )


async def register_through(
    node: NodeProcess, peer: BaresipPeer, cluster: Cluster, crm_url: str
) -> None:
    """Start `peer` while every other node is stopped, so its REGISTER reaches `node`; the
    others are started again before returning. Waits for the binding row of `node`."""
    others = [n for n in cluster.nodes if n is not node]
    await asyncio.gather(*(n.stop() for n in others))
    conn = await asyncpg.connect(crm_url)
    stored = asyncio.Event()

    def changed(*args: object) -> None:
        if str(args[-1]) == f"{node.spec.name}\n{peer.user}":
            stored.set()

    try:
        await conn.add_listener("registrations", changed)
        await peer.start()
        await peer.wait_registered(timeout=10)
        await asyncio.wait_for(stored.wait(), 5)
    finally:
        await conn.close()
    await asyncio.gather(*(n.start() for n in others))
    await until_all_up(cluster)


async def polled(
    read: Callable[[], Awaitable[T | None]], *, timeout: float, what: str, every: float = 0.1
) -> T:
    """What `read` returns once it is not None, read every `every` seconds: the nodes are other
    processes, so their database rows, logs and HTTP answers are polled, each wait bounded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (found := await read()) is None:
        assert loop.time() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(every)
    return found


async def until_all_up(cluster: Cluster, timeout: float = 10) -> None:
    """Until Kamailio's probes found every node answering again."""

    async def all_up() -> bool | None:
        states = await cluster.kamailio.states()
        return True if set(states.values()) == {"AP"} else None

    await polled(all_up, timeout=timeout, what="every node up at Kamailio", every=0.2)


@contextlib.asynccontextmanager
async def agents_on_two_nodes(
    cluster: Cluster, crm_url: str, tmp_path: Path, tone_101: Path, tone_102: Path
) -> AsyncIterator[tuple[BaresipPeer, BaresipPeer]]:
    """Agent 101 registered through the first node, 102 through the second."""
    node_a, node_b = cluster.nodes
    a101 = phone("101", cluster, tmp_path, tone_101)
    a102 = phone("102", cluster, tmp_path, tone_102)
    try:
        await register_through(node_a, a101, cluster, crm_url)
        await register_through(node_b, a102, cluster, crm_url)
        [(held_by, path)] = await holder(crm_url, "101", cluster)
        assert held_by == node_a.spec.name and "received=" in path[0]
        assert [n for n, _ in await holder(crm_url, "102", cluster)] == [node_b.spec.name]
        await every_node_knows(cluster, ["101", "102"])
        yield a101, a102
    finally:
        await asyncio.gather(a101.stop(), a102.stop())


async def every_node_knows(cluster: Cluster, extensions: list[str]) -> None:
    """Until every node's registrar has a binding of each of `extensions`: a node learns
    another node's binding from its NOTIFY and a re-read, so the row alone does not say that
    a call landing on the other node already finds the phone."""
    async with aiohttp.ClientSession(headers=bearer()) as http:

        async def known(node: NodeProcess) -> bool | None:
            url = f"http://{node.spec.host}:{node.spec.http_port}/api/status"
            async with http.get(url) as response:
                body = await response.json()
            registered = {e["extension"] for e in body["extensions"] if e["registered"]}
            return True if registered >= set(extensions) else None

        for node in cluster.nodes:
            await polled(
                functools.partial(known, node),
                timeout=10,
                what=f"{node.spec.name} knowing the bindings of {extensions}",
            )


async def holder(crm_url: str, ext: str, cluster: Cluster) -> list[tuple[str, list[str]]]:
    """(node, Path) of `ext`'s bindings held by the cluster's nodes (the database is shared
    with other tests' engines)."""
    conn = await asyncpg.connect(crm_url)
    try:
        rows = await conn.fetch(
            "SELECT node, path FROM registrations WHERE extension = $1 AND node = ANY($2)",
            ext,
            [n.spec.name for n in cluster.nodes],
        )
    finally:
        await conn.close()
    return [(r["node"], list(r["path"])) for r in rows]


async def test_a_ring_group_rings_agents_registered_through_either_node(
    cluster: Cluster, crm_url: str, tmp_path: Path
) -> None:
    node_a, node_b = cluster.nodes
    customer_tone = write_tone_wav(tmp_path / "600.wav", 600, 10.0)
    agent_tone = write_tone_wav(tmp_path / "1000.wav", 1000, 10.0)
    async with (
        agents_on_two_nodes(cluster, crm_url, tmp_path, agent_tone, agent_tone) as (a101, a102),
        carrier.customer(CUSTOMER, workdir=tmp_path, audio_source=customer_tone) as caller,
    ):
        # The carrier's INVITE enters through Kamailio and lands on one node, which rings
        # both: one phone is its own, the other the other node's, reached along its Path.
        await caller.dial(carrier.did_uri(DID, cluster.kamailio.port))
        await a101.wait_event("CALL_INCOMING", timeout=10)
        await a102.wait_event("CALL_INCOMING", timeout=10)
        await a102.accept()
        await caller.wait_event("CALL_ESTABLISHED", timeout=10)
        await a101.wait_event("CALL_CLOSED", timeout=10)  # the other phone stops ringing
        await asyncio.sleep(2.0)  # audio flows both ways for the recordings
        await caller.hangup()
        await a102.wait_event("CALL_CLOSED", timeout=10)
    rate, heard_by_agent, _ = read_wav(a102.recorded_wav())
    rate2, heard_by_customer, _ = read_wav(caller.recorded_wav())
    at_agent = first_tone_time(heard_by_agent, 600, rate)
    at_customer = first_tone_time(heard_by_customer, 1000, rate2)
    assert at_agent is not None and at_agent < 1.0
    assert at_customer is not None and at_customer < 1.0
    conn = await asyncpg.connect(crm_url)
    try:
        row = await polled(  # the node closes the row once the BYE's hang-up is journalled
            lambda: conn.fetchrow(
                "SELECT node, agent, outcome, ring_group FROM calls WHERE did = $1"
                " AND node = ANY($2::text[]) AND ended_at IS NOT NULL",
                DID,
                [node_a.spec.name, node_b.spec.name],
            ),
            timeout=10,
            what="the call's row closed",
        )
    finally:
        await conn.close()
    assert (row["agent"], row["outcome"], row["ring_group"]) == ("102", "answered", "sales")


async def test_an_agent_calls_an_agent_registered_through_the_other_node(
    cluster: Cluster, crm_url: str, tmp_path: Path
) -> None:
    tone_101 = write_tone_wav(tmp_path / "700.wav", 700, 10.0)
    tone_102 = write_tone_wav(tmp_path / "1100.wav", 1100, 10.0)
    async with agents_on_two_nodes(cluster, crm_url, tmp_path, tone_101, tone_102) as (a101, a102):
        # Whichever node the INVITE lands on, one of the two phones registered elsewhere.
        await a101.dial("102")
        await a102.wait_event("CALL_INCOMING", timeout=10)
        await a102.accept()
        await a101.wait_event("CALL_ESTABLISHED", timeout=10)
        await asyncio.sleep(2.0)  # audio flows both ways
        # The BYE follows Kamailio's Record-Route to the node that holds the call.
        await a102.hangup()
        await a101.wait_event("CALL_CLOSED", timeout=10)
    rate, heard_by_101, _ = read_wav(a101.recorded_wav())
    rate2, heard_by_102, _ = read_wav(a102.recorded_wav())
    at_101 = first_tone_time(heard_by_101, 1100, rate)
    at_102 = first_tone_time(heard_by_102, 700, rate2)
    assert at_101 is not None and at_101 < 1.0
    assert at_102 is not None and at_102 < 1.0


async def test_a_killed_node_is_out_within_seconds_and_its_phones_stay_reachable(
    cluster: Cluster, crm_url: str, tmp_path: Path
) -> None:
    node_b = cluster.nodes[1]
    tone_101 = write_tone_wav(tmp_path / "700.wav", 700, 10.0)
    tone_102 = write_tone_wav(tmp_path / "1100.wav", 1100, 10.0)
    async with agents_on_two_nodes(cluster, crm_url, tmp_path, tone_101, tone_102) as (a101, a102):
        down = f"node {node_b.spec.sip_uri} down"
        before = cluster.kamailio.log(tail=10**7).count(down)  # the placement took it down too
        await node_b.kill()
        # Kamailio's OPTIONS probes (each second, two misses) take it out of the set.
        await until_logged(cluster, down, after=before, timeout=6)
        # The survivor takes the call and reaches 102, registered through the dead node,
        # along the Path in the shared table.
        await a101.dial("102")
        await a102.wait_event("CALL_INCOMING", timeout=10)
        await a102.accept()
        await a101.wait_event("CALL_ESTABLISHED", timeout=10)
        await asyncio.sleep(1.0)  # audio flows both ways
        await a101.hangup()
        await a102.wait_event("CALL_CLOSED", timeout=10)
    rate, heard_by_102, _ = read_wav(a102.recorded_wav())
    at_102 = first_tone_time(heard_by_102, 700, rate)
    assert at_102 is not None and at_102 < 1.0


async def until_logged(cluster: Cluster, text: str, *, after: int, timeout: float) -> None:
    """Until Kamailio's log has `text` more than `after` times (its
    event_route[dispatcher:dst-down] writes it)."""

    async def logged() -> bool | None:
        return True if cluster.kamailio.log(tail=10**7).count(text) > after else None

    await polled(logged, timeout=timeout, what=f"{text!r} logged")


async def test_a_phone_challenged_by_one_node_is_let_in_by_the_other(cluster: Cluster) -> None:
    """The nodes share the digest nonces' key (cluster_secrets) and stamp them with wall-clock
    time: a REGISTER that node A challenged and node B receives with the answer (the
    dispatcher's hash of a new Call-ID, or a failover) is let in, not challenged again."""
    first, second = (node.spec for node in cluster.nodes)
    client = await RawSipClient.open()
    try:
        call_id = secrets.token_hex(8)
        a = (first.host, first.sip_port)
        client.send(client.register("101", a, cseq=1, call_id=call_id), a)
        challenge = await client.response(timeout=5)
        assert challenge is not None and challenge.status == 401, challenge
        b = (second.host, second.sip_port)
        uri = f"sip:{b[0]}:{b[1]}"
        answer = answer_challenge(challenge, user="101", password="pass101", method="REGISTER",
                                  uri=uri)  # fmt: skip
        client.send(client.register("101", b, cseq=2, call_id=call_id, authorization=answer), b)
        registered = await client.response(timeout=5)
        assert registered is not None and registered.status == 200, registered
        # Unregister: the binding was this test's alone.
        again = answer_challenge(challenge, user="101", password="pass101", method="REGISTER",
                                 uri=uri, nc=2)  # fmt: skip
        client.send(
            client.register("101", b, cseq=3, call_id=call_id, authorization=again, expires=0), b
        )
        gone = await client.response(timeout=5)
        assert gone is not None and gone.status == 200, gone
    finally:
        client.close()


async def test_with_every_node_gone_callers_get_503_with_retry_after(cluster: Cluster) -> None:
    await asyncio.gather(*(n.kill() for n in cluster.nodes))
    client = await RawSipClient.open()
    try:
        for attempt in range(2):  # at once (the nodes time out), then once they are marked down
            tag = secrets.token_hex(4)
            client.send(
                (
                    f"OPTIONS sip:101@{cluster.address} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {client.host}:{client.port};branch=z9hG4bK{tag};rport\r\n"
                    f"Max-Forwards: 70\r\nFrom: <sip:probe@{client.host}>;tag={tag}\r\n"
                    f"To: <sip:101@{cluster.address}>\r\nCall-ID: {tag}\r\n"
                    "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                ).encode(),
                (cluster.kamailio.host, cluster.kamailio.port),
            )
            response = await client.response(timeout=10)
            assert response is not None, attempt
            assert response.status == 503 and response.headers.get("Retry-After") == "5"
    finally:
        client.close()


async def test_a_killed_nodes_dialer_attempt_is_closed_by_the_survivor_and_the_campaign_goes_on(
    crm_url: str, tmp_path: Path
) -> None:
    """kill -9 of the node whose attempt rings: once its liveness lease (2 s here) runs out,
    the other node closes that attempt as outcome-unknown (the dead node never restarts), its
    reservation of the agent lapses too, and the survivor dials the rest: every lead is dialled
    once."""
    slow, *quick = [f"1212555{n:04d}" for n in range(21, 25)]
    customers = {slow: Customer("human", answer_after=30)} | {
        number: Customer("human", answer_after=0.3, hang_up_after=1.5) for number in quick
    }
    async with ScriptedCarrier(customers) as carrier_ua:
        host, port = carrier_ua.address
        trunk = (
            f'[[trunks]]\nname = "carrier"\noutbound = "{host}:{port}"\n'
            'caller_id = "12125550100"\n\n[presence]\nwrap_up_seconds = 0.2\n'
        )
        async with (
            two_node_cluster(crm_url, tmp_path, extra=trunk, extra_sip="cluster_lease = 2\n")
            as cluster,
            BaresipPeer("101", workdir=tmp_path, registrar=cluster.address, password="pass101",
                        answermode="auto") as agent,
        ):  # fmt: skip
            await agent.wait_registered(timeout=10)
            pool = await asyncpg.create_pool(crm_url, min_size=1, max_size=2)
            try:
                store = PgLeadStore(pool)
                campaign_id = await power_campaign(
                    store, "failover", [f"+{n}" for n in (slow, *quick)], max_ring_seconds=40
                )
                await store.set_state(campaign_id, "start", now=datetime.now(UTC))
                # The first lead (the slow one) rings on one node: that node dies.
                ringing = await in_flight(pool, campaign_id, timeout=20)
                victim = next(n for n in cluster.nodes if n.spec.name == ringing["node"])
                other = next(n for n in cluster.nodes if n is not victim)
                # The other node's dashboard shows the call that rings on the victim ...
                await until_shown(other, f"+{slow}", shown=True)
                await victim.kill()
                closed = await attempt_closed(pool, ringing["id"], timeout=15)
                assert closed["outcome"] == "outcome-unknown"
                # ... until the victim's lease runs out.
                await until_shown(other, f"+{slow}", shown=False)
                assert victim.proc is not None and victim.proc.returncode is not None

                async def dialled_out() -> bool | None:
                    progress = await store.campaign_progress(campaign_id)
                    return None if progress.remaining or progress.in_flight else True

                await polled(dialled_out, timeout=30, what="the campaign dialled out", every=0.5)
                await store.set_state(campaign_id, "stop", now=datetime.now(UTC))
                attempts = await pool.fetch(
                    "SELECT l.phone, a.node, a.outcome, a.agent FROM attempts a"
                    " JOIN leads l ON l.id = a.lead_id WHERE a.campaign_id = $1",
                    campaign_id,
                )
            finally:
                await pool.close()
        survivor = next(n.spec.name for n in cluster.nodes if n is not victim)
        by_phone = {r["phone"]: (r["node"], r["outcome"], r["agent"]) for r in attempts}
        assert len(attempts) == len(by_phone) == len(customers)  # one attempt per lead
        assert by_phone.pop(f"+{slow}") == (victim.spec.name, "outcome-unknown", None)
        assert set(by_phone.values()) == {(survivor, "answered-human", "101")}
        assert {n: carrier_ua.record(n).invites for n in customers} == dict.fromkeys(customers, 1)


async def until_shown(node: NodeProcess, callee: str, *, shown: bool, timeout: float = 15) -> None:
    """Until `node`'s dashboard board shows a call to `callee` (or no longer does)."""
    url = f"http://{node.spec.host}:{node.spec.http_port}/api/live/snapshot"
    async with aiohttp.ClientSession(headers=bearer()) as http:

        async def as_wanted() -> bool | None:
            async with http.get(url) as response:
                assert response.status == 200, await response.text()
                calls = (await response.json())["calls"]
            return True if any(c["callee"] == callee for c in calls) == shown else None

        what = f"{node.spec.name}'s board {'showing' if shown else 'without'} {callee}"
        await polled(as_wanted, timeout=timeout, what=what, every=0.2)


async def in_flight(pool: asyncpg.Pool, campaign_id: int, *, timeout: float) -> asyncpg.Record:
    """The campaign's first attempt whose INVITE went out and which has not ended."""
    return await polled(
        lambda: pool.fetchrow(
            "SELECT id, node FROM attempts WHERE campaign_id = $1 AND dialled_at IS NOT NULL"
            " AND ended_at IS NULL ORDER BY id LIMIT 1",
            campaign_id,
        ),
        timeout=timeout,
        what="an attempt dialled",
    )


async def attempt_closed(pool: asyncpg.Pool, attempt_id: int, *, timeout: float) -> asyncpg.Record:
    return await polled(
        lambda: pool.fetchrow(
            "SELECT outcome, ended_at FROM attempts WHERE id = $1 AND ended_at IS NOT NULL",
            attempt_id,
        ),
        timeout=timeout,
        what=f"attempt {attempt_id} closed",
    )
