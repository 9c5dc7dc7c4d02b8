"""Security baseline against the real engine over UDP: no user enumeration, replay refused,
no unauthenticated call reaches a phone, brute force gets the source IP banned (others not)."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets

import pytest

from callcenter.runtime import Engine
from sip_test_env import tools
from telephony.sip import SipRequest, SipResponse

from .rawsip import RawSipClient, answer_challenge
from .test_trunk import _poll


def _shape(response: SipResponse) -> tuple[int, str, list[str]]:
    """What a scanner compares: status line and header names (values carry fresh nonces)."""
    return (
        response.status,
        response.reason,
        sorted(name for name, _ in response.headers if name != "Via"),
    )


async def _challenge(client: RawSipClient, server: tuple[str, int], user: str) -> SipResponse:
    client.send(client.register(user, server, cseq=1, call_id=secrets.token_hex(6)), server)
    response = await client.response()
    assert response is not None and response.status == 401
    return response


async def _register(
    client: RawSipClient, server: tuple[str, int], user: str, password: str
) -> SipResponse | None:
    call_id = secrets.token_hex(6)
    client.send(client.register(user, server, cseq=1, call_id=call_id), server)
    challenge = await client.response()
    assert challenge is not None and challenge.status == 401
    auth = answer_challenge(
        challenge,
        user=user,
        password=password,
        method="REGISTER",
        uri=f"sip:{server[0]}:{server[1]}",
    )
    client.send(client.register(user, server, cseq=2, call_id=call_id, authorization=auth), server)
    return await client.response()


@pytest.fixture
async def client() -> RawSipClient:
    c = await RawSipClient.open()
    yield c
    c.close()


def _server(engine: Engine) -> tuple[str, int]:
    return ("127.0.0.1", engine.sip_port)


async def test_wrong_password_and_unknown_user_look_the_same(
    engine: Engine, client: RawSipClient, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="callcenter.security")
    server = _server(engine)
    wrong = await _register(client, server, "101", "not-the-password")
    unknown = await _register(client, server, "777", "whatever")
    assert wrong is not None and unknown is not None
    assert wrong.status == 401
    assert _shape(wrong) == _shape(unknown)
    lines = [r.getMessage() for r in caplog.records if r.name == "callcenter.security"]
    assert any("reason=wrong_password" in line for line in lines)
    assert any("reason=unknown_user" in line for line in lines)
    ok = await _register(client, server, "101", "pass101")
    assert ok is not None and ok.status == 200
    assert engine.switchboard.registrar.lookup("101", now=engine.ua.loop.time())


async def test_replayed_credentials_are_refused(engine: Engine, client: RawSipClient) -> None:
    server = _server(engine)
    call_id = secrets.token_hex(6)
    client.send(client.register("102", server, cseq=1, call_id=call_id), server)
    challenge = await client.response()
    assert challenge is not None
    auth = answer_challenge(
        challenge,
        user="102",
        password="pass102",
        method="REGISTER",
        uri=f"sip:{server[0]}:{server[1]}",
    )
    client.send(client.register("102", server, cseq=2, call_id=call_id, authorization=auth), server)
    first = await client.response()
    assert first is not None and first.status == 200
    # The same credentials again (a captured packet replayed with a new CSeq): refused.
    client.send(client.register("102", server, cseq=3, call_id=call_id, authorization=auth), server)
    replay = await client.response()
    assert replay is not None and replay.status == 401


async def test_invite_without_auth_never_reaches_a_phone(
    engine: Engine, client: RawSipClient
) -> None:
    server = _server(engine)
    phone = await RawSipClient.open()
    try:
        ok = await _register(phone, server, "102", "pass102")
        assert ok is not None and ok.status == 200
        client.send(client.invite("101", "102", server), server)
        refused = await client.response()
        assert refused is not None and refused.status == 401
        # Credentials of another extension than the From: forbidden, not routed.
        auth = answer_challenge(
            refused,
            user="103",
            password="pass103",
            method="INVITE",
            uri=f"sip:102@{server[0]}:{server[1]}",
        )
        client.send(client.invite("101", "102", server, authorization=auth, cseq=2), server)
        spoofed = await client.response()
        assert spoofed is not None and spoofed.status == 403
        # Nothing ever rang the registered phone.
        stray = await phone.receive(timeout=1.0)
        assert not isinstance(stray, SipRequest), f"phone got {stray}"
    finally:
        phone.close()


async def test_an_agent_call_with_an_unacceptable_offer_never_rings(
    engine: Engine, client: RawSipClient, db
) -> None:
    """The offer is judged before any routing, but after authentication: a stranger's INVITE
    is challenged whatever its SDP; an agent's that offers only G.729 gets 488 (Warning 305),
    the callee's phone never rings, and the call is journaled as failed."""
    server = _server(engine)
    phone = await RawSipClient.open()
    g729 = "m=audio 40000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"
    try:
        ok = await _register(phone, server, "102", "pass102")
        assert ok is not None and ok.status == 200
        call_id = secrets.token_hex(8)
        client.send(client.invite("101", "102", server, call_id=call_id, media=g729), server)
        challenge = await client.response()
        assert challenge is not None and challenge.status == 401
        auth = answer_challenge(
            challenge, user="101", password="pass101", method="INVITE",
            uri=f"sip:102@{server[0]}:{server[1]}",
        )  # fmt: skip
        invite = client.invite(
            "101", "102", server, authorization=auth, cseq=2, call_id=call_id, media=g729
        )
        client.send(invite, server)
        refused = await client.response()
        assert refused is not None and refused.status == 488
        assert (refused.headers.get("Warning") or "").startswith("305 ")
        stray = await phone.receive(timeout=1.0)
        assert not isinstance(stray, SipRequest), f"phone got {stray}"
    finally:
        phone.close()
    row = await _poll(db, "SELECT * FROM calls WHERE call_id = $1", call_id)
    assert (row["from_number"], row["to_number"], row["outcome"], row["sip_status"]) == (
        "101", "102", "failed", 488,
    )  # fmt: skip
    assert row["hangup_cause"] == "unacceptable-offer"


async def test_brute_force_bans_the_source_ip_only(engine: Engine) -> None:
    server = _server(engine)
    attacker = await RawSipClient.open("127.0.0.1")
    bystander = await RawSipClient.open("127.0.0.2")
    try:
        for attempt in range(10):
            response = await _register(attacker, server, "101", f"guess{attempt}")
            assert response is not None and response.status == 401
        # Banned: even a correct request gets no answer at all now.
        attacker.send(attacker.register("101", server, cseq=1, call_id="x"), server)
        assert await attacker.response(timeout=1.0) is None
        # Another source IP is unaffected.
        ok = await _register(bystander, server, "103", "pass103")
        assert ok is not None and ok.status == 200
    finally:
        attacker.close()
        bystander.close()


@pytest.mark.peers
@tools.needs("svwar")
@pytest.mark.parametrize("method", ["REGISTER", "INVITE"])
async def test_svwar_cannot_tell_extensions_apart(engine: Engine, method: str) -> None:
    """SIPVicious' extension scanner: known (101-105, 190) and unknown (100, 106-110) extensions
    answer alike (the same 401), so it identifies none of them."""
    scan = await asyncio.create_subprocess_exec(
        "svwar", "-e100-110,190", "--force", "-m", method, "-p", str(engine.sip_port),
        "-b", "127.0.0.1", "-x", "127.0.0.1", "127.0.0.1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(scan.communicate(), 120)
    found = set(re.findall(r"^\|\s*(\d+)\s*\|", output.decode(), re.MULTILINE))
    known = {"101", "102", "103", "104", "105", "190"}
    assert not found & known, output.decode()
    assert "401" in output.decode()  # it did get answers, all of them alike
    # And the engine never says which software (or version) it is.
    client = await RawSipClient.open()
    try:
        response = await _challenge(client, _server(engine), "101")
        assert response.headers.get("Server") == "callcenter"
    finally:
        client.close()
