"""BLF on the wire: SUBSCRIBEs for the dialog package reach pbx.blf, its NOTIFYs go out.

The phone authenticates its SUBSCRIBE like its REGISTER (digest, pbx.auth); refreshes and
unsubscribes arrive in the subscription's dialog (the UserAgent hands requests of dialogs that
are no calls to `on_dialog_request`). An extension's line state is read from the switchboard
whenever a call rings, is answered or ends, or presence changes: confirmed while it is in an
answered call, early while its phone rings or its own call rings elsewhere, trying while its
call is placed, else terminated (idle).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Protocol

from telephony.aio import Peer, TaskSet, UserAgent
from telephony.sip import NameAddr, SipRequest, SipUri, make_response

from .auth import Authenticator
from .b2bua import BridgedCall
from .blf import (
    WITHHELD,
    LineState,
    Party,
    SubscribeError,
    Subscription,
    Watchers,
    WatchPolicy,
)
from .callerid import ANONYMOUS
from .events import CallAnswered, CallEnded, CallRinging, EventBus, PresenceChanged

logger = logging.getLogger(__name__)


class _Pbx(Protocol):
    """What BLF reads of the switchboard."""

    ua: UserAgent
    auth: Authenticator
    events: EventBus

    @property
    def active(self) -> Mapping[str, BridgedCall]: ...

    @property
    def extensions(self) -> Mapping[str, object]: ...

    def identity(self, user: str, display: str | None) -> NameAddr: ...


class BlfService:
    def __init__(self, switchboard: _Pbx) -> None:
        self.switchboard = switchboard
        self.ua = switchboard.ua
        self.watchers = Watchers()
        self.policy = WatchPolicy()
        """Who may watch whom (the configuration's BLF groups; none: everyone everyone)."""
        self._peers: dict[tuple[str, str], Peer] = {}
        """Where each subscription's NOTIFYs go (where its SUBSCRIBE came from)."""
        self._tasks = TaskSet("blf")
        self._timers: set[asyncio.TimerHandle] = set()
        for kind in (CallAnswered, CallEnded, PresenceChanged):
            switchboard.events.subscribe(kind, lambda _: self.refresh())
        # A hunt step that ends says so with an empty set before the call is bridged or the
        # next step rings: the next event tells, so a lamp never blinks off on an answer.
        switchboard.events.subscribe(
            CallRinging, lambda event: self.refresh() if event.agents else None
        )

    # -- requests ---------------------------------------------------------------------------

    def on_subscribe(self, request: SipRequest, transaction: object, peer: Peer) -> None:
        """An initial SUBSCRIBE (no To tag)."""
        now = self.ua.loop.time()
        respond = self.ua.endpoint.send_response
        decision = self.switchboard.auth.check(request, peer, now=now)
        if decision.extension is None:
            respond(transaction, make_response(request, decision.status, extra=decision.headers))
            return
        target = request.uri.user if isinstance(request.uri, SipUri) else None
        monitored = target if target in self.switchboard.extensions else None
        try:
            response, sub = self.watchers.subscribe(
                request,
                watcher=decision.extension,
                monitored=monitored,
                contact=self.ua.contact(peer),
                now=now,
                allowed=monitored is None or self.policy.allows(decision.extension, monitored),
            )
        except SubscribeError as exc:
            logger.info("SUBSCRIBE from %s refused: %d %s", decision.extension, exc.status, exc)
            respond(transaction, make_response(request, exc.status, str(exc), extra=exc.headers))
            return
        respond(transaction, response)
        self._peers[sub.key] = peer
        logger.info("BLF: %s watches %s", sub.watcher, sub.monitored)
        self._schedule_expiry(sub)
        state, sub.direction, sub.remote = self.line(sub.monitored)
        self._notify(sub, state)

    def on_dialog_request(self, request: SipRequest, transaction: object, peer: Peer) -> bool:
        """A request in a dialog that is no call: ours when it is a subscription's SUBSCRIBE."""
        if request.method != "SUBSCRIBE" or not self.watchers.has_dialog(request):
            return False
        now = self.ua.loop.time()
        try:
            response, sub = self.watchers.refresh(request, contact=self.ua.contact(peer), now=now)
        except SubscribeError as exc:
            self.ua.endpoint.send_response(
                transaction, make_response(request, exc.status, str(exc), extra=exc.headers)
            )
            return True
        self.ua.endpoint.send_response(transaction, response)
        self._peers[sub.key] = peer
        if sub.ended is None:
            self._schedule_expiry(sub)
        else:
            logger.info("BLF: %s stops watching %s", sub.watcher, sub.monitored)
        # RFC 6665 4.2.1.4: a refresh gets a NOTIFY too (the current state).
        state, _, _ = self.line(sub.monitored)
        self._notify(sub, state)
        return True

    # -- state ------------------------------------------------------------------------------

    def line_state(self, extension: str) -> tuple[LineState, str | None]:
        """What the dialog package says of `extension` now, and the call's direction."""
        state, direction, _ = self.line(extension)
        return state, direction

    def line(self, extension: str) -> tuple[LineState, str | None, Party | None]:
        """The state of `extension`, its call's direction, and the other party."""
        early: tuple[LineState, str | None, Party | None] | None = None
        for bridged in self.switchboard.active.values():
            if bridged.b is not None and extension in bridged.parties:
                if bridged.caller == extension:
                    return LineState.CONFIRMED, "initiator", self._party(bridged.callee)
                return LineState.CONFIRMED, "recipient", self._caller(bridged)
            if extension in bridged.ringing:
                early = (LineState.EARLY, "recipient", self._caller(bridged))
            elif bridged.b is None and bridged.caller == extension and early is None:
                state = LineState.EARLY if bridged.ringing else LineState.TRYING
                early = (state, "initiator", self._party(bridged.callee))
        return early or (LineState.TERMINATED, None, None)

    def _caller(self, bridged: BridgedCall) -> Party:
        """Who calls: as the ringing phone shows it (withheld stays withheld)."""
        if bridged.caller == ANONYMOUS:
            return WITHHELD
        identity = bridged.caller_identity
        return Party(str(identity.uri), identity.display_name or None)

    def _party(self, user: str) -> Party:
        """An extension or a number the monitored extension called."""
        ext = self.switchboard.extensions.get(user)
        display = getattr(ext, "display_name", None) or None
        return Party(str(self.switchboard.identity(user, None).uri), display)

    def refresh(self) -> None:
        """Tell every watcher whose extension changed state (after any call or presence event)."""
        for extension in {s.monitored for s in self.watchers}:
            state, direction, remote = self.line(extension)
            for sub in self.watchers.changed(extension, state, direction, remote):
                self._notify(sub, state)

    # -- sending ----------------------------------------------------------------------------

    def _notify(self, sub: Subscription, state: LineState) -> None:
        peer = self._peers.get(sub.key)
        if peer is None:
            return
        now = self.ua.loop.time()
        notify = self.watchers.notify(
            sub,
            state,
            via=self.ua.endpoint.new_via(peer),
            contact=self.ua.contact(peer),
            entity=str(self.switchboard.identity(sub.monitored, None).uri),
            now=now,
        )
        if sub.ended is not None:
            self._peers.pop(sub.key, None)
        self._tasks.spawn(self._send(sub, notify, peer))

    async def _send(self, sub: Subscription, notify: SipRequest, peer: Peer) -> None:
        response = await self.ua.request(notify, peer)
        if response is None or response.status == 481:
            # RFC 6665 4.2.2: the watcher is gone; so is its subscription.
            logger.info("BLF: %s's subscription to %s dropped", sub.watcher, sub.monitored)
            self.watchers.drop(sub)
            self._peers.pop(sub.key, None)

    def _schedule_expiry(self, sub: Subscription) -> None:
        delay = max(0.0, sub.expires_at - self.ua.loop.time()) + 0.5
        handle = self.ua.loop.call_later(delay, self._expire)
        self._timers.add(handle)

    def _expire(self) -> None:
        self._timers = {
            t for t in self._timers if not t.cancelled() and t.when() > self.ua.loop.time()
        }
        for sub in self.watchers.expire(now=self.ua.loop.time()):
            self._notify(sub, sub.state or LineState.TERMINATED)

    async def shutdown(self) -> None:
        """End every subscription (terminated NOTIFYs, reason noresource) and wait for them."""
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for sub in self.watchers:
            sub.ended = "noresource"
            self.watchers.drop(sub)
            self._notify(sub, sub.state or LineState.TERMINATED)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
