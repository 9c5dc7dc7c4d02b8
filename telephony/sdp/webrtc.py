"""What a WebRTC audio stream adds to SDP: ICE credentials and candidates (RFC 8839), the
DTLS-SRTP fingerprint and role (RFC 5763, RFC 8842), rtcp-mux (RFC 5761) and BUNDLE (RFC 9143).

The engine is an ICE-lite agent (RFC 8445 2.5): a server on an address the browser reaches
directly, it offers one host candidate, never sends checks and answers the browser's (the
browser, a full agent, is controlling and nominates). Sans-IO; the standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from .errors import SdpParseError
from .model import Attribute, MediaDescription, SessionDescription

__all__ = [
    "DTLS_PROTOS",
    "FINGERPRINT_HASHES",
    "LocalIce",
    "RemoteDtls",
    "answer_attributes",
    "is_dtls",
    "offer_attributes",
    "remote_dtls",
]

#: The profiles of DTLS-SRTP streams (RFC 5764 8; SAVPF is what browsers offer, RFC 8829).
DTLS_PROTOS: Final = frozenset({"UDP/TLS/RTP/SAVPF", "UDP/TLS/RTP/SAVP"})
WEBRTC_PROTO: Final = "UDP/TLS/RTP/SAVPF"

# a=fingerprint:<hash-func> <fingerprint>  (RFC 8122 5)
_FINGERPRINT: Final = re.compile(
    r"(?P<alg>[A-Za-z0-9-]+) +(?P<value>[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})+)"
)
# ice-char = ALPHA / DIGIT / "+" / "/"  (RFC 8839 5.4: ufrag 4-256 chars, pwd 22-256)
_ICE_CHARS: Final = re.compile(r"[A-Za-z0-9+/]+")
_SETUPS: Final = frozenset({"active", "passive", "actpass", "holdconn"})
#: Hash functions of a=fingerprint we can check the far end's certificate with.
FINGERPRINT_HASHES: Final = frozenset({"sha-1", "sha-256", "sha-384", "sha-512"})


@dataclass(frozen=True, slots=True)
class LocalIce:
    """Our side of one WebRTC leg: ICE credentials and the certificate's fingerprint."""

    ufrag: str
    pwd: str
    fingerprint: str
    """`sha-256 AB:CD:...` as a=fingerprint carries it."""


@dataclass(frozen=True, slots=True)
class RemoteDtls:
    """What the far end's description says of its ICE agent and DTLS endpoint."""

    ufrag: str
    pwd: str
    fingerprint_alg: str
    """Hash function name, lower case (sha-256...)."""
    fingerprint: bytes
    setup: str
    """actpass, active or passive (RFC 4145; holdconn is refused)."""
    mid: str | None
    rtcp_mux: bool

    def we_are_server(self) -> bool:
        """Our DTLS role once this description is agreed: the far end's passive makes us the
        client; active, or actpass in an offer we answer passive, the server."""
        return self.setup != "passive"


def is_dtls(m: MediaDescription) -> bool:
    return m.proto.upper() in DTLS_PROTOS


def _value(sd: SessionDescription, m: MediaDescription, name: str) -> str | None:
    """A media-level attribute, else the session-level one (RFC 8839 and 8122 allow both)."""
    found = m.attribute(name)
    if found is not None:
        return found
    for attr in sd.attributes:
        if attr.name == name:
            return "" if attr.value is None else attr.value
    return None


def remote_dtls(sd: SessionDescription, m: MediaDescription) -> RemoteDtls:
    """The ICE and DTLS parameters of stream `m`; raises SdpParseError when one is missing or
    malformed (such a stream cannot be set up)."""
    ufrag, pwd = _value(sd, m, "ice-ufrag"), _value(sd, m, "ice-pwd")
    if not ufrag or not pwd or not _ICE_CHARS.fullmatch(ufrag) or not _ICE_CHARS.fullmatch(pwd):
        raise SdpParseError("a DTLS-SRTP stream without usable a=ice-ufrag and a=ice-pwd")
    match = _usable_fingerprint(sd, m)
    if match is None:
        raise SdpParseError(
            "a DTLS-SRTP stream without a usable a=fingerprint "
            f"(one of {', '.join(sorted(FINGERPRINT_HASHES))})"
        )
    setup = (_value(sd, m, "setup") or "actpass").strip().lower()
    if setup not in _SETUPS or setup == "holdconn":
        raise SdpParseError(f"a=setup:{setup} cannot start DTLS")
    return RemoteDtls(
        ufrag=ufrag,
        pwd=pwd,
        fingerprint_alg=match.group("alg").lower(),
        fingerprint=bytes.fromhex(match.group("value").replace(":", "")),
        setup=setup,
        mid=m.attribute("mid"),
        rtcp_mux=m.attribute("rtcp-mux") is not None,
    )


def _usable_fingerprint(sd: SessionDescription, m: MediaDescription) -> re.Match[str] | None:
    """The first a=fingerprint with a hash we check (media level first, RFC 8122 5 allows
    several)."""
    for attrs in (m.attributes, sd.attributes):
        for attr in attrs:
            if attr.name != "fingerprint" or not attr.value:
                continue
            match = _FINGERPRINT.fullmatch(attr.value.strip())
            if match is not None and match.group("alg").lower() in FINGERPRINT_HASHES:
                return match
    return None


def _candidate(host: str, port: int) -> Attribute:
    # foundation 1, component 1 (RTP; RTCP is muxed), host preference (RFC 8445 5.1.2.1).
    return Attribute("candidate", f"1 1 udp 2130706431 {host} {port} typ host")


def _common(local: LocalIce, host: str, port: int, setup: str) -> list[Attribute]:
    return [
        Attribute("ice-ufrag", local.ufrag),
        Attribute("ice-pwd", local.pwd),
        Attribute("fingerprint", local.fingerprint),
        Attribute("setup", setup),
        Attribute("rtcp-mux"),
        _candidate(host, port),
        Attribute("end-of-candidates"),
    ]


def answer_attributes(
    sd: SessionDescription, m: MediaDescription, local: LocalIce, remote: RemoteDtls
) -> None:
    """Make `sd` (our answer, `m` its accepted stream) a WebRTC answer: ICE-lite, our
    credentials, fingerprint and role (passive unless the offerer is passive), the offer's mid
    and a BUNDLE group of that one stream when the offer bundled it."""
    conn = sd.connection_for(m)
    host = conn.address if conn is not None else "0.0.0.0"
    setup = "passive" if remote.we_are_server() else "active"
    m.attributes.extend(_common(local, host, m.port, setup))
    if remote.mid is not None:
        m.attributes.insert(0, Attribute("mid", remote.mid))
        sd.attributes.append(Attribute("group", f"BUNDLE {remote.mid}"))
    sd.attributes.append(Attribute("ice-lite"))


def offer_attributes(sd: SessionDescription, m: MediaDescription, local: LocalIce) -> None:
    """Make `sd` (our offer) a WebRTC offer of stream `m` (mid 0, bundled, actpass)."""
    conn = sd.connection_for(m)
    host = conn.address if conn is not None else "0.0.0.0"
    m.proto = WEBRTC_PROTO
    m.attributes.insert(0, Attribute("mid", "0"))
    m.attributes.extend(_common(local, host, m.port, "actpass"))
    sd.attributes.extend([Attribute("group", "BUNDLE 0"), Attribute("ice-lite")])
