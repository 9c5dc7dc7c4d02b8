"""The PBX: registrations and calls between extensions, on top of the telephony UserAgent."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import re
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from telephony.aio import Call, LegState, MediaError, Peer, TaskSet, UserAgent
from telephony.call import Answered, Ended
from telephony.call.session import ANSWERED_ELSEWHERE, ReferReceived, Replaces
from telephony.media import ToneSource, WavSource
from telephony.numbers import NumberError
from telephony.sip import NameAddr, SipRequest, SipUri, format_host, make_response
from telephony.sip.challenge import digest_answer

from .acd import QueueDesk
from .auth import Authenticator
from .b2bua import (
    FALLBACK_GRACE,
    ActiveCalls,
    BridgedCall,
    CallSummary,
    HuntStep,
    ParkRequest,
    Target,
    TransferRequest,
    ringback,
)
from .blf_service import BlfService
from .booking import AgentBookings
from .callerid import ANONYMOUS, CallerId, inbound_caller
from .events import (
    CallAnswered,
    CallEnded,
    CallPickedUp,
    CallRinging,
    CallStarted,
    CallTransferred,
    EventBus,
    MonitorChanged,
    PresenceChanged,
)
from .forwarding import (
    Forward,
    ForwardCode,
    Forwarding,
    Refuse,
    apply_code,
    decide,
    parse_forward_code,
)
from .hunt import STRATEGIES, Hunt
from .monitor import (
    MonitorError,
    MonitorMode,
    MonitorSession,
    MonitorSettings,
    parse_monitor,
)
from .parking import (
    DEFAULT_PARK_TIMEOUT,
    PARK_EXTENSION,
    FeatureDigits,
    ParkingLot,
    announcement,
)
from .pickup import Pickup, PickupGroups, RingingCall, parse_pickup
from .presence import AgentState, Presence
from .queue import QueueConfig, parse_queue_code
from .registrar import Binding, Registrar, RegistrationError
from .routing import Did, RingGroup, Trunk
from .seats import SEAT_CODE, SEAT_RING_SECONDS, SeatError, Seats
from .security import log_auth_failure
from .trunks import TrunkManager, fails_over

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Extension:
    number: str
    display_name: str
    role: str
    max_calls: int = 1
    """Simultaneous calls before the extension counts as busy."""
    team: tuple[str, ...] = ()
    """A supervisor's agents: the extensions this one may listen to, whisper to, barge in on."""
    session_timers: bool = True
    """RFC 4028 session timers on the calls of this extension's phone, both ways."""
    srtp: str = "off"
    """SRTP policy of this phone's legs (off, optional, required)."""
    forwarding: Forwarding = field(default_factory=Forwarding)
    """DND and call forwarding at start-up (the configuration's); phones and the API change
    the switchboard's copy (`Switchboard.forwarding`)."""


@dataclass(frozen=True)
class Routing:
    """Trunks, DIDs and ring groups (empty for a PBX of extensions only)."""

    trunks: tuple[Trunk, ...] = ()
    dids: tuple[Did, ...] = ()
    ring_groups: tuple[RingGroup, ...] = ()
    queues: tuple[QueueConfig, ...] = ()


# Feature codes an agent dials (the engine answers, beeps, hangs up).
FEATURE_CODES = {"*50": True, "*51": False}  # -> away
_BEEP = (880.0,)
# Refused or empty pickup / monitor: a fast busy (reorder) tone, then BYE.
_REORDER = (480.0, 620.0)

# What an external number looks like: 7-15 digits, optionally with a leading +.
_EXTERNAL = re.compile(r"^\+?[0-9]{7,15}$")

IvrHandler = Callable[[Call, Did, CallSummary], Awaitable[None]]
_T = TypeVar("_T")

STOP_GRACE = 5.0
"""Seconds a stop gives the calls it hung up to end by themselves (a CANCEL's 487, a BYE's
200) before it journals those still up itself and cancels their tasks."""
END_WRITE_TIMEOUT = 30.0
"""Seconds a stop waits for the ends of calls being written (the journal's rows) before the
database closes under them: never cancelled, each write is the call's only record."""


class Switchboard:
    """Routes REGISTER to the registrar and INVITEs to extensions, ring groups and trunks."""

    def __init__(
        self,
        ua: UserAgent,
        *,
        extensions: dict[str, Extension],
        registrar: Registrar,
        authenticator: Authenticator,
        ring_timeout: float,
        presence: Presence,
        routing: Routing | None = None,
        pickup_groups: PickupGroups | None = None,
        monitor: MonitorSettings | None = None,
        music_on_hold: Path | None = None,
    ) -> None:
        self.ua = ua
        self.extensions = extensions
        self.registrar = registrar
        self.auth = authenticator
        self.ring_timeout = ring_timeout
        self.presence = presence
        routing = routing or Routing()
        self.trunks = {t.name: t for t in routing.trunks}
        self.providers = TrunkManager(ua, routing.trunks)
        """Registration, qualify, channels and failover order of the trunks (started by the
        composition root: `await providers.start()`)."""
        self.dids = {d.number: d for d in routing.dids}
        self.groups = {g.name: g for g in routing.ring_groups}
        self._strategies = {g.name: STRATEGIES[g.strategy]() for g in routing.ring_groups}
        self.events = EventBus()
        """What happens here, typed (pbx.events): calls started, ringing, answered, picked up,
        ended; presence; monitor sessions. The journal, recordings, dashboard and campaigns
        subscribe."""
        presence.on_change = self._presence_changed
        self._wrap_up_timers: dict[str, asyncio.TimerHandle] = {}
        """Per agent in wrap-up: the timer that announces its end (Presence is a pure table:
        the end of a wrap-up is a time, not an event, until this tells the listeners)."""
        self.first_for: Callable[[str], Awaitable[str | None]] | None = None
        """Asked the caller's number of an inbound call to a ring group: the extension that
        rings alone first (the contact's responsible manager, when a member and free), or
        None for the group's own order."""
        self.outbound_check: Callable[[str, str], Awaitable[str | None]] | None = None
        """Asked (extension, number) before an agent's own call to an external number goes out:
        a reason to refuse it (403: a DNC list, calling hours), or None to let it through."""
        self.on_ivr: IvrHandler | None = None
        """Serves DIDs routed to `ivr:FLOW` (answers, runs the flow, may call transfer());
        it concludes the call's summary itself unless transfer() bridged the call."""
        self.active = ActiveCalls()
        """Bridged calls in progress by the caller leg's Call-ID."""
        self.pickup_groups = pickup_groups or PickupGroups()
        self.monitor_settings = monitor or MonitorSettings()
        self.monitors: dict[int, MonitorSession] = {}
        """Monitor sessions in progress by session id."""
        self._session_ids = itertools.count(1)
        self._tasks = TaskSet("call")
        self._ending = TaskSet("call-end")
        """Ends of calls being written (CallEnded's handlers: the journal): a stop waits for
        them and never cancels one."""
        self._open: dict[str, CallSummary] = {}
        """The calls announced (their rows opened) whose end is not yet being written, by
        Call-ID: what a stop journals itself when their tasks outlive its grace."""
        self._stopped: set[str] = set()
        """Calls the stop journaled itself: a task that ends one later writes nothing."""
        self.stop_grace = STOP_GRACE
        self.music_on_hold = music_on_hold
        self.bookings: AgentBookings | None = None
        """Agents claimed across nodes before a call rings them (pbx.booking; the composition
        root sets a shared store on nodes behind a proxy); None: this node's count alone."""
        """Looped to a party whose call the other side holds."""
        self.queues = QueueDesk(self, routing.queues)
        """The waiting queues (ACD): DIDs and IVR transfers to `queue:NAME`."""
        self.events.subscribe(PresenceChanged, lambda _: self.queues.wake())
        self._held: list[str] = []
        """Extensions held busy by hold()."""
        self.forwarding: dict[str, Forwarding] = {}
        """DND and forwarding of each extension now (set_forwarding changes it)."""
        self.on_forwarding: Callable[[str, Forwarding], None] | None = None
        """Told every change a phone or the API makes (the engine stores it for every node)."""
        for number, ext in extensions.items():
            self.forwarding[number] = ext.forwarding
            if ext.forwarding.dnd:
                presence.set_dnd(number, True, now=ua.loop.time())
        self.parking = ParkingLot()
        """Parked calls by slot (`park`; *71SLOT or the slot number retrieves)."""
        self.park_timeout = DEFAULT_PARK_TIMEOUT
        """Seconds before a parked call rings its parker back."""
        self.seats: Seats[Call] = Seats()
        """Agents' nailed-up lines (*55): the dialer bridges a person to one with no ringing."""
        self.park_extension = PARK_EXTENSION
        """A phone's blind transfer (REFER) here parks the call (not an extension)."""
        self.speak: Callable[[str], Awaitable[Path]] | None = None
        """Makes a WAV of a text (espeak-ng): the slot told to whoever parks a call."""
        self._park_keys: weakref.WeakKeyDictionary[BridgedCall, FeatureDigits] = (
            weakref.WeakKeyDictionary()
        )
        """What the answered party of each call typed towards #72."""
        self._retrievals: dict[str, asyncio.Future[tuple[Call, str]]] = {}
        """What each parked call waits for (by the caller leg's Call-ID): a retriever's leg."""
        self.blf = BlfService(self)
        """BLF: SUBSCRIBEs for the dialog event package, NOTIFYs of the extensions' states."""
        ua.on_incoming = self._on_incoming
        ua.on_request = self._on_request
        ua.on_dialog_request = self.blf.on_dialog_request
        ua.session_timers_for = self._session_timers_for
        ua.srtp_for = self._srtp_for
        ua.endpoint.filter = lambda peer: self.auth.allows(peer, now=ua.loop.time())
        ua.endpoint.challenge = self._challenge_first

    @property
    def settled(self) -> bool:
        """No call is live here and every call that ended has been journaled (its CallEnded
        handlers ran): what a drain waits for before reading the calls rows."""
        return not self.active and not self._tasks and not self._ending

    def busy(self, extension: str) -> bool:
        """On as many calls as the extension may take; a phone that rings counts (a second
        dialer call must not ring an agent whose phone rings for the first)."""
        in_calls = self.active.parties.calls_of(extension) + self._held.count(extension)
        in_calls += extension in self.seats  # the phone is on its seat's call
        ext = self.extensions.get(extension)
        if self.bookings is not None and self.bookings.booked_elsewhere(extension):
            return True  # another node's call has the agent
        return in_calls >= (ext.max_calls if ext is not None else 1)

    def hold(self, extension: str) -> Callable[[], None]:
        """Count `extension` busy while the engine rings its phone outside any bridged call
        (click-to-call's first leg); returns the release (safe to call twice)."""
        self._held.append(extension)
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._held.remove(extension)

        return release

    def set_forwarding(self, extension: str, settings: Forwarding, *, stored: bool = False) -> None:
        """Change an extension's DND and forwarding (feature codes, the API); DND shows in
        presence as away. `on_forwarding` hears the change unless it comes from the store
        (`stored`: loaded at start, another node's change, or already written)."""
        self.forwarding[extension] = settings
        self.presence.set_dnd(extension, settings.dnd, now=self.ua.loop.time())
        logger.info("forwarding of %s: %s", extension, settings.to_json())
        if not stored and self.on_forwarding is not None:
            self.on_forwarding(extension, settings)

    def reachable(self, members: Iterable[str], *, now: float) -> dict[str, list[Binding]]:
        """The members who can take a call now (available, not busy, registered): their phones."""
        found = {}
        for member in members:
            if self.presence.available(member, now=now) and not self.busy(member):
                bindings = self.registrar.lookup(member, now=now)
                if bindings:
                    found[member] = bindings
        return found

    def seated(self, members: Iterable[str], *, now: float) -> list[str]:
        """The members sitting on an idle seat and available (not away, not in wrap-up): the
        dialer bridges a person to them at once."""
        return [m for m in self.seats.idle(members) if self.presence.available(m, now=now)]

    def ringing(self) -> set[str]:
        """Extensions whose phones ring right now."""
        return {ext for call in self.active.values() for ext in call.ringing}

    # -- REGISTER -----------------------------------------------------------------------------

    def _on_request(self, request: SipRequest, transaction: object, peer: Peer) -> bool:
        if request.method == "SUBSCRIBE":
            self.blf.on_subscribe(request, transaction, peer)
            return True
        if request.method != "REGISTER":
            return False
        now = self.ua.loop.time()
        respond = self.ua.endpoint.send_response
        aor = request.to.uri
        if not isinstance(aor, SipUri):
            respond(transaction, make_response(request, 400, "To must be a SIP AOR"))
            return True
        decision = self.auth.check(request, peer, now=now)
        if decision.extension is None:
            respond(transaction, make_response(request, decision.status, extra=decision.headers))
            return True
        try:
            bindings = self.registrar.register(decision.extension, request, peer, now=now)
        except RegistrationError as exc:
            respond(transaction, make_response(request, exc.status, str(exc), extra=exc.headers))
            return True
        extra = [
            *self.registrar.contact_headers(bindings, now=now),
            *self.registrar.path_headers(request),
            ("Date", _http_date()),
        ]
        respond(transaction, make_response(request, 200, extra=extra))
        return True

    # -- INVITE -------------------------------------------------------------------------------

    def _carrier_of(self, invite: SipRequest, peer: Peer) -> Trunk | None:
        """The trunk whose carrier sent a new INVITE: it comes from a trunk's source and its
        From is none of our extensions (an agent must authenticate even from the carrier's
        address: a spoofed From gets a challenge)."""
        trunk = self._trunk_of(peer)
        from_uri = invite.from_.uri
        from_user = from_uri.user if isinstance(from_uri, SipUri) else None
        return trunk if trunk is not None and from_user not in self.extensions else None

    def _challenge_first(self, invite: SipRequest, peer: Peer) -> list[tuple[str, str]] | None:
        """The challenge of a new INVITE that `_on_incoming` would only challenge (no
        credentials, not a carrier's call, not to one of our public numbers), which the
        endpoint sends statelessly before any transaction or call exists; None: let it in."""
        if digest_answer(invite) is not None or self._carrier_of(invite, peer):
            return None
        if isinstance(invite.uri, SipUri) and invite.uri.user in self.dids:
            return None  # refused with 403 (and logged) by _on_incoming
        decision = self.auth.check(invite, peer, now=self.ua.loop.time())
        if decision.extension is None and decision.status == 401:
            return list(decision.headers)
        return None

    def _on_incoming(self, call: Call) -> None:
        target = call.invite.uri
        dialled = target.user if isinstance(target, SipUri) else None
        trunk = self._carrier_of(call.invite, call.peer)
        if trunk is not None:
            call.set_srtp(trunk.srtp)
            did = self._did_of(trunk, dialled or "")
            if did is None and isinstance(to_uri := call.invite.to.uri, SipUri):
                # A provider we register to calls our Contact (its user is our account):
                # the number the customer dialled is in To.
                did = self._did_of(trunk, to_uri.user or "")
            state = self.providers.states.get(trunk.name)
            if (
                state is not None
                and state.trunk.channels
                and (self.providers.channels_in_use(state) > state.trunk.channels)
            ):
                logger.info("trunk %s: all %d channels busy", trunk.name, trunk.channels)
                call.reject(503, "All channels busy")
            elif did is None or did.trunk != trunk.name:
                logger.info("trunk %s: call to unknown number %s refused", trunk.name, dialled)
                call.reject(404, "No such number")
            elif call.offer_error is not None:
                self._unacceptable_offer(call, did, self._caller(call, trunk))
            else:
                self._inbound(call, did, self._caller(call, trunk))
            return
        if dialled in self.dids:
            # Our public numbers are reached only through their carrier, never from elsewhere.
            log_auth_failure(call.peer[1], call.peer[2], dialled, "not_a_trunk_source", "INVITE")
            call.reject(403, "Not a trunk of this number")
            return
        now = self.ua.loop.time()
        decision = self.auth.check(call.invite, call.peer, now=now)
        if decision.extension is None:
            call.reject(decision.status, headers=decision.headers)
            return
        caller = decision.extension
        if caller in self.extensions:
            call.set_srtp(self.extensions[caller].srtp)
        elif caller in self.trunks:  # a registering carrier authenticates as its trunk
            call.set_srtp(self.trunks[caller].srtp)
        if self._replacing(call, caller):
            return
        if call.offer_error is not None:
            # Before any routing: no feature code, pickup or phone acts on a call that can
            # never be answered.
            status = call.refuse_offer()
            self._refused(call, caller, dialled or "", status, "failed", "unacceptable-offer")
            return
        if dialled in FEATURE_CODES:
            self._track(self._feature_code(call, caller, away=FEATURE_CODES[dialled]))
            return
        if dialled == SEAT_CODE:
            self._track(self._take_seat(call, caller))
            return
        if dialled and (forward_code := parse_forward_code(dialled)) is not None:
            self._track(self._forward_code(call, caller, forward_code))
            return
        if dialled and (queue_code := parse_queue_code(dialled)) is not None:
            login, queue_name = queue_code
            self._track(self._queue_code(call, caller, queue_name, login=login))
            return
        if (
            dialled
            and dialled not in self.extensions
            and (slot := self.parking.retrieval(dialled)) is not None
        ):
            self._unpark(call, caller, slot)
            return
        if dialled and (code := parse_pickup(dialled)) is not None:
            self._pickup(call, caller, code.target)
            return
        if dialled and (monitor := parse_monitor(dialled)) is not None:
            mode, agent = monitor
            self._track(self._monitor_code(call, caller, agent, mode))
            return
        bindings = self.registrar.lookup(dialled, now=now) if dialled else []
        if dialled is not None and dialled not in self.extensions and _EXTERNAL.match(dialled):
            self._outbound(call, caller, dialled)
        elif dialled is None or dialled not in self.extensions:
            self._refuse(call, caller, dialled or "", 404, "failed")
        elif dialled == caller:
            self._refuse(call, caller, dialled, 486, "busy")
        else:
            self._to_extension(call, caller, dialled, bindings)

    # -- parking ------------------------------------------------------------------------------

    def park(
        self, bridged: BridgedCall, *, by: str, announce: bool = True, notify: Call | None = None
    ) -> str | None:
        """Park the caller of an answered call: the slot it waits in (music on hold) until a
        phone dials *71SLOT or SLOT, or `park_timeout` passes and the parker's phones ring;
        None when the lot is full or the call cannot be parked now (not bridged, a transfer
        runs). The parker hears the slot first (`announce`, with `speak`); `notify` is the
        parker's leg that asked by REFER (told 200 once it heard it)."""
        if bridged.b is None or bridged.media is None or bridged.transferring:
            return None
        key = bridged.call_id
        slot = self.parking.park(key)
        if slot is None:
            return None
        parker = bridged.callee
        retrieval: asyncio.Future[tuple[Call, str]] = self.ua.loop.create_future()
        request = ParkRequest(
            retrieval,
            slot,
            by,
            self.park_timeout,
            self._ring_back(parker),
            self._park_prompt if announce and self.speak is not None else None,
            notify,
        )
        if not bridged.park(request):
            self.parking.leave(key)
            return None
        self._retrievals[key] = retrieval
        retrieval.add_done_callback(lambda _: self._unparked(key))
        now = self.ua.loop.time()
        self.presence.call_ended(parker, now=now, wrap_up=bridged.summary.direction != "internal")
        return slot

    async def _park_prompt(self, slot: str) -> Path | None:
        assert self.speak is not None
        return await self.speak(announcement(slot))

    def _parked_by_phone(self, bridged: BridgedCall, by: str, notify: Call | None) -> int | None:
        """A REFER to the park extension or #72 from the answered party: park the caller. None
        once parked, else the status refusing the REFER (409 nothing to park now, 503 the lot
        is full)."""
        if any(m.bridged is bridged for m in self.monitors.values()):
            return 409  # a supervisor is mixed in: the conference owns the legs' audio now
        if self.park(bridged, by=by, notify=notify) is not None:
            return None
        full = len(self.parking.parked()) >= len(self.parking.slots)
        status = 503 if full else 409
        logger.info("call %s: park by %s refused: %d", bridged.call_id, by, status)
        return status

    def _answered_digit(self, bridged: BridgedCall, digit: str) -> None:
        keys = self._park_keys.setdefault(bridged, FeatureDigits())
        if keys.feed(digit, self.ua.loop.time()):
            self._parked_by_phone(bridged, bridged.callee, None)  # refused: logged; talk on

    def _ring_back(self, extension: str) -> Callable[[], list[HuntStep]]:
        """The steps that ring `extension`'s phones when called (none for a party that is no
        extension of ours): a parked call's timeout, a failed transfer's transferor."""

        def steps() -> list[HuntStep]:
            if extension not in self.extensions:
                return []
            bindings = self.registrar.lookup(extension, now=self.ua.loop.time())
            targets = tuple(Target(extension, b) for b in bindings)
            return [HuntStep(targets, self.ring_timeout)] if targets else []

        return steps

    def _unparked(self, key: str) -> None:
        self.parking.leave(key)
        self._retrievals.pop(key, None)

    def _unpark(self, call: Call, caller: str, slot: str) -> None:
        """*71SLOT / SLOT: the caller's leg takes the call parked there."""
        key = self.parking.take(slot)
        retrieval = self._retrievals.get(key) if key is not None else None
        if retrieval is None or retrieval.done() or self.busy(caller):
            logger.info("retrieval of %s by %s: nothing parked there", slot, caller)
            self._track(self._reorder(call, reason="nothing-parked"))
            return
        logger.info("call %s: retrieved from %s by %s", key, slot, caller)
        retrieval.set_result((call, caller))

    # -- DND and call forwarding ------------------------------------------------------------

    def _to_extension(self, call: Call, caller: str, dialled: str, bindings: list[Binding]) -> None:
        """An agent's call to another extension: ring its phones, or do what its DND and
        forwarding say (refuse busy, forward at once, ring then forward)."""
        found = self._extension_steps(dialled, caller, busy=self.busy(dialled), bindings=bindings)
        if isinstance(found, Refuse):
            outcome = "busy" if found.status == 486 else "unavailable"
            self._refuse(call, caller, dialled, found.status, outcome)
            return
        steps, ring_timeout = found
        if not steps:
            self._refuse(call, caller, dialled, 480, "unavailable")
            return
        self._start(
            call,
            caller=caller,
            callee=dialled,
            steps=steps,
            identity=self.identity(caller, self.extensions[caller].display_name or None),
            summary=CallSummary(call.call_id, caller, dialled, datetime.now(UTC)),
            ring_timeout=ring_timeout,
        )

    def _extension_steps(
        self, extension: str, caller: str, *, busy: bool, bindings: list[Binding]
    ) -> tuple[list[HuntStep], float] | Refuse:
        """The hunt of a call to `extension` as its DND and forwarding say, with its ring
        timeout; Refuse when it can ring nobody and nothing forwards it."""
        settings = self.forwarding.get(extension, Forwarding())
        decision = decide(settings, busy=busy, registered=bool(bindings))
        if isinstance(decision, Refuse):
            return decision
        steps: list[HuntStep] = []
        ring_timeout = self.ring_timeout
        if isinstance(decision, Forward):
            target, reason = decision.target, decision.reason
            logger.info("call to %s: forwarded to %s (%s)", extension, target, reason)
        else:
            target, reason = decision.then or "", "no-answer"
            rings = decision.after if target else ring_timeout
            steps = [HuntStep(tuple(Target(extension, b) for b in bindings), rings)]
            if target:
                ring_timeout = decision.after + self.ring_timeout
        if target:
            steps += self._forward_steps(extension, target, reason, caller)
        return steps, ring_timeout

    def _forward_steps(
        self, extension: str, target: str, reason: str, caller: str
    ) -> list[HuntStep]:
        """How a call forwarded from `extension` reaches `target`: the target extension's phones
        (one hop: its own forwarding is not followed; nothing when it is busy or in DND), or an
        external number through the trunks in failover order, presenting the caller's number
        when it is a customer's, else the trunk's caller ID. The legs say who diverted the
        call and why (RFC 5806 Diversion)."""
        diversion = (
            "Diversion",
            f"<{self.identity(extension, None).uri}>;reason={reason};counter=1",
        )
        now = self.ua.loop.time()
        if target in self.extensions:
            if target == caller or self.busy(target) or self.presence.dnd(target):
                return []
            bindings = self.registrar.lookup(target, now=now)
            return [
                HuntStep(
                    tuple(Target(target, b, (diversion,)) for b in bindings), self.ring_timeout
                )
            ] if bindings else []  # fmt: skip
        if not _EXTERNAL.match(target):
            logger.warning("forwarding of %s: %r is no extension or number", extension, target)
            return []
        route = self._trunk_route(target)
        if route is None:
            return []
        presenting = caller if caller not in self.extensions else (route[0].caller_id or ANONYMOUS)
        from_, _ = self._presenting(route[0], presenting)
        return [
            HuntStep(
                tuple(
                    replace(t, headers=(*t.headers, diversion), from_=from_) for t in step.targets
                ),
                step.timeout,
                failover=step.failover,
            )
            for step in self._failover_steps(target, self.ring_timeout, presenting=presenting)
        ]

    async def _forward_code(self, call: Call, agent: str, code: ForwardCode) -> None:
        """*78/*79 DND, *72/*73, *90/*91, *92/*93 forwarding: a beep (short: on, long: off);
        a forward to oneself gets the reorder tone."""
        if code.value == agent:
            await self._reorder(call, reason="forward-to-self")
            return
        current = self.forwarding.get(agent, Forwarding())
        self.set_forwarding(agent, apply_code(current, code))
        await self._beep(call, long=not code.value)

    # -- pickup -------------------------------------------------------------------------------

    def _pickup(self, call: Call, picker: str, target: str | None) -> None:
        """*8 / **EXT: hand the picker's leg to the chosen ringing call, or refuse it."""
        ringing = [
            RingingCall(key, frozenset(bridged.ringing), bridged.summary.started_at)
            for key, bridged in self.active.items()
            if bridged.ringing and bridged.b is None
        ]
        if self.busy(picker):
            call.reject(486)
            return
        choice = self.pickup_groups.select(picker, ringing, target=target)
        if not isinstance(choice, Pickup):
            logger.info("pickup by %s (%s) refused: %s", picker, target or "*8", choice.value)
            if target is not None and choice.value == "not-allowed":
                call.reject(403, "Not in a pickup group with " + target)
            else:
                self._track(self._reorder(call, reason="nothing-to-pick-up"))
            return
        bridged = self.active[choice.key]
        if not bridged.pick_up(call, picker):
            self._track(self._reorder(call, reason="nothing-to-pick-up"))
            return
        bridged.picked_up_by = (choice, picker)

    async def _reorder(self, call: Call, *, reason: str) -> None:
        """Answer, play a fast busy tone, hang up: the phone's user hears why nothing happened."""
        try:
            await call.answer()
            await asyncio.wait_for(call.next_event(), 5)  # the ACK
            await call.play(ToneSource(_REORDER, duration=1.5, cadence=(0.25, 0.25)))
        except (TimeoutError, RuntimeError, OSError) as exc:
            logger.info("call %s: refusal tone not played: %s", call.call_id, exc)
        await call.hangup(reason=reason)

    # -- monitor ------------------------------------------------------------------------------

    def check_monitor(self, supervisor: str, agent: str) -> BridgedCall:
        """The agent's answered call, if `supervisor` may monitor `agent`; else MonitorError."""
        ext = self.extensions.get(supervisor)
        if ext is None or ext.role != "supervisor":
            raise MonitorError(f"{supervisor} is not a supervisor")
        if agent not in ext.team:
            raise MonitorError(f"{agent} is not in {supervisor}'s team")
        for bridged in self.active.values():
            if bridged.b is not None and agent in bridged.parties and bridged.media is not None:
                if any(m.bridged is bridged for m in self.monitors.values()):
                    raise MonitorError(f"{agent}'s call is monitored already", 409)
                return bridged
        raise MonitorError(f"{agent} is not in a call", 404)

    def start_monitor(
        self, bridged: BridgedCall, leg: Call, *, supervisor: str, agent: str, mode: MonitorMode
    ) -> MonitorSession:
        """Mix the supervisor's answered `leg` into `bridged` (checked with check_monitor)."""
        session = MonitorSession(
            bridged,
            leg,
            session_id=next(self._session_ids),
            supervisor=supervisor,
            agent=agent,
            mode=mode,
            clock=self.ua.clock,
            settings=self.monitor_settings,
            on_event=lambda event: self.events.publish(MonitorChanged(event)),
        )
        self.monitors[session.id] = session

        async def run() -> None:
            try:
                await session.run()
            finally:
                self.monitors.pop(session.id, None)

        self._track(run())
        return session

    async def _monitor_code(
        self, call: Call, supervisor: str, agent: str, mode: MonitorMode
    ) -> None:
        """*1EXT / *2EXT / *3EXT from a supervisor's phone."""
        try:
            bridged = self.check_monitor(supervisor, agent)
        except MonitorError as exc:
            logger.info("monitor %s by %s refused: %s", agent, supervisor, exc)
            if exc.status == 403:
                call.reject(403, "Not allowed to monitor")
            else:
                await self._reorder(call, reason="nothing-to-monitor")
            return
        try:
            await call.answer()
            await asyncio.wait_for(call.next_event(), 5)  # the ACK
        except (TimeoutError, RuntimeError, OSError) as exc:
            logger.info("monitor %s by %s: leg not answered: %s", agent, supervisor, exc)
            await call.hangup(reason="failed")
            return
        if bridged.b is None or bridged.a.ended.done() or bridged.b.ended.done():
            await call.hangup(reason="call-ended")
            return
        self.start_monitor(bridged, call, supervisor=supervisor, agent=agent, mode=mode)

    async def call_supervisor(
        self, bridged: BridgedCall, *, supervisor: str, agent: str, mode: MonitorMode,
        timeout: float = 30.0,
    ) -> MonitorSession:  # fmt: skip
        """The API's way in: ring the supervisor's phone; once answered, join the call.
        MonitorError when the phone is unreachable or does not answer."""
        now = self.ua.loop.time()
        bindings = self.registrar.lookup(supervisor, now=now)
        if not any(isinstance(b.contact.uri, SipUri) for b in bindings):
            raise MonitorError(f"{supervisor}'s phone is not registered", 409)
        legs = await self.ring_phones(
            bindings,
            from_=self.identity(agent, f"Monitor {agent}"),
            to=NameAddr(display_name=None, uri=self.identity(supervisor, None).uri, params={}),
        )
        if not legs:
            raise MonitorError(f"{supervisor}'s phone cannot be reached", 409)
        try:
            leg = await first_answer(legs, timeout)
        except asyncio.CancelledError:
            for ringing in legs:
                await ringing.hangup(reason="cancelled")
            raise
        if not isinstance(leg, Call):
            for ringing in legs:
                await ringing.hangup(reason="timeout")
            raise MonitorError(f"{supervisor} did not answer", 409)
        if bridged.b is None or bridged.a.ended.done() or bridged.b.ended.done():
            await leg.hangup(reason="call-ended")
            raise MonitorError("the call ended meanwhile", 409)
        return self.start_monitor(bridged, leg, supervisor=supervisor, agent=agent, mode=mode)

    def _session_timers_for(self, invite: SipRequest, peer: Peer, incoming: bool) -> bool:
        """Whether a new leg uses session timers: off when its trunk (by address) or the
        extension of its phone (From of a call in, To of a call out) says so."""
        trunk = self._trunk_of(peer)
        if trunk is not None:
            return trunk.session_timers
        uri = (invite.from_ if incoming else invite.to).uri
        extension = self.extensions.get(uri.user or "") if isinstance(uri, SipUri) else None
        return extension is None or extension.session_timers

    def _srtp_for(self, target: SipUri, peer: Peer) -> str | None:
        """The SRTP policy of a leg we place to `peer`: the trunk's whose address it is, or
        the account's whose phone is there (registered or static)."""
        for state in self.providers.states.values():
            if state.peer == peer:
                return state.trunk.srtp
        now = self.ua.loop.time()
        for extension in self.extensions.values():
            if any(b.peer == peer for b in self.registrar.lookup(extension.number, now=now)):
                return extension.srtp
        trunk = self._trunk_of(peer)
        return trunk.srtp if trunk is not None else None

    def _trunk_of(self, peer: Peer) -> Trunk | None:
        """The trunk a source belongs to: the provider's proxy we register to (address and
        port), a listed address, or where the carrier registered from."""
        if (provider := self.providers.of_peer(peer)) is not None:
            return provider.trunk
        address = peer[1]
        now = self.ua.loop.time()
        for trunk in self.trunks.values():
            if address in trunk.allow_from:
                return trunk
            if trunk.password and any(
                b.peer[1] == address for b in self.registrar.lookup(trunk.name, now=now)
            ):
                return trunk
        return None

    def _did_of(self, trunk: Trunk, dialled: str) -> Did | None:
        """The DID a carrier's Request-URI user part names, in whatever format it writes it."""
        try:
            number = trunk.numbers.to_e164(dialled)
        except NumberError:
            return None
        return self.dids.get(number)

    def _caller(self, call: Call, trunk: Trunk) -> str:
        """The E.164 number of a trunk call's caller (its asserted identity, read with the
        trunk's numbering plan), or "anonymous" when withheld."""
        found: CallerId = inbound_caller(call.invite, trunk.numbers, trusted=trunk.trust_identity)
        return found.caller

    def _inbound(self, call: Call, did: Did, caller: str) -> None:
        """A call from a carrier to one of our numbers (IP-authenticated trunk)."""
        if self.first_for is not None and did.route.startswith("ringgroup:"):
            self._track(self._inbound_after_lookup(self.first_for, call, did, caller))
        else:
            self._inbound_now(call, did, caller)

    async def _inbound_after_lookup(
        self, lookup: Callable[[str], Awaitable[str | None]], call: Call, did: Did, caller: str
    ) -> None:
        try:
            first = await lookup(caller)
        except Exception:
            logger.exception("call %s: responsible lookup failed; the group's order", caller)
            first = None
        if call.state not in (LegState.INCOMING, LegState.RINGING):
            return  # the caller gave up during the lookup
        self._inbound_now(call, did, caller, first)

    def _inbound_now(self, call: Call, did: Did, caller: str, first: str | None = None) -> None:
        now = self.ua.loop.time()
        summary = CallSummary(call.call_id, caller, did.number, datetime.now(UTC))
        summary.direction, summary.did, summary.customer = "inbound", did.number, caller
        kind, _, target = did.route.partition(":")
        owner: str | None = None
        auto_reply: Path | None = None
        steps: list[HuntStep] = []
        ring_timeout = self.ring_timeout
        if kind == "ivr" and self.on_ivr is not None:
            self.announce(summary)
            self._track(self._ivr(call, did, summary))
            return
        if kind == "queue" and target in self.queues.queues:
            summary.owner = self.queues.owner(target)
            self.announce(summary)
            self._track(self.queues.enter(call, target, summary))
            return
        if kind == "voicemail" and self.queues.voicemail_dir is not None:
            summary.owner = target
            self.announce(summary)
            self._track(self.queues.voicemail(call, target, summary))
            return
        if kind == "agent":
            # Away, wrap-up or on a call counts as busy for its forwarding.
            found = self._extension_steps(
                target,
                caller,
                busy=not self.presence.available(target, now=now) or self.busy(target),
                bindings=self.registrar.lookup(target, now=now),
            )
            if not isinstance(found, Refuse):
                steps, ring_timeout = found
            owner = target
        elif kind == "ringgroup":
            group = self.groups[target]
            summary.ring_group, owner, auto_reply = group.name, group.owner, group.auto_reply
            ring_timeout = group.ring_timeout
            if group.hours is not None and not group.hours.is_open(summary.started_at):
                summary.hangup_cause = "after-hours"
                logger.info("call %s to %s: after hours", call.call_id, did.number)
            reachable = (
                {}
                if summary.hangup_cause == "after-hours"
                else self.reachable(group.members, now=now)
            )
            steps = self._strategies[group.name].steps(
                Hunt(
                    list(group.members),
                    reachable,
                    self.presence,
                    group.member_timeout,
                    group.ring_timeout,
                    now,
                )
            )
            if first in group.members and first in reachable and not self.busy(first):
                # The contact's responsible manager rings alone first, then the group.
                alone = HuntStep(tuple(Target(first, b) for b in reachable[first]),
                                 group.member_timeout)  # fmt: skip
                steps = [alone, *steps]
                logger.info("call %s: %s (responsible) rings first", call.call_id, first)
        else:
            logger.warning(
                "DID %s routes to %s, which this engine cannot serve yet", did.number, did.route
            )
        display = f"{did.label}: {caller}" if did.label else caller
        bridged = self._start(
            call,
            caller=caller,
            callee=summary.callee,
            steps=steps,
            identity=self.identity(caller, display),
            summary=summary,
            ring_timeout=ring_timeout,
        )
        bridged.on_no_answer = lambda leg: self._auto_reply(leg, auto_reply)
        summary.owner = owner

    def _trunk_route(self, number: str, trunk_name: str = "") -> tuple[Trunk, Target] | None:
        """How to reach an external number now: the first of `_trunk_routes`."""
        routes = self._trunk_routes(number, trunk_name)
        return routes[0] if routes else None

    def _trunk_routes(
        self, number: str, trunk_name: str = "", *, presenting: str | None = None
    ) -> list[tuple[Trunk, Target]]:
        """The trunks that can carry a call to an external number now, in failover order
        (through `trunk_name` only, when given): up by qualify, registered when they register,
        a channel free; a carrier that registers to us, where it registered from. Each target
        dials the number as its carrier writes it, with the identity headers presenting
        `presenting` (a caller ID; None: none)."""
        now = self.ua.loop.time()
        routes = []
        for state in sorted(self.providers.states.values(), key=lambda s: s.order):
            trunk = state.trunk
            if trunk_name and trunk.name != trunk_name:
                continue
            if not self.providers.available(state):
                continue
            e164 = _e164(trunk, number)
            if e164 is None:
                logger.info("trunk %s: %r is no phone number: dialled as it is", trunk.name, number)
            user = trunk.numbers.dial_string(e164) if e164 else trunk.numbers.dial_prefix + number
            if state.peer is not None:
                peer: Peer = state.peer
                uri = self.providers.route_uri(state, user)
            elif trunk.password and (registered := self.registrar.lookup(trunk.name, now=now)):
                peer = registered[0].peer
                uri = SipUri(
                    scheme="sip",
                    user=user,
                    password=None,
                    host=format_host(peer[1]),
                    port=peer[2],
                    params={} if peer[0] == "udp" else {"transport": peer[0]},
                    headers={},
                )
            else:
                continue
            headers = () if presenting is None else self._presenting(trunk, presenting)[1]
            contact = NameAddr(display_name=None, uri=uri, params={})
            binding = Binding(number, contact, peer, float("inf"), "trunk", 0, static=True)
            target = Target(
                number,
                binding,
                headers,
                external=True,
                credentials=state.credentials,
                trunk=trunk.name,
            )
            routes.append((trunk, target))
        return routes

    def _failover_steps(
        self, number: str, timeout: float, trunk_name: str = "", *, presenting: str | None = None
    ) -> list[HuntStep]:
        """One hunt step per trunk that can carry the call, in failover order (the next on
        5xx or 408)."""
        return [
            HuntStep((target,), timeout, failover=True)
            for _, target in self._trunk_routes(number, trunk_name, presenting=presenting)
        ]

    def _outbound(self, call: Call, caller: str, number: str) -> None:
        """An agent dials an external number: out through the first trunk that can take it,
        once `outbound_check` (when set) lets it. The number is read as E.164 in that trunk's
        country first (what the check, the journal and the CRM see)."""
        route = self._trunk_route(number)
        if route is not None:
            number = _e164(route[0], number) or number
        if self.outbound_check is None:
            self._outbound_now(call, caller, number)
        else:
            self._track(self._checked_outbound(self.outbound_check, call, caller, number))

    async def _checked_outbound(
        self,
        check: Callable[[str, str], Awaitable[str | None]],
        call: Call,
        caller: str,
        number: str,
    ) -> None:
        try:
            refusal = await check(caller, number)
        except Exception:
            logger.exception("outbound check of %s -> %s failed; refusing", caller, number)
            refusal = "the outbound check failed"
        if call.state not in (LegState.INCOMING, LegState.RINGING):
            return  # the caller gave up while we checked: nothing to refuse or place
        if refusal is not None:
            logger.info("%s may not dial %s: %s", caller, number, refusal)
            self._refuse(call, caller, number, 403, "rejected")
            return
        self._outbound_now(call, caller, number)

    def _outbound_now(self, call: Call, caller: str, number: str) -> None:
        route = self._trunk_route(number)
        if route is None:
            self._refuse(call, caller, number, 404, "failed")
            return
        trunk, _ = route
        # No caller ID of its own: withheld, never an extension number the carrier cannot route.
        shown = trunk.caller_id or ANONYMOUS
        from_, _ = self._presenting(trunk, shown)
        self._start(
            call,
            caller=caller,
            callee=number,
            steps=self._failover_steps(number, self.ring_timeout, presenting=shown),
            identity=from_,
            summary=CallSummary(
                call.call_id,
                caller,
                number,
                datetime.now(UTC),
                direction="outbound",
                customer=number,
            ),
        )

    async def originate(
        self, number: str, *, caller_id: str | None = None, trunk: str = ""
    ) -> Call:
        """Dial a customer through `trunk` (any trunk when empty, in failover order): the
        dialer's lines; the leg's events tell the rest. A trunk that refuses the call before it
        rings with 5xx or 408 (or cannot be reached) passes it to the next, as for agents'
        calls; the leg returned is the one that rang, was answered, or failed last. Raises
        LookupError when no trunk can reach the number."""
        routes = self._trunk_routes(number, trunk)
        if not routes:
            raise LookupError(f"no trunk{' ' + trunk if trunk else ''} can reach {number}")
        for index, (found, target) in enumerate(routes):
            binding = target.binding
            assert isinstance(binding.contact.uri, SipUri)
            from_, headers = self._presenting(found, caller_id or found.caller_id or ANONYMOUS)
            call = await self.ua.dial(
                binding.contact.uri,
                binding.peer,
                from_=from_,
                to=NameAddr(display_name=None, uri=binding.contact.uri, params={}),
                headers=[*binding.route_headers(), *headers],
                credentials=target.credentials,
            )
            if index == len(routes) - 1 or not await _refused_for_failover(call):
                return call
            logger.info(
                "call %s to %s: trunk %s refused it with %s, trying %s",
                call.call_id, number, found.name, call.final_status, routes[index + 1][0].name,
            )  # fmt: skip
        raise AssertionError("unreachable: the last route returns")

    async def ring_phones(
        self,
        bindings: list[Binding],
        *,
        from_: NameAddr,
        to: NameAddr,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> list[Call]:
        """One INVITE to each of an extension's registered phones, rung together as a hunt
        rings a member (a softphone and a browser phone both ring): the engine's own calls to
        an agent (click-to-call, a seat, a supervisor's monitor). `first_answer` takes the
        phone that answers. A phone that cannot be dialled is left out; [] when none can."""
        legs: list[Call] = []
        try:
            for binding in bindings:
                uri = binding.contact.uri
                if not isinstance(uri, SipUri):
                    continue
                try:
                    leg = await self.ua.dial(
                        uri,
                        binding.peer,
                        from_=from_,
                        to=to,
                        headers=[*binding.route_headers(), *headers],
                    )
                except OSError as exc:
                    logger.warning("cannot ring %s: %s", uri, exc)
                    continue
                legs.append(leg)
        except BaseException:
            for leg in legs:
                await leg.hangup(reason="cancelled")
            raise
        return legs

    def can_reach(self, number: str, trunk: str = "") -> bool:
        """Whether `trunk` (any trunk when empty) can reach the external `number` now."""
        return self._trunk_route(number, trunk) is not None

    def dial_out(
        self,
        leg: Call,
        number: str,
        *,
        summary: CallSummary,
        caller_id: str | None = None,
        trunk: str = "",
        timeout: float | None = None,
    ) -> BridgedCall:
        """Bridge `leg`, a call the engine placed to one of our phones and that phone answered
        (click-to-call), to the external `number` through `trunk`, presenting `caller_id` (else
        the trunk's). The caller announced `summary` when it rang the phone; the switchboard
        journals it at the end. LookupError when no trunk can reach the number."""
        route = self._trunk_route(number, trunk)
        if route is None:
            raise LookupError(f"no trunk{' ' + trunk if trunk else ''} can reach {number}")
        found, _ = route
        shown = caller_id or found.caller_id or ANONYMOUS
        from_, _ = self._presenting(found, shown)
        return self._start(
            leg,
            caller=summary.caller,
            callee=number,
            steps=self._failover_steps(
                number, timeout or self.ring_timeout, trunk, presenting=shown
            ),
            identity=from_,
            summary=summary,
            ring_timeout=timeout,
            announce=False,
        )

    async def _ivr(self, call: Call, did: Did, summary: CallSummary) -> None:
        assert self.on_ivr is not None
        try:
            await self.on_ivr(call, did, summary)
        except Exception:
            logger.exception("call %s: IVR %s failed", call.call_id, did.route)
            if call.state.value in ("incoming", "ringing"):
                call.reject(500)
            else:
                await call.hangup(reason="failed")

    async def transfer(
        self, call: Call, route: str, *, summary: CallSummary, timeout: float
    ) -> bool:
        """Ring `route` (agent:EXT, ringgroup:NAME, number:E164) for a caller an IVR answered,
        or hand it to queue:NAME (which journals it). True once bridged: from then on the call
        is the switchboard's, which journals `summary` at its end. False when nobody was free
        or answered in `timeout` s, or the caller hung up: the caller's leg is left as it was,
        for the flow to go on."""
        loop = self.ua.loop
        target = route.partition(":")[2]
        steps = self.steps_for(route, timeout=timeout, summary=summary, presenting=summary.caller)
        identity = self.identity(summary.caller, summary.caller)
        if route.startswith("number:") and (found := self._trunk_route(target)) is not None:
            # The carrier sees the customer's number as the caller (a forwarded call).
            identity, _ = self._presenting(found[0], summary.caller)
        if route.startswith("queue:") and target in self.queues.queues:
            # The queue takes the caller for good: it journals the call at its end.
            self._track(self.queues.enter(call, target, summary))
            return True
        if not steps:
            logger.info("call %s: IVR transfer to %s: nobody free", call.call_id, route)
            return False
        bridged = BridgedCall(
            self.ua,
            call,
            caller=summary.caller,
            callee=target,
            steps=steps,
            ring_timeout=timeout,
            caller_identity=identity,
            summary=summary,
        )
        bridged.keep_caller = True
        self._wire(bridged)
        bridged.on_over = self._transfer_over
        # The caller was answered by the IVR: ringing until someone answers, never silence.
        ringing = call.media.play(ringback()) if call.media is not None else None
        bridged.when_answered(lambda _: ringing.cancel() if ringing is not None else None)
        answered: asyncio.Future[bool] = loop.create_future()

        def on_answer(connected: BridgedCall) -> None:
            self._answered(connected)
            if not answered.done():
                answered.set_result(True)

        bridged.when_answered(on_answer)
        self.active[bridged.call_id] = bridged
        self._track(self._run_transfer(bridged, answered))
        try:
            return await answered
        finally:
            if ringing is not None:
                ringing.cancel()

    async def _run_transfer(self, bridged: BridgedCall, answered: asyncio.Future[bool]) -> None:
        try:
            await bridged.run()
        finally:
            self.drop(bridged)  # (told already by `_transfer_over`, unless that failed)
            if not answered.done():
                answered.set_result(False)
        if bridged.media is None:
            return  # not bridged: the IVR goes on and journals the call itself
        self._end(bridged.summary)

    def connect(
        self,
        customer: Call,
        agents: list[str],
        *,
        summary: CallSummary,
        timeout: float,
        on_no_agent: Callable[[Call], Awaitable[None]] | None = None,
    ) -> BridgedCall:
        """Bridge an answered customer leg to the longest-idle agent of `agents` free now, each
        rung for up to `timeout`; with nobody free or answering, `on_no_agent` takes the
        customer (safe harbor). The dialer waits for an agent to come free before calling.
        The caller announced `summary` when it placed the call. Agents a queue's waiting
        caller needs come last: the dialer's pacing left them out, so one is taken only when
        a race left no one else (an answered customer must not be abandoned)."""
        now = self.ua.loop.time()
        caller_uri = customer.invite.to.uri
        number = summary.customer or (
            caller_uri.user if isinstance(caller_uri, SipUri) and caller_uri.user else "unknown"
        )
        seated = self.seated(agents, now=now)
        if seated:
            # An agent on a seat takes the person at once, no phone rings (longest idle first).
            agent = max(seated, key=lambda a: self.presence.idle_for(a, now=now))
            seat = self.seats.occupy(agent)
            summary.callee = agent
            bridged = self._start(
                customer,
                caller=number,
                callee=agent,
                steps=[],
                identity=self.identity(number, agent),
                summary=summary,
                ring_timeout=timeout,
                announce=False,
                seat=seat.leg,
            )
            bridged.on_no_answer = on_no_agent
            return bridged
        free = self.reachable(agents, now=now)
        wanted = self.queues.wanted(now=now)
        spare = {a: b for a, b in free.items() if a not in wanted}
        steps = STRATEGIES["longest-idle"]().steps(
            Hunt(agents, spare or free, self.presence, timeout, timeout, now)
        )
        # A person is waiting on the line: phones that honour the hints answer at once.
        hints = self._auto_answer_hints()
        steps = [
            replace(
                step, targets=tuple(replace(t, headers=(*t.headers, *hints)) for t in step.targets)
            )
            for step in steps
        ]
        bridged = self._start(
            customer,
            caller=number,
            callee=summary.callee,
            steps=steps,
            identity=self.identity(number, summary.callee),
            summary=summary,
            ring_timeout=timeout,
            announce=False,
        )
        bridged.on_no_answer = on_no_agent
        return bridged

    def _auto_answer_hints(self) -> tuple[tuple[str, str], ...]:
        """Headers asking an agent's phone to answer a dialer call by itself: Call-Info
        answer-after (Snom, Yealink, Grandstream, Cisco, Linphone) and Polycom's Alert-Info."""
        host = format_host(self.ua.endpoint.host)
        return (
            ("Call-Info", f"<sip:{host}>;answer-after=0"),
            ("Alert-Info", "<http://www.notused.com>;info=alert-autoanswer;delay=0"),
        )

    def _presenting(
        self, trunk: Trunk, caller_id: str
    ) -> tuple[NameAddr, tuple[tuple[str, str], ...]]:
        """The From and identity headers of a call out through `trunk` presenting `caller_id`."""
        from_, headers = trunk.identity.outgoing(caller_id, trunk.numbers, self.ua.endpoint.host)
        return from_, tuple(headers)

    def identity(self, user: str, display: str | None) -> NameAddr:
        """Our SIP identity for `user` (a From or To on the engine's address)."""
        endpoint = self.ua.endpoint
        uri = SipUri(
            scheme="sip",
            user=user,
            password=None,
            host=endpoint.host,
            port=endpoint.port,
            params={},
            headers={},
        )
        return NameAddr(display_name=display, uri=uri, params={})

    def _refuse(self, call: Call, caller: str, callee: str, status: int, outcome: str) -> None:
        """An authenticated call that cannot ring anyone: answered at once, still logged."""
        call.reject(status)
        self._refused(call, caller, callee, status, outcome, "refused")

    def _refused(
        self, call: Call, caller: str, callee: str, status: int, outcome: str, cause: str
    ) -> None:
        """Journal a call refused with `status` before it rang anyone (one row, written whole)."""
        summary = CallSummary(call.call_id, caller, callee, datetime.now(UTC))
        summary.ended_at = summary.started_at
        summary.outcome, summary.sip_status, summary.hangup_cause = outcome, status, cause
        self._end(summary)

    def _unacceptable_offer(self, call: Call, did: Did, caller: str) -> None:
        """A carrier's call to one of our numbers whose SDP offer we cannot answer: 488 before
        any routing. It is still a customer who tried to reach us: a missed call to the DID
        (its row says why), with the callback task any missed call from that number gets."""
        status = call.refuse_offer()
        summary = CallSummary(call.call_id, caller, did.number, datetime.now(UTC))
        summary.direction, summary.did, summary.customer = "inbound", did.number, caller
        summary.ring_group, summary.owner = self._route_owner(did)
        summary.ended_at = summary.started_at
        summary.outcome, summary.sip_status = "missed", status
        summary.hangup_cause = "unacceptable-offer"
        logger.info("call %s to %s: offer refused with %d", call.call_id, did.number, status)
        self._end(summary)

    def _route_owner(self, did: Did) -> tuple[str | None, str | None]:
        """The ring group a DID rings and who owns its missed calls (the agent it rings, or the
        group's owner); (None, None) for other routes."""
        kind, _, target = did.route.partition(":")
        if kind == "agent":
            return None, target
        if kind == "ringgroup" and target in self.groups:
            return target, self.groups[target].owner
        if kind == "queue":
            return None, self.queues.owner(target)
        return None, None

    def _start(
        self,
        call: Call,
        *,
        caller: str,
        callee: str,
        steps: list[HuntStep],
        identity: NameAddr,
        summary: CallSummary,
        ring_timeout: float | None = None,
        announce: bool = True,
        seat: Call | None = None,
    ) -> BridgedCall:
        bridged = BridgedCall(
            self.ua,
            call,
            caller=caller,
            callee=callee,
            steps=steps,
            ring_timeout=ring_timeout or self.ring_timeout,
            caller_identity=identity,
            summary=summary,
            seat=seat,
        )
        bridged.when_answered(self._answered)
        self._wire(bridged)
        bridged.on_over = self._call_over
        self.active[bridged.call_id] = bridged
        if announce:
            self.announce(summary)
        self._track(self._run(bridged))
        return bridged

    def _wire(self, bridged: BridgedCall) -> None:
        bridged.bookings = self.bookings
        bridged.on_ringing = self._ringing
        bridged.music_on_hold = self.music_on_hold
        bridged.on_refer = self._referred
        bridged.on_answered_digit = self._answered_digit
        bridged.on_seat_left = self._seat_left
        bridged.when_transferred(self._transferred)

    # -- transfers ----------------------------------------------------------------------------

    def steps_for(
        self,
        route: str,
        *,
        timeout: float,
        summary: CallSummary | None = None,
        presenting: str | None = None,
    ) -> list[HuntStep]:
        """How to ring `route` now: `agent:EXT` or a bare extension, `ringgroup:NAME` (its
        strategy over the members free now), `number:E164` or a bare external number (through
        a trunk). Empty when nobody there can take a call now. (A queue is no set of phones to
        ring: an IVR hands its caller to `queues.enter` instead, see transfer.)"""
        now = self.ua.loop.time()
        kind, _, target = route.partition(":")
        if not target:
            if route in self.extensions:
                kind, target = "agent", route
            elif _EXTERNAL.match(route):
                kind, target = "number", route
        if kind == "agent":
            reachable = self.reachable([target], now=now)
            if reachable:
                return [HuntStep(tuple(Target(target, b) for b in reachable[target]), timeout)]
        elif kind == "ringgroup" and target in self.groups:
            group = self.groups[target]
            if summary is not None:
                summary.ring_group = group.name
            hunt = Hunt(
                list(group.members),
                self.reachable(group.members, now=now),
                self.presence,
                min(group.member_timeout, timeout),
                timeout,
                now,
            )
            return self._strategies[group.name].steps(hunt)
        elif kind == "number":
            # The carrier sees the customer's number as the caller (a forwarded call).
            return self._failover_steps(target, timeout, presenting=presenting)
        return []

    def transfer_call(
        self,
        bridged: BridgedCall,
        route: str,
        *,
        by: str,
        notify: Call | None = None,
        mode: str = "blind",
    ) -> int | TransferRequest:
        """Transfer the party the agent talks to in `bridged` to `route` (see steps_for):
        the agent's leg is replaced and the other stays (the answered party's leg, or the
        caller's when the agent placed the call to a customer). Asked by `by` (an extension,
        "api"), blind or warm (a consultation first). The request once it started; else the
        status that refuses it: 409 no answered call, a transfer already running or a
        supervisor monitoring the call; 480 nobody there can take it now (the attempt joins
        the call's chain, failed); 404 no such party or queue; 400 a warm transfer into a
        queue.

        `route` may be one of our DIDs (a phone's REFER to the number customers dial): the
        DID's route is followed, so a DID routed to `queue:NAME` hands the caller to that
        queue."""
        if bridged.b is None or bridged.media is None or bridged.transferring:
            return 409
        return self._handing_on(
            bridged,
            self._agent_leg(bridged),
            lambda: self._transfer_b(bridged, route, by=by, notify=notify, mode=mode),
        )

    def _agent_leg(self, bridged: BridgedCall) -> Call:
        """The leg of the agent who hands a call on over the API: the caller's when an agent
        called a customer (an external number), else the answered party's."""
        caller_is_agent = bridged.caller in self.extensions
        if caller_is_agent and bridged.callee not in self.extensions and bridged.b is not None:
            return bridged.a
        return bridged.b or bridged.a

    def _handing_on(self, bridged: BridgedCall, leg: Call, act: Callable[[], _T]) -> _T | int:
        """Run `act` (a transfer of `bridged.b`'s party away) with `leg` as the leg that is
        replaced: when it is the kept leg (the caller's side transfers), the legs swap first.
        403 when the caller's side is no agent of ours (a customer's carrier transfers
        nobody); 409 when the call cannot swap now."""
        if leg is not bridged.a:
            return act()
        if bridged.caller not in self.extensions:
            return 403
        if not bridged.swap():
            return 409
        # Refused or not, the roles stay swapped: whichever leg is kept, the call, its
        # summary and recording are the same (a refused REFER's phone may hang up next,
        # and its ring-back replaces `b`).
        return act()

    def _transfer_b(
        self, bridged: BridgedCall, route: str, *, by: str, notify: Call | None, mode: str
    ) -> int | TransferRequest:
        """transfer_call once the leg that goes is `bridged.b`."""
        if bridged.b is None or bridged.media is None or bridged.transferring:
            return 409
        if any(m.bridged is bridged for m in self.monitors.values()):
            return 409  # a supervisor is mixed in: the conference owns the legs' audio now
        route = self._did_route(route)
        target = route.partition(":")[2] or route
        next_id = len(bridged.summary.transfers) + 1
        if route.startswith("queue:"):
            if target not in self.queues.queues:
                return 404
            if mode != "blind":
                return 400  # nobody to consult: the queue answers at once
            request = TransferRequest([], route, by=by, notify=notify, id=next_id)
            caller = bridged.hand_off(request)
            if caller is None:
                return 409
            self._track(self.queues.enter(caller, target, bridged.summary))
            return request
        if not self._known(route):
            return 404
        presenting = bridged.summary.customer or bridged.caller
        steps = self.steps_for(route, timeout=self.ring_timeout, presenting=presenting)
        if not steps:
            if notify is not None:  # a phone may hang up once its REFER is refused
                ring_back = self._ring_back(bridged.callee)
                bridged.ring_back_if_left(ring_back, bridged.callee, grace=FALLBACK_GRACE)
            bridged.summary.transfers.append(
                {
                    "at": datetime.now(UTC).isoformat(),
                    "from": bridged.callee,
                    "to": target,
                    "by": by,
                    "mode": mode,
                    "id": next_id,
                    "result": "failed",
                    "outcome": self._unreachable(route),
                    "status": 480,
                }
            )
            return 480
        request = TransferRequest(
            steps,
            target,
            by=by,
            mode=mode,
            notify=notify,
            id=next_id,
            ring_back=self._ring_back(bridged.callee) if mode == "blind" else None,
        )
        return request if bridged.transfer(request) else 409

    def _did_route(self, route: str) -> str:
        """`route`, or the route of the DID it names (with or without its leading +)."""
        for number in (route, f"+{route}"):
            did = self.dids.get(number)
            if did is not None:
                return did.route
        return route

    def _known(self, route: str) -> bool:
        """Whether `route` names a party steps_for can ring (busy or not)."""
        kind, _, target = route.partition(":")
        if not target:
            return route in self.extensions or bool(_EXTERNAL.match(route))
        if kind == "agent":
            return target in self.extensions
        if kind == "ringgroup":
            return target in self.groups
        return kind == "number" and bool(_EXTERNAL.match(target))

    def _unreachable(self, route: str) -> str:
        """Why nobody at `route` can take a call now: busy (on a call), unavailable (away,
        not registered, no such party, no trunk)."""
        kind, _, target = route.partition(":")
        if not target and route in self.extensions:
            kind, target = "agent", route
        members = [target] if kind == "agent" else []
        if kind == "ringgroup" and target in self.groups:
            members = list(self.groups[target].members)
        return "busy" if members and any(self.busy(m) for m in members) else "unavailable"

    def _referred(self, bridged: BridgedCall, leg: Call, refer: ReferReceived) -> int | None:
        """A REFER from either party's phone: the other party goes to its Refer-To (the
        caller's side only when the caller is one of our agents: one who placed the call)."""
        by = bridged.caller if leg is bridged.a else bridged.callee
        uri = refer.refer_to.uri
        user = uri.user if isinstance(uri, SipUri) else None
        if refer.replaces is not None:
            replaces = refer.replaces
            return self._handing_on(bridged, leg, lambda: self._attended(bridged, leg, replaces))
        if not user:
            return 404
        if user == self.park_extension:
            # Either side may park the other (the caller's side when it is one of our agents).
            return self._handing_on(bridged, leg, lambda: self._parked_by_phone(bridged, by, leg))
        started = self._handing_on(
            bridged,
            leg,
            lambda: self._transfer_b(bridged, user, by=by, notify=leg, mode="blind"),
        )
        if isinstance(started, int):
            logger.info("call %s: REFER to %s by %s refused: %d", leg.call_id, user, by, started)
            return started
        return None

    def _dialog_of(self, replaces: Replaces) -> tuple[BridgedCall, Call] | None:
        """The bridged call and leg of the dialog a Replaces names (RFC 3891 3: its to-tag is
        our tag, its from-tag the phone's), when it is confirmed."""
        leg = self.ua.calls.get(replaces.call_id)
        dialog = leg.dialog if leg is not None else None
        if leg is None or dialog is None or leg.state is not LegState.CONNECTED:
            return None
        if (dialog.local_tag, dialog.remote_tag) != (replaces.to_tag, replaces.from_tag):
            return None
        for bridged in self.active.values():
            if leg in (bridged.a, bridged.b) and bridged.media is not None:
                return bridged, leg
        return None

    def _attended(self, bridged: BridgedCall, leg: Call, replaces: Replaces) -> int | None:
        """REFER with Replaces from the answered party's phone: it talks to the caller here
        and to a colleague on the call the Replaces names; the caller and the colleague are
        joined and both of the transferor's legs end (attended transfer)."""
        found = self._dialog_of(replaces)
        if found is None:
            return 481
        consult, transferor_leg = found
        if consult is bridged:
            return 403  # the REFER's own dialog
        target = consult.b if transferor_leg is consult.a else consult.a
        party = consult.callee if target is consult.b else consult.caller
        if target is None or target.media is None:
            return 481
        if consult.release(target) is None:
            return 491
        if not bridged.take_over(leg, target, party, by=bridged.callee, mode="attended",
                                 notify=leg):  # fmt: skip
            return 491
        logger.info("call %s: attended transfer to %s", bridged.call_id, party)
        return None

    def _replacing(self, call: Call, caller: str) -> bool:
        """An INVITE with Replaces (RFC 3891) from `caller`'s phone: it takes over the answered
        party's leg of a bridged call (that leg gets BYE). True when it was handled (taken
        over, or refused with 481/403)."""
        header = call.invite.headers.get("Replaces")
        if header is None:
            return False
        try:
            replaces = Replaces.parse(header)
        except ValueError:
            call.reject(400, "Malformed Replaces")
            return True
        found = self._dialog_of(replaces)
        if found is None:
            call.reject(481, "No such dialog to replace")
            return True
        bridged, leg = found
        if leg is not bridged.b:
            call.reject(403, "Only the answered party's leg can be replaced")
            return True
        self._track(self._take_over(call, caller, bridged, leg))
        return True

    async def _take_over(self, call: Call, caller: str, bridged: BridgedCall, old: Call) -> None:
        try:
            await call.answer(codecs=[old.media.codec_name] if old.media else None)
        except Exception as exc:  # no codec we share, no port
            logger.info("call %s: Replaces not answered: %s", call.call_id, exc)
            call.reject(getattr(exc, "status_code", 500))
            return
        if not bridged.take_over(old, call, caller, by=caller, mode="replaces"):
            await call.hangup(reason="replaced-call-gone")

    def transferred_from_queue(self, bridged: BridgedCall, transfer: dict[str, Any]) -> None:
        """A live call an agent transferred into a queue was answered by `transfer["to"]`
        (the queue's agent, who counts as on the call already)."""
        self.events.publish(CallTransferred(bridged, transfer["from"], transfer["to"], transfer))

    def _transferred(
        self, bridged: BridgedCall, old: Call, new: Call, transfer: dict[str, Any]
    ) -> None:
        now = self.ua.loop.time()
        customer_call = bridged.summary.direction != "internal"
        self.presence.call_ended(transfer["from"], now=now, wrap_up=customer_call)
        self.presence.call_started(transfer["to"], now=now)
        self.events.publish(CallTransferred(bridged, transfer["from"], transfer["to"], transfer))

    def _ringing(self, bridged: BridgedCall, first: bool) -> None:
        self.events.publish(CallRinging(bridged.summary, frozenset(bridged.ringing), first=first))

    def _answered(self, bridged: BridgedCall) -> None:
        now = self.ua.loop.time()
        summary = bridged.summary
        forwarded_out = (
            bridged.callee not in self.extensions
            and bridged.b is not None
            and "Diversion" in bridged.b.invite.headers
        )
        if forwarded_out and summary.direction == "internal":
            # An agent's call forwarded out through a trunk: the number that answered is the
            # customer, the caller the agent (the journal's agent and callback follow).
            summary.direction, summary.customer = "outbound", bridged.callee
        elif forwarded_out and summary.owner in self.extensions:
            # A customer's call to an agent who forwards it to a mobile: the agent took it.
            summary.callee = summary.owner
        for party in bridged.parties:
            self.presence.call_started(party, now=now)
        self.events.publish(CallAnswered(bridged))
        if bridged.picked_up_by is not None and bridged.callee == bridged.picked_up_by[1]:
            self.events.publish(CallPickedUp(bridged, *bridged.picked_up_by))

    async def _auto_reply(self, leg: Call, prompt: Path | None) -> None:
        """Tell a caller nobody answered that we will call back, then hang up."""
        if prompt is None:
            leg.reject(480)
            return
        try:
            await leg.answer()
        except (MediaError, OSError) as exc:  # an offer we cannot take, or no RTP port left
            logger.info("call %s: auto-reply not answered: %s", leg.call_id, exc)
            leg.reject(exc.status_code if isinstance(exc, MediaError) else 503)
            return
        try:
            await asyncio.wait_for(leg.next_event(), 5)  # the ACK
            await leg.play(WavSource(prompt))
        except (TimeoutError, RuntimeError) as exc:
            logger.info("call %s: auto-reply not played: %s", leg.call_id, exc)
        await leg.hangup(reason="auto-reply")

    def announce(self, summary: CallSummary) -> None:
        """A call has started (the journal opens its row); its end is written once, by
        whoever concludes it or, failing that, by the stop."""
        self._open[summary.call_id] = summary
        self.events.publish(CallStarted(summary))

    def announce_outgoing(self, leg: Call, summary: CallSummary) -> None:
        """A call the engine placed outside any bridge (the dialer's) has started; when the
        customer's phone first rings, the call is ringing (CallRinging, nobody of ours rung)."""
        self.announce(summary)

        def ringing() -> None:
            self.events.publish(CallRinging(summary, frozenset(), first=True))

        if leg.state is LegState.RINGING:
            ringing()
        elif leg.state is LegState.CALLING:
            leg.on_ringing = ringing

    def conclude(self, summary: CallSummary) -> None:
        """A call that never reached a bridge is over (busy, voicemail...): log and journal it."""
        summary.ended_at = summary.ended_at or datetime.now(UTC)
        self._end(summary)

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        self._tasks.spawn(work)

    def _end(self, summary: CallSummary) -> None:
        """Write the end of a call in a task of its own: a stop that cancels the call tasks
        still running lets it finish."""
        self._ending.spawn(self._finish(summary))

    async def _run(self, bridged: BridgedCall) -> None:
        try:
            summary = await bridged.run()
        except Exception:
            # A bug, not a call outcome: logged with its traceback, and the call still journaled.
            logger.exception("call %s: failed", bridged.call_id)
            summary = bridged.summary
            summary.outcome, summary.hangup_cause = "failed", "internal-error"
            summary.sip_status = bridged.a.final_status or summary.sip_status
        finally:
            self.drop(bridged)  # (told already by `_call_over`, unless that failed)
            seated = self.seats.holder(bridged.seat) if bridged.seat is not None else None
            if seated is not None:
                self.seats.release(seated)
                self._seat_idle(seated)
        if bridged.handed_off:
            return  # the queue that took the caller journals the call at its end
        self._end(summary)

    def drop(self, bridged: BridgedCall) -> None:
        """Take `bridged` off the live calls (a queue may have the caller's leg by now)."""
        if self.active.get(bridged.call_id) is bridged:
            del self.active[bridged.call_id]

    def parties_over(self, bridged: BridgedCall, *, wrap_up: bool) -> None:
        """The parties of `bridged` are off it: free again, or in wrap-up (`wrap_up`)."""
        now = self.ua.loop.time()
        for party in bridged.parties:
            self.presence.call_ended(party, now=now, wrap_up=wrap_up)

    def _call_over(self, bridged: BridgedCall) -> None:
        """A bridged call is over (before its agents' bookings go): wrap-up after an answered
        customer call, free at once after an internal one."""
        self.drop(bridged)
        if bridged.summary.answered_at is not None:
            self.parties_over(bridged, wrap_up=bridged.summary.direction != "internal")

    def _transfer_over(self, bridged: BridgedCall) -> None:
        """An IVR's transfer is over: its parties wrap up when it was bridged."""
        self.drop(bridged)
        if bridged.media is not None:
            self.parties_over(bridged, wrap_up=True)

    async def _finish(self, summary: CallSummary) -> None:
        if summary.call_id in self._stopped:
            logger.info("call %s: journaled by the stop already", summary.call_id)
            return
        self._open.pop(summary.call_id, None)
        await self._write_end(summary)

    async def _write_end(self, summary: CallSummary) -> None:
        for transfer in summary.transfers:
            if transfer.get("result") == "queued":  # no queue agent answered it in the end
                transfer["result"] = "failed"
                transfer["outcome"] = summary.hangup_cause or "failed"
        quality = self.ua.take_quality(dict.fromkeys([summary.call_id, *summary.legs]))
        if quality:
            summary.quality = quality
        logger.info(
            "call %s %s %s -> %s: %s (status %s, talk %.1f s, cause %s)",
            summary.call_id,
            summary.direction,
            summary.caller,
            summary.callee,
            summary.outcome,
            summary.sip_status,
            summary.talk_seconds,
            summary.hangup_cause,
        )
        await self.events.deliver(CallEnded(summary))

    async def _feature_code(self, call: Call, agent: str, *, away: bool) -> None:
        """*50 away, *51 available: answered with a beep so the agent hears it took effect."""
        self.presence.set_away(agent, away, now=self.ua.loop.time())
        await self._beep(call, long=away)

    async def _take_seat(self, call: Call, agent: str) -> None:
        """*55: the agent's call becomes their seat for power and predictive dialing: answered,
        a beep, then held silent; '#' ends the wrap-up after each customer (ready for the
        next), hanging up stands the agent up."""
        now = self.ua.loop.time()
        if agent not in self.extensions or self.seats.take(agent, call, now=now) is None:
            await self._reorder(call, reason="no-seat")  # not an agent, or seated already
            return
        try:
            await call.answer()
        except Exception as exc:  # no codec, no port: the agent is not seated
            logger.warning("seat of %s not taken: %s", agent, exc)
            self.seats.leave(agent, call)
            call.reject(getattr(exc, "status_code", 500))
            return
        with contextlib.suppress(TimeoutError, RuntimeError):
            await asyncio.wait_for(call.next_event(), 5)  # the ACK
        await self._seated(agent, call)

    async def call_seat(self, agent: str) -> None:
        """Ring `agent`'s phones, asking them to answer by themselves, and make the call the
        first one answers their seat (what *55 does from the phone); returns while they ring.
        SeatError (with the HTTP status) when the agent is unknown, seated, busy or not
        registered."""
        if agent not in self.extensions:
            raise SeatError(f"no extension {agent}", 404)
        if agent in self.seats:
            raise SeatError(f"{agent} has a seat already")
        if self.busy(agent):
            raise SeatError(f"{agent} is on a call")
        bindings = self.registrar.lookup(agent, now=self.ua.loop.time())
        if not any(isinstance(b.contact.uri, SipUri) for b in bindings):
            raise SeatError(f"{agent}'s phone is not registered")
        release = self.hold(agent)  # busy for everyone else while they ring
        try:
            legs = await self.ring_phones(
                bindings,
                from_=self.identity(SEAT_CODE, "Seat"),
                to=self.identity(agent, None),
                headers=self._auto_answer_hints(),
            )
        except BaseException:
            release()
            raise
        if not legs:
            release()
            raise SeatError(f"{agent}'s phone cannot be reached")
        self._track(self._ring_seat(agent, legs, release))

    async def _ring_seat(self, agent: str, legs: list[Call], release: Callable[[], None]) -> None:
        try:
            leg = await first_answer(legs, SEAT_RING_SECONDS)
        except asyncio.CancelledError:
            for ringing in legs:
                await ringing.hangup(reason="shutdown")
            raise
        finally:
            release()
        if not isinstance(leg, Call):
            for ringing in legs:
                await ringing.hangup(reason="no-answer")
            logger.info("seat of %s: no phone answered", agent)
            return
        if self.seats.take(agent, leg, now=self.ua.loop.time()) is None:
            await leg.hangup(reason="seated-already")  # *55 from the phone meanwhile
            return
        await self._seated(agent, leg)

    async def leave_seat(self, agent: str) -> None:
        """The agent stands up (their seat's call is hung up); SeatError when they have no
        seat, or a customer is on it (hang that call up first)."""
        seat = self.seats.get(agent)
        if seat is None:
            raise SeatError(f"{agent} has no seat", 404)
        if seat.on_call:
            raise SeatError(f"{agent} has a customer on the seat")
        self._stand_up(agent, seat.leg)
        await seat.leg.hangup(reason="seat-left")

    async def _seated(self, agent: str, call: Call) -> None:
        """`call` (answered) is `agent`'s seat now: a beep, then the dialer may use it."""
        logger.info("seat taken by %s (call %s)", agent, call.call_id)
        call.ended.add_done_callback(lambda _: self._stand_up(agent, call))
        with contextlib.suppress(RuntimeError):
            await call.play(ToneSource(_BEEP, duration=0.2))
        self._seat_idle(agent)

    def _seat_left(self, leg: Call) -> None:
        """A seated agent transferred or parked their customer: the seat takes the next one."""
        agent = self.seats.holder(leg)
        if agent is not None:
            self.seats.release(agent)
            self._seat_idle(agent)

    def _seat_idle(self, agent: str) -> None:
        """The agent's seat has no customer on it (taken, or its customer gone): '#' says
        ready, and the dialer looks again."""
        seat = self.seats.get(agent)
        if seat is None or seat.on_call:
            return
        seat.leg.on_digit = functools.partial(self._seat_key, agent)
        self.presence.notify(agent, now=self.ua.loop.time())

    def _seat_key(self, agent: str, digit: str, method: str) -> None:
        seat = self.seats.get(agent)
        if digit == "#" and seat is not None and not seat.on_call:
            self.presence.end_wrap_up(agent, now=self.ua.loop.time())

    def _stand_up(self, agent: str, call: Call) -> None:
        if self.seats.leave(agent, call) is not None:
            logger.info("seat of %s left (call %s)", agent, call.call_id)
            self.presence.notify(agent, now=self.ua.loop.time())

    async def _queue_code(self, call: Call, agent: str, queue: str | None, *, login: bool) -> None:
        """*45 / *45NAME log in to the agent's queues (or NAME), *46 / *46NAME log out: a
        beep when it took effect, the reorder tone when the agent is in no such queue."""
        if not self.queues.log_in(agent, queue, login=login):
            await self._reorder(call, reason="no-such-queue")
            return
        await self._beep(call, long=not login)

    async def _beep(self, call: Call, *, long: bool) -> None:
        """A feature code took effect: answer, beep (long for off, short for on), hang up."""
        await call.answer()
        try:
            await asyncio.wait_for(call.next_event(), 5)
            await call.play(ToneSource(_BEEP, duration=0.4 if long else 0.2))
        except (TimeoutError, RuntimeError):
            pass
        await call.hangup(reason="feature-code")

    def _presence_changed(self, extension: str, state: AgentState) -> None:
        self.events.publish(PresenceChanged(extension, state))
        timer = self._wrap_up_timers.pop(extension, None)
        if timer is not None:
            timer.cancel()
        if state is AgentState.WRAP_UP:
            self._arm_wrap_up(extension)

    def _arm_wrap_up(self, extension: str) -> None:
        left = self.presence.wrap_up_left(extension, now=self.ua.loop.time())
        self._wrap_up_timers[extension] = self.ua.loop.call_later(
            left, self._wrap_up_over, extension
        )

    def _wrap_up_over(self, extension: str) -> None:
        """An agent's wrap-up ran out: the dashboards, the dialer and BLF hear the new state."""
        self._wrap_up_timers.pop(extension, None)
        now = self.ua.loop.time()
        if self.presence.state(extension, now=now) is AgentState.WRAP_UP:
            self._arm_wrap_up(extension)  # extended meanwhile (another node's wrap-up)
            return
        self.presence.notify(extension, now=now)

    async def shutdown(self) -> None:
        """Hang up every call with BYE (or CANCEL / 503 before answer); journal the calls still
        up after `stop_grace` seconds as the stop ended them (`CallSummary.stopped`: a peer
        that never answers our INVITE, or its CANCEL, holds its leg for 64*T1) and cancel
        their tasks; then wait for every call's end to be written, so that the database
        closes after the last row."""
        for timer in self._wrap_up_timers.values():
            timer.cancel()
        self._wrap_up_timers.clear()
        for session in list(self.monitors.values()):
            session.leave()
        await self.queues.shutdown()
        await self.blf.shutdown()
        for bridged in list(self.active.values()):
            for leg in (bridged.a, bridged.b):
                if leg is not None:
                    await leg.hangup(reason="shutdown")
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.stop_grace)
        self._end_at_stop()
        late = list(self._tasks)
        for task in late:
            task.cancel()  # their legs hang up as they unwind; nothing of theirs is journaled
        if late:
            await asyncio.wait(late, timeout=self.stop_grace)
        if self._ending:
            logger.info("stop: waiting for %d call ends to be written", len(self._ending))
            _, unwritten = await asyncio.wait(self._ending, timeout=END_WRITE_TIMEOUT)
            if unwritten:
                logger.error("stop: %d call ends not written in %.0f s", len(unwritten),
                             END_WRITE_TIMEOUT)  # fmt: skip

    def _end_at_stop(self) -> None:
        """Journal each call still up (its row open, no end written) as ended by the stop;
        its own task, should it end the call later, writes nothing."""
        late, self._open = self._open, {}
        now = datetime.now(UTC)
        for call_id, summary in late.items():
            self._stopped.add(call_id)
            summary.stopped(now)
            logger.info("call %s: not ended by its task, journaled by the stop as %s",
                        call_id, summary.outcome)  # fmt: skip
            self._ending.spawn(self._write_end(summary))


async def answer_of(leg: Call, timeout: float) -> Answered | Ended | None:
    """How `leg` (an INVITE we sent to a phone) turned out within `timeout` seconds: its
    answer, its end, or None when it still rings (the caller hangs it up)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while True:
            event = await leg.next_event(max(0.0, deadline - loop.time()))
            if isinstance(event, Answered | Ended):
                return event
    except TimeoutError:
        return None


async def first_answer(legs: list[Call], timeout: float) -> Call | Ended | None:
    """The first of `legs` (one party's phones rung together: `Switchboard.ring_phones`) to
    answer within `timeout` seconds, the others CANCELled; else how the last one ended when
    every phone refused, or None when the time ran out first (the caller hangs up the legs)."""
    loop = asyncio.get_running_loop()
    waits = {loop.create_task(answer_of(leg, timeout)): leg for leg in legs}
    ended: Ended | None = None
    try:
        while waits:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            results = {waits.pop(task): task.result() for task in done}
            winner = next((leg for leg, r in results.items() if isinstance(r, Answered)), None)
            if winner is not None:
                for leg in [*waits.values(), *results]:
                    if leg is not winner:
                        await leg.hangup(reason=ANSWERED_ELSEWHERE)
                return winner
            if any(r is None for r in results.values()):
                return None  # the others ring to the same deadline
            ended = next(r for r in results.values() if isinstance(r, Ended))
        return ended
    finally:
        for task in waits:
            task.cancel()


async def _refused_for_failover(call: Call) -> bool:
    """Wait for the leg's first sign of life: False once it rings or is answered, True when it
    ended first with a status another trunk may do better with (5xx, 408, unreachable)."""
    await asyncio.wait({call.progressed, call.ended}, return_when=asyncio.FIRST_COMPLETED)
    if call.progressed.done():
        return False
    status = call.final_status
    return status is not None and fails_over(status)


def _e164(trunk: Trunk, number: str) -> str | None:
    """`number` (dialled by an agent, a lead's phone, an IVR target) as E.164, read as written
    in the trunk's country; None when it is no phone number."""
    try:
        return trunk.numbers.to_e164(number)
    except NumberError:
        return None


def _http_date() -> str:
    from email.utils import formatdate

    return formatdate(usegmt=True)
