"""The asyncio shell around the sans-IO SIP core: UDP, TCP and TLS transports and one timer.

It only feeds bytes into the parser and the TransactionLayer, drains what they queue, and re-arms
one `loop.call_at` timer (docs/architecture.md 4). What to do with a request is the transaction
user's call:
a `handler` receives every TransactionEvent.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import cast

from telephony.sip import (
    LocalProtocolError,
    OverloadConfig,
    OverloadControl,
    ParseError,
    RemoteProtocolError,
    SipRequest,
    SipResponse,
    StreamFramer,
    TimerConfig,
    TransactionEvent,
    TransactionLayer,
    Via,
    check_request,
    format_host,
    parse_message,
    response_to_unparsable,
)
from telephony.sip import make_response as _make_response
from telephony.sip.challenge import digest_answer

from .addresses import DEFAULT_LOCAL_NETWORKS, AddressChooser, for_socket, udp_socket, unmap
from .tasks import TaskSet
from .udp import UdpSocket

logger = logging.getLogger(__name__)

# A peer is where a message came from or goes to: ("udp"|"tcp"|"tls"|"ws"|"wss", host, port).
Peer = tuple[str, str, int]
STREAM_TRANSPORTS = frozenset({"tcp", "tls", "ws", "wss"})
"""Transports over a connection: reliable (no retransmissions), one connection per peer reused
both ways (RFC 3261 18); TCP and TLS framed by Content-Length, WebSocket by its frames."""
WEBSOCKET_TRANSPORTS = frozenset({"ws", "wss"})
"""SIP over WebSocket (RFC 7118): one message per frame, on a connection only the peer opens
(a browser cannot be connected to): with the connection gone, the peer is unreachable."""
BRANCH_COOKIE = "z9hG4bK"
# Methods the engine understands; anything else gets 501 with this Allow list.
DEFAULT_METHODS = frozenset(
    {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO", "UPDATE", "NOTIFY", "REFER"}
)


@dataclass(frozen=True)
class EndpointConfig:
    host: str = "127.0.0.1"
    """Address the transports bind: one address, or 0.0.0.0 / :: for all (:: takes IPv4 too,
    as IPv4-mapped addresses). What a peer sees in Via/Contact/SDP is `advertised_host`."""
    port: int = 5060
    """SIP port, UDP and TCP."""
    timers: TimerConfig = field(default_factory=TimerConfig)
    """T1/T2/T4 for the transaction layer."""
    allowed_methods: frozenset[str] = DEFAULT_METHODS
    """Requests with other methods are refused with 501."""
    allow_events: frozenset[str] = frozenset()
    """Event packages we take SUBSCRIBEs for, said in Allow-Events (RFC 6665 4.4.4) with
    Allow in OPTIONS answers, our INVITEs and our 2xx to INVITEs."""
    supported: frozenset[str] = frozenset({"timer", "replaces"})
    """Option tags we support; a Require of any other gets 420. Only what is implemented:
    `timer` (RFC 4028 session timers, telephony.call.session_timer) and `replaces` (RFC 3891:
    an INVITE with Replaces takes over a dialog, pbx.Switchboard)."""
    user_agent: str = "callcenter"
    """Server/User-Agent header value: deliberately without a version."""
    external_address: str | None = None
    """The address peers outside `local_networks` reach us at (1:1 NAT or port forwarding that
    keeps the SIP and RTP ports); None: behind no NAT."""
    local_networks: tuple[str, ...] = DEFAULT_LOCAL_NETWORKS
    """CIDRs whose peers see our local address even when `external_address` is set."""
    tls_port: int | None = None
    """SIP over TLS listens here (0: any free port); None: no TLS listener."""
    tls_server: ssl.SSLContext | None = field(default=None, compare=False)
    """Certificate and key of the TLS listener (needed with `tls_port`)."""
    tls_client: ssl.SSLContext | None = field(default=None, compare=False)
    """How we check a TLS peer we connect to (providers, phones reached over TLS); None: the
    system's CA store with host name checking (`ssl.create_default_context()`)."""
    overload: OverloadConfig = field(default_factory=OverloadConfig)
    """When new INVITEs are refused (503) or dropped because the engine runs behind."""
    overload_probe: float = 0.05
    """Seconds between two measures of the event loop's lag (0: no overload control)."""


class _TcpConnection(asyncio.Protocol):
    """One TCP or TLS connection (asyncio runs the TLS layer below this protocol: what arrives
    here is plaintext after the handshake); messages framed by Content-Length (RFC 3261 18.3)."""

    def __init__(self, endpoint: SipEndpoint, kind: str = "tcp") -> None:
        self.endpoint = endpoint
        self.kind = kind
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Peer = (kind, "", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = (self.kind, unmap(host), port)
        self.endpoint._tcp[self.peer] = self

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.framer.feed(data)
        except RemoteProtocolError as exc:
            # Framing is lost for good on a stream: answer if we can, then close.
            logger.info("closing %s %s:%d: %s", self.kind.upper(), self.peer[1], self.peer[2], exc)
            response = response_to_unparsable(exc)
            if response is not None and self.transport is not None:
                self.transport.write(bytes(response))
            if self.transport is not None:
                self.transport.close()
            return
        if self.framer.keepalives and self.transport is not None:
            # RFC 5626 4.4.1: a double-CRLF ping gets a single-CRLF pong.
            self.transport.write(b"\r\n" * self.framer.keepalives)
            self.framer.keepalives = 0
        for message in messages:
            self.endpoint.receive(message, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.endpoint._tcp.get(self.peer) is self:
            del self.endpoint._tcp[self.peer]


class SipEndpoint:
    """UDP+TCP(+TLS) SIP transports driving one TransactionLayer."""

    def __init__(self, config: EndpointConfig, handler: Callable[[TransactionEvent], None]) -> None:
        self.config = config
        self.handler = handler
        self.layer = TransactionLayer(config.timers)
        self.addresses = AddressChooser(
            config.host, external=config.external_address, local_networks=config.local_networks
        )
        self._udp: UdpSocket | None = None
        self._tcp: dict[Peer, _TcpConnection] = {}
        self._flows: dict[Peer, Callable[[bytes], None]] = {}
        """WebSocket connections by peer: how to send one message on each (`attach`)."""
        self._flow_identity: dict[Peer, str] = {}
        """WebSocket connections whose upgrade already proved who is on them (a login token):
        the user they speak for, by peer."""
        self._ws_ports: dict[str, int] = {}
        """The port browsers reached us on, by transport (ws, wss): our Via and Contact."""
        self.flow_closed: list[Callable[[Peer], object]] = []
        """Told when a WebSocket connection ends: what was bound to it is unreachable now
        (registrations, calls)."""
        self._servers: list[asyncio.Server] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._loop = asyncio.get_running_loop()
        self._tasks = TaskSet("sip-tcp")
        """TCP/TLS connects under way (a failure fails the transactions waiting on that peer)."""
        self._connecting: dict[Peer, list[bytes]] = {}
        """Messages for a peer whose connection is being made: sent on it once it is up (one
        connection per peer, however many messages wait)."""
        self.dropped = 0
        """Messages discarded as unparsable or invalid (for metrics and tests)."""
        self.filter: Callable[[Peer], bool] | None = None
        """When set and it returns False for a peer, that peer's messages are ignored (bans)."""
        self.challenge: Callable[[SipRequest, Peer], list[tuple[str, str]] | None] | None = None
        """When set: asked of each new INVITE before any transaction; the challenge headers it
        returns are sent in a stateless 401 (RFC 3261 8.2.7), None lets the INVITE in."""
        self.challenged = 0
        """New INVITEs answered by a stateless challenge (for metrics and tests)."""
        self.responses_sent: dict[int, int] = {}
        """Responses sent, by status code (retransmissions not counted), for metrics."""
        self.responses_received: dict[int, int] = {}
        """Responses received and parsed, by status code, for metrics."""
        self.overload = OverloadControl(self.config.overload)
        """How far behind the engine runs, and what it does with new INVITEs meanwhile."""
        self._probe: asyncio.TimerHandle | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        if self.config.overload_probe > 0:
            self._arm_probe()
        host, port = self.config.host, self.config.port
        self._udp = UdpSocket(udp_socket(host, port), self._datagram, self._loop)
        if port == 0:
            port = self._udp.sock.getsockname()[1]
            self.config = _replace_port(self.config, port)
        # asyncio makes a TCP socket on :: IPv6-only; None listens on both families instead.
        tcp_host = None if host == "::" else host
        server = await self._loop.create_server(lambda: _TcpConnection(self), tcp_host, port)
        self._servers.append(server)
        logger.info(
            "SIP listening on %s:%d (UDP, TCP)%s",
            format_host(host),
            port,
            f", external address {self.config.external_address}"
            if self.config.external_address
            else "",
        )
        if self.config.tls_port is not None:
            if self.config.tls_server is None:
                raise ValueError("a TLS port needs a certificate and key (tls_server)")
            server = await self._loop.create_server(
                lambda: _TcpConnection(self, "tls"),
                tcp_host,
                self.config.tls_port,
                ssl=self.config.tls_server,
            )
            self._servers.append(server)
            if self.config.tls_port == 0:
                tls_port = server.sockets[0].getsockname()[1]
                self.config = replace(self.config, tls_port=tls_port)
            logger.info("SIP listening on %s:%d (TLS)", format_host(host), self.config.tls_port)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None
        for conn in list(self._tcp.values()):
            if conn.transport is not None:
                conn.transport.close()
        self._flows.clear()
        self._flow_identity.clear()
        for server in self._servers:
            server.close()
            await server.wait_closed()
        if self._udp is not None:
            self._udp.close()

    @property
    def host(self) -> str:
        """Our host as URIs print it when no particular peer is meant (From/To, Call-ID):
        never a wildcard; IPv6 in brackets."""
        return format_host(self.addresses.default())

    def advertised_address(self, peer: Peer) -> str:
        """The address `peer` must see in our Via, Contact and SDP (bare, IPv6 unbracketed)."""
        return self.addresses.for_peer(peer[1])

    def advertised_host(self, peer: Peer) -> str:
        """`advertised_address` as a URI/Via host (IPv6 in brackets)."""
        return format_host(self.addresses.for_peer(peer[1]))

    @property
    def port(self) -> int:
        return self.config.port

    def port_for(self, transport: str) -> int:
        """Our port for `transport` (Via, Contact): the TLS one for TLS."""
        if transport.lower() == "tls" and self.config.tls_port is not None:
            return self.config.tls_port
        if transport.lower() in WEBSOCKET_TRANSPORTS:
            return self._ws_ports.get(transport.lower(), self.config.port)
        return self.config.port

    # -- WebSocket connections ----------------------------------------------------------------

    def attach(
        self,
        peer: Peer,
        send: Callable[[bytes], None],
        *,
        local_port: int,
        identity: str | None = None,
    ) -> None:
        """A WebSocket connection from `peer` (kind ws or wss) is up: messages for `peer` go out
        by `send` (one message per call, one frame each) until `detach`. What arrives on it is
        fed to `receive` one frame at a time. `local_port`: the port the peer reached;
        `identity`: the user the connection was opened for, when its upgrade proved that
        (`flow_identity`)."""
        if peer[0] not in WEBSOCKET_TRANSPORTS:
            raise ValueError(f"not a WebSocket transport: {peer[0]}")
        self._flows[peer] = send
        self._ws_ports[peer[0]] = local_port
        if identity is not None:
            self._flow_identity[peer] = identity

    def flow_identity(self, peer: Peer) -> str | None:
        """The user a WebSocket connection speaks for, when its upgrade proved it; else None
        (then its requests are challenged like any other)."""
        return self._flow_identity.get(peer)

    def detach(self, peer: Peer) -> None:
        """The WebSocket connection of `peer` is closed: transactions waiting on it fail now,
        and each of `flow_closed` hears of it."""
        self._flow_identity.pop(peer, None)
        if self._flows.pop(peer, None) is None:
            return
        self._unreachable(peer)
        for listener in list(self.flow_closed):
            try:
                listener(peer)
            except Exception:
                logger.exception("a flow_closed listener failed for %s", peer)

    # -- overload ---------------------------------------------------------------------------

    def _arm_probe(self) -> None:
        due = self._loop.time() + self.config.overload_probe
        self._probe = self._loop.call_at(due, self._probed, due)

    def _probed(self, due: float) -> None:
        # Behind by the loop's lateness, or by the longest a datagram waited in the socket's
        # buffer since the last probe (the input's queue, which a loop keeping time can hide).
        self._arm_probe()
        now = self._loop.time()
        waited = self._udp.take_wait() if self._udp is not None else 0.0
        self.overload.observe(max(now - due, waited), now, cpu=time.thread_time())

    # -- inbound ----------------------------------------------------------------------------

    def _datagram(self, data: bytes, address: tuple[str, int]) -> None:
        self.receive(data, ("udp", unmap(address[0]), address[1]))

    def receive(self, data: bytes, peer: Peer) -> None:
        if self.filter is not None and not self.filter(peer):
            return
        if not data.strip(b"\r\n"):
            return  # keep-alive CRLF
        if self.overload.drops_unread(data):
            return  # far behind: a new call is not even read
        now = self._loop.time()
        try:
            message = parse_message(data)
        except RemoteProtocolError as exc:
            self._refuse(exc, peer)
            return
        if isinstance(message, SipResponse):
            self.responses_received[message.status] = (
                self.responses_received.get(message.status, 0) + 1
            )
        else:
            try:
                # Where it came from first: a refusal is answered by the same Via rules.
                _note_source(message, peer)
                check_request(
                    message,
                    allowed_methods=self.config.allowed_methods,
                    supported=self.config.supported,
                )
            except RemoteProtocolError as exc:
                if message.method != "ACK":
                    self._refuse(exc, peer, request=message)
                return
            # A new INVITE: a retransmitted one of a call in progress (ringing, or answered and
            # waiting for its ACK) goes to its transaction, which repeats its last response (a
            # 503 would end at the caller a call the engine goes on with).
            new_call = (
                message.method == "INVITE"
                and not message.to.tag
                and not self.layer.has_server_transaction(message)
            )
            # With challenges, a call is admitted (or refused) at its first INVITE: one that
            # answers the challenge is neither refused now (the round trip would be lost) nor
            # counted twice. Far behind, it is dropped unread like any new INVITE.
            if (
                new_call
                and (self.challenge is None or digest_answer(message) is None)
                and self.overload.sheds("INVITE", None, now)
            ):
                self._shed(message, peer)
                return
            if (
                message.method == "ACK"
                and self.challenge is not None
                and message.to.tag == _challenge_tag(message)
            ):
                return  # the ACK of a stateless challenge: ignored (RFC 3261 8.2.7)
            if (
                new_call
                and self.challenge is not None
                and (headers := self.challenge(message, peer)) is not None
            ):
                self._challenge(message, peer, headers)
                return
        try:
            self.layer.receive(message, peer, reliable=peer[0] in STREAM_TRANSPORTS, now=now)
        except RemoteProtocolError as exc:
            if isinstance(message, SipRequest) and message.method != "ACK":
                self._refuse(exc, peer, request=message)
        self._drain()

    def _refuse(
        self, exc: RemoteProtocolError, peer: Peer, request: SipRequest | None = None
    ) -> None:
        self.dropped += 1
        logger.info("refused message from %s:%d: %s (%d)", peer[1], peer[2], exc, exc.status_code)
        if request is not None:
            response: SipResponse | None = _make_response(
                request, exc.status_code, extra=exc.headers
            )
        else:
            response = response_to_unparsable(exc)
        if response is not None:
            self._stamp(response)
            self._count_sent(response.status)
            self._transmit(bytes(response), peer)

    def _shed(self, request: SipRequest, peer: Peer) -> None:
        """A new INVITE while behind: 503 with Retry-After, statelessly (no transaction, no
        call; a retransmission gets the same answer, the caller's ACK finds nothing)."""
        retry = str(self.config.overload.retry_after)
        response = _make_response(
            request, 503, "Overloaded", to_tag=secrets.token_hex(4), extra=[("Retry-After", retry)]
        )
        self._stamp(response)
        self._count_sent(503)
        self._transmit(bytes(response), peer)

    def _challenge(self, request: SipRequest, peer: Peer, headers: list[tuple[str, str]]) -> None:
        """A new INVITE with no credentials gets its 401 statelessly, as Kamailio's
        `sl_send_reply` does in front of a registrar: no transaction, no call, no SDP read, and
        no 401 resent until an ACK is read (a loop running behind read ACKs after Timer G, and
        SIPp took the resent 401s for failures). A lost 401 is recovered by the caller resending
        its INVITE; the caller's ACK matches no transaction and is dropped. The To tag is the
        same for a retransmission of the same INVITE (RFC 3261 8.2.7)."""
        response = _make_response(request, 401, to_tag=_challenge_tag(request), extra=headers)
        self.challenged += 1
        self._stamp(response)
        self._count_sent(401)
        self._transmit(bytes(response), peer)

    # -- outbound ---------------------------------------------------------------------------

    def new_via(self, peer: Peer) -> Via:
        """A Via for a request to `peer`: its transport, the sent-by `peer` can reach."""
        return Via(
            protocol="SIP/2.0",
            transport=peer[0].upper(),
            host=self.advertised_host(peer),
            port=self.port_for(peer[0]),
            params={"branch": BRANCH_COOKIE + secrets.token_hex(8), "rport": None},
        )

    def send_request(self, request: SipRequest, peer: Peer) -> object:
        self._stamp(request)
        txn = self.layer.send_request(
            request, peer, reliable=peer[0] in STREAM_TRANSPORTS, now=self._loop.time()
        )
        self._drain()
        return txn

    def send_response(self, transaction: object, response: SipResponse) -> None:
        self._stamp(response)
        self._count_sent(response.status)
        try:
            self.layer.send_response(transaction, response, now=self._loop.time())  # type: ignore[arg-type]
        except LocalProtocolError as exc:
            # The transaction ended under us (e.g. CANCEL raced the answer): nothing to send.
            logger.debug("response %d not sent: %s", response.status, exc)
        self._drain()

    def send_stateless(self, message: SipRequest | SipResponse, peer: Peer) -> None:
        self._stamp(message)
        if isinstance(message, SipResponse):
            self._count_sent(message.status)
        self._transmit(bytes(message), peer)

    def _count_sent(self, status: int) -> None:
        self.responses_sent[status] = self.responses_sent.get(status, 0) + 1

    def _stamp(self, message: SipRequest | SipResponse) -> None:
        name = "User-Agent" if isinstance(message, SipRequest) else "Server"
        if name not in message.headers:
            message.headers.add(name, self.config.user_agent)

    # -- the sans-IO pump -------------------------------------------------------------------

    def _drain(self) -> None:
        for data, peer in self.layer.datagrams_to_send():
            self._transmit(data, peer)  # type: ignore[arg-type]
        while (event := self.layer.next_event()) is not None:
            try:
                self.handler(event)
            except Exception:
                logger.exception("transaction user failed on %s", type(event).__name__)
            # The handler may have queued output.
            for data, peer in self.layer.datagrams_to_send():
                self._transmit(data, peer)  # type: ignore[arg-type]
        self._arm()

    def _arm(self) -> None:
        deadline = self.layer.get_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.layer.handle_timer(now=self._loop.time())
        self._drain()

    def _transmit(self, data: bytes, peer: Peer) -> None:
        kind, host, port = peer
        if kind in WEBSOCKET_TRANSPORTS:
            send = self._flows.get(peer)
            if send is not None:
                send(data)
            else:
                # Nobody can open a connection to a browser: the message cannot go.
                logger.info("no WebSocket connection to %s:%d: message dropped", host, port)
                self._loop.call_soon(self._unreachable, peer)
        elif kind in STREAM_TRANSPORTS:
            conn = self._tcp.get(peer)
            if conn is not None and conn.transport is not None:
                conn.transport.write(data)
            elif peer in self._connecting:
                self._connecting[peer].append(data)
            else:
                self._connecting[peer] = [data]
                self._tasks.spawn(self._connect_and_send(peer))
        elif self._udp is not None:
            self._udp.sendto(data, (for_socket(host, self._udp.family), port))

    def _client_tls(self) -> ssl.SSLContext:
        if self.config.tls_client is None:
            self.config = replace(self.config, tls_client=ssl.create_default_context())
        assert self.config.tls_client is not None
        return self.config.tls_client

    async def _connect_and_send(self, peer: Peer) -> None:
        kind, host, port = peer
        try:
            if kind == "tls":
                # The name checked against the certificate is the one we were given for the
                # peer (a trunk's host, a sips: URI's host), as RFC 5922 wants.
                _, conn = await self._loop.create_connection(
                    lambda: _TcpConnection(self, "tls"),
                    host,
                    port,
                    ssl=self._client_tls(),
                    server_hostname=host,
                )
            else:
                _, conn = await self._loop.create_connection(
                    lambda: _TcpConnection(self), host, port
                )
        except (OSError, ssl.SSLError) as exc:
            self._connecting.pop(peer, None)
            logger.info("%s connect to %s:%d failed: %s", kind.upper(), host, port, exc)
            self._unreachable(peer)
            return
        waiting = self._connecting.pop(peer, [])
        if conn.transport is not None:
            for data in waiting:
                conn.transport.write(data)

    def _unreachable(self, peer: Peer) -> None:
        """RFC 3261 8.1.3.1: the transactions waiting on `peer` fail now (the TU treats it as a
        503), instead of retrying into a closed connection until their timers run out."""
        now = self._loop.time()
        for transaction in list(self.layer.transactions()):
            if getattr(transaction, "peer", None) == peer and not transaction.terminated:
                self.layer.transport_error(transaction, now=now)
        self._drain()


def _note_source(request: SipRequest, peer: Peer) -> None:
    """RFC 3261 18.2.1 / RFC 3581: record where the request really came from in the top Via."""
    vias = request.headers.get_all("Via")
    if not vias:
        return
    top = Via.parse(vias[0])
    changed = False
    if top.host.strip("[]") != peer[1]:  # received= holds a bare IPv6 address (RFC 5118 4.5)
        top.params["received"] = peer[1]
        changed = True
    if "rport" in top.params:
        top.params["rport"] = str(peer[2])
        top.params.setdefault("received", peer[1])
        changed = True
    if changed:
        rest: Iterable[str] = vias[1:]
        request.headers.remove("Via")
        for value in (str(top), *rest):
            request.headers.add("Via", value)


def _replace_port(config: EndpointConfig, port: int) -> EndpointConfig:
    from dataclasses import replace

    return replace(config, port=port)


def _challenge_tag(request: SipRequest) -> str:
    """The To tag of the stateless 401 to an INVITE: the same for its retransmissions, and
    recognised on the caller's ACK (same Call-ID, From tag and CSeq number)."""
    key = f"{request.call_id}\n{request.from_.tag}\n{request.cseq.seq}".encode()
    return hashlib.blake2s(key, digest_size=6).hexdigest()


__all__ = [
    "DEFAULT_METHODS",
    "STREAM_TRANSPORTS",
    "WEBSOCKET_TRANSPORTS",
    "EndpointConfig",
    "ParseError",
    "Peer",
    "SipEndpoint",
]
