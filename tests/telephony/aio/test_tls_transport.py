"""SIP over TLS between two of our UserAgents: a call over one verified connection reused both
ways (Via and Contact say TLS and the TLS port), and a certificate the caller cannot trust fails
the leg at once as unreachable (503) without a byte of SIP sent in clear."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callcenter.tls import make_self_signed
from sip_test_env.ports import free_port, free_port_range
from telephony.aio import Call, EndpointConfig, UserAgent, UserAgentConfig
from telephony.call import Answered, Ended
from telephony.sip import NameAddr, SipUri, TimerConfig

from .conftest import sip_uri


async def _ua(tls_server: ssl.SSLContext | None, tls_client: ssl.SSLContext) -> UserAgent:
    low, high = free_port_range(20, "udp")
    endpoint = EndpointConfig(
        port=free_port("both"),
        timers=TimerConfig(t1=0.05),
        tls_port=0 if tls_server is not None else None,
        tls_server=tls_server,
        tls_client=tls_client,
    )
    ua = UserAgent(UserAgentConfig(endpoint=endpoint, rtp_ports=(low, high)))
    await ua.start()
    return ua


@pytest.fixture
async def tls_pair(tmp_path: Path) -> AsyncIterator[tuple[UserAgent, UserAgent, Path]]:
    cert, key = make_self_signed(tmp_path, ["127.0.0.1"])
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))
    caller = await _ua(None, trusting)
    callee = await _ua(server, ssl.create_default_context())
    try:
        yield caller, callee, cert
    finally:
        await caller.close()
        await callee.close()


async def test_a_call_over_one_verified_tls_connection(
    tls_pair: tuple[UserAgent, UserAgent, Path],
) -> None:
    caller_ua, callee_ua, _ = tls_pair
    tls_port = callee_ua.endpoint.config.tls_port
    assert tls_port and tls_port != callee_ua.endpoint.port
    incoming: asyncio.Future[Call] = asyncio.get_running_loop().create_future()

    async def answer(call: Call) -> None:
        await call.answer()
        incoming.set_result(call)

    callee_ua.on_incoming = answer
    leg = await caller_ua.dial(
        sip_uri("callee", tls_port),
        ("tls", "127.0.0.1", tls_port),
        from_=NameAddr(None, sip_uri("caller", caller_ua.endpoint.port), {}),
    )
    callee = await asyncio.wait_for(incoming, 5)
    assert isinstance(await leg.next_event(5), Answered)
    assert callee.peer[0] == "tls"
    assert "SIP/2.0/TLS" in (callee.invite.headers.get("Via") or "")
    (contact,) = callee.invite.contacts
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.params.get("transport") == "tls"
    assert contact.uri.port == caller_ua.endpoint.port_for("tls")
    # The callee's BYE goes back over the connection the caller opened: one connection each.
    await callee.hangup()
    assert isinstance(await leg.next_event(5), Ended)
    assert [p[0] for p in caller_ua.endpoint._tcp] == ["tls"]
    assert [p[0] for p in callee_ua.endpoint._tcp] == ["tls"]


async def test_an_untrusted_certificate_fails_the_leg_as_unreachable(
    tls_pair: tuple[UserAgent, UserAgent, Path],
) -> None:
    _, callee_ua, _ = tls_pair
    # A caller with the system's CAs only: our self-signed certificate is not among them.
    doubting = await _ua(None, ssl.create_default_context())
    try:
        tls_port = callee_ua.endpoint.config.tls_port
        assert tls_port
        leg = await doubting.dial(
            sip_uri("callee", tls_port),
            ("tls", "127.0.0.1", tls_port),
            from_=NameAddr(None, sip_uri("caller", doubting.endpoint.port), {}),
        )
        ended = await asyncio.wait_for(leg.next_event(), 5)
        assert ended == Ended(leg.call_id, "unreachable", 503)
        assert not callee_ua.calls and not doubting.endpoint._tcp
    finally:
        await doubting.close()


async def test_a_sips_dialog_gets_sips_contacts_both_ways(
    tls_pair: tuple[UserAgent, UserAgent, Path],
) -> None:
    caller_ua, callee_ua, _ = tls_pair
    tls_port = callee_ua.endpoint.config.tls_port
    assert tls_port
    incoming: asyncio.Future[Call] = asyncio.get_running_loop().create_future()

    async def answer(call: Call) -> None:
        await call.answer()
        incoming.set_result(call)

    callee_ua.on_incoming = answer
    target = sip_uri("callee", tls_port)
    target = SipUri("sips", target.user, None, target.host, target.port, {}, {})
    leg = await caller_ua.dial(
        target,
        ("tls", "127.0.0.1", tls_port),
        from_=NameAddr(None, sip_uri("caller", caller_ua.endpoint.port), {}),
    )
    callee = await asyncio.wait_for(incoming, 5)
    assert isinstance(await leg.next_event(5), Answered)
    (contact,) = callee.invite.contacts
    assert str(contact.uri).startswith("sips:") and "transport" not in contact.uri.params
    assert leg.dialog is not None and str(leg.dialog.remote_target).startswith("sips:")
    await leg.hangup()
    assert await asyncio.wait_for(callee.ended, 5) == "remote-bye"


async def test_cleartext_to_the_tls_port_is_dropped_quietly(
    tls_pair: tuple[UserAgent, UserAgent, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """A plain-TCP client (a phone set to the wrong transport, a scanner) gets its connection
    closed; nothing reaches the transaction layer and nothing is logged as an error."""
    _, callee_ua, _ = tls_pair
    tls_port = callee_ua.endpoint.config.tls_port
    assert tls_port
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_port)
    writer.write(
        b"OPTIONS sip:callee@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKx\r\n"
        b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:callee@127.0.0.1>\r\nCall-ID: x\r\n"
        b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server, no answer
    writer.close()
    assert not callee_ua.endpoint._tcp and callee_ua.endpoint.layer.active_count == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
