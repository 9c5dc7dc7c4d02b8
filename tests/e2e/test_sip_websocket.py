"""SIP over WebSocket (RFC 7118) at /sip on the engine's HTTP listener, driven by hand: a browser
phone's REGISTER and INVITE in WebSocket frames, digest auth as for any phone, requests to the
phone back on its own socket, a bad frame answered without losing the socket."""

from __future__ import annotations

import asyncio
import secrets
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from callcenter.runtime import Engine, start_engine
from callcenter.tls import make_self_signed
from telephony.sip import SipRequest, SipResponse, Via

from .conftest import (
    ADMIN_KEY,
    AGENT_101_KEY,
    api_url,
    assert_no_state_left,
    bearer,
    engine_config,
)
from .rawsip import RawSipClient, WsSipClient, answer_challenge


@pytest.fixture
async def browser(engine: Engine) -> AsyncIterator[WsSipClient]:
    client = await WsSipClient.connect(api_url(engine, "/sip").replace("http", "ws", 1))
    try:
        yield client
    finally:
        await client.close()


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def register(client: WsSipClient, user: str, domain: str) -> SipResponse:
    call_id = secrets.token_hex(8)
    client.send(client.register(user, domain, cseq=1, call_id=call_id))
    challenge = await client.response()
    assert challenge is not None and challenge.status == 401, challenge
    auth = answer_challenge(
        challenge, user=user, password=f"pass{user}", method="REGISTER", uri=f"sip:{domain}"
    )
    client.send(client.register(user, domain, cseq=2, call_id=call_id, authorization=auth))
    ok = await client.response()
    assert ok is not None
    return ok


async def register_udp(client: RawSipClient, user: str, server: tuple[str, int]) -> None:
    call_id = secrets.token_hex(8)
    client.send(client.register(user, server, cseq=1, call_id=call_id), server)
    challenge = await client.response()
    assert challenge is not None and challenge.status == 401
    uri = f"sip:{server[0]}:{server[1]}"
    auth = answer_challenge(
        challenge, user=user, password=f"pass{user}", method="REGISTER", uri=uri
    )
    client.send(client.register(user, server, cseq=2, call_id=call_id, authorization=auth), server)
    ok = await client.response()
    assert ok is not None and ok.status == 200


def ws_invite(client: WsSipClient, caller: str, callee: str, domain: str, **kw: str) -> str:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    lines = [
        f"INVITE sip:{callee}@{domain} SIP/2.0",
        client.via(),
        "Max-Forwards: 70",
        f"From: <sip:{caller}@{domain}>;tag={kw.get('tag', secrets.token_hex(4))}",
        f"To: <sip:{callee}@{domain}>",
        f"Call-ID: {kw['call_id']}",
        f"CSeq: {kw['cseq']} INVITE",
        f"Contact: <sip:{caller}@{client.host};transport=ws;ob>",
        "Content-Type: application/sdp",
    ]
    if "authorization" in kw:
        lines.append(f"Authorization: {kw['authorization']}")
    return "\r\n".join(lines) + f"\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"


def ack_for(invite_text: str, response: SipResponse) -> str:
    """The ACK of a non-2xx final response (same branch, To with the response's tag)."""
    head = invite_text.split("\r\n\r\n", 1)[0].split("\r\n")
    keep = [line for line in head[1:] if line.split(":", 1)[0] in ("Via", "From", "Call-ID")]
    uri = head[0].split(" ")[1]
    cseq = response.headers.get("CSeq").split()[0]
    lines = [f"ACK {uri} SIP/2.0", *keep, f"To: {response.headers.get('To')}", f"CSeq: {cseq} ACK"]
    return "\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n"


async def test_websocket_needs_the_sip_subprotocol(engine: Engine) -> None:
    async with aiohttp.ClientSession() as session:
        url = api_url(engine, "/sip").replace("http", "ws", 1)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url, protocols=("chat",))
        assert refused.value.status == 400
        async with session.ws_connect(url, protocols=("sip",)) as ws:
            assert ws.protocol == "sip"


async def test_a_browser_phone_registers_with_digest_over_its_socket(
    engine: Engine, browser: WsSipClient
) -> None:
    domain = "127.0.0.1"
    ok = await register(browser, "101", domain)
    assert ok.status == 200
    contact = ok.headers.get("Contact")
    assert contact is not None and ";transport=ws" in contact and ".invalid" in contact
    assert Via.parse(ok.headers.get_all("Via")[0]).transport == "WS"
    (binding,) = engine.switchboard.registrar.lookup("101", now=engine.ua.loop.time())
    assert binding.peer[0] == "ws" and binding.peer[1] == "127.0.0.1"

    # A wrong password is refused like any phone's.
    call_id = secrets.token_hex(8)
    browser.send(browser.register("102", domain, cseq=1, call_id=call_id))
    challenge = await browser.response()
    assert challenge is not None and challenge.status == 401
    bad = answer_challenge(
        challenge, user="102", password="wrong", method="REGISTER", uri=f"sip:{domain}"
    )
    browser.send(browser.register("102", domain, cseq=2, call_id=call_id, authorization=bad))
    refused = await browser.response()
    assert refused is not None and refused.status in (401, 403)
    assert not engine.switchboard.registrar.lookup("102", now=engine.ua.loop.time())


async def test_a_malformed_frame_gets_400_and_the_socket_stays_up(
    engine: Engine, browser: WsSipClient
) -> None:
    bad_cseq = browser.register("101", "127.0.0.1", cseq=1, call_id="x").replace(
        "CSeq: 1 REGISTER", "CSeq: one REGISTER"
    )
    browser.send(bad_cseq)
    # A frame that is not SIP at all is dropped silently: there is no Via to answer to.
    browser.send("\x00\x01 not sip at all")
    browser.send(bad_cseq.replace("CSeq: one REGISTER", "CSeq: 1 REGISTER").replace(
        "Max-Forwards: 70", "Max-Forwards: many"
    ))  # fmt: skip
    answers = [await browser.response(), await browser.response()]
    assert [a.status if a else None for a in answers] == [400, 400]
    assert not browser.ws.closed
    ok = await register(browser, "101", "127.0.0.1")
    assert ok.status == 200
    assert engine.ua.endpoint.dropped >= 2


async def test_a_call_to_the_browser_goes_out_on_its_socket_and_back(
    engine: Engine, browser: WsSipClient
) -> None:
    await register(browser, "101", "127.0.0.1")
    server = ("127.0.0.1", engine.sip_port)
    phone = await RawSipClient.open()
    try:
        await register_udp(phone, "102", server)
        # 102 (UDP) calls 101 (the browser): the INVITE reaches the browser on its WebSocket.
        challenge_invite = phone.invite("102", "101", server, call_id=secrets.token_hex(8))
        phone.send(challenge_invite, server)
        challenge = await phone.response()
        assert challenge is not None and challenge.status == 401
        call_id = secrets.token_hex(8)
        auth = answer_challenge(
            challenge,
            user="102",
            password="pass102",
            method="INVITE",
            uri=f"sip:101@{server[0]}:{server[1]}",
        )
        phone.send(phone.invite("102", "101", server, call_id=call_id, authorization=auth,
                                cseq=2), server)  # fmt: skip
        invite = await browser.request("INVITE")
        assert invite is not None
        via = Via.parse(invite.headers.get_all("Via")[0])
        assert via.transport == "WS"
        assert via.port == engine.config.http_listen.port
        assert ";transport=ws" in (invite.headers.get("Contact") or "")
        browser.send(browser.answer(invite, 486, "Busy Here"))
        final = await phone.response(timeout=5)
        assert final is not None and final.status >= 400
        ack = await browser.request("ACK", timeout=2)
        assert ack is not None  # the engine acknowledged the browser's 486 on the socket
    finally:
        phone.close()


async def test_the_browser_calls_a_phone_with_digest(engine: Engine, browser: WsSipClient) -> None:
    await register(browser, "101", "127.0.0.1")
    server = ("127.0.0.1", engine.sip_port)
    phone = await RawSipClient.open()
    try:
        await register_udp(phone, "102", server)
        domain = "127.0.0.1"
        call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
        first = ws_invite(browser, "101", "102", domain, call_id=call_id, cseq="1", tag=tag)
        browser.send(first)
        challenge = await browser.response()
        assert challenge is not None and challenge.status == 401
        browser.send(ack_for(first, challenge))
        auth = answer_challenge(
            challenge, user="101", password="pass101", method="INVITE", uri=f"sip:102@{domain}"
        )
        second = ws_invite(
            browser, "101", "102", domain, call_id=call_id, cseq="2", tag=tag, authorization=auth
        )
        browser.send(second)
        ringing = await phone.receive(timeout=5)
        while ringing is not None and not isinstance(ringing, SipRequest):
            ringing = await phone.receive(timeout=5)
        assert isinstance(ringing, SipRequest) and ringing.method == "INVITE"
        assert Via.parse(ringing.headers.get_all("Via")[0]).transport == "UDP"
        busy = "\r\n".join(
            ["SIP/2.0 486 Busy Here"]
            + [f"{n}: {v}" for n in ("Via", "From", "Call-ID", "CSeq")
               for v in ringing.headers.get_all(n)]
            + [f"To: {ringing.headers.get('To')};tag=b1", "Content-Length: 0", "", ""]
        )  # fmt: skip
        phone.send(busy.encode(), server)
        final = await browser.response(timeout=5)
        assert final is not None and final.status >= 400
        browser.send(ack_for(second, final))
    finally:
        phone.close()


async def test_a_closed_socket_drops_its_binding(engine: Engine, browser: WsSipClient) -> None:
    await register(browser, "101", "127.0.0.1")
    registrar = engine.switchboard.registrar
    assert registrar.lookup("101", now=engine.ua.loop.time())
    await browser.close()
    await until(lambda: not registrar.lookup("101", now=engine.ua.loop.time()))
    assert not engine.ua.endpoint._flows
    assert_no_state_left(engine)


async def test_a_stopping_engine_closes_the_sockets_at_once(pg_url: str, tmp_path: Path) -> None:
    """A browser phone stays connected all day: the engine's stop closes its socket (1001,
    going away) instead of the HTTP runner's cleanup waiting a minute for it."""
    engine = await start_engine(engine_config(), database_url=pg_url, data_dir=tmp_path)
    try:
        client = await WsSipClient.connect(api_url(engine, "/sip").replace("http", "ws", 1))
    except BaseException:
        await engine.stop()
        raise
    try:
        ok = await register(client, "101", "127.0.0.1")
        assert ok.status == 200
        closing = asyncio.create_task(client.ws.receive(10))  # the phone reads all the time
        await asyncio.wait_for(engine.stop(), 10)
        frame = await closing
        assert frame.type == aiohttp.WSMsgType.CLOSE, frame
        assert frame.data == aiohttp.WSCloseCode.GOING_AWAY
    finally:
        await client.close()


async def test_a_login_token_opens_a_socket_that_speaks_for_its_extension_only(
    engine: Engine,
) -> None:
    async with aiohttp.ClientSession() as session:
        response = await session.post(api_url(engine, "/sip/token"), headers=bearer(AGENT_101_KEY))
        assert response.status == 201
        issued = await response.json()
    assert issued["extension"] == "101" and issued["expires_in"] > 0
    url = api_url(engine, issued["path"]).replace("http", "ws", 1)
    client = await WsSipClient.connect(url)
    try:
        # No challenge: the upgrade proved who this is.
        client.send(client.register("101", "127.0.0.1", cseq=1, call_id=secrets.token_hex(8)))
        ok = await client.response()
        assert ok is not None and ok.status == 200
        (binding,) = engine.switchboard.registrar.lookup("101", now=engine.ua.loop.time())
        assert binding.peer[0] == "ws"
        # The socket may not speak for anybody else, challenged or not.
        client.send(client.register("102", "127.0.0.1", cseq=1, call_id=secrets.token_hex(8)))
        refused = await client.response()
        assert refused is not None and refused.status == 403
        call_id = secrets.token_hex(8)
        client.send(ws_invite(client, "102", "103", "127.0.0.1", call_id=call_id, cseq="1"))
        spoofed = await client.response()
        assert spoofed is not None and spoofed.status == 403
    finally:
        await client.close()
    # Single use: the same token opens nothing now.
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as reused:
            await session.ws_connect(url, protocols=("sip",))
        assert reused.value.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as forged:
            await session.ws_connect(url[:-4] + "abcd", protocols=("sip",))
        assert forged.value.status == 401


async def test_who_may_have_a_login_token(engine: Engine) -> None:
    async with aiohttp.ClientSession() as session:

        async def status(key: str, body: object = None) -> int:
            response = await session.post(
                api_url(engine, "/sip/token"), headers=bearer(key), json=body
            )
            return response.status

        assert await status(AGENT_101_KEY, {"extension": "102"}) == 403  # not its own phone
        assert await status(ADMIN_KEY, {"extension": "102"}) == 201
        assert await status(ADMIN_KEY) == 400  # an admin key is bound to no extension
        assert await status(ADMIN_KEY, {"extension": "999"}) == 404
        assert await status(ADMIN_KEY, ["101"]) == 400
        response = await session.post(api_url(engine, "/sip/token"))
        assert response.status == 401  # no key at all


async def test_over_https_the_page_and_the_sip_socket_are_encrypted(
    pg_url: str, tmp_path: Path
) -> None:
    """[http] tls_certificate/tls_key: the API, the agent page and /sip answer only over TLS
    (a browser gives the microphone only to a secure page), and a phone on wss:// registers
    with a login token, its binding marked wss."""
    cert, key = make_self_signed(tmp_path / "tls", ["127.0.0.1"])
    config = engine_config(extra_http=f'tls_certificate = "{cert}"\ntls_key = "{key}"\n')
    assert config.http_tls == (cert, key)
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        page_url = api_url(engine, "/agent")
        assert page_url.startswith("https://")
        async with aiohttp.ClientSession() as session:
            async with session.get(page_url, ssl=trust) as page:
                assert page.status == 200 and "text/html" in page.content_type
            # Plain HTTP on the same port gets no page.
            with pytest.raises(aiohttp.ClientError):
                async with session.get(page_url.replace("https", "http", 1)) as plain:
                    await plain.read()
            # An untrusted certificate is refused by a client that checks.
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(page_url)
            response = await session.post(
                api_url(engine, "/sip/token"), headers=bearer(AGENT_101_KEY), ssl=trust
            )
            assert response.status == 201
            issued = await response.json()
        url = api_url(engine, issued["path"]).replace("https", "wss", 1)
        client = await WsSipClient.connect(url, ssl=trust)
        try:
            client.send(client.register("101", "127.0.0.1", cseq=1, call_id=secrets.token_hex(8)))
            ok = await client.response()
            assert ok is not None and ok.status == 200, ok
            assert Via.parse(ok.headers.get_all("Via")[0]).transport == "WSS"
            (binding,) = engine.switchboard.registrar.lookup("101", now=engine.ua.loop.time())
            assert binding.peer[0] == "wss"
        finally:
            await client.close()
    finally:
        await engine.stop()
