"""What reaches the wire as our address: per peer (local networks vs the external address),
never a wildcard bind, IPv6 in brackets and c=IN IP6; Via stamping of refused requests; the
RFC 5626 CRLF pong on TCP; IPv4 peers of a dual-stack (::) endpoint."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from sip_test_env.ports import free_port, free_port_range
from telephony.aio import EndpointConfig, UserAgent, UserAgentConfig
from telephony.aio.addresses import AddressChooser, for_socket, route_source, unmap
from telephony.sdp import SessionDescription
from telephony.sip import (
    NameAddr,
    SipRequest,
    SipUri,
    TimerConfig,
    Via,
    format_host,
    make_response,
)
from telephony.sip import parse_message as parse_sip


def test_ipv6_hosts_print_in_brackets() -> None:
    assert format_host("::1") == "[::1]"
    assert format_host("[::1]") == "[::1]"
    assert format_host("192.0.2.1") == "192.0.2.1"
    assert format_host("pbx.example.com") == "pbx.example.com"
    uri = SipUri(scheme="sip", user="101", host=format_host("2001:db8::5"), port=5060)
    assert str(uri) == "sip:101@[2001:db8::5]:5060"
    assert SipUri.parse(str(uri)) == uri
    via = Via(transport="UDP", host=format_host("::1"), port=5062, params={"branch": "z9hG4bKx"})
    assert str(via) == "SIP/2.0/UDP [::1]:5062;branch=z9hG4bKx"


def test_mapped_addresses() -> None:
    assert unmap("::ffff:192.0.2.1") == "192.0.2.1"
    assert unmap("::1") == "::1" and unmap("192.0.2.1") == "192.0.2.1"
    assert for_socket("192.0.2.1", socket.AF_INET6) == "::ffff:192.0.2.1"
    assert for_socket("192.0.2.1", socket.AF_INET) == "192.0.2.1"
    assert for_socket("::1", socket.AF_INET6) == "::1"


def test_route_source_asks_the_kernel() -> None:
    assert route_source("127.0.0.1") == "127.0.0.1"
    assert route_source("127.0.0.9") == "127.0.0.1"  # lo's address for the whole of 127/8
    assert route_source("::1") == "::1"
    assert route_source("pbx.example.com") is None  # not an address: never resolved here


def test_the_address_each_peer_sees() -> None:
    bound = AddressChooser("10.1.2.3", external="203.0.113.7")
    assert bound.for_peer("10.9.9.9") == "10.1.2.3"  # RFC 1918: a local network
    assert bound.for_peer("192.168.1.20") == "10.1.2.3"
    assert bound.for_peer("198.51.100.10") == "203.0.113.7"  # the Internet: the NAT's address
    assert bound.for_peer("::ffff:198.51.100.10") == "203.0.113.7"
    assert bound.default() == "203.0.113.7"

    no_nat = AddressChooser("10.1.2.3")
    assert no_nat.for_peer("198.51.100.10") == "10.1.2.3"

    wildcard = AddressChooser("0.0.0.0")
    assert wildcard.for_peer("127.0.0.1") == "127.0.0.1"
    assert wildcard.default() != "0.0.0.0"

    dual = AddressChooser("::", external="203.0.113.7")
    assert dual.for_peer("198.51.100.10") == "203.0.113.7"
    assert dual.for_peer("::1") == "::1"  # local
    assert dual.for_peer("2001:db8::99") != "203.0.113.7"  # an IPv4 NAT is no way for IPv6

    chosen = AddressChooser("0.0.0.0", external="203.0.113.7", local_networks=["10.0.0.0/8"])
    assert chosen.for_peer("127.0.0.1") == "203.0.113.7"  # loopback is not listed here
    assert chosen.is_local("10.0.0.1") and not chosen.is_local("carrier.example")


def test_route_lookups_are_cached_for_a_while() -> None:
    now = [0.0]
    chooser = AddressChooser("0.0.0.0", clock=lambda: now[0])
    assert chooser.for_peer("127.0.0.5") == "127.0.0.1"
    chooser._local["127.0.0.5"] = ("192.0.2.99", 60.0)  # as if the route had changed since
    now[0] = 59.0
    assert chooser.for_peer("127.0.0.5") == "192.0.2.99"  # still trusted
    now[0] = 61.0
    assert chooser.for_peer("127.0.0.5") == "127.0.0.1"  # looked up again


# -- on the wire ---------------------------------------------------------------------------


class Raw(asyncio.DatagramProtocol):
    """A bare UDP socket: what the engine sends, parsed."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait((data, addr))


MakeUa = Callable[..., Awaitable[UserAgent]]


@pytest.fixture
async def make_ua() -> AsyncIterator[MakeUa]:
    started: list[UserAgent] = []

    async def make(host: str, **options: object) -> UserAgent:
        low, high = free_port_range(20, "udp")
        endpoint = EndpointConfig(
            host=host,
            port=free_port("both"),
            timers=TimerConfig(t1=0.05),
            **options,  # type: ignore[arg-type]
        )
        ua = UserAgent(UserAgentConfig(endpoint=endpoint, rtp_ports=(low, high)))
        await ua.start()
        started.append(ua)
        return ua

    yield make
    for ua in started:
        await ua.close()


async def raw_socket(host: str) -> tuple[asyncio.DatagramTransport, Raw]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Raw, local_addr=(host, 0))
    return transport, protocol


async def invite_seen_by(ua: UserAgent, host: str) -> SipRequest:
    """The INVITE `ua` sends to a bare socket on `host`."""
    transport, raw = await raw_socket(host)
    try:
        port = transport.get_extra_info("sockname")[1]
        target = SipUri(scheme="sip", user="200", host=format_host(host), port=port)
        await ua.dial(target, ("udp", host, port), from_=NameAddr(None, target, {}))
        data, _ = await asyncio.wait_for(raw.received.get(), 5)
    finally:
        transport.close()
    message = parse_sip(data)
    assert isinstance(message, SipRequest) and message.method == "INVITE"
    return message


def addresses_in(invite: SipRequest) -> tuple[str, str, str, str]:
    """(Via sent-by host, Contact host, o= address, c= address) of our INVITE."""
    via = Via.parse(invite.headers.get_all("Via")[0])
    contact = invite.contacts[0].uri
    assert isinstance(contact, SipUri)
    sdp = SessionDescription.parse(invite.body)
    assert sdp.connection is not None
    return via.host, contact.host, sdp.origin.address, sdp.connection.address


async def test_a_wildcard_bind_advertises_the_address_the_peer_reaches(make_ua: MakeUa) -> None:
    ua = await make_ua("0.0.0.0")
    invite = await invite_seen_by(ua, "127.0.0.1")
    assert addresses_in(invite) == ("127.0.0.1",) * 4
    assert b"0.0.0.0" not in bytes(invite)


async def test_peers_outside_the_local_networks_see_the_external_address(make_ua: MakeUa) -> None:
    inside = await make_ua("0.0.0.0", external_address="203.0.113.7")
    assert addresses_in(await invite_seen_by(inside, "127.0.0.1")) == ("127.0.0.1",) * 4
    # The same loopback peer, not listed as local: it is treated as being beyond the NAT.
    outside = await make_ua(
        "0.0.0.0", external_address="203.0.113.7", local_networks=("10.0.0.0/8",)
    )
    invite = await invite_seen_by(outside, "127.0.0.1")
    assert addresses_in(invite) == ("203.0.113.7",) * 4
    assert b"127.0.0.1" not in bytes(invite).split(b"\r\n\r\n")[1]


async def test_ipv6_on_the_wire(make_ua: MakeUa) -> None:
    ua = await make_ua("::1")
    invite = await invite_seen_by(ua, "::1")
    assert addresses_in(invite) == ("[::1]", "[::1]", "::1", "::1")
    text = bytes(invite).decode()
    assert f"Contact: <sip:[::1]:{ua.endpoint.port}>" in text
    assert "c=IN IP6 ::1" in text and "o=- " in text and " IN IP6 ::1\r\n" in text


def options(host: str, port: int, method: str = "OPTIONS", transport: str = "UDP") -> bytes:
    return (
        f"{method} sip:{format_host(host)}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {format_host(host)}:1;branch=z9hG4bK{secrets.token_hex(4)};"
        "rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:probe@example.com>;tag=1\r\n"
        "To: <sip:engine@example.com>\r\nCall-ID: probe@example.com\r\n"
        f"CSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def test_a_refused_request_is_answered_to_its_real_source(make_ua: MakeUa) -> None:
    ua = await make_ua("127.0.0.1")
    ua.on_request = lambda request, transaction, peer: False
    transport, raw = await raw_socket("127.0.0.1")
    try:
        port = transport.get_extra_info("sockname")[1]
        # The Via names port 1: a NATed phone's private port. The 501 comes to the real one,
        # its Via stamped with received and rport.
        transport.sendto(options("127.0.0.1", port, "FROB"), ("127.0.0.1", ua.endpoint.port))
        data, _ = await asyncio.wait_for(raw.received.get(), 5)
    finally:
        transport.close()
    response = parse_sip(data)
    assert response.status == 501  # type: ignore[union-attr]
    via = Via.parse(response.headers.get_all("Via")[0])
    assert via.params["rport"] == str(port) and via.params["received"] == "127.0.0.1"


async def test_a_dual_stack_endpoint_answers_ipv4_peers_as_ipv4(make_ua: MakeUa) -> None:
    ua = await make_ua("::")
    seen: list[tuple[str, str, int]] = []

    def on_request(request: SipRequest, transaction: object, peer: tuple[str, str, int]) -> bool:
        seen.append(peer)
        ua.endpoint.send_response(transaction, make_response(request, 200))
        return True

    ua.on_request = on_request
    for host in ("127.0.0.1", "::1"):
        transport, raw = await raw_socket(host)
        try:
            port = transport.get_extra_info("sockname")[1]
            transport.sendto(options(host, port), (host, ua.endpoint.port))
            data, _ = await asyncio.wait_for(raw.received.get(), 5)
        finally:
            transport.close()
        response = parse_sip(data)
        assert response.status == 200  # type: ignore[union-attr]
        assert seen[-1] == ("udp", host, port)  # never ::ffff:127.0.0.1
    # TCP on :: takes IPv4 too.
    reader, writer = await asyncio.open_connection("127.0.0.1", ua.endpoint.port)
    try:
        port = writer.get_extra_info("sockname")[1]
        writer.write(options("127.0.0.1", port, transport="TCP"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()
    assert head.startswith(b"SIP/2.0 200 ")
    assert seen[-1] == ("tcp", "127.0.0.1", port)


async def test_tcp_double_crlf_ping_gets_a_crlf_pong(make_ua: MakeUa) -> None:
    ua = await make_ua("127.0.0.1")
    reader, writer = await asyncio.open_connection("127.0.0.1", ua.endpoint.port)
    try:
        writer.write(b"\r\n\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\r\n"
        writer.write(b"\r\n\r\n\r\n\r\n")  # two pings, two pongs
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"\r\n\r\n"
    finally:
        writer.close()
