"""The conformance corpora replayed as trunk calls to a DID: every RFC 4475 torture message and
PROTOS c07-sip sample case sent from the carrier's address (127.0.0.2) with the INVITE's
Request-URI rewritten to a DID of that carrier, so the INVITEs are routed, not challenged.

What "an inbound call that reached the engine" means here: an INVITE that the message layer let
through (it parsed, `check_request` accepted it, and it opened a new server transaction: not a
retransmission), outside any dialog (no To tag), from the address of a trunk, whose Request-URI
names a DID of that trunk and whose From is not one of our extensions (an agent is challenged
even from the carrier's address). Every such INVITE leaves exactly one calls row, whatever
happens next: a malformed or unacceptable SDP offer is answered 488 before any routing and its
row says so (outcome missed, cause unacceptable-offer, status 488); a missed call from a callable
caller ID (one that normalises to E.164) also opens or updates that contact's callback task. An
INVITE the message layer refused (400, 415, 416, 420, 505...) or dropped without a word, one
with the To tag of a dialog we never had (481), one to a number that is not a DID of that trunk
(404) never reached routing and leaves no row, as do non-INVITE requests.

The replay DID routes to an agent who is not registered, so a well-formed call is answered 480 at
once and no media is ever sent towards the corpora's addresses (192.0.2.0/24, 10.10.10.1...).
Each PROTOS case's CANCEL follows its INVITE's final answer: while that INVITE transaction
lives, it gets 200 (RFC 3261 9.2), not 481.
The engine's log is captured for the whole test: a "Task exception was never retrieved" line, an
asyncio "Exception in callback" or any logged traceback fails it. Afterwards the engine still
answers OPTIONS and bridges a normal trunk call to a baresip agent.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from callcenter.runtime import Engine, start_engine
from sip_test_env.ports import free_port

from ..telephony.sip.conformance_data import protos_cases, protos_teardowns, rfc4475_cases
from .conftest import calls_settled, engine_config
from .rawsip import RawSipClient, TcpSipClient
from .test_conformance_udp import SPECIAL, _call_id
from .test_trunk import (
    CARRIER_IP,
    DID,
    _poll,
    agent,
    answered_by,
    customer,
    trunk_config,
)

pytestmark = pytest.mark.peers

REPLAY_DID = "+12025550102"
"""Routed to agent 104, whom no phone registers in this test: a call is missed at once."""
CALLER = "12125550199"
"""The caller ID of the PROTOS cases: a callable number, so their missed calls make a task."""
BY_METHOD = {"OPTIONS": 200, "INVITE": 480, "REGISTER": 401}
# The INVITE's Request-URI: its user@host[:port] part (parameters, headers and brackets kept, so
# the torture cases about the Request-URI itself stay as broken as they were).
_RURI = re.compile(rb"^(INVITE +<?sip:)[^@\s>]*@[^;?>\s]+", re.MULTILINE)
MAX_DATAGRAM = 65507
"""The largest UDP payload over IPv4: bigger PROTOS cases go over TCP."""
_NEVER = "exception was never retrieved"  # asyncio's "Task exception was never retrieved"


class _EngineLog(logging.Handler):
    """Every record the engine logs, kept as lines; the ones that show a bug kept apart."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []
        self.bad: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        self.lines.append(line)
        unhandled = record.name == "asyncio" and record.levelno >= logging.ERROR
        if unhandled or record.exc_info or _NEVER in line:
            self.bad.append(line)


@pytest.fixture
def engine_log() -> Iterator[_EngineLog]:
    handler = _EngineLog()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture(name="db")
def own_db(crm_db: asyncpg.Connection) -> asyncpg.Connection:
    """The replay engine's database (one of this test's own): the replay counts the calls rows
    and callback tasks of its caller, which other tests on the worker's shared database leave
    too (test_dashboard's missed call from the same number opens the task first)."""
    return crm_db


@pytest.fixture
async def replay_engine(
    crm_url: str, tmp_path: Path, engine_log: _EngineLog
) -> AsyncIterator[Engine]:
    extra = trunk_config(free_port("both")) + (
        f'\n[[dids]]\nnumber = "{REPLAY_DID}"\ntrunk = "carrier"\nroute = "agent:104"\n'
        'label = "Replay"\n'
    )
    engine = await start_engine(engine_config(extra=extra), database_url=crm_url, data_dir=tmp_path)
    try:
        yield engine
    finally:
        await engine.stop()
    gc.collect()  # a forgotten task's exception is reported when the task is collected
    assert not engine_log.bad, "while stopping:\n" + "\n".join(engine_log.bad)


@pytest.fixture
async def carrier_client() -> AsyncIterator[RawSipClient]:
    client = await RawSipClient.open(CARRIER_IP)
    yield client
    client.close()


def to_did(data: bytes, port: int) -> bytes:
    """The message with its INVITE Request-URI pointed at the replay DID on the engine."""
    return _RURI.sub(lambda m: m.group(1) + f"{REPLAY_DID}@127.0.0.1:{port}".encode(), data, 1)


async def _answer(
    engine: Engine, client: RawSipClient, data: bytes, *, method: str = "INVITE"
) -> int | None:
    """The final status answering `data`, or None when the engine dropped it.

    An OPTIONS probe follows the case: once it is answered, the engine has handled the case's
    message. Then either its answer is in, or it opened a server transaction (routing answers
    it later, perhaps after the probe: wait for that answer), or it was dropped without a word.
    """
    server = ("127.0.0.1", engine.sip_port)
    call_id = _call_id(data)
    client.send(data, server)
    probe = secrets.token_hex(6)
    client.send(_options(client, server, probe), server)
    status: int | None = None
    probe_answered = False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while status is None and (left := deadline - loop.time()) > 0:
        if probe_answered and not _opened(engine, call_id, method):
            break  # refused at once (its answer came before the probe's) or dropped
        got = await client.response(timeout=left)
        if got is None:
            break  # timed out, or the engine closed the TCP connection
        got_id = got.headers.get("Call-ID")
        if got_id == probe:
            probe_answered = True
        elif got_id is None or (call_id and got_id == call_id.decode("utf-8", "replace")):
            # (no Call-ID: an answer that echoes the broken header it refuses, see RawSipClient)
            # A PROTOS case's CANCEL shares the INVITE's Call-ID: tell their answers apart.
            if ((got.headers.get("CSeq") or "").split()[-1:] == ["CANCEL"]) == (method == "CANCEL"):
                status = got.status
    closed = isinstance(client, TcpSipClient) and client.lost.is_set()  # framing lost: closed
    assert probe_answered or status is not None or closed, "the engine stopped answering"
    assert status is not None or not _opened(engine, call_id, method), "accepted, not answered"
    return status


async def _send(
    engine: Engine, udp: RawSipClient, data: bytes, *, method: str = "INVITE"
) -> int | None:
    """`_answer` over UDP, or over a TCP connection of its own from the same address for a
    message larger than a datagram can carry (RFC 3261 18.1.1)."""
    if len(data) <= MAX_DATAGRAM:
        return await _answer(engine, udp, data, method=method)
    tcp = await TcpSipClient.connect(("127.0.0.1", engine.sip_port), udp.host)
    try:
        return await _answer(engine, tcp, data, method=method)
    finally:
        tcp.close()


def _opened(engine: Engine, call_id: bytes | None, method: str) -> bool:
    """Whether the request opened a server transaction (it passed the message layer)."""
    if call_id is None:
        return False
    wanted = call_id.decode("utf-8", "replace")
    return any(
        txn.method == method and txn.call_id == wanted
        for txn in engine.ua.endpoint.layer.transactions()
    )


def _options(client: RawSipClient, server: tuple[str, int], call_id: str) -> bytes:
    host = f"{server[0]}:{server[1]}"
    transport = "TCP" if isinstance(client, TcpSipClient) else "UDP"
    return (
        f"OPTIONS sip:{host} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {client.host}:{client.port};branch=z9hG4bK{call_id}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:probe@{client.host}>;tag={call_id}\r\n"
        f"To: <sip:{host}>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def _print_counts(title: str, counts: Counter[int | None]) -> None:
    ordered = sorted(counts.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
    listed = ", ".join(f"{k if k is not None else 'no answer'}: {v}" for k, v in ordered)
    print(f"{title} ({sum(counts.values())}): {listed}")


async def test_corpora_replayed_to_a_did(
    replay_engine: Engine,
    carrier_client: RawSipClient,
    engine_log: _EngineLog,
    tmp_path: Path,
    db,
) -> None:
    engine = replay_engine
    port = engine.sip_port
    node = engine.config.crm.node
    routed: dict[str, int] = {}  # Call-ID -> status, of the INVITEs routing answered

    # RFC 4475: as the extension replay, except that INVITEs are routed to the DID.
    rfc_counts: Counter[int | None] = Counter()
    wrong = []
    for name, data, expected in rfc4475_cases():
        want = SPECIAL.get(
            name, BY_METHOD.get(expected, expected) if isinstance(expected, str) else expected
        )
        data = to_did(data, port)
        method = data.split(b" ", 1)[0].decode("latin-1")
        status = await _answer(engine, carrier_client, data, method=method)
        rfc_counts[status] += 1
        if status != want:
            wrong.append(f"{name}: expected {want}, got {status}")
        if expected == "INVITE" and status in (480, 488) and (call_id := _call_id(data)):
            routed[call_id.decode()] = status
    _print_counts("RFC 4475 to the DID, responses by status", rfc_counts)
    assert not wrong, "\n".join(wrong)

    # PROTOS: INVITE, then the teardown (CANCEL), per case.
    address = dict(to=f"{REPLAY_DID}@127.0.0.1:{port}", from_=f"{CALLER}@{CARRIER_IP}",
                   from_address=CARRIER_IP, local_port=carrier_client.port)  # fmt: skip
    teardowns = dict(protos_teardowns(**address))
    invite_counts: Counter[int | None] = Counter()
    silent: list[str] = []
    teardown_counts: Counter[int | None] = Counter()
    for case, invite in protos_cases(**address):
        status = await _send(engine, carrier_client, invite)
        invite_counts[status] += 1
        if status is None:
            silent.append(case)
        if status in (480, 488) and (call_id := _call_id(invite)):
            routed[call_id.decode("utf-8", "replace")] = status
        if case in teardowns:
            cancelled = await _send(engine, carrier_client, teardowns[case], method="CANCEL")
            teardown_counts[cancelled] += 1
            if status in (480, 488):  # RFC 3261 9.2: it matches an INVITE transaction
                assert cancelled == 200, f"{case}: CANCEL after {status} got {cancelled}"
    _print_counts("PROTOS to the DID, INVITE responses by status", invite_counts)
    _print_counts("PROTOS to the DID, CANCEL responses by status", teardown_counts)
    print("PROTOS INVITEs dropped without an answer:", " ".join(silent))
    assert invite_counts[488] > 0, "no PROTOS offer was refused as unacceptable"
    assert invite_counts[480] > 0 and invite_counts[503] == 0 and invite_counts[500] == 0

    # The engine serves on: OPTIONS, then a customer's call bridged to an agent's phone.
    probe = _options(carrier_client, ("127.0.0.1", port), secrets.token_hex(6))
    assert await _answer(engine, carrier_client, probe, method="OPTIONS") == 200
    await _normal_trunk_call(engine, tmp_path)
    await calls_settled(engine)

    # Every call that reached routing left one closed row; refused offers say why.
    rows = await db.fetch(
        "SELECT call_id, outcome, sip_status, hangup_cause, did, contact_id FROM calls"
        " WHERE node = $1 AND did = $2",
        node,
        REPLAY_DID,
    )
    by_id = {r["call_id"]: r for r in rows}
    assert len(by_id) == len(rows), "a call journaled twice"
    assert set(by_id) == set(routed)
    for call_id, status in routed.items():
        row = by_id[call_id]
        assert (row["outcome"], row["sip_status"]) == ("missed", status), dict(row)
        if status == 488:
            assert row["hangup_cause"] == "unacceptable-offer", dict(row)
    # The callable caller of the PROTOS cases has one open callback task for all its calls.
    task = await db.fetchrow(
        "SELECT t.assignee, t.missed_calls FROM tasks t JOIN contacts c ON c.id = t.contact_id"
        " WHERE c.phone = $1 AND t.status = 'open' AND t.type = 'callback'",
        "+" + CALLER,
    )
    assert task is not None and task["assignee"] == "104"
    refused = [c for c, s in routed.items() if s == 488 and c.startswith("protos-")]
    assert task["missed_calls"] >= len(refused) > 0

    gc.collect()  # a forgotten task's exception is reported when the task is collected
    assert not engine_log.bad, "\n".join(engine_log.bad)


async def _normal_trunk_call(engine: Engine, tmp_path: Path) -> None:
    async with customer(tmp_path / "customer") as caller, agent("102", engine, tmp_path) as a102:
        bridged = await answered_by(a102, caller, engine)
        assert bridged.callee == "102" and bridged.media is not None
        await caller.hangup()
        await a102.wait_event("CALL_CLOSED", timeout=5)


@pytest.mark.parametrize(
    ("media", "warning"),
    [
        ("m=audio 9876 RTP/AVP 0 300\r\n", "399"),  # malformed: payload type out of range
        ("m=audio 9876 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n", "305"),  # no common codec
    ],
    ids=["malformed", "no-common-codec"],
)
async def test_an_unacceptable_offer_to_a_ring_group_is_a_missed_call(
    replay_engine: Engine,
    carrier_client: RawSipClient,
    engine_log: _EngineLog,
    db,
    media: str,
    warning: str,
) -> None:
    """The DID of a ring group nobody answers, whose callers hear the auto-reply: an offer we
    cannot answer gets 488 (with a Warning saying why) before any routing, instead of the
    auto-reply's answer failing in a background task (503 to the caller, "Task exception was
    never retrieved", the row left open, no task). The call is a missed call like any other:
    its row, and a callback task for the group's owner."""
    engine = replay_engine
    number = f"1212555{secrets.randbelow(10**4):04d}"
    e164 = "+" + number
    call_id = f"offer-{secrets.token_hex(6)}"
    host = f"127.0.0.1:{engine.sip_port}"
    me = f"{carrier_client.host}:{carrier_client.port}"
    body = (
        f"v=0\r\no=- 1 1 IN IP4 {CARRIER_IP}\r\ns=-\r\nc=IN IP4 {CARRIER_IP}\r\nt=0 0\r\n{media}"
    ).encode()
    invite = (
        f"INVITE sip:{DID}@{host} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {me};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{number}@{CARRIER_IP}>;tag={secrets.token_hex(4)}\r\n"
        f"To: <sip:{DID}@{host}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:{number}@{me}>\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    carrier_client.send(invite, ("127.0.0.1", engine.sip_port))
    answer = await carrier_client.response(timeout=5)
    assert answer is not None and answer.status == 488, answer
    assert (answer.headers.get("Warning") or "").startswith(warning + " "), answer.headers
    await calls_settled(engine)
    row = await _poll(db, "SELECT * FROM calls WHERE call_id = $1", call_id)
    assert (
        row["direction"], row["from_number"], row["did"], row["ring_group"], row["outcome"],
        row["sip_status"], row["hangup_cause"], row["answered_at"] is None,
    ) == ("inbound", e164, DID, "sales", "missed", 488, "unacceptable-offer", True)  # fmt: skip
    task = await _poll(
        db,
        "SELECT t.* FROM tasks t JOIN contacts c ON c.id = t.contact_id"
        " WHERE c.phone = $1 AND t.status = 'open' AND t.type = 'callback'",
        "+" + number,
    )
    assert (task["assignee"], task["last_call"]) == ("103", row["id"])
    gc.collect()
    assert not engine_log.bad, "\n".join(engine_log.bad)


async def test_a_caller_id_of_any_length_leaves_its_row(
    replay_engine: Engine, carrier_client: RawSipClient, engine_log: _EngineLog, db
) -> None:
    """A carrier's INVITE whose From user is 6,000 random characters (PROTOS sends such
    things) is a call like any other: answered, and journaled; no phone number, so withheld
    (the engine journals a trunk caller as E.164 or "anonymous", never the raw text)."""
    engine = replay_engine
    caller = secrets.token_hex(3000)
    call_id = f"long-{secrets.token_hex(6)}"
    host = f"127.0.0.1:{engine.sip_port}"
    me = f"{carrier_client.host}:{carrier_client.port}"
    invite = (
        f"INVITE sip:{REPLAY_DID}@{host} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {me};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{caller}@{CARRIER_IP}>;tag={secrets.token_hex(4)}\r\n"
        f"To: <sip:{REPLAY_DID}@{host}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    assert await _answer(engine, carrier_client, invite) == 480
    await calls_settled(engine)
    row = await _poll(
        db, "SELECT * FROM calls WHERE call_id = $1 AND ended_at IS NOT NULL", call_id
    )
    assert row["outcome"] == "missed" and row["from_number"] == "anonymous"
    gc.collect()
    assert not engine_log.bad, "\n".join(engine_log.bad)
