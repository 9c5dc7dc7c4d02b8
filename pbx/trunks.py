"""Provider trunks at run time: registration, qualify, channels and the failover order.

For each `[[trunks]]` entry the `TrunkManager` keeps a `TrunkState`:

- a trunk with `register = true` keeps a binding at the provider's registrar through the
  sans-IO `telephony.sip.registration.Registration` (this module only carries its requests
  over the UserAgent and wakes it on time);
- a trunk with `qualify = S` is pinged with OPTIONS every S seconds: no answer within
  min(S, 5) s marks it down, any answer (even an error status) up again;
- channels in use are the live legs to or from the trunk's signalling address.

`candidates()` gives the trunks that can take a call now, in failover order (priority, then
the file's order): not down, registered when they register, a channel free.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import secrets
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from telephony.aio import Peer, TaskSet, UserAgent
from telephony.aio.addresses import is_ip
from telephony.sip import Headers, NameAddr, SipRequest, SipUri, format_host
from telephony.sip.registration import Registration, RegistrationConfig, RegistrationState

from .routing import Trunk

logger = logging.getLogger(__name__)

__all__ = ["FAILOVER_STATUSES", "TrunkManager", "TrunkState", "fails_over"]

FAILOVER_STATUSES = frozenset({408, 500, 502, 503, 504})
"""Besides any 5xx: the statuses after which a call tries the next trunk (a 486 or 404 is the
called party's answer, which another trunk would only repeat)."""


def fails_over(status: int) -> bool:
    """Whether a call refused with `status` by one trunk is offered to the next."""
    return status in FAILOVER_STATUSES or 500 <= status < 600


@dataclass
class TrunkState:
    trunk: Trunk
    order: int
    """Position in the failover order."""
    peer: Peer | None = None
    """Where requests to the trunk go (resolved at start); None: inbound only."""
    registration: Registration | None = None
    up: bool | None = None
    """By qualify: True answered, False down, None not qualified (or not yet)."""
    last_qualify_at: float | None = None
    rtt: float | None = None
    """Seconds the last answered OPTIONS took."""
    changes: int = 0
    """Times the trunk went down or up by qualify."""
    registrations: int = 0
    """Registration attempts completed (each REGISTER with its challenge answered)."""

    @property
    def registered(self) -> bool:
        reg = self.registration
        return reg is None or reg.state is RegistrationState.REGISTERED

    @property
    def credentials(self) -> tuple[str, str] | None:
        trunk = self.trunk
        return (trunk.username, trunk.secret) if trunk.secret else None


class TrunkManager:
    def __init__(self, ua: UserAgent, trunks: tuple[Trunk, ...] | list[Trunk]) -> None:
        self.ua = ua
        ordered = sorted(enumerate(trunks), key=lambda it: (it[1].priority, it[0]))
        self.states = {t.name: TrunkState(t, order) for order, (_, t) in enumerate(ordered)}
        for state in self.states.values():
            target = state.trunk.signalling
            if target is None:
                continue
            transport = state.trunk.transport
            if is_ip(target[0]) or transport != "udp":
                # Known before start(); UDP host names resolve there. A TLS (or TCP) peer keeps
                # its name: the connection resolves it and TLS checks the certificate for it.
                state.peer = (transport, *target)
        self._tasks = TaskSet("trunk")
        self._wake: dict[str, asyncio.Event] = {}
        self.listeners: list[Callable[[TrunkState], None]] = []
        """Told after each registration attempt (first, refresh, retry) and each change of
        the qualify state (the dashboard, tests)."""

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        for state in self.states.values():
            target = state.trunk.signalling
            if target is not None and state.peer is None:
                try:
                    state.peer = ("udp", await _resolve(target[0]), target[1])
                except OSError as exc:  # the trunk stays unusable; the engine runs on
                    logger.error(
                        "trunk %s: cannot resolve %s: %s", state.trunk.name, target[0], exc
                    )
                    continue
            if state.trunk.register and state.peer is not None:
                state.registration = self._registration(state)
                self._wake[state.trunk.name] = asyncio.Event()
                self._tasks.spawn(self._register_forever(state))
            if state.trunk.qualify and state.peer is not None:
                self._tasks.spawn(self._qualify_forever(state))

    async def stop(self, timeout: float = 2.0) -> None:
        """Stop pinging and refreshing; remove our bindings (un-REGISTER), `timeout` s at most."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        unregistering = [
            self._unregister(state) for state in self.states.values() if state.registration
        ]
        if unregistering:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*unregistering), timeout)

    # -- what the switchboard asks ----------------------------------------------------------------

    def channels_in_use(self, state: TrunkState) -> int:
        if state.peer is None:
            return 0
        _, host, port = state.peer
        return sum(1 for call in self.ua.calls.values() if call.peer[1:] == (host, port))

    def available(self, state: TrunkState, *, extra: int = 0) -> bool:
        """Whether the trunk can take one more call now (`extra`: legs about to be placed)."""
        channels = state.trunk.channels
        return (
            state.up is not False
            and state.registered
            and (not channels or self.channels_in_use(state) + extra < channels)
        )

    def candidates(self, name: str = "") -> list[TrunkState]:
        """Trunks that can place a call now, in failover order (only `name` when given)."""
        return [
            s
            for s in sorted(self.states.values(), key=lambda s: s.order)
            if (not name or s.trunk.name == name) and s.peer is not None and self.available(s)
        ]

    def of_peer(self, peer: Peer) -> TrunkState | None:
        """The trunk whose signalling address `peer` is (a provider's proxy calling us)."""
        for state in self.states.values():
            if state.peer is not None and state.peer[1:] == peer[1:] and state.trunk.register:
                return state
        return None

    def snapshot(self) -> list[dict[str, Any]]:
        """Each trunk's state as the API and the dashboard show it."""
        now = self.ua.loop.time()
        return [self._describe(s, now) for s in sorted(self.states.values(), key=lambda s: s.order)]

    def _describe(self, state: TrunkState, now: float) -> dict[str, Any]:
        trunk, reg = state.trunk, state.registration
        registration: dict[str, Any] | None = None
        if reg is not None:
            registration = {
                "state": reg.state.value,
                "last_status": reg.last_status,
                "last_reason": reg.last_reason or None,
                "next_try_in": None
                if reg.next_at is None or reg.state is RegistrationState.REGISTERED
                else round(max(0.0, reg.next_at - now), 1),
                "expires_in": None
                if reg.expires_at is None
                else round(max(0.0, reg.expires_at - now), 1),
                "failures": reg.failures,
            }
        return {
            "name": trunk.name,
            "priority": trunk.priority,
            "order": state.order,
            "address": f"{state.peer[1]}:{state.peer[2]}" if state.peer else None,
            "registration": registration,
            "qualify": None
            if not trunk.qualify
            else {
                "status": "unknown" if state.up is None else ("up" if state.up else "down"),
                "rtt_ms": None if state.rtt is None else round(state.rtt * 1000, 1),
                "interval": trunk.qualify,
            },
            "channels": trunk.channels or None,
            "channels_in_use": self.channels_in_use(state),
            "available": state.peer is not None and self.available(state),
        }

    # -- registration -----------------------------------------------------------------------------

    def _registration(self, state: TrunkState) -> Registration:
        trunk = state.trunk
        assert trunk.registrar is not None and trunk.secret is not None
        domain = trunk.sip_domain
        endpoint = self.ua.endpoint
        registrar = SipUri(scheme="sip", host=domain, port=_port_if(trunk, domain))
        aor = SipUri(scheme="sip", user=trunk.username, host=domain)
        peer = state.peer
        assert peer is not None
        # The UserAgent's own Contact (the address the provider can reach), with our account.
        contact_uri = self._own_uri(trunk.username, peer)
        config = RegistrationConfig(
            registrar=registrar,
            aor=aor,
            contact=NameAddr(None, contact_uri, {}),
            username=trunk.username,
            password=trunk.secret,
            expires=trunk.expires,
        )
        return Registration(
            config,
            new_via=functools.partial(endpoint.new_via, peer),
            call_id=f"{uuid.uuid4().hex}@{endpoint.advertised_host(peer)}",
            from_tag=secrets.token_hex(6),
            realm=trunk.realm,
        )

    async def _register_forever(self, state: TrunkState) -> None:
        reg, peer = state.registration, state.peer
        assert reg is not None and peer is not None
        loop = self.ua.loop
        wake = self._wake[state.trunk.name]
        reg.start(now=loop.time())
        while True:
            request = reg.due(now=loop.time())
            exchanged = request is not None
            while request is not None:
                response = await self.ua.request(request, peer)
                request = reg.receive(response, now=loop.time())
            if exchanged:
                state.registrations += 1
                self._changed(state)
            delay = None if reg.next_at is None else max(0.0, reg.next_at - loop.time())
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), delay)

    async def _unregister(self, state: TrunkState) -> None:
        reg, peer = state.registration, state.peer
        assert reg is not None and peer is not None
        loop = self.ua.loop
        request = reg.stop(now=loop.time())
        while request is not None:
            response = await self.ua.request(request, peer)
            request = reg.receive(response, now=loop.time())
        logger.info("trunk %s: unregistered (%s)", state.trunk.name, reg.last_status)

    # -- qualify ----------------------------------------------------------------------------------

    async def _qualify_forever(self, state: TrunkState) -> None:
        interval = state.trunk.qualify
        while True:
            await self.qualify(state, timeout=min(interval, 5.0))
            await asyncio.sleep(interval)

    async def qualify(self, state: TrunkState, *, timeout: float) -> bool:
        """Ping the trunk with OPTIONS once; marks it up or down. True when it answered."""
        assert state.peer is not None
        loop = self.ua.loop
        started = loop.time()
        try:
            response = await asyncio.wait_for(
                self.ua.request(self._options(state), state.peer), timeout
            )
        except TimeoutError:
            response = None
        state.last_qualify_at = loop.time()
        up = response is not None
        if up:
            state.rtt = loop.time() - started
        if up != state.up:
            if state.up is not None or not up:
                state.changes += 1
                logger.warning("trunk %s is %s (qualify)", state.trunk.name, "up" if up else "DOWN")
            came_back = state.up is False and up
            state.up = up
            if came_back and state.registration is not None:
                # A provider back from an outage may have lost our binding: register now.
                state.registration.refresh(now=loop.time())
                self._wake[state.trunk.name].set()
            self._changed(state)
        return up

    def _options(self, state: TrunkState) -> SipRequest:
        trunk, endpoint = state.trunk, self.ua.endpoint
        domain = trunk.sip_domain
        uri = SipUri(scheme="sip", host=domain, port=_port_if(trunk, domain))
        peer = state.peer
        assert peer is not None
        me = self._own_uri(trunk.username or "qualify", peer)
        headers = Headers()
        headers.add("Via", str(endpoint.new_via(peer)))
        headers.add("Max-Forwards", "70")
        headers.add("From", str(NameAddr(None, me, {"tag": secrets.token_hex(6)})))
        headers.add("To", str(NameAddr(None, uri, {})))
        headers.add("Call-ID", f"{uuid.uuid4().hex}@{endpoint.advertised_host(peer)}")
        headers.add("CSeq", "1 OPTIONS")
        headers.add("Accept", "application/sdp")
        return SipRequest(method="OPTIONS", uri=uri, headers=headers)

    def describe(self, state: TrunkState) -> dict[str, Any]:
        """One trunk's row of `snapshot`."""
        return self._describe(state, self.ua.loop.time())

    def _own_uri(self, user: str, peer: Peer) -> SipUri:
        """The UserAgent's own Contact URI for `peer` (the address it can reach), with `user`."""
        uri = self.ua.contact(peer).uri
        assert isinstance(uri, SipUri)
        return dataclasses.replace(uri, user=user)

    def _changed(self, state: TrunkState) -> None:
        for listener in list(self.listeners):
            try:
                listener(state)
            except Exception:
                logger.exception("trunk %s: change listener failed", state.trunk.name)

    def route_uri(self, state: TrunkState, number: str) -> SipUri:
        """The Request-URI of a call to `number` through the trunk."""
        trunk = state.trunk
        params: dict[str, str | None] = (
            {} if trunk.transport == "udp" else {"transport": trunk.transport}
        )
        if trunk.register or trunk.registrar is not None:
            domain = trunk.sip_domain
            return SipUri(
                scheme="sip",
                user=number,
                host=format_host(domain),
                port=_port_if(trunk, domain),
                params=params,
            )
        assert state.peer is not None
        host, port = state.peer[1], state.peer[2]
        return SipUri(scheme="sip", user=number, host=format_host(host), port=port, params=params)


def _port_if(trunk: Trunk, domain: str) -> int | None:
    """The registrar's port in URIs on its host (a domain of its own needs none)."""
    if trunk.registrar is not None and domain == trunk.registrar[0] and trunk.registrar[1] != 5060:
        return trunk.registrar[1]
    return None


async def _resolve(host: str) -> str:
    if is_ip(host):
        return host
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    return str(infos[0][4][0])
