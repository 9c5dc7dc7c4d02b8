"""RTP sockets for the legs the engine anchors, and the port pool they come from.

The packet path is the hot path (DESIGN.md 4: ~25 us per relayed packet on stock asyncio), so a
leg hands raw datagrams to one callback and does no parsing of its own.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import cast

logger = logging.getLogger(__name__)

Address = tuple[str, int]
# How long the latched source may stay silent before another source may take its place; a phone
# that changes its port mid-call (NAT rebinding, re-INVITE) is followed, a stray packet is not.
RELATCH_AFTER = 2.0


class _RtcpSink(asyncio.DatagramProtocol):
    """Absorbs RTCP so peers sending to port+1 get no ICMP errors; counts reports."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.received += 1


class RtpEndpoint(asyncio.DatagramProtocol):
    """One local RTP port of one call leg, with symmetric RTP (RFC 4961 style latching)."""

    def __init__(self, port: int, loop: asyncio.AbstractEventLoop) -> None:
        self.port = port
        self._loop = loop
        self.transport: asyncio.DatagramTransport | None = None
        self.rtcp: _RtcpSink | None = None
        self.remote: Address | None = None
        """Where we send: the SDP address until the peer's first packet, then its real source."""
        self.latched = False
        self.on_packet: Callable[[bytes], None] | None = None
        self.last_received: float | None = None
        self.packets_in = 0
        self.packets_out = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        now = self._loop.time()
        if addr != self.remote:
            idle = self.last_received is None or now - self.last_received > RELATCH_AFTER
            if self.latched and not idle:
                return  # another source while ours is live: ignore (RTP injection)
            self.remote = addr
            self.latched = True
        self.last_received = now
        self.packets_in += 1
        if self.on_packet is not None:
            self.on_packet(data)

    def error_received(self, exc: Exception) -> None:
        logger.debug("rtp port %d: %s", self.port, exc)

    def set_remote(self, address: Address) -> None:
        """Address from SDP; ignored once latched to a live source."""
        if not self.latched:
            self.remote = address

    def send(self, data: bytes) -> None:
        if self.remote is not None and self.transport is not None:
            self.transport.sendto(data, self.remote)
            self.packets_out += 1

    def close(self) -> None:
        self.on_packet = None
        if self.transport is not None:
            self.transport.close()
            self.transport = None  # a late send() is a no-op, not an error per packet
        if self.rtcp is not None and self.rtcp.transport is not None:
            self.rtcp.transport.close()


class RtpPortPool:
    """Even RTP ports (RTCP on the odd one above) from a configured range, reused after release."""

    def __init__(self, host: str, low: int, high: int) -> None:
        self.host = host
        self._free = list(range(low + (low % 2), high - 1, 2))
        self._free.reverse()  # pop() from the low end
        self._used: set[int] = set()

    @property
    def in_use(self) -> int:
        return len(self._used)

    async def open(self) -> RtpEndpoint:
        loop = asyncio.get_running_loop()
        attempts = 0
        while self._free and attempts < 50:
            port = self._free.pop()
            attempts += 1
            endpoint: RtpEndpoint | None = None
            try:
                _, endpoint = await loop.create_datagram_endpoint(
                    functools.partial(RtpEndpoint, port, loop), local_addr=(self.host, port)
                )
                _, sink = await loop.create_datagram_endpoint(
                    _RtcpSink, local_addr=(self.host, port + 1)
                )
            except OSError:
                # Someone else holds it: skip it, try it again much later.
                self._free.insert(0, port)
                if endpoint is not None:
                    endpoint.close()
                continue
            assert endpoint is not None
            endpoint.rtcp = sink
            self._used.add(port)
            return endpoint
        raise OSError("no free RTP port in the configured range")

    def release(self, endpoint: RtpEndpoint) -> None:
        endpoint.close()
        if endpoint.port in self._used:
            self._used.discard(endpoint.port)
            self._free.insert(0, endpoint.port)
