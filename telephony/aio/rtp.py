"""RTP sockets for the legs the engine anchors, and the port pool they come from.

The packet path is the hot path (DESIGN.md 4: ~25 us per relayed packet on stock asyncio), so a
leg hands raw datagrams to one callback and does no parsing of its own.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

logger = logging.getLogger(__name__)

Address = tuple[str, int]
# How long the latched source may stay silent before another source may take its place; a phone
# that changes its port mid-call (NAT rebinding, re-INVITE) is followed, a stray packet is not.
RELATCH_AFTER = 2.0
# RFC 3550 A.1: a sequence jump beyond these is a restarted stream, not loss or reordering.
MAX_DROPOUT = 3000
MAX_MISORDER = 100
# G.711 and telephone-event tick at 8 kHz: interarrival jitter is kept in those units (A.8).
CLOCK_RATE = 8000


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
        self.jitter = 0.0
        """RFC 3550 interarrival jitter estimate, in RTP timestamp units (1/8000 s)."""
        self._expected_before = 0
        self._base_seq = -1
        self._max_seq = 0
        self._cycles = 0
        self._transit: int | None = None

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
        if len(data) >= 12:
            self._note_rtp(data, now)
        if self.on_packet is not None:
            self.on_packet(data)

    def _note_rtp(self, data: bytes, now: float) -> None:
        """Sequence (for loss) and timestamp (for jitter) of one packet: a few int operations."""
        seq = data[2] << 8 | data[3]
        if self._base_seq < 0:
            self._base_seq = self._max_seq = seq
        else:
            delta = (seq - self._max_seq) & 0xFFFF
            if 0 < delta < MAX_DROPOUT:
                if seq < self._max_seq:
                    self._cycles += 0x10000
                self._max_seq = seq
            elif MAX_DROPOUT <= delta < 0x10000 - MAX_MISORDER:
                # The peer restarted its stream (new SSRC, re-INVITE): count afresh from here.
                self._expected_before += self._cycles + self._max_seq - self._base_seq + 1
                self._base_seq = self._max_seq = seq
                self._cycles = 0
                self._transit = None
        timestamp = data[4] << 24 | data[5] << 16 | data[6] << 8 | data[7]
        transit = int(now * CLOCK_RATE) - timestamp
        if self._transit is not None:
            d = abs(((transit - self._transit + 0x80000000) & 0xFFFFFFFF) - 0x80000000)
            self.jitter += (d - self.jitter) / 16
        self._transit = transit

    @property
    def packets_expected(self) -> int:
        """Packets the peer sent, from the sequence numbers seen (RFC 3550 A.3)."""
        if self._base_seq < 0:
            return 0
        return self._expected_before + self._cycles + self._max_seq - self._base_seq + 1

    @property
    def packets_lost(self) -> int:
        """Expected minus received (never below 0: duplicates can outnumber losses)."""
        return max(0, self.packets_expected - self.packets_in)

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


@dataclass
class RtpTotals:
    """RTP counters summed over endpoints (for metrics)."""

    packets_in: int = 0
    packets_out: int = 0
    packets_lost: int = 0
    max_jitter: float = 0.0
    """Highest interarrival jitter of a live endpoint, in seconds."""

    def add(self, endpoint: RtpEndpoint) -> None:
        self.packets_in += endpoint.packets_in
        self.packets_out += endpoint.packets_out
        self.packets_lost += endpoint.packets_lost


class RtpPortPool:
    """Even RTP ports (RTCP on the odd one above) from a configured range, reused after release."""

    def __init__(self, host: str, low: int, high: int) -> None:
        self.host = host
        self._free = list(range(low + (low % 2), high - 1, 2))
        self._free.reverse()  # pop() from the low end
        self._used: set[int] = set()
        self._live: dict[int, RtpEndpoint] = {}
        self._closed = RtpTotals()
        """What the released endpoints counted."""

    @property
    def in_use(self) -> int:
        return len(self._used)

    def totals(self) -> RtpTotals:
        """Packets in/out and lost over every endpoint since start; the worst live jitter."""
        out = RtpTotals(
            self._closed.packets_in, self._closed.packets_out, self._closed.packets_lost
        )
        for endpoint in self._live.values():
            out.add(endpoint)
            out.max_jitter = max(out.max_jitter, endpoint.jitter / CLOCK_RATE)
        return out

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
            self._live[port] = endpoint
            return endpoint
        raise OSError("no free RTP port in the configured range")

    def release(self, endpoint: RtpEndpoint) -> None:
        endpoint.close()
        if self._live.get(endpoint.port) is endpoint:
            del self._live[endpoint.port]
            self._closed.add(endpoint)
        if endpoint.port in self._used:
            self._used.discard(endpoint.port)
            self._free.insert(0, endpoint.port)
