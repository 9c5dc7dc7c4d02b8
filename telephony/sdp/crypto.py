"""SDES key exchange in SDP (RFC 4568): the a=crypto attribute and the keys a leg agreed.

Keys never reach a log line: `CryptoAttribute` and `SrtpKeys` print the suite and tag only. The
SRTP transform itself is telephony.rtp.srtp's (libsrtp).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass, field
from typing import Final

__all__ = ["KEY_LENGTH", "SUITES", "CryptoAttribute", "SrtpError", "SrtpKeys", "new_master_key"]

#: The suites we offer and accept, in our order of preference (RFC 4568 6.2.1, 6.2.2).
SUITES: Final[tuple[str, ...]] = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
#: Master key (16) + master salt (14) of both suites.
KEY_LENGTH: Final = 30

# a=crypto:<tag> 1*WSP <crypto-suite> 1*WSP <key-params> *(1*WSP <session-param>)
_CRYPTO: Final = re.compile(r"(?P<tag>[0-9]{1,9})\s+(?P<suite>\S+)\s+(?P<keys>\S+)(?P<params>.*)")
# inline:<key||salt>["|" lifetime]["|" MKI ":" length]
_INLINE: Final = re.compile(
    r"inline:(?P<key>[A-Za-z0-9+/=]+)"
    r"(?:\|(?P<lifetime>(?:2\^)?[0-9]+))?"
    r"(?:\|(?P<mki>[0-9]+):(?P<mki_len>[0-9]+))?"
)


class SrtpError(ValueError):
    """A crypto attribute we cannot use, or a packet that fails authentication."""


def new_master_key() -> bytes:
    """A fresh random master key and salt for one direction of one leg."""
    return secrets.token_bytes(KEY_LENGTH)


@dataclass(frozen=True)
class CryptoAttribute:
    """One a=crypto line (RFC 4568 9.1) with a single inline key and no MKI."""

    tag: int
    suite: str
    key: bytes = field(repr=False)
    """Master key || master salt (30 bytes)."""

    @classmethod
    def parse(cls, value: str) -> CryptoAttribute:
        """The value after ``a=crypto:``; SrtpError for a suite we do not speak, several keys,
        an MKI, a bad key length or a session parameter that changes the transform (we speak
        none: UNENCRYPTED_SRTP and the like would weaken the call)."""
        m = _CRYPTO.fullmatch(value.strip())
        if m is None:
            raise SrtpError("malformed a=crypto")
        suite = m.group("suite").upper()
        if suite not in SUITES:
            raise SrtpError(f"crypto suite {suite[:40]} not supported")
        keys = m.group("keys")
        if ";" in keys:
            raise SrtpError("several master keys in one a=crypto are not supported")
        inline = _INLINE.fullmatch(keys)
        if inline is None:
            raise SrtpError("a=crypto key parameter is not inline:<key>")
        if inline.group("mki") is not None:
            raise SrtpError("MKI is not supported")
        if m.group("params").strip():
            raise SrtpError("a=crypto session parameters are not supported")
        try:
            key = base64.b64decode(inline.group("key"), validate=True)
        except (binascii.Error, ValueError):
            raise SrtpError("a=crypto key is not base64") from None
        if len(key) != KEY_LENGTH:
            raise SrtpError(f"a=crypto key is {len(key)} bytes, {KEY_LENGTH} expected")
        return cls(int(m.group("tag")), suite, key)

    def value(self) -> str:
        """What follows ``a=crypto:`` (carries the key: goes into SDP, never into a log)."""
        return f"{self.tag} {self.suite} inline:{base64.b64encode(self.key).decode('ascii')}"

    def __str__(self) -> str:
        return f"crypto {self.tag} {self.suite}"


@dataclass(frozen=True)
class SrtpKeys:
    """What SDES agreed for one leg: the suite and the key of each direction."""

    suite: str
    local: bytes = field(repr=False)
    """Our master key: protects what we send."""
    remote: bytes = field(repr=False)
    """The far end's master key: unprotects what it sends."""
