"""A WebRTC leg's media transport on its RTP port: ICE-lite checks, the DTLS-SRTP handshake and
then SRTP, all on one UDP socket (RFC 7983 demultiplexing, RFC 5761 rtcp-mux).

The sans-IO parts are telephony.rtp.ice (checks) and telephony.rtp.dtls (handshake, keys); this
shell moves their datagrams, keeps the DTLS retransmission timer and, once the keys are out,
hands them to the port's SRTP context (telephony.rtp.srtp, libsrtp): from there on the leg is
like any SRTP leg, and everything above it (relay, recording, mixing) sees plain RTP.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime

from telephony.rtp.dtls import DtlsCertificate, DtlsSrtp
from telephony.rtp.ice import IceLite, is_stun
from telephony.sdp.crypto import SrtpKeys
from telephony.sdp.webrtc import RemoteDtls

from .rtp import Address, RtpEndpoint

logger = logging.getLogger(__name__)

__all__ = ["WebRtcTransport", "new_certificate"]


def new_certificate() -> DtlsCertificate:
    """The engine's DTLS certificate (one per run; its fingerprint goes in every WebRTC SDP)."""
    return DtlsCertificate.generate(datetime.now(UTC))


class WebRtcTransport:
    """ICE-lite and DTLS-SRTP of one leg, on `endpoint`'s socket."""

    def __init__(
        self,
        endpoint: RtpEndpoint,
        certificate: DtlsCertificate,
        *,
        local_ufrag: str,
        local_pwd: str,
        remote: RemoteDtls,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.remote = remote
        self.ice = IceLite(local_ufrag, local_pwd, remote.ufrag)
        self.dtls = DtlsSrtp(
            certificate,
            server=remote.we_are_server(),
            remote_fingerprint=(remote.fingerprint_alg, remote.fingerprint),
        )
        self._on_failure = on_failure
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._checked: set[Address] = set()
        """Addresses that passed a connectivity check: DTLS is taken from these only."""
        self._dtls_peer: Address | None = None
        self.connected_at: float | None = None
        """Loop time the SRTP keys were installed."""
        endpoint.rtcp_mux = True
        endpoint.srtp_required = True
        endpoint.on_control = self.receive

    def same_association(self, remote: RemoteDtls) -> bool:
        """A re-offer keeps this transport unless the far end's ICE or certificate changed."""
        return (remote.ufrag, remote.pwd, remote.fingerprint) == (
            self.remote.ufrag,
            self.remote.pwd,
            self.remote.fingerprint,
        )

    def receive(self, data: bytes, source: Address) -> None:
        transport = self.endpoint.transport
        if transport is None:
            return
        if is_stun(data):
            response, nominated = self.ice.receive(data, source)
            if response is None:
                return
            transport.sendto(response, source)
            self._checked.add(source)
            if nominated or self.endpoint.remote is None:
                self.endpoint.select(source)
                if not self.dtls.server and self._dtls_peer is None:
                    self._dtls_peer = source
                    self.dtls.start()
                    self._flush()
            return
        if 20 <= data[0] <= 63 and source in self._checked:
            self._dtls_peer = source
            self.dtls.receive(data)
            self._flush()

    def connect_to(self, address: Address) -> None:
        """Take the controlling role towards a far end that sends no checks (ICE-lite too, as
        the bench's browser stand-in faces the engine): one nominating check to `address`, and
        media and DTLS go there from now on."""
        transport = self.endpoint.transport
        if transport is None:
            return
        transport.sendto(self.ice.check(self.remote.pwd, tie_breaker=secrets.randbits(63)), address)
        self._checked.add(address)
        self.endpoint.select(address)
        self._dtls_peer = address
        if not self.dtls.server:
            self.dtls.start()
        self._flush()

    def _flush(self) -> None:
        transport = self.endpoint.transport
        target = self._dtls_peer
        for datagram in self.dtls.datagrams_to_send():
            if transport is not None and target is not None:
                transport.sendto(datagram, target)
        if self.dtls.keys is not None and self.connected_at is None:
            keys = self.dtls.keys
            self.endpoint.set_srtp(SrtpKeys(keys.suite, local=keys.local, remote=keys.remote))
            self.connected_at = self._loop.time()
            logger.info("WebRTC leg on port %d: DTLS-SRTP up (%s)", self.endpoint.port, keys.suite)
        if self.dtls.failed is not None:
            self._cancel_timer()
            if self._on_failure is not None:
                failure, self._on_failure = self._on_failure, None
                failure(self.dtls.failed)
            return
        self._arm()

    def _arm(self) -> None:
        self._cancel_timer()
        wait = self.dtls.timeout()
        if wait is not None:
            self._timer = self._loop.call_later(wait, self._expired)

    def _expired(self) -> None:
        self._timer = None
        if self.endpoint.transport is None:
            return  # the leg is gone
        self.dtls.handle_timeout()
        self._flush()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        self._cancel_timer()
        if self.endpoint.on_control == self.receive:
            self.endpoint.on_control = None
