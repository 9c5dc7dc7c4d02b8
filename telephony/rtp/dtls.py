"""DTLS-SRTP (RFC 5764) for one WebRTC leg, sans-IO: DTLS records in, records out, and the SRTP
master keys the handshake exports once the far end's certificate matched the a=fingerprint of
its SDP (RFC 5763 5: that match is what authenticates the media).

The DTLS stack is OpenSSL's through pyOpenSSL on memory BIOs (what aiortc does too); the
certificate is made with `cryptography`. No clock is read here: the retransmission timer is
OpenSSL's (`timeout` says when, `handle_timeout` fires it), the caller keeps time.
"""

from __future__ import annotations

import datetime
import functools
import logging
import secrets
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

logger = logging.getLogger(__name__)

__all__ = ["DtlsCertificate", "DtlsError", "DtlsSrtp", "ExportedKeys"]

#: libsrtp-profile names (RFC 5764 4.1.2) -> the SDES suite names telephony.rtp.srtp takes.
_PROFILES: Final[dict[bytes, str]] = {
    b"SRTP_AES128_CM_SHA1_80": "AES_CM_128_HMAC_SHA1_80",
    b"SRTP_AES128_CM_SHA1_32": "AES_CM_128_HMAC_SHA1_32",
}
_KEY, _SALT = 16, 14
MTU: Final = 1200
"""Largest datagram we send: records are packed up to this (what browsers use too)."""
_HASHES: Final[dict[str, type[hashes.SHA1 | hashes.SHA256 | hashes.SHA384 | hashes.SHA512]]] = {
    "sha-1": hashes.SHA1,
    "sha-256": hashes.SHA256,
    "sha-384": hashes.SHA384,
    "sha-512": hashes.SHA512,
}


class DtlsError(Exception):
    """The handshake failed, or the far end's certificate is not the one its SDP named."""


@dataclass(frozen=True)
class DtlsCertificate:
    """A self-signed certificate and key for DTLS (one per engine run, RFC 8827 6.5 allows
    that); `fingerprint` as SDP's a=fingerprint carries it."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls, now: datetime.datetime, days: int = 30) -> DtlsCertificate:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, secrets.token_hex(8))])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .sign(key, hashes.SHA256())
        )
        return cls(certificate, key)

    @functools.cached_property
    def fingerprint(self) -> str:
        """Computed once: every leg's SDP offers it (a peer may answer with WebRTC)."""
        digest = self.certificate.fingerprint(hashes.SHA256())
        return "sha-256 " + ":".join(f"{b:02X}" for b in digest)

    def context(self) -> SSL.Context:
        ctx = SSL.Context(SSL.DTLS_METHOD)
        ctx.use_certificate(self.certificate)
        ctx.use_privatekey(self.key)
        # Any certificate is taken here; its fingerprint is checked against the SDP after.
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *_: True)
        ctx.set_tlsext_use_srtp(b":".join(_PROFILES))
        ctx.set_cipher_list(b"HIGH:!CAMELLIA:!aNULL")
        return ctx


@dataclass(frozen=True)
class ExportedKeys:
    """What the handshake agreed: the SRTP suite, our master key || salt and the far end's."""

    suite: str
    local: bytes
    remote: bytes

    def __repr__(self) -> str:  # keys never reach a log line
        return f"ExportedKeys({self.suite})"


class DtlsSrtp:
    """One DTLS association: `server` when our a=setup made us passive."""

    def __init__(
        self,
        certificate: DtlsCertificate,
        *,
        server: bool,
        remote_fingerprint: tuple[str, bytes],
    ) -> None:
        self.server = server
        self._alg, self._expected = remote_fingerprint
        if self._alg not in _HASHES:
            raise DtlsError(f"unsupported fingerprint hash {self._alg}")
        self._ssl = SSL.Connection(certificate.context(), None)
        if server:
            self._ssl.set_accept_state()
        else:
            self._ssl.set_connect_state()
        self._out: list[bytes] = []
        self.keys: ExportedKeys | None = None
        """Set once the handshake is done and the certificate matched."""
        self.failed: str | None = None
        """Why the association failed (None: it has not)."""
        self.closed = False
        """The far end sent close_notify."""

    # -- driving ------------------------------------------------------------------------------

    def start(self) -> None:
        """Send our first flight (the client's ClientHello; nothing for a server)."""
        if not self.server:
            self._step()

    def receive(self, data: bytes) -> None:
        """One datagram of DTLS records from the far end."""
        if self.failed is not None or self.closed:
            return
        self._ssl.bio_write(data)
        if self.keys is None:
            self._step()
            return
        # After the handshake only alerts (close_notify) or a retransmitted final flight come.
        try:
            self._ssl.recv(1500)
        except SSL.ZeroReturnError:
            self.closed = True
        except (SSL.WantReadError, SSL.Error):
            pass
        self._flush()

    def timeout(self) -> float | None:
        """Seconds until OpenSSL wants `handle_timeout` (a flight to retransmit), or None."""
        if self.keys is not None or self.failed is not None:
            return None
        return self._ssl.DTLSv1_get_timeout()

    def handle_timeout(self) -> None:
        if self.keys is None and self.failed is None:
            self._ssl.DTLSv1_handle_timeout()
            self._flush()

    def datagrams_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    # -- internals ----------------------------------------------------------------------------

    def _step(self) -> None:
        try:
            self._ssl.do_handshake()
        except SSL.WantReadError:
            self._flush()
            return
        except SSL.Error as exc:
            self._flush()
            self.failed = f"DTLS handshake failed: {exc}"
            logger.info("%s", self.failed)
            return
        self._flush()
        self._handshake_done()

    def _handshake_done(self) -> None:
        peer = self._ssl.get_peer_certificate()
        if peer is None:
            self.failed = "the far end sent no certificate"
            return
        digest = peer.to_cryptography().fingerprint(_HASHES[self._alg]())
        if not secrets.compare_digest(digest, self._expected):
            self.failed = "the far end's certificate does not match its a=fingerprint"
            logger.warning("DTLS: %s", self.failed)
            return
        profile = self._ssl.get_selected_srtp_profile()
        suite = _PROFILES.get(profile)
        if suite is None:
            self.failed = f"no SRTP profile agreed ({profile!r})"
            return
        material = self._ssl.export_keying_material(b"EXTRACTOR-dtls_srtp", 2 * (_KEY + _SALT))
        client_key, server_key = material[:_KEY], material[_KEY : 2 * _KEY]
        client_salt = material[2 * _KEY : 2 * _KEY + _SALT]
        server_salt = material[2 * _KEY + _SALT :]
        client, server = client_key + client_salt, server_key + server_salt
        local, remote = (server, client) if self.server else (client, server)
        self.keys = ExportedKeys(suite, local, remote)

    def _flush(self) -> None:
        """Move what OpenSSL wrote into datagrams: whole records, packed up to the MTU."""
        pending = b""
        while True:
            try:
                chunk = self._ssl.bio_read(65536)
            except SSL.WantReadError:
                break
            if not chunk:
                break
            pending += chunk
        datagram = b""
        for record in _records(pending):
            if datagram and len(datagram) + len(record) > MTU:
                self._out.append(datagram)
                datagram = b""
            datagram += record
        if datagram:
            self._out.append(datagram)


def _records(data: bytes) -> list[bytes]:
    """Split a run of DTLS records (13-byte header, length in its last two bytes)."""
    records = []
    at = 0
    while at + 13 <= len(data):
        length = int.from_bytes(data[at + 11 : at + 13], "big")
        records.append(data[at : at + 13 + length])
        at += 13 + length
    if at < len(data):
        records.append(data[at:])
    return records
