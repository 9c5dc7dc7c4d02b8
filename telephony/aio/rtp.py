"""RTP sockets for the legs the engine anchors, and the port pool they come from.

The packet path is the hot path (docs/architecture.md 7; bench/bench_rtp_relay.py measures
it), so a leg hands raw datagrams to one callback and does no parsing of its own. A leg with
SRTP keys (SDES) decrypts and authenticates at this edge, before latching, and encrypts on the
way out: everything above (relay, recording, DTMF, mixing) sees plain RTP and RTCP
(bench/bench_srtp.py measures the cost).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from telephony.rtp._relay import Port
from telephony.rtp.rtcp_session import RtcpSession
from telephony.rtp.srtp import SrtpContext
from telephony.sdp.crypto import SrtpKeys

from .addresses import for_socket, udp_socket

logger = logging.getLogger(__name__)

Address = tuple[str, int]
# How long the latched source may stay silent before another source may take its place; a phone
# that changes its port mid-call (NAT rebinding, re-INVITE) is followed, a stray packet is not.
RELATCH_AFTER = 2.0
# G.711 and telephone-event tick at 8 kHz: interarrival jitter is kept in those units (A.8).
CLOCK_RATE = 8000


class _RtcpPort:
    """The odd port above a leg's RTP port: RTCP from the far end goes to the leg's RtcpSession;
    the first source seen is where our reports go (symmetric RTCP, as for RTP)."""

    def __init__(self, endpoint: RtpEndpoint, sock: socket.socket) -> None:
        self.endpoint = endpoint
        self.remote: Address | None = None
        self.transport: RtpSocket | None = RtpSocket(sock, endpoint._loop, self.datagram_received)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        endpoint = self.endpoint
        if endpoint.remote is not None and addr[0] != endpoint.remote[0]:
            return  # not from the host we talk RTP with
        srtp = endpoint.srtp
        if srtp is not None:
            plain = srtp.unprotect_rtcp(data)
            if plain is None:
                return
            data = plain
        elif endpoint.srtp_required:
            endpoint.early_dropped += 1
            return
        self.remote = addr
        endpoint.rtcp_session.rtcp_received(data, endpoint._loop.time(), time.time())

    def send(self, data: bytes) -> bool:
        target = self.remote
        if target is None and self.endpoint.remote is not None:
            target = (self.endpoint.remote[0], self.endpoint.remote[1] + 1)
        if target is None or self.transport is None:
            return False
        srtp = self.endpoint.srtp
        if srtp is not None:
            protected = srtp.protect_rtcp(data)
            if protected is None:
                return False
            data = protected
        elif self.endpoint.srtp_required:
            return False
        self.transport.sendto(data, target)
        return True


class RtpSocket:
    """A leg's RTP socket, read by a native port (telephony.rtp._relay.Port) on the event
    loop's reader callback: datagrams the native relay does not take go to `on_datagram`."""

    def __init__(
        self,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        on_datagram: Callable[[bytes, Address], None],
    ) -> None:
        self._sock = sock
        self._loop = loop
        self.port = Port(sock.fileno(), sock.family, on_datagram)
        loop.add_reader(sock.fileno(), self.port.readable)

    def sendto(self, data: bytes, address: Address) -> None:
        try:
            self._sock.sendto(data, address)
        except (BlockingIOError, InterruptedError):
            pass  # the socket's send buffer is full: this packet would be late anyway
        except OSError as exc:  # unreachable (an ICMP error reported on this socket), etc.
            logger.debug("rtp port %d: %s", self._sock.getsockname()[1], exc)

    def close(self) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self.port.close()
        self._sock.close()


class RtpEndpoint:
    """One local RTP port of one call leg, with symmetric RTP (RFC 4961 style latching).

    The leg's audio may be relayed natively to another leg (`relay_natively`): the native
    port then counts the packets it takes, and this endpoint takes the counters back when the
    relay stops, which it does before anything here changes what the relay relies on."""

    def __init__(self, port: int, loop: asyncio.AbstractEventLoop, cname: str) -> None:
        self.port = port
        self._loop = loop
        self.transport: RtpSocket | None = None
        self.rtcp: _RtcpPort | None = None
        self.rtcp_session = RtcpSession(cname=cname, now=loop.time())
        """Reception and sending statistics, RTCP reports to send and received (sans-IO)."""
        self.remote: Address | None = None
        """Where we send: the SDP address until the peer's first packet, then its real source."""
        self.latched = False
        self.on_packet: Callable[[bytes], None] | None = None
        self._last_received: float | None = None
        self._packets_in = 0
        self._packets_out = 0
        self._family = socket.AF_INET
        self.srtp: SrtpContext | None = None
        """SRTP/SRTCP of this leg once SDES agreed keys; None: plain RTP."""
        self.srtp_required = False
        """No plain RTP or RTCP on this leg: until keys are agreed (an answer still on its
        way), whatever arrives is dropped, never taken as plain."""
        self.early_dropped = 0
        """Packets dropped because they came before the keys."""
        self.rtcp_mux = False
        """RTCP shares this port (RFC 5761; WebRTC legs): reports go out and come in here."""
        self.on_control: Callable[[bytes, Address], None] | None = None
        """Gets STUN and DTLS datagrams (first byte below 64, RFC 7983) on a WebRTC leg."""
        self.native_to: RtpEndpoint | None = None
        """The leg this one's packets are relayed to natively (its reception counters are in
        the native port meanwhile)."""
        self.native_from: RtpEndpoint | None = None
        """The leg relaying natively into this one (this one's sending counters are in the
        native port meanwhile)."""
        self.on_native_stop: Callable[[RtpEndpoint], None] | None = None
        """Called with the leg relayed to when this leg's native relay stops (the media
        session takes the last relayed header)."""

    def attach(self, sock: socket.socket) -> None:
        """Serve the leg on `sock` (bound, non-blocking)."""
        self.transport = RtpSocket(sock, self._loop, self.datagram_received)
        self._family = sock.family

    # -- the native relay ------------------------------------------------------------------

    def relay_natively(
        self,
        to: RtpEndpoint,
        *,
        codec_pt: int,
        law: int,
        sink: bytearray | None = None,
        sink_max: int = 0,
    ) -> bool:
        """Relay this leg's audio packets (payload type `codec_pt`, G.711 `law`: 0 mu, 1 A)
        to `to` in the native port, appending them decoded to `sink` (at most `sink_max`
        bytes kept, the newest); False when the legs' state does not allow it (SRTP or
        WebRTC, no validated source or far end yet)."""
        if self.native_to is not None or to.native_from is not None or to is self:
            return False
        source = self.rtcp_session.source
        wire, out = self.transport, to.transport
        if (
            wire is None
            or out is None
            or source is None
            or not source.validated
            or self.remote is None
            or to.remote is None
            or not self._plain()
            or not to._plain()
        ):
            return False
        port = wire.port
        port.ssrc, port.max_seq, port.cycles = source.ssrc, source.max_seq, source.cycles
        port.received, port.jitter = source.received, source.jitter
        port.clock_rate = source.clock_rate
        port.has_transit = source.transit is not None
        port.transit = source.transit or 0.0
        port.packets_in = self._packets_in
        port.last_received = self._last_received or 0.0
        sending, session = out.port, to.rtcp_session
        sending.packets_out = to._packets_out
        sending.packets_sent, sending.octets_sent = session.packets_sent, session.octets_sent
        sending.take_last_sent()  # what it holds is older than what Python holds
        sending.take_relayed()
        port.engage(out.port, self.remote, to.remote, codec_pt, law, sink, sink_max)
        self.native_to, to.native_from = to, self
        return True

    def take_relayed(self) -> bytes | None:
        """The header of the last packet relayed natively to this leg, once (None: none
        since the last call)."""
        return self.transport.port.take_relayed() if self.transport is not None else None

    @property
    def packets_in(self) -> int:
        """RTP packets taken from the far end (Python's and the native relay's)."""
        self.sync_native()
        return self._packets_in

    @property
    def packets_out(self) -> int:
        self.sync_native()
        return self._packets_out

    @property
    def last_received(self) -> float | None:
        """Loop time of the far end's last packet, None before any."""
        self.sync_native()
        return self._last_received

    def sync_native(self) -> None:
        """Copy the native port's counters into this leg's objects (before reading them)."""
        to = self.native_to
        if to is not None and self.transport is not None:
            self._take_reception(self.transport.port)
        via = self.native_from
        if via is not None and self.transport is not None:
            self._take_sending(self.transport.port)

    def stop_native(self) -> None:
        """Stop relaying this leg's packets natively; the counters come back to Python."""
        to = self.native_to
        if to is None:
            return
        if self.transport is not None:
            self.transport.port.disengage()
            self._take_reception(self.transport.port)
        if to.transport is not None:
            to._take_sending(to.transport.port)
        self.native_to = to.native_from = None
        if self.on_native_stop is not None:
            self.on_native_stop(to)

    def stop_all_native(self) -> None:
        """Stop both native directions this leg takes part in."""
        self.stop_native()
        if self.native_from is not None:
            self.native_from.stop_native()

    def _take_reception(self, port: Port) -> None:
        source = self.rtcp_session.source
        if source is not None and source.ssrc == port.ssrc:
            source.went_on(
                max_seq=port.max_seq,
                cycles=port.cycles,
                received=port.received,
                jitter=port.jitter,
                transit=port.transit if port.has_transit else None,
            )
        if port.packets_in != self._packets_in:
            self._packets_in, self._last_received = port.packets_in, port.last_received

    def _take_sending(self, port: Port) -> None:
        self._packets_out = port.packets_out
        self.rtcp_session.sent_elsewhere(
            packets=port.packets_sent,
            octets=port.octets_sent,
            last=port.take_last_sent(),
            at=port.last_sent_at,
        )

    def _plain(self) -> bool:
        """Plain RTP on a socket of its own: what the native relay takes."""
        return (
            self.srtp is None
            and not self.srtp_required
            and not self.rtcp_mux
            and self.on_control is None
        )

    # -- the leg ---------------------------------------------------------------------------

    def set_srtp(self, keys: SrtpKeys | None) -> None:
        """Protect the leg with what offer/answer agreed (None: plain RTP from now on)."""
        self.stop_all_native()
        if keys is None:
            self.srtp = None
        elif self.srtp is None:
            self.srtp = SrtpContext(keys.suite, keys.local, keys.remote)
        elif not self.srtp.same_keys(keys.suite, keys.local, keys.remote):
            self.srtp.rekey(keys.suite, keys.local, keys.remote)

    def select(self, address: Address) -> None:
        """ICE chose `address` (the browser nominated it): media goes there and comes from
        there only, whatever was latched before."""
        self.stop_all_native()
        self.remote = address
        self.latched = True

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if self.native_to is not None:
            self.stop_native()  # a packet the native relay did not take: Python's from here
        if self.on_control is not None and data and data[0] < 64:
            self.on_control(data, addr)
            return
        if self.rtcp_mux and len(data) > 1 and 192 <= data[1] <= 223:
            self._muxed_rtcp(data, addr)
            return
        now = self._loop.time()
        moved = addr != self.remote
        if moved:
            idle = self._last_received is None or now - self._last_received > RELATCH_AFTER
            if self.latched and not idle:
                return  # another source while ours is live: ignore (RTP injection)
        srtp = self.srtp
        if srtp is not None:
            # Authenticated before it may latch: a forged packet moves nothing.
            plain = srtp.unprotect(data)
            if plain is None:
                return
            data = plain
        elif self.srtp_required:
            self.early_dropped += 1
            return
        if moved:
            if self.native_from is not None:
                self.native_from.stop_native()  # it sends to our old address
            self.remote = addr
        # Latched to the first source that sends, be it where the SDP said or not: while it
        # is live, no other source is taken (an intruder that knows the port cannot hijack).
        self.latched = True
        self._last_received = now
        self._packets_in += 1
        if len(data) >= 12:
            self.rtcp_session.rtp_received(data, now)
        if self.on_packet is not None:
            self.on_packet(data)

    def _muxed_rtcp(self, data: bytes, addr: Address) -> None:
        """An RTCP packet on the RTP port (RFC 5761 4: payload types 192-223 are RTCP)."""
        if addr != self.remote:
            return
        srtp = self.srtp
        if srtp is None:
            self.early_dropped += 1
            return
        plain = srtp.unprotect_rtcp(data)
        if plain is not None:
            self.rtcp_session.rtcp_received(plain, self._loop.time(), time.time())

    @property
    def packets_expected(self) -> int:
        """Packets the peer sent, from the sequence numbers seen (RFC 3550 A.3)."""
        self.sync_native()
        return self.rtcp_session.packets_expected

    @property
    def packets_lost(self) -> int:
        """Expected minus received (never below 0: duplicates can outnumber losses)."""
        self.sync_native()
        return self.rtcp_session.packets_lost

    @property
    def jitter(self) -> float:
        """RFC 3550 interarrival jitter of the peer's stream, in seconds."""
        self.sync_native()
        return self.rtcp_session.jitter

    def set_remote(self, address: Address) -> None:
        """Address from SDP; ignored once latched to a live source."""
        if not self.latched:
            self.stop_all_native()
            # A dual-stack socket (bound to ::) reaches an IPv4 peer at its IPv4-mapped address.
            self.remote = (for_socket(address[0], self._family), address[1])

    def send(self, data: bytes) -> None:
        if self.native_from is not None:
            self.native_from.stop_native()  # our own audio: the sending counters are Python's
        if self.remote is not None and self.transport is not None:
            wire = data
            srtp = self.srtp
            if srtp is not None:
                protected = srtp.protect(data)
                if protected is None:
                    return
                wire = protected
            elif self.srtp_required:
                return  # never a plain packet on a leg that must be SRTP
            self.transport.sendto(wire, self.remote)
            self._packets_out += 1
            if len(data) >= 12:
                self.rtcp_session.rtp_sent(data, self._loop.time())

    def send_report(self, now: float, wall: float) -> bool:
        """Send the RTCP report owed at `now`, if one is; True when one went out."""
        if self.rtcp is None or self.remote is None or not self.rtcp_session.due(now):
            return False
        self.sync_native()
        if self.rtcp_mux:
            report = self.rtcp_session.report(now, wall)
            protected = self.srtp.protect_rtcp(report) if self.srtp is not None else None
            if protected is None or self.transport is None:
                return False
            self.transport.sendto(protected, self.remote)
            return True
        return self.rtcp.send(self.rtcp_session.report(now, wall))

    def close(self) -> None:
        self.stop_all_native()
        self.on_packet = None
        self.on_control = None
        if self.transport is not None:
            self.transport.close()
            self.transport = None  # a late send() is a no-op, not an error per packet
        if self.rtcp is not None and self.rtcp.transport is not None:
            if self.rtcp_session.packets_sent or self.rtcp_session.source is not None:
                self.rtcp.send(self.rtcp_session.bye())
            self.rtcp.transport.close()
            self.rtcp.transport = None


@dataclass
class RtpTotals:
    """RTP counters summed over endpoints (for metrics)."""

    packets_in: int = 0
    packets_out: int = 0
    packets_lost: int = 0
    max_jitter: float = 0.0
    """Highest interarrival jitter of a live endpoint, in seconds."""
    rtcp_sent: int = 0
    rtcp_received: int = 0
    rtcp_malformed: int = 0
    remote_packets_lost: int = 0
    """Packets of our streams the far ends reported lost (their last RTCP report per leg)."""
    max_remote_fraction_lost: float = 0.0
    """Worst loss fraction a far end reported about a live leg's stream (0..1)."""
    max_remote_jitter: float = 0.0
    """Worst jitter a far end reported about a live leg's stream, in seconds."""
    max_round_trip: float = 0.0
    """Longest RTCP round trip of a live leg, in seconds."""
    srtp_dropped: int = 0
    """SRTP and SRTCP packets dropped: failed authentication or replay checks, or came before
    the keys on a leg that requires SRTP."""

    def add(self, endpoint: RtpEndpoint) -> None:
        self.packets_in += endpoint.packets_in
        self.packets_out += endpoint.packets_out
        self.packets_lost += endpoint.packets_lost
        self.srtp_dropped += endpoint.early_dropped
        if endpoint.srtp is not None:
            self.srtp_dropped += endpoint.srtp.rejected + endpoint.srtp.rejected_rtcp
        session = endpoint.rtcp_session
        self.rtcp_sent += session.reports_sent
        self.rtcp_received += session.reports_received
        self.rtcp_malformed += session.bad_reports
        if session.remote is not None:
            self.remote_packets_lost += max(0, session.remote.packets_lost)

    def add_live(self, endpoint: RtpEndpoint) -> None:
        """Counters plus the worst-of gauges of a leg still up."""
        self.add(endpoint)
        self.max_jitter = max(self.max_jitter, endpoint.jitter)
        remote = endpoint.rtcp_session.remote
        if remote is not None:
            self.max_remote_fraction_lost = max(self.max_remote_fraction_lost, remote.fraction_lost)
            self.max_remote_jitter = max(self.max_remote_jitter, remote.jitter)
            if remote.round_trip is not None:
                self.max_round_trip = max(self.max_round_trip, remote.round_trip)


class RtpPortPool:
    """Even RTP ports (RTCP on the odd one above) from a configured range, reused after release."""

    def __init__(self, host: str, low: int, high: int, *, cname: str | None = None) -> None:
        self.host = host
        self.cname = cname or f"callcenter@{host}"
        """RTCP canonical name of our streams (RFC 3550 6.5.1: user@host)."""
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
        closed = self._closed
        out = RtpTotals(
            closed.packets_in,
            closed.packets_out,
            closed.packets_lost,
            rtcp_sent=closed.rtcp_sent,
            rtcp_received=closed.rtcp_received,
            rtcp_malformed=closed.rtcp_malformed,
            remote_packets_lost=closed.remote_packets_lost,
            srtp_dropped=closed.srtp_dropped,
        )
        for endpoint in self._live.values():
            out.add_live(endpoint)
        return out

    def send_reports(self, now: float | None = None, wall: float | None = None) -> int:
        """Send the RTCP reports owed by live legs (call about once a second); returns how many
        went out."""
        now = asyncio.get_running_loop().time() if now is None else now
        wall = time.time() if wall is None else wall
        return sum(endpoint.send_report(now, wall) for endpoint in list(self._live.values()))

    async def open(self) -> RtpEndpoint:
        loop = asyncio.get_running_loop()
        attempts = 0
        while self._free and attempts < 50:
            port = self._free.pop()
            attempts += 1
            endpoint: RtpEndpoint | None = None
            try:
                sock = udp_socket(self.host, port)
                endpoint = RtpEndpoint(port, loop, self.cname)
                endpoint.attach(sock)
                sink = _RtcpPort(endpoint, udp_socket(self.host, port + 1))
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
