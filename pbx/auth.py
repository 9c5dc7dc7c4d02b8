"""Who may use the engine: digest authentication of REGISTER and INVITE, and source-IP bans.

Every failure gets the same answer (a fresh challenge), so a scanner cannot tell a known extension
from an unknown one; each failure is one line in the security log, and too many from one source
IP ban it (the endpoint then drops its packets without answering).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from telephony.sip import (
    AuthResult,
    DigestError,
    DigestServer,
    SipRequest,
    SipUri,
    parse_credentials,
)

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
    ) -> None:
        self.passwords = passwords
        self.realm = realm
        self.digest = digest
        self.ban = ban
        self.trusted = trusted
        """The extension a connection already authenticated speaks for (a browser phone's
        WebSocket opened with a login token), or None: its requests need no digest, but may
        speak for that extension only."""

    def allows(self, peer: Peer, *, now: float) -> bool:
        """False while the source IP is banned: its packets are dropped unanswered."""
        return not self.ban.is_banned(peer[1], now=now)

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
        status = 401
        challenge_name = "WWW-Authenticate"
        answer = request.headers.get("Proxy-Authorization") or request.headers.get("Authorization")
        if answer is None or not answer.lstrip().lower().startswith("digest"):
            return self._challenge(status, challenge_name, now=now)
        try:
            credentials = parse_credentials(answer)
        except DigestError:
            credentials = None
        result = (
            self.digest.verify(
                credentials,
                method=request.method,
                realm=self.realm,
                now=now,
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
                log_auth_failure(
                    peer[1], peer[2], username or "", "identity_mismatch", request.method
                )
                return AuthDecision(None, 403)
            return AuthDecision(username)
        if result.stale:
            return self._challenge(status, challenge_name, now=now, stale=True)
        log_auth_failure(peer[1], peer[2], username or "", result.value, request.method)
        if result.counts_as_failure and self.ban.record_failure(peer[1], now=now):
            logger.warning("banning %s after repeated authentication failures", peer[1])
        return self._challenge(status, challenge_name, now=now)

    def _challenge(
        self, status: int, name: str, *, now: float, stale: bool = False
    ) -> AuthDecision:
        values = self.digest.challenge(self.realm, now=now, stale=stale)
        return AuthDecision(None, status, tuple((name, v) for v in values))
