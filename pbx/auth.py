"""Who may use the engine: digest authentication of REGISTER and INVITE, and source-IP bans.

Every failure gets the same answer (a fresh challenge), so a scanner cannot tell a known extension
from an unknown one; each failure is one line in the security log, and too many from one source
IP ban it (the endpoint then drops its packets without answering).

Behind a proxy (deploy/kamailio) every request comes from the proxy's address: banning that
would lock every phone out. For a request from a `trusted_proxies` address the source is the
hop before the proxy, as the proxy's own Via below names it (received= when it differs from
the host there); that source is what a failure counts against and what a ban refuses (with
403, through the proxy, which is never dropped).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from telephony.sip import (
    AuthResult,
    DigestError,
    DigestServer,
    SipError,
    SipRequest,
    SipUri,
    parse_credentials,
)
from telephony.sip.challenge import digest_answer

from .security import AuthFailureBan, log_auth_failure

logger = logging.getLogger(__name__)

Peer = tuple[str, str, int]


@dataclass(frozen=True)
class AuthDecision:
    extension: str | None
    """The authenticated extension, or None when the request must be refused."""
    status: int = 0
    """Status of the refusal (401/407 challenge, 403 identity mismatch)."""
    headers: tuple[tuple[str, str], ...] = ()
    """Challenge headers to send with the refusal."""


class Authenticator:
    def __init__(
        self,
        passwords: Mapping[str, str],
        *,
        realm: str,
        digest: DigestServer,
        ban: AuthFailureBan,
        trusted: Callable[[Peer], str | None] | None = None,
        trusted_proxies: Collection[str] = (),
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.passwords = passwords
        self.realm = realm
        self.digest = digest
        self.ban = ban
        self.trusted = trusted
        """The extension a connection already authenticated speaks for (a browser phone's
        WebSocket opened with a login token), or None: its requests need no digest, but may
        speak for that extension only."""
        self.trusted_proxies = frozenset(trusted_proxies)
        """IP addresses of proxies in front of us: their requests are judged by their source."""
        self.wall = wall
        """Wall-clock time for the nonces' stamps (`now` is this process's loop clock, good for
        bans): a nonce another node issued ages the same on every node."""

    def allows(self, peer: Peer, *, now: float) -> bool:
        """False while the source IP is banned: its packets are dropped unanswered (never a
        trusted proxy's: `check` refuses the banned sources behind it)."""
        if peer[1] in self.trusted_proxies:
            return True
        return not self.ban.is_banned(peer[1], now=now)

    def source(self, request: SipRequest, peer: Peer) -> tuple[str, int]:
        """Where `request` comes from: `peer`, or for a trusted proxy's the hop before it (its
        Via below the proxy's: received= and rport= when the proxy set them)."""
        if peer[1] not in self.trusted_proxies:
            return peer[1], peer[2]
        try:
            vias = request.vias
        except SipError:
            return peer[1], peer[2]
        if len(vias) < 2:
            return peer[1], peer[2]  # the proxy's own request (a probe)
        hop = vias[1]
        host = hop.params.get("received") or hop.host
        rport = hop.params.get("rport")
        port = int(rport) if rport and rport.isdigit() else (hop.port or 5060)
        return host.strip("[]"), port

    def check(self, request: SipRequest, peer: Peer, *, now: float) -> AuthDecision:
        """Authenticate a request; failures get a 401 challenge.

        INVITEs are challenged with 401 too (as a UAS, RFC 3261 22.2), not 407: we are the
        phones' registrar and B2BUA, not a proxy, and pyVoIP 1.6.8 only answers a 401.
        """
        register = request.method == "REGISTER"
        owner = self.trusted(peer) if self.trusted is not None else None
        if owner is not None:
            identity = request.to if register else request.from_
            if isinstance(identity.uri, SipUri) and identity.uri.user == owner:
                return AuthDecision(owner)
            log_auth_failure(peer[1], peer[2], owner, "identity_mismatch", request.method)
            return AuthDecision(None, 403)
        ip, port = self.source(request, peer)
        if ip != peer[1] and self.ban.is_banned(ip, now=now):
            return AuthDecision(None, 403)  # banned behind a proxy: refused, not dropped
        status = 401
        challenge_name = "WWW-Authenticate"
        answer = digest_answer(request)
        if answer is None:
            return self._challenge(status, challenge_name)
        try:
            credentials = parse_credentials(answer)
        except DigestError:
            credentials = None
        result = (
            self.digest.verify(
                credentials,
                method=request.method,
                realm=self.realm,
                now=self.wall(),
                password_lookup=self.passwords.get,
            )
            if credentials is not None
            else AuthResult.MALFORMED
        )
        username = credentials.username if credentials is not None else None
        if result.ok:
            identity = request.to if register else request.from_
            claimed = identity.uri.user if isinstance(identity.uri, SipUri) else None
            if claimed != username:
                # Authenticated, but speaking for someone else: caller-ID spoofing or hijack.
                log_auth_failure(ip, port, username or "", "identity_mismatch", request.method)
                return AuthDecision(None, 403)
            return AuthDecision(username)
        if result.stale:
            return self._challenge(status, challenge_name, stale=True)
        log_auth_failure(ip, port, username or "", result.value, request.method)
        if result.counts_as_failure and self.ban.record_failure(ip, now=now):
            logger.warning("banning %s after repeated authentication failures", ip)
        return self._challenge(status, challenge_name)

    def _challenge(self, status: int, name: str, *, stale: bool = False) -> AuthDecision:
        values = self.digest.challenge(self.realm, now=self.wall(), stale=stale)
        return AuthDecision(None, status, tuple((name, v) for v in values))
