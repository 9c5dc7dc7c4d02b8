"""Bare SIP clients (UDP, and TCP for messages too big for a datagram) for tests that need exact
control over each message (auth, bans, conformance corpora)."""

from __future__ import annotations

import asyncio
import re
import secrets
import ssl
from typing import cast

import aiohttp

from telephony.sip import (
    Headers,
    RemoteProtocolError,
    SipRequest,
    SipResponse,
    StreamFramer,
    build_authorization,
    choose_challenge,
    parse_message,
)


class RawSipClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.inbox: asyncio.Queue[SipRequest | SipResponse] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.inbox.put_nowait(parse_message(data))
        except RemoteProtocolError:
            # An error response may echo the broken header it complains about (e.g. an
            # overlarge CSeq): keep its status line, which is what the tests look at.
            match = re.match(rb"SIP/2\.0 (\d{3}) ([^\r\n]*)", data)
            if match:
                status, reason = int(match.group(1)), match.group(2).decode("utf-8", "replace")
                self.inbox.put_nowait(SipResponse(status=status, reason=reason, headers=Headers()))

    @property
    def port(self) -> int:
        return int(self._sockname()[1])

    @property
    def host(self) -> str:
        return str(self._sockname()[0])

    def _sockname(self) -> tuple[str, int]:
        assert self.transport is not None
        return cast(tuple[str, int], self.transport.get_extra_info("sockname"))

    @classmethod
    async def open(cls, host: str = "127.0.0.1") -> RawSipClient:
        loop = asyncio.get_running_loop()
        _, client = await loop.create_datagram_endpoint(cls, local_addr=(host, 0))
        return client

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def send(self, data: bytes, server: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, server)

    async def receive(self, timeout: float = 2.0) -> SipRequest | SipResponse | None:
        try:
            return await asyncio.wait_for(self.inbox.get(), timeout)
        except TimeoutError:
            return None

    async def response(self, timeout: float = 2.0) -> SipResponse | None:
        """The next final response (provisional ones skipped)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            message = await self.receive(left)
            if message is None:
                return None  # timed out (or, over TCP, the connection is gone)
            if isinstance(message, SipResponse) and message.status >= 200:
                return message
        return None

    def register(
        self,
        user: str,
        server: tuple[str, int],
        *,
        cseq: int,
        call_id: str,
        authorization: str | None = None,
        expires: int = 300,
    ) -> bytes:
        host = f"{server[0]}:{server[1]}"
        lines = [
            f"REGISTER sip:{host} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK{secrets.token_hex(8)};rport",
            "Max-Forwards: 70",
            f"From: <sip:{user}@{host}>;tag={secrets.token_hex(4)}",
            f"To: <sip:{user}@{host}>",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} REGISTER",
            f"Contact: <sip:{user}@{self.host}:{self.port}>",
            f"Expires: {expires}",
        ]
        if authorization:
            lines.append(f"Authorization: {authorization}")
        return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()

    def invite(
        self,
        caller: str,
        callee: str,
        server: tuple[str, int],
        *,
        authorization: str | None = None,
        cseq: int = 1,
        call_id: str | None = None,
        media: str = "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
    ) -> bytes:
        """An INVITE whose SDP offer has these `media` lines (PCMU by default)."""
        host = f"{server[0]}:{server[1]}"
        sdp = (
            f"v=0\r\no=- 1 1 IN IP4 {self.host}\r\ns=-\r\nc=IN IP4 {self.host}\r\nt=0 0\r\n" + media
        )
        lines = [
            f"INVITE sip:{callee}@{host} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK{secrets.token_hex(8)};rport",
            "Max-Forwards: 70",
            f"From: <sip:{caller}@{host}>;tag={secrets.token_hex(4)}",
            f"To: <sip:{callee}@{host}>",
            f"Call-ID: {call_id or secrets.token_hex(8)}",
            f"CSeq: {cseq} INVITE",
            f"Contact: <sip:{caller}@{self.host}:{self.port}>",
            "Content-Type: application/sdp",
        ]
        if authorization:
            lines.append(f"Authorization: {authorization}")
        body = sdp.encode()
        return ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


class TcpSipClient(RawSipClient):
    """The same client over one TCP connection: what a peer does with a message larger than a
    UDP datagram can carry (RFC 3261 18.1.1). `lost` once the far end closed the connection
    (as the engine does after a message it cannot frame); `response` then returns at once."""

    def __init__(self) -> None:
        super().__init__()
        self.framer = StreamFramer()
        self.lost = asyncio.Event()
        self.stream: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.stream = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        for message in self.framer.feed(data):
            self.datagram_received(message, ("", 0))

    def eof_received(self) -> bool | None:
        return None  # close our end too (the class descends from a DatagramProtocol)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()

    def _sockname(self) -> tuple[str, int]:
        assert self.stream is not None
        return cast(tuple[str, int], self.stream.get_extra_info("sockname"))

    @classmethod
    async def connect(cls, server: tuple[str, int], host: str = "127.0.0.1") -> TcpSipClient:
        loop = asyncio.get_running_loop()
        _, client = await loop.create_connection(cls, server[0], server[1], local_addr=(host, 0))
        return client

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()

    def send(self, data: bytes, server: tuple[str, int]) -> None:
        assert self.stream is not None
        if not self.stream.is_closing():
            self.stream.write(data)

    async def receive(self, timeout: float = 2.0) -> SipRequest | SipResponse | None:
        if self.inbox.empty() and self.lost.is_set():
            return None
        inbox = asyncio.ensure_future(self.inbox.get())
        lost = asyncio.ensure_future(self.lost.wait())
        done, _ = await asyncio.wait({inbox, lost}, timeout=timeout, return_when="FIRST_COMPLETED")
        lost.cancel()
        if inbox in done:
            return inbox.result()
        inbox.cancel()
        return None


def answer_challenge(
    response: SipResponse, *, user: str, password: str, method: str, uri: str, nc: int = 1
) -> str:
    challenge = choose_challenge(response.headers.get_all("WWW-Authenticate"))
    return build_authorization(
        challenge,
        username=user,
        password=password,
        method=method,
        uri=uri,
        cnonce=secrets.token_hex(8),
        nc=nc,
    )


class WsSipClient:
    """A browser phone's signalling as RFC 7118 has it, by hand: one SIP message per WebSocket
    text frame, Via `SIP/2.0/WS` with an `.invalid` host, Contact `;transport=ws`."""

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        session: aiohttp.ClientSession,
        *,
        secure: bool = False,
    ):
        self.ws = ws
        self.session = session
        self.host = f"{secrets.token_hex(4)}.invalid"
        self.transport = "WSS" if secure else "WS"

    @classmethod
    async def connect(cls, url: str, *, ssl: ssl.SSLContext | bool = True) -> WsSipClient:
        """`url` ws:// or wss:// (then `ssl` says which certificates to trust)."""
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(url, protocols=("sip",), autoping=True, ssl=ssl)
        except BaseException:
            await session.close()
            raise
        return cls(ws, session, secure=url.startswith("wss:"))

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()

    def send(self, data: str) -> None:
        asyncio.get_running_loop().create_task(self.ws.send_str(data))

    async def receive(self, timeout: float = 2.0) -> SipRequest | SipResponse | None:
        try:
            frame = await self.ws.receive(timeout)
        except TimeoutError:
            return None
        if frame.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            return None
        data = frame.data.encode() if isinstance(frame.data, str) else frame.data
        try:
            return parse_message(data)
        except RemoteProtocolError:
            # An error response may echo the broken header it complains about: keep its status.
            match = re.match(rb"SIP/2\.0 (\d{3}) ([^\r\n]*)", data)
            if match is None:
                raise
            status, reason = int(match.group(1)), match.group(2).decode("utf-8", "replace")
            return SipResponse(status=status, reason=reason, headers=Headers())

    async def response(self, timeout: float = 2.0) -> SipResponse | None:
        """The next final response (provisional ones and requests skipped)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            message = await self.receive(left)
            if isinstance(message, SipResponse) and message.status >= 200:
                return message
        return None

    async def request(self, method: str, timeout: float = 5.0) -> SipRequest | None:
        """The next request of `method` the engine sends us (anything else skipped)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            message = await self.receive(left)
            if isinstance(message, SipRequest) and message.method == method:
                return message
        return None

    def via(self) -> str:
        return f"Via: SIP/2.0/{self.transport} {self.host};branch=z9hG4bK{secrets.token_hex(8)}"

    def register(
        self, user: str, domain: str, *, cseq: int, call_id: str, authorization: str | None = None
    ) -> str:
        lines = [
            f"REGISTER sip:{domain} SIP/2.0",
            self.via(),
            "Max-Forwards: 70",
            f"From: <sip:{user}@{domain}>;tag={secrets.token_hex(4)}",
            f"To: <sip:{user}@{domain}>",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} REGISTER",
            f"Contact: <sip:{secrets.token_hex(4)}@{self.host};transport={self.transport.lower()}>"
            ";expires=600",
            "Expires: 600",
        ]
        if authorization:
            lines.append(f"Authorization: {authorization}")
        return "\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n"

    def answer(self, request: SipRequest, status: int, reason: str) -> str:
        """A response to `request` (Via, From, To, Call-ID and CSeq echoed; our To tag)."""
        lines = [f"SIP/2.0 {status} {reason}"]
        for name in ("Via", "From", "To", "Call-ID", "CSeq"):
            for value in request.headers.get_all(name):
                if name == "To" and "tag=" not in value:
                    value += f";tag={secrets.token_hex(4)}"
                lines.append(f"{name}: {value}")
        return "\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n"
