"""Keepalives to registered phones: an OPTIONS ping to every binding at an interval.

A phone behind a NAT is reachable only while the NAT keeps the mapping its REGISTER opened;
UDP mappings often last 30 s or less, far shorter than a registration. A ping from the engine
through that mapping every `interval` seconds keeps it open (RFC 5626 section 3.5 leaves the
keepalive to the flow; OPTIONS is what every phone answers, CRLF is only defined on streams,
and the engine answers a phone's own double-CRLF with CRLF, see telephony.aio.endpoint).

Any response (200, 404, 405... even a challenge) proves the phone alive. A ping that times out
(Timer F) or whose TCP connection fails marks the binding unreachable: the registration is
kept (the phone may come back before it expires, and a REGISTER or an answered ping revives
it) but the phone is not rung, so a caller does not wait out a ring timeout on a dead phone.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import uuid

from pbx import Binding, Registrar
from telephony.aio import UserAgent
from telephony.sip import Headers, SipRequest, SipUri

logger = logging.getLogger(__name__)


def options_ping(ua: UserAgent, binding: Binding) -> SipRequest:
    """An out-of-dialog OPTIONS to the binding's contact, sent to where its REGISTER came from."""
    endpoint = ua.endpoint
    target = binding.contact.uri
    host = endpoint.advertised_host(binding.peer)
    request = SipRequest(method="OPTIONS", uri=target, headers=Headers(), body=b"")
    request.headers.add("Via", str(endpoint.new_via(binding.peer)))
    request.headers.add("Max-Forwards", "70")
    for name, value in binding.route_headers():  # through the proxy it registered through
        request.headers.add(name, value)
    request.headers.add("From", f"<sip:keepalive@{host}>;tag={secrets.token_hex(6)}")
    user = target.user if isinstance(target, SipUri) and target.user else binding.extension
    request.headers.add("To", f"<sip:{user}@{host}>")
    request.headers.add("Call-ID", f"{uuid.uuid4().hex}@{host}")
    request.headers.add("CSeq", "1 OPTIONS")
    request.headers.add("Accept", "application/sdp")
    return request


class Keepalives:
    """Pings every registered binding each `interval` seconds; one ping in flight per binding."""

    def __init__(self, ua: UserAgent, registrar: Registrar, *, interval: float) -> None:
        self.ua = ua
        self.registrar = registrar
        self.interval = interval
        self._in_flight: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.sent = 0
        """Pings sent (for metrics and tests)."""
        self.unanswered = 0
        """Pings that timed out or failed."""

    async def run_forever(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.interval)
                self.ping_all()
        finally:
            for task in self._in_flight.values():
                task.cancel()

    def ping_all(self) -> None:
        """Start a ping to each binding that has none in flight."""
        for binding in self.registrar.registered(now=self.ua.loop.time()):
            key = (binding.extension, str(binding.contact.uri))
            if key in self._in_flight:
                continue
            task = self.ua.loop.create_task(self._ping(binding), name=f"keepalive-{key[0]}")
            self._in_flight[key] = task
            task.add_done_callback(functools.partial(self._landed, key))

    def _landed(self, key: tuple[str, str], _: asyncio.Task[None]) -> None:
        self._in_flight.pop(key, None)

    async def _ping(self, binding: Binding) -> None:
        self.sent += 1
        try:
            response = await self.ua.request(options_ping(self.ua, binding), binding.peer)
        except Exception as exc:  # e.g. an address the transport refuses: unreachable
            logger.info("keepalive to %s failed: %s", binding.extension, exc)
            response = None
        alive = response is not None
        if not alive:
            self.unanswered += 1
        if alive != binding.reachable:
            binding.reachable = alive
            logger.warning(
                "registrar: %s at %s:%d %s",
                binding.extension,
                binding.peer[1],
                binding.peer[2],
                "reachable again" if alive else "unreachable (keepalive unanswered)",
            )


__all__ = ["Keepalives", "options_ping"]
