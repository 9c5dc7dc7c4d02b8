"""One leg's SRTP/SRTCP contexts, keyed by what SDES agreed (telephony.sdp.crypto, RFC 4568).

The cipher suites are libsrtp's, through pylibsrtp (a maintained binding; we do not write AES or
HMAC code). Sans-IO: bytes in, bytes out. A leg has two directions: one protects what we send
with our own master key (the one in our a=crypto), one unprotects what the far end sends with
its key (the one in its a=crypto).
"""

from __future__ import annotations

from typing import Final

import pylibsrtp

__all__ = ["PROFILES", "SrtpContext"]

#: libsrtp's profile for each SDES suite we speak (SRTCP keeps an 80-bit tag with both,
#: RFC 4568 6.2.2).
PROFILES: Final[dict[str, int]] = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}


class SrtpContext:
    """SRTP and SRTCP for one leg, both directions (libsrtp sessions with any-SSRC templates:
    the relayed stream, our prompts and the far end's SSRC changes all pass). `suite` names one
    of PROFILES; `local` is our master key || salt, `remote` the far end's."""

    def __init__(self, suite: str, local: bytes, remote: bytes) -> None:
        self.suite, self._local, self._remote = suite, local, remote
        self._tx = _session(suite, local, outbound=True)
        self._rx = _session(suite, remote, outbound=False)
        self.rejected = 0
        """RTP packets that failed authentication or replay checks (dropped)."""
        self.rejected_rtcp = 0
        """RTCP packets that failed them (dropped)."""

    def same_keys(self, suite: str, local: bytes, remote: bytes) -> bool:
        return (suite, local, remote) == (self.suite, self._local, self._remote)

    def rekey(self, suite: str, local: bytes, remote: bytes) -> None:
        """New keys from a re-INVITE: only a direction whose key changed starts afresh (our
        own stream keeps its SRTP indices when our key stays)."""
        if (suite, local) != (self.suite, self._local):
            self._tx = _session(suite, local, outbound=True)
        if (suite, remote) != (self.suite, self._remote):
            self._rx = _session(suite, remote, outbound=False)
        self.suite, self._local, self._remote = suite, local, remote

    def protect(self, packet: bytes) -> bytes | None:
        """The SRTP packet, or None for a packet libsrtp refuses (too short)."""
        try:
            return self._tx.protect(packet)
        except pylibsrtp.Error:
            return None

    def protect_rtcp(self, packet: bytes) -> bytes | None:
        try:
            return self._tx.protect_rtcp(packet)
        except pylibsrtp.Error:
            return None

    def unprotect(self, packet: bytes) -> bytes | None:
        """The plain RTP packet, or None when it fails authentication or is a replay."""
        try:
            return self._rx.unprotect(packet)
        except pylibsrtp.Error:
            self.rejected += 1
            return None

    def unprotect_rtcp(self, packet: bytes) -> bytes | None:
        try:
            return self._rx.unprotect_rtcp(packet)
        except pylibsrtp.Error:
            self.rejected_rtcp += 1
            return None


def _session(suite: str, key: bytes, *, outbound: bool) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(
        key=key,
        ssrc_type=(
            pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
        ),
        srtp_profile=PROFILES[suite],
    )
    if outbound:
        # Our own stream may reuse a sequence number the relayed one used (continuing it
        # after a prompt): libsrtp would refuse that as a replay of our own packet.
        policy.allow_repeat_tx = True
    return pylibsrtp.Session(policy=policy)
