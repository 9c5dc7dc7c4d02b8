"""Outbound registration to a provider's registrar (RFC 3261 10.2), sans-IO.

A `Registration` keeps one binding of our Contact under an address of record at a registrar:
it builds the REGISTER requests, answers 401/407 digest challenges (MD5, SHA-256, qop=auth,
through `digest.build_authorization`), refreshes before the binding expires, backs off
exponentially on failure (or as long as a Retry-After says) and removes the binding with
`Expires: 0` when stopped. It owns no socket, transaction or clock: the caller sends what it
returns through a client transaction, feeds back the final response (None when the
transaction timed out or the transport failed) and wakes it at `next_at`. Every method that
needs the time takes `now`.

States: UNREGISTERED (not started, or stopped), REGISTERING (a REGISTER is out, no binding
yet), REGISTERED (a binding until `expires_at`; a refresh may be out), FAILING (the last
attempt failed with `last_status`; the next try is at `next_at`).
"""

from __future__ import annotations

import enum
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from .challenge import DigestClient
from .headers import Headers
from .message import SipRequest, SipResponse
from .uri import NameAddr, SipUri, Via

logger = logging.getLogger(__name__)

__all__ = ["Registration", "RegistrationConfig", "RegistrationState"]


class RegistrationState(enum.Enum):
    UNREGISTERED = "unregistered"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILING = "failing"


@dataclass(frozen=True)
class RegistrationConfig:
    registrar: SipUri
    """The Request-URI of our REGISTERs (`sip:provider.example`)."""
    aor: SipUri
    """The address of record the binding is for (To and From)."""
    contact: NameAddr
    """Where the provider sends calls for the AOR."""
    username: str
    password: str
    expires: int = 3600
    """Binding lifetime we ask for; the registrar may grant less (or raise it by 423)."""
    refresh_margin: float = 5.0
    """Refresh this many seconds before expiry, and never later than 90 % of the lifetime."""
    retry_min: float = 2.0
    """First back-off after a failure; doubled after each further failure..."""
    retry_max: float = 300.0
    """...up to this. A Retry-After from the registrar replaces it (capped at one hour)."""


# Retry-After = delta-seconds [ comment ] *( SEMI retry-param )  (RFC 3261 20.33)
_RETRY_AFTER = re.compile(r"\s*(\d{1,10})")
_MAX_RETRY_AFTER = 3600.0


class Registration:
    """One outbound registration (see the module docstring for the contract)."""

    def __init__(
        self,
        config: RegistrationConfig,
        *,
        new_via: Callable[[], Via],
        call_id: str,
        from_tag: str,
        cnonce: Callable[[], str] = lambda: secrets.token_hex(8),
        realm: str | None = None,
    ) -> None:
        self.config = config
        self.new_via = new_via
        self.call_id = call_id
        self.from_tag = from_tag
        self._digest = DigestClient(config.username, config.password, cnonce, realm)
        self.state = RegistrationState.UNREGISTERED
        self.last_status: int | None = None
        """Final status of the last REGISTER answered (408 for a timeout, 503 for a transport
        failure), None before the first."""
        self.last_reason = ""
        self.next_at: float | None = None
        """When `due` next has a REGISTER to send (a refresh or a retry); None: nothing planned."""
        self.expires_at: float | None = None
        """When the current binding lapses (None: no binding)."""
        self.failures = 0
        """Failed attempts in a row (reset by a success)."""
        self.expires = config.expires
        self._seq = 0
        self._pending: SipRequest | None = None
        self._stopping = False

    def __repr__(self) -> str:
        return f"<Registration {self.config.aor} {self.state.value}>"

    @property
    def in_flight(self) -> bool:
        return self._pending is not None

    # -- driving --------------------------------------------------------------------------------

    def start(self, *, now: float) -> None:
        """Plan the first REGISTER for `now` (`due` returns it)."""
        self._stopping = False
        self.next_at = now

    def refresh(self, *, now: float) -> None:
        """Register again now (the registrar restarted and lost our binding, say); nothing
        when stopped or a REGISTER is out."""
        if self.next_at is not None and self._pending is None:
            self.next_at = min(self.next_at, now)

    def due(self, *, now: float) -> SipRequest | None:
        """The REGISTER to send now, if one is due and none is out."""
        if self._pending is not None or self.next_at is None or now < self.next_at:
            return None
        self.next_at = None
        self._digest.reset()
        if self.state is not RegistrationState.REGISTERED:
            self.state = RegistrationState.REGISTERING
        return self._send(self._register(self.expires))

    def stop(self, *, now: float) -> SipRequest | None:
        """Stop: the un-REGISTER (Expires: 0) to send when a binding may exist, else None."""
        self.next_at = None
        had_binding = self.expires_at is not None and now < self.expires_at
        self.expires_at = None
        self.state = RegistrationState.UNREGISTERED
        self._stopping = True
        self._digest.reset()
        if not had_binding and self._pending is None:
            return None
        return self._send(self._register(0))

    def receive(self, response: SipResponse | None, *, now: float) -> SipRequest | None:
        """The final response to the REGISTER that is out (None: no response came, `transport`
        says whether it could not even be sent). Returns a REGISTER to send at once (the answer
        to a challenge, or a retry with a longer expiry after 423), else None."""
        request, self._pending = self._pending, None
        if request is None:
            return None  # a late answer to an attempt we gave up on
        if response is None:
            self._failed(408, "no response", now, retry_after=None)
            return None
        status = response.status
        if status in (401, 407):
            retry = self._answer_challenge(request, response)
            if retry is not None:
                return self._send(retry)
            self._failed(status, "credentials refused", now, retry_after=None)
            return None
        if self._stopping:
            self.last_status, self.last_reason = status, response.reason
            return None
        if status == 423 and (minimum := _int_header(response, "Min-Expires")) is not None:
            if minimum > self.expires:
                self.expires = minimum
                self._digest.reset()  # a new attempt: its challenge is answered again
                return self._send(self._register(self.expires))
        if 200 <= status < 300:
            self._registered(response, now)
            return None
        self._failed(status, response.reason, now, retry_after=_retry_after(response))
        return None

    # -- internals ------------------------------------------------------------------------------

    def _send(self, request: SipRequest) -> SipRequest:
        self._pending = request
        return request

    def _register(self, expires: int, authorization: tuple[str, str] | None = None) -> SipRequest:
        self._seq += 1
        config = self.config
        headers = Headers()
        headers.add("Via", str(self.new_via()))
        headers.add("Max-Forwards", "70")
        headers.add("From", str(NameAddr(None, config.aor, {"tag": self.from_tag})))
        headers.add("To", str(NameAddr(None, config.aor, {})))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self._seq} REGISTER")
        headers.add("Contact", str(config.contact))
        headers.add("Expires", str(expires))
        if authorization is not None:
            headers.add(*authorization)
        return SipRequest(method="REGISTER", uri=config.registrar, headers=headers)

    def _answer_challenge(self, request: SipRequest, response: SipResponse) -> SipRequest | None:
        authorization = self._digest.authorize(request, response)
        if authorization is None:
            return None
        expires = _int_header(request, "Expires")
        return self._register(self.expires if expires is None else expires, authorization)

    def _registered(self, response: SipResponse, now: float) -> None:
        granted = self._granted(response)
        self.last_status, self.last_reason = response.status, response.reason
        self.failures = 0
        if granted <= 0:
            # The registrar keeps no binding (or none of ours): try again later.
            self._failed(response.status, "no binding granted", now, retry_after=None)
            return None
        self.state = RegistrationState.REGISTERED
        self.expires_at = now + granted
        self.next_at = now + max(1.0, min(granted * 0.9, granted - self.config.refresh_margin))
        return None

    def _granted(self, response: SipResponse) -> int:
        """The lifetime of our binding: its Contact's expires, else the Expires header, else
        what we asked for (RFC 3261 10.2.4)."""
        ours = self.config.contact.uri
        for contact in response.contacts:
            uri = contact.uri
            if isinstance(uri, SipUri) and _same_binding(uri, ours):
                value = contact.params.get("expires")
                if value is not None and value.isdigit():
                    return int(value)
        header = _int_header(response, "Expires")
        return self.expires if header is None else header

    def _failed(self, status: int, reason: str, now: float, *, retry_after: float | None) -> None:
        self.last_status, self.last_reason = status, reason
        if self._stopping:
            return None
        self.failures += 1
        config = self.config
        if retry_after is not None:
            delay = min(retry_after, _MAX_RETRY_AFTER)
        else:
            delay = min(config.retry_max, config.retry_min * 2 ** (self.failures - 1))
        self.state = RegistrationState.FAILING
        if self.expires_at is not None and now >= self.expires_at:
            self.expires_at = None
        self.next_at = now + delay
        logger.info(
            "registration %s failed (%d %s): next try in %.0f s",
            config.aor,
            status,
            reason,
            delay,
        )
        return None


def _same_binding(uri: SipUri, ours: SipUri | object) -> bool:
    return isinstance(ours, SipUri) and (uri.user, uri.host.lower(), uri.port or 5060) == (
        ours.user,
        ours.host.lower(),
        ours.port or 5060,
    )


def _int_header(message: SipRequest | SipResponse, name: str) -> int | None:
    value = message.headers.get(name)
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def _retry_after(response: SipResponse) -> float | None:
    value = response.headers.get("Retry-After")
    match = _RETRY_AFTER.match(value or "")
    return float(match.group(1)) if match else None
