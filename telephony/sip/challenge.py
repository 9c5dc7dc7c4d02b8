"""Digest challenges on messages (RFC 3261 22.2-22.3, RFC 8760): answering them as a client,
and finding a request's answer as a server (`digest_answer`).

`DigestClient` holds one set of credentials and turns a 401 or 407 to a request into the
header that answers it (`Authorization` or `Proxy-Authorization`), once per challenger: a
second challenge for the same realm (registrars draw a new nonce each time) that does not say
`stale=true` means the credentials were refused, and is not answered again until `reset`.
MD5 and SHA-256 (and SHA-512-256), qop=auth preferred; the arithmetic is
`digest.build_authorization`'s. Used by the outbound registration and the INVITE session.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from .digest import DigestError, build_authorization, choose_challenge
from .message import SipRequest, SipResponse

logger = logging.getLogger(__name__)

__all__ = ["DigestClient", "digest_answer"]


def digest_answer(request: SipRequest) -> str | None:
    """The request's digest answer to a challenge (Proxy-Authorization, else Authorization),
    if it carries one."""
    answer = request.headers.get("Proxy-Authorization") or request.headers.get("Authorization")
    if answer is None or not answer.lstrip().lower().startswith("digest"):
        return None
    return answer


@dataclass
class DigestClient:
    username: str
    password: str
    cnonce: Callable[[], str] = field(default=lambda: secrets.token_hex(8), repr=False)
    realm: str | None = None
    """When set, challenges of any other realm are not answered."""
    _answered: set[tuple[int, str]] = field(default_factory=set, repr=False)

    def reset(self) -> None:
        """Forget the challenges answered (a new attempt may answer them again)."""
        self._answered.clear()

    def authorize(self, request: SipRequest, response: SipResponse) -> tuple[str, str] | None:
        """The header answering the challenge of `response` (401 or 407) to `request`, or None
        when it cannot or must not be answered (no digest challenge we know, or one we answered
        already: wrong credentials)."""
        if response.status not in (401, 407):
            return None
        challenge_name, answer_name = (
            ("WWW-Authenticate", "Authorization")
            if response.status == 401
            else ("Proxy-Authenticate", "Proxy-Authorization")
        )
        try:
            challenge = choose_challenge(response.headers.get_all(challenge_name))
        except DigestError as exc:
            logger.info("%s %s: %s", request.method, request.uri, exc)
            return None
        if self.realm is not None and challenge.realm != self.realm:
            logger.info("%s %s: challenge of realm %r not answered", request.method, request.uri,
                        challenge.realm[:64])  # fmt: skip
            return None
        key = (response.status, challenge.realm)
        if key in self._answered and not challenge.stale:
            return None
        self._answered.add(key)
        value = build_authorization(
            challenge,
            username=self.username,
            password=self.password,
            method=request.method,
            uri=str(request.uri),
            cnonce=self.cnonce(),
            body=request.body,
        )
        return answer_name, value
