"""TLS for SIP and HTTP: the SIP listener's and the client's SSLContext from [sip] settings,
the HTTPS listener's from [http], and the self-signed certificate `callcenter tls-selfsigned`
makes.

The certificate is made with the `cryptography` package (PyCA, a maintained library and a wheel
on every platform we run on) rather than the `openssl` CLI: no subprocess, no dependence on
which openssl a machine has or how its config file sets defaults, and the key file is written
with mode 0600 from the start.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .config import SipSettings

__all__ = ["https_context", "make_self_signed", "tls_contexts"]


def tls_contexts(sip: SipSettings) -> tuple[ssl.SSLContext | None, ssl.SSLContext]:
    """(the listener's context, or None without tls_listen; the context for our connections
    to TLS peers). Both refuse anything older than TLS 1.2. ssl.SSLError or OSError when the
    certificate, key or CA file cannot be loaded."""
    server = None
    if sip.tls_listen is not None:
        assert sip.tls_certificate is not None and sip.tls_key is not None
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.minimum_version = ssl.TLSVersion.TLSv1_2
        server.load_cert_chain(sip.tls_certificate, sip.tls_key)
    client = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(sip.tls_ca_file) if sip.tls_ca_file else None
    )
    client.minimum_version = ssl.TLSVersion.TLSv1_2
    if not sip.tls_verify:
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
    return server, client


def https_context(certificate: Path, key: Path) -> ssl.SSLContext:
    """The HTTP listener's context for [http] tls_certificate and tls_key: TLS 1.2 or newer,
    HTTP/1.1 only (aiohttp serves no HTTP/2; a WebSocket upgrade needs HTTP/1.1)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, key)
    context.set_alpn_protocols(["http/1.1"])
    return context


def make_self_signed(out: Path, names: Sequence[str], *, days: int = 825) -> tuple[Path, Path]:
    """Write `cert.pem` and `key.pem` (ECDSA P-256, mode 0600) into `out`: a self-signed
    certificate for `names` (host names and IP addresses, all in subjectAltName; the first is
    also the common name). Returns (certificate path, key path)."""
    if not names:
        raise ValueError("a certificate needs at least one name")
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = out / "cert.pem", out / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when the file was there before
    with os.fdopen(fd, "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path
