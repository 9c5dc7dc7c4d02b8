"""Every RFC 4475 torture message and PROTOS c07-sip sample case sent to the engine over UDP:
the engine answers as index.tsv says (or stays silent where it should) and keeps serving."""

from __future__ import annotations

import asyncio
import re
import secrets

import pytest

from callcenter.runtime import Engine
from telephony.sip import Via

from ..telephony.sip.conformance_data import protos_cases, rfc4475_cases
from .rawsip import RawSipClient

# What the running engine answers to a request the message layer lets through.
BY_METHOD = {"OPTIONS": 200, "INVITE": 401, "REGISTER": 401}
# Answers of the running engine that differ from the method default: unksm2's To is not a SIP
# AOR (the registrar refuses it); wsinv's To carries a tag of a dialog we never had (RFC 3261
# 12.2.2: 481); regescrt repeats escnull's branch, sent-by and CSeq, so within Timer J it is a
# retransmission of escnull (RFC 3261 17.2.3) and gets escnull's answer again, not its own.
SPECIAL = {"unksm2.dat": 400, "wsinv.dat": 481, "regescrt.dat": None}
_CALL_ID = re.compile(rb"^(?:Call-ID|i)[ \t]*:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


def _call_id(data: bytes) -> bytes | None:
    match = _CALL_ID.search(data)
    return match.group(1) if match else None


async def _options_answered(client: RawSipClient, server: tuple[str, int]) -> bool:
    host = f"{server[0]}:{server[1]}"
    branch = secrets.token_hex(6)
    message = (
        f"OPTIONS sip:{host} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {client.host}:{client.port};branch=z9hG4bK{branch}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:probe@{client.host}>;tag={branch}\r\nTo: <sip:{host}>\r\n"
        f"Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    client.send(message, server)
    return await _status_for(client, branch.encode(), timeout=2.0) == 200


async def _status_for(client: RawSipClient, call_id: bytes | None, *, timeout: float) -> int | None:
    """The final status answering `call_id`; retransmitted answers to earlier cases are skipped."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        got = await client.response(timeout=left)
        if got is None:
            return None
        if call_id is None or got.headers.get("Call-ID") in (
            None,
            call_id.decode("utf-8", "replace"),
        ):
            return got.status
    return None


@pytest.fixture
async def client() -> RawSipClient:
    c = await RawSipClient.open()
    yield c
    c.close()


async def test_rfc4475_torture_messages(engine: Engine, client: RawSipClient) -> None:
    server = ("127.0.0.1", engine.sip_port)
    wrong = []
    for name, data, expected in rfc4475_cases():
        want = SPECIAL.get(
            name, BY_METHOD.get(expected, expected) if isinstance(expected, str) else expected
        )
        client.send(data, server)
        status = await _status_for(client, _call_id(data), timeout=0.3 if want is None else 2.0)
        if status != want:
            wrong.append(f"{name}: expected {want}, got {status}")
    assert not wrong, "\n".join(wrong)
    assert await _options_answered(client, server)


async def test_protos_sample_keeps_the_engine_serving(engine: Engine, client: RawSipClient) -> None:
    server = ("127.0.0.1", engine.sip_port)
    cases = protos_cases(to=f"101@127.0.0.1:{engine.sip_port}", local_port=client.port)
    assert len(cases) >= 150
    answered = 0
    for _name, data in cases:
        client.send(data, server)
        if await client.response(timeout=0.05) is not None:
            answered += 1
    # The valid case 0 and most malformed ones get an answer; none may crash the engine.
    assert answered > 0
    assert await _options_answered(client, server)
    assert engine.ua.endpoint.dropped > 0


async def test_a_refusal_tells_the_sender_where_it_came_from(
    engine: Engine, client: RawSipClient
) -> None:
    """RFC 3581 / RFC 3261 18.2.1 hold for refused requests too: the 420 to a request behind a
    NAT (its Via names an address it does not send from, and asks for rport) carries received
    and rport, so the sender learns its public address from any answer."""
    server = ("127.0.0.1", engine.sip_port)
    branch = secrets.token_hex(6)
    client.send(
        (
            f"OPTIONS sip:{server[0]}:{server[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 192.0.2.9:5999;branch=z9hG4bK{branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:nat@192.0.2.9>;tag={branch}\r\n"
            f"To: <sip:{server[0]}>\r\nCall-ID: {branch}\r\nCSeq: 1 OPTIONS\r\n"
            "Require: no-such-extension\r\nContent-Length: 0\r\n\r\n"
        ).encode(),
        server,
    )
    refused = await client.response(timeout=2.0)
    assert refused is not None and refused.status == 420
    via = Via.parse(refused.headers.get_all("Via")[0])
    assert (via.params.get("received"), via.params.get("rport")) == (
        client.host,
        str(client.port),
    )
