"""Caller ID through a carrier that writes numbers the Russian way (issue 13, part 2), with SIPp
as the carrier: its INVITEs carry P-Asserted-Identity and Privacy, its DIDs arrive as 8495...;
it expects national numbers and a P-Asserted-Identity on our calls out.

- A call with From: anonymous and a PAI of +7 915 ... reaches the DID sent as 84951234567; the
  agent's phone shows the E.164 number, the calls row holds it; the carrier's PAI does not
  reach the agent's phone.
- Calls with Privacy: id are journaled as withheld ("anonymous", no contact, no callback task),
  whether or not a number was asserted; so is a call whose only number is in a PAI that does
  not parse (skipped with a log, not a 500).
- An agent's call out carries the national number in the Request-URI, the trunk's caller ID in
  From and the configured P-Asserted-Identity; a call placed with its caller ID withheld goes
  as anonymous with Privacy: id.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from callcenter.runtime import Engine, start_engine
from sip_test_env import carrier
from sip_test_env.baresip import BaresipPeer
from sip_test_env.ports import free_port
from sip_test_env.sipp import SippUas, run_sipp
from telephony.call import Answered, Ended
from telephony.sip import SipUri

from .conftest import assert_no_state_left, calls_settled, engine_config, registrar_of
from .test_trunk import _poll

pytestmark = pytest.mark.peers

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
DID_SENT = "84951234567"
"""How the carrier writes our number +7 495 123-45-67 in its Request-URIs."""
DID = "+74951234567"
UNANSWERED_SENT = "84951234568"
UNANSWERED = "+74951234568"
CUSTOMER = "+79151234567"
ANONYMOUS_FROM = '"Anonymous" <sip:anonymous@anonymous.invalid>'
BRANCH_IP = "127.0.0.3"
BRANCH_DID = "+74951234569"


def trunk(carrier_port: int) -> str:
    return f"""
[[trunks]]
name = "rostelecom"
allow_from = ["{carrier.CARRIER_IP}"]
outbound = "127.0.0.1:{carrier_port}"
country = "RU"
outbound_format = "national"
caller_id = "+7 495 123-45-67"
identity_headers = ["pai"]
asserted_identity = "84951234500"

[[dids]]
number = "8 (495) 123-45-67"
trunk = "rostelecom"
route = "agent:101"

[[dids]]
number = "{UNANSWERED}"
trunk = "rostelecom"
route = "agent:104"

# A PBX in a branch office, connected as a trunk: it passes its phones' headers on unscreened.
[[trunks]]
name = "branch"
allow_from = ["{BRANCH_IP}"]
country = "RU"
trust_identity = false

[[dids]]
number = "{BRANCH_DID}"
trunk = "branch"
route = "agent:104"
"""


@pytest.fixture
def carrier_port() -> int:
    return free_port("both")


@pytest.fixture
async def ru_engine(pg_url: str, tmp_path: Path, carrier_port: int) -> AsyncIterator[Engine]:
    engine = await start_engine(
        engine_config(extra=trunk(carrier_port)), database_url=pg_url, data_dir=tmp_path
    )
    try:
        yield engine
    finally:
        await engine.stop()


async def _carrier_call(
    engine: Engine,
    tmp_path: Path,
    scenario: str,
    did: str,
    *,
    pai: str = "",
    privacy: str = "",
    from_: str = ANONYMOUS_FROM,
    identity_header: str = "P-Asserted-Identity",
    source: str = carrier.CARRIER_IP,
) -> None:
    """SIPp, from the carrier's address, calls `did` with `from_` and the headers (`pai` goes
    in `identity_header`)."""
    result = await run_sipp(
        SCENARIOS / scenario,
        f"127.0.0.1:{engine.sip_port}",
        service=did,
        duration_ms=None,
        extra_args=[
            *("-i", source),
            *("-key", "from", from_),
            *("-key", "pai", f"{identity_header}: {pai}" if pai else "X-None: 1"),
            *("-key", "privacy", f"Privacy: {privacy}" if privacy else "X-None: 2"),
        ],
        workdir=tmp_path / "sipp",
        timeout=20,
    )
    assert result.ok, result.summary()


async def _ended_rows(
    db: asyncpg.Connection, engine: Engine, did: str, count: int
) -> list[asyncpg.Record]:
    """The engine's `count` closed calls rows for `did`, oldest first, once all are written (the
    journal writes each when its call ends)."""
    ended = "did = $1 AND node = $2 AND ended_at IS NOT NULL"
    node = engine.config.crm.node
    await _poll(db, f"SELECT 1 FROM calls WHERE {ended} HAVING count(*) >= {count}", did, node)
    rows = await db.fetch(f"SELECT * FROM calls WHERE {ended} ORDER BY id", did, node)
    assert len(rows) == count, rows
    return rows


async def test_an_asserted_caller_reaches_the_did_sent_in_national_format(
    ru_engine: Engine, tmp_path: Path, db: asyncpg.Connection
) -> None:
    async with BaresipPeer(
        "101", workdir=tmp_path, registrar=registrar_of(ru_engine), password="pass101",
        answermode="auto",
    ) as a101:  # fmt: skip
        await a101.wait_registered()
        sipp = asyncio.create_task(
            _carrier_call(
                ru_engine, tmp_path, "uac_trunk_identity.xml", DID_SENT,
                pai=f"<sip:{CUSTOMER}@carrier.example;user=phone>",
            )
        )  # fmt: skip
        answered = await a101.wait_event("CALL_ESTABLISHED", timeout=5)  # auto-answered
        # The agent's phone shows the caller's E.164 number (the screen pop's key)...
        assert f"sip:{CUSTOMER}@" in str(answered.get("peeruri", "")), answered
        bridged = next(iter(ru_engine.switchboard.active.values()))
        assert bridged.b is not None
        to_phone = bridged.b.invite
        from_ = to_phone.from_.uri
        assert isinstance(from_, SipUri) and from_.user == CUSTOMER
        # ... and never the carrier's identity headers: each leg's INVITE is the engine's own.
        assert "P-Asserted-Identity" not in to_phone.headers
        await sipp  # the carrier hangs up after a second
        await a101.wait_event("CALL_CLOSED", timeout=5)
    await calls_settled(ru_engine)
    (row,) = await _ended_rows(db, ru_engine, DID, 1)
    assert (
        row["direction"], row["from_number"], row["to_number"], row["agent"], row["outcome"]
    ) == ("inbound", CUSTOMER, DID, "101", "answered")  # fmt: skip
    contact = await db.fetchrow("SELECT id FROM contacts WHERE phone = $1", CUSTOMER)
    assert contact is not None and row["contact_id"] == contact["id"]
    assert_no_state_left(ru_engine)


async def test_privacy_id_and_broken_identities_are_journaled_as_withheld(
    ru_engine: Engine, tmp_path: Path, db: asyncpg.Connection
) -> None:
    # No usable number at all, then a number the caller asked to keep private.
    await _carrier_call(ru_engine, tmp_path, "uac_trunk_identity_missed.xml", UNANSWERED_SENT,
                        privacy="id")  # fmt: skip
    await _carrier_call(
        ru_engine, tmp_path, "uac_trunk_identity_missed.xml", UNANSWERED_SENT,
        pai="<tel:+79161234567>", privacy="id;critical",
    )  # fmt: skip
    # A PAI that does not parse is skipped (logged), never a 500: the From is anonymous.
    await _carrier_call(ru_engine, tmp_path, "uac_trunk_identity_missed.xml", UNANSWERED_SENT,
                        pai="<sip:+79161234567@carrier.example")  # fmt: skip
    await calls_settled(ru_engine)
    rows = await _ended_rows(db, ru_engine, UNANSWERED, 3)
    assert [(r["from_number"], r["outcome"], r["contact_id"]) for r in rows] == [
        ("anonymous", "missed", None),
        ("anonymous", "missed", None),
        ("anonymous", "missed", None),
    ]
    assert await db.fetchval(
        "SELECT count(*) FROM contacts WHERE phone = '+79161234567'"
    ) == 0  # fmt: skip
    assert await db.fetchval(
        "SELECT count(*) FROM tasks WHERE created_from_call = ANY($1::bigint[])"
        " OR last_call = ANY($1::bigint[])",
        [r["id"] for r in rows],
    ) == 0  # fmt: skip
    assert_no_state_left(ru_engine)


async def test_calls_out_carry_national_numbers_and_the_asserted_identity(
    ru_engine: Engine, tmp_path: Path, carrier_port: int, db: asyncpg.Connection
) -> None:
    uas = SippUas(
        SCENARIOS / "uas_identity.xml", port=carrier_port, calls=2, workdir=tmp_path / "carrier"
    )
    async with (
        uas,
        BaresipPeer(
            "101", workdir=tmp_path, registrar=registrar_of(ru_engine), password="pass101"
        ) as a101,
    ):
        await a101.wait_registered()
        # An agent dials the customer in E.164; the carrier gets it the Russian way.
        await a101.dial("+74957654321")
        await a101.wait_event("CALL_ESTABLISHED", timeout=5)
        bridged = next(iter(ru_engine.switchboard.active.values()))
        assert bridged.b is not None
        sent = bridged.b.invite
        assert str(sent.uri) == f"sip:84957654321@127.0.0.1:{carrier_port}"
        assert sent.to.uri == sent.uri
        assert str(sent.from_.uri).startswith("sip:84951234567@")  # the trunk's caller ID
        assert (sent.headers.get("P-Asserted-Identity") or "").startswith("<sip:84951234500@")
        assert "Privacy" not in sent.headers
        await a101.hangup()
        await a101.wait_event("CALL_CLOSED", timeout=5)
        # The dialer's way out, with the caller ID withheld: anonymous, Privacy: id, and the
        # carrier still gets the identity it bills.
        leg = await ru_engine.switchboard.originate("+74957654321", caller_id="anonymous")
        assert str(leg.invite.from_).startswith(ANONYMOUS_FROM)
        assert leg.invite.headers.get("Privacy") == "id"
        assert (leg.invite.headers.get("P-Asserted-Identity") or "").startswith("<sip:84951234500@")
        while not isinstance(event := await leg.next_event(5), Answered):
            assert not isinstance(event, Ended), event
        await leg.hangup()
        served = await uas.wait(timeout=10)
    assert served.successful == 2 and served.failed == 0, served.summary()
    await calls_settled(ru_engine)
    row = await _poll(
        db, "SELECT * FROM calls WHERE call_id = $1 AND ended_at IS NOT NULL", bridged.a.call_id
    )
    assert (row["direction"], row["from_number"], row["to_number"], row["outcome"]) == (
        "outbound", "101", "+74957654321", "answered",
    )  # fmt: skip


async def test_remote_party_id_and_national_callers_are_read_to_e164(
    ru_engine: Engine, tmp_path: Path, db: asyncpg.Connection
) -> None:
    """Missed calls from callers the carrier writes nationally, once in Remote-Party-ID, once
    in From only: the rows and the callback task (for the DID's agent) are on E.164 numbers."""
    await _carrier_call(
        ru_engine, tmp_path, "uac_trunk_identity_missed.xml", UNANSWERED_SENT,
        identity_header="Remote-Party-ID",
        pai="<sip:89161112233@carrier.example>;party=calling;screen=yes;privacy=off",
    )  # fmt: skip
    await _carrier_call(
        ru_engine, tmp_path, "uac_trunk_identity_missed.xml", UNANSWERED_SENT,
        from_="<sip:8 (916) 111-22-44@carrier.example>".replace(" ", "%20"),
    )  # fmt: skip
    await calls_settled(ru_engine)
    rows = await _ended_rows(db, ru_engine, UNANSWERED, 2)
    assert [(r["from_number"], r["outcome"]) for r in rows] == [
        ("+79161112233", "missed"),
        ("+79161112244", "missed"),
    ]
    for row in rows:
        task = await _poll(
            db,
            "SELECT t.assignee FROM tasks t JOIN contacts c ON c.id = t.contact_id"
            " WHERE c.phone = $1 AND t.type = 'callback' AND t.last_call = $2",
            row["from_number"],
            row["id"],
        )
        assert task["assignee"] == "104"
    assert_no_state_left(ru_engine)


async def test_a_trunk_not_trusted_with_identities_is_read_by_its_from(
    ru_engine: Engine, tmp_path: Path, db: asyncpg.Connection
) -> None:
    """trust_identity = false: a PAI from that trunk is ignored, its From names the caller."""
    await _carrier_call(
        ru_engine, tmp_path, "uac_trunk_identity_missed.xml", "84951234569",
        source=BRANCH_IP, from_="<sip:84951112200@branch.example>",
        pai="<sip:+79150000000@branch.example>",
    )  # fmt: skip
    await calls_settled(ru_engine)
    (row,) = await _ended_rows(db, ru_engine, BRANCH_DID, 1)
    assert (row["from_number"], row["outcome"]) == ("+74951112200", "missed")
    assert_no_state_left(ru_engine)
