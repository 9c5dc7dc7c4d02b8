"""Back-to-back calls: the caller's leg, outgoing legs hunted step by step, one bridge.

The engine anchors media (docs/architecture.md 1): the caller talks to our RTP port on leg
A, the callee to ours on leg B, and the bridge relays between them, so recording, whisper and
AMD can join later.
A hunt is a list of steps; each step rings some targets at once (ring-all is one step with every
member, round-robin one step per member) until one answers, the step times out, or the whole
ring timeout is spent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from telephony.aio import Call, MediaBridge, MediaError, TaskSet, UserAgent, bridge, dtmf_route
from telephony.call import Answered, Ended, Ringing
from telephony.call.session import ANSWERED_ELSEWHERE, PICKED_UP, ReferReceived
from telephony.media import ToneSource, WavSource
from telephony.sip import NameAddr, SipUri

if TYPE_CHECKING:
    from .pickup import Pickup

from .booking import AgentBookings
from .registrar import Binding
from .trunks import fails_over

logger = logging.getLogger(__name__)


@dataclass
class CallSummary:
    """What the call log needs when a call is over."""

    call_id: str
    caller: str
    callee: str
    """The extension that answered, else the dialled extension, group or DID."""
    started_at: datetime
    direction: str = "internal"
    """internal (agent to agent), inbound (from a trunk) or outbound (to a trunk)."""
    did: str | None = None
    ring_group: str | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: str = "failed"
    """answered, missed, busy, no-answer, cancelled, unavailable, rejected, failed."""
    sip_status: int | None = None
    hangup_cause: str | None = None
    legs: list[str] = field(default_factory=list)
    owner: str | None = None
    """Gets the callback task if the call is missed and the contact has no manager."""
    customer: str | None = None
    """The customer's number on trunk and dialer calls (None between agents)."""
    campaign_id: int | None = None
    lead_id: int | None = None
    """The dialer campaign and lead a call belongs to."""
    recording: str | None = None
    """Path of the call's stereo WAV, when it was recorded."""
    analytics: dict[str, Any] | None = None
    """Talk/silence analytics of the recording."""
    quality: dict[str, Any] | None = None
    """Media quality per leg that carried audio, by the leg's Call-ID (loss, jitter, and what
    the phone reported by RTCP)."""
    transfers: list[dict[str, Any]] = field(default_factory=list)
    """Each transfer of the call, in order: {at, from, to, by, mode, id, result}, failed ones
    with `outcome` (and `status` when a party refused); `callee` is the last agent, `agents`
    the whole chain (see crm_bridge.models.Call.transfers)."""

    @property
    def agents(self) -> list[str]:
        """Who talked to the caller, in order (the answering party, then each transfer's)."""
        chain = [t["from"] for t in self.transfers[:1]]
        chain += [t["to"] for t in self.transfers if t.get("result") == "completed"]
        return chain or ([self.callee] if self.answered_at is not None else [])

    @property
    def talk_seconds(self) -> float:
        if self.answered_at is None or self.ended_at is None:
            return 0.0
        return (self.ended_at - self.answered_at).total_seconds()

    def stopped(self, at: datetime) -> None:
        """End the summary of a call the engine's stop hung up: answered stays answered (its
        talk ends `at`); before an answer, a customer who called us is a missed call (called
        back), any other call is cancelled (our side ended it). Cause "shutdown"."""
        self.ended_at = self.ended_at or at
        self.hangup_cause = "shutdown"
        if self.answered_at is not None:
            self.outcome, self.sip_status = "answered", 200
            return
        self.outcome = "missed" if self.direction == "inbound" else "cancelled"
        self.sip_status = self.sip_status or 503


@dataclass(frozen=True)
class Target:
    extension: str
    binding: Binding
    headers: tuple[tuple[str, str], ...] = ()
    """Extra headers of the INVITE to it (a trunk's identity headers)."""
    external: bool = False
    """A number behind a carrier: the To names it as the Request-URI does (in the carrier's
    format, on its host), not as one of our extensions."""
    credentials: tuple[str, str] | None = None
    """(username, password) for a provider's 401/407 to the INVITE (trunk targets)."""
    trunk: str | None = None
    """The trunk a call to an external number goes through (its To is the Request-URI)."""
    from_: NameAddr | None = None
    """The From of the INVITE to it, when not the call's caller identity (a call forwarded out
    through a trunk presents a number the carrier accepts)."""


@dataclass(frozen=True)
class HuntStep:
    targets: tuple[Target, ...]
    """Rung at the same time."""
    timeout: float
    """Seconds this step rings before the hunt moves on."""
    failover: bool = False
    """A trunk of a failover list: refused, the hunt moves on only for a status another trunk
    may fix (5xx, 408: `pbx.trunks.fails_over`), not for the called party's 486 or 404."""


# What a caller hears while a transfer rings its new party: ringback (ITU-T E.180, North
# American 440+480 Hz, 2 s on, 4 s off), never silence.
RINGBACK = (440.0, 480.0)
RINGBACK_CADENCE = (2.0, 4.0)


FALLBACK_GRACE = 5.0
"""Seconds after a failed blind transfer during which the transferor's phone hanging up
means it gave up on the transfer (the caller rings it back), not that the call is over."""


def ringback() -> ToneSource:
    return ToneSource(RINGBACK, level_dbfs=-19.0, cadence=RINGBACK_CADENCE)


@dataclass
class _Consultation:
    leg: Call
    party: str
    record: dict[str, Any]
    media: MediaBridge


@dataclass(frozen=True)
class TransferRequest:
    """Hand the caller's party to someone else: `steps` ring `target` (an extension, a group
    or a number); `by` asked (an extension, "api"); `notify` is the REFER's leg, told how it
    went (sipfrag NOTIFYs)."""

    steps: list[HuntStep]
    target: str
    by: str
    mode: str = "blind"
    """blind, or warm: the agent consults the target first (complete_consultation or
    cancel_consultation decides)."""
    notify: Call | None = None
    id: int = 0
    """Numbers the call's transfers (the API's transfer id)."""
    ring_back: Callable[[], list[HuntStep]] | None = None
    """The transferor's phones, rung when a blind transfer failed and the transferor's phone
    left (before the failure; or, for a REFER, within FALLBACK_GRACE seconds of it: many
    phones hang up once they sent REFER, baresip once it got the failing sipfrag), so that
    the caller is not lost."""


@dataclass(frozen=True)
class ParkRequest:
    """Park the caller in `slot` until `retrieval` brings a leg (answered by the call, with
    its party) or `timeout` seconds pass and `ring_back` (the parker's phones) rings."""

    retrieval: asyncio.Future[tuple[Call, str]]
    slot: str
    by: str
    timeout: float
    ring_back: Callable[[], list[HuntStep]]
    announce: Path | Callable[[str], Awaitable[Path | None]] | None = None
    """Played to the parker before its leg is hung up (the slot, spoken): a WAV, or what makes
    it for the slot (None, or an error: parked all the same, without it)."""
    notify: Call | None = None
    """The parker's leg that asked by REFER: told 200 (sipfrag) once it heard the slot."""


_OUTCOME_BY_STATUS = {
    486: "busy",
    600: "busy",
    480: "no-answer",
    408: "no-answer",
    487: "cancelled",
    603: "rejected",
}


class PartyIndex:
    """How many calls each extension is on, as caller, callee or a phone the call hunts (what
    `Switchboard.busy` asks on every routing decision), kept as the calls change instead of
    scanning every call in progress."""

    def __init__(self) -> None:
        self._count: dict[str, int] = {}

    def calls_of(self, extension: str) -> int:
        return self._count.get(extension, 0)

    def add(self, call: BridgedCall) -> None:
        if call._index is not None:
            call._index.discard(call)
        call._index = self
        self._move(call, call.involved())

    def discard(self, call: BridgedCall) -> None:
        if call._index is self:
            self._move(call, frozenset())
            call._index = None

    def update(self, call: BridgedCall) -> None:
        self._move(call, call.involved())

    def _move(self, call: BridgedCall, now: frozenset[str]) -> None:
        count = self._count
        before, call._indexed = call._indexed, now
        for extension in before - now:
            left = count[extension] - 1
            if left:
                count[extension] = left
            else:
                del count[extension]
        for extension in now - before:
            count[extension] = count.get(extension, 0) + 1


class ActiveCalls(dict[str, "BridgedCall"]):
    """The calls in progress by the caller leg's Call-ID; entering and leaving keeps a
    `PartyIndex` of them."""

    def __init__(self) -> None:
        super().__init__()
        self.parties = PartyIndex()

    def __setitem__(self, key: str, call: BridgedCall) -> None:
        replaced = self.get(key)
        if replaced is not None and replaced is not call:
            self.parties.discard(replaced)
        super().__setitem__(key, call)
        self.parties.add(call)

    def __delitem__(self, key: str) -> None:
        self.parties.discard(self[key])
        super().__delitem__(key)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self.parties.discard(self[key])
        return super().pop(key, *default)

    def clear(self) -> None:
        for call in self.values():
            self.parties.discard(call)
        super().clear()

    def popitem(self) -> tuple[str, BridgedCall]:
        key, call = super().popitem()
        self.parties.discard(call)
        return key, call

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, call in dict(*args, **kwargs).items():
            self[key] = call

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]


def transfer_outcome(status: int) -> str:
    """What a transfer's target did, by the status that ended the attempt (the chain's
    `outcome`): busy, no-answer (a ring timeout, 480, 408), rejected (603 and any other
    refusal), unavailable (404, 410: no such party)."""
    if status in (404, 410):
        return "unavailable"
    found = _OUTCOME_BY_STATUS.get(status, "rejected")
    return "no-answer" if found == "cancelled" else found


class BridgedCall:
    """Hunts for a callee and bridges the first that answers to the caller."""

    _index: PartyIndex | None = None
    """The switchboard's index while the call is in its active calls."""
    _indexed: frozenset[str] = frozenset()
    """The extensions the index counts this call for."""

    def __init__(
        self,
        ua: UserAgent,
        a_leg: Call,
        *,
        caller: str,
        callee: str,
        steps: list[HuntStep],
        ring_timeout: float,
        caller_identity: NameAddr,
        summary: CallSummary | None = None,
        seat: Call | None = None,
    ) -> None:
        self.ua = ua
        self.a = a_leg
        """The kept leg: the caller's, unless `swap` made the answered party's the kept one."""
        self.seat = seat
        """An agent's seat (nailed-up leg, answered already): bridged at once instead of
        ringing anyone, and left up when the caller goes."""
        self.b: Call | None = None
        self.swapped = False
        """`a` is the answered party's leg and `b` the caller's (a caller-side transfer)."""
        self.steps = steps
        self.ring_timeout = ring_timeout
        self.caller_identity = caller_identity
        self.summary = summary or CallSummary(a_leg.call_id, caller, callee, datetime.now(UTC))
        self.call_id = self.summary.call_id
        """The call's identity, whichever leg is `a` now: its summary's (the Call-ID of the
        call's first leg, the key of its calls row and of the API), also when `a` is another
        leg (one of an agent's phones rung together answered, a queue called its caller
        back)."""
        self.ringing: set[str] = set()
        """Extensions whose phones ring for this call right now."""
        self._caller, self._callee = caller, callee
        self.hunting = {t.extension for t in steps[0].targets} if steps else set()
        self._on_answer: list[Callable[[BridgedCall], object]] = []
        self.on_ringing: Callable[[BridgedCall, bool], None] | None = None
        """Told when the phones being rung change (`ringing`), and once with True when the
        first of them rings (its 180/183)."""
        self.picked_up_by: tuple[Pickup, str] | None = None
        """The pickup code and the extension that took the call while it rang."""
        self.on_no_answer: Callable[[Call], Awaitable[None]] | None = None
        """Takes over a caller nobody answered (auto-reply prompt) instead of a 480."""
        self.media: MediaBridge | None = None
        self._timed_out = False
        self._rang = False
        self.music_on_hold: Path | None = None
        """Looped to one party while the other holds the call (None: they hear silence)."""
        self._holding: tuple[Call, Call] | None = None
        """(held leg, the leg hearing the music) while the music plays."""
        self.keep_caller = False
        """The caller's leg is answered already and stays up when nobody answers (an IVR
        transfer: the flow goes on with its fallback)."""
        self._picked: asyncio.Future[tuple[Call, str]] = asyncio.get_running_loop().create_future()
        """Set by pick_up(): another phone's leg takes the call instead of the ringing ones."""
        self._transfer: asyncio.Task[None] | None = None
        """The transfer in progress (its new party ringing), at most one."""
        self._consult: _Consultation | None = None
        """A warm transfer's consultation: the agent talks to the target, the caller waits."""
        self._changed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Set when a consultation completes or is cancelled (the talk loop looks again)."""
        self._released: set[Call] = set()
        """Legs handed to another call (an attended transfer took them): never hung up here."""
        self._hangups = TaskSet("call")
        """Hang-ups and relayed key presses running on their own."""
        self._on_transfer: list[Callable[[BridgedCall, Call, Call, dict[str, Any]], None]] = []
        self.on_answered_digit: Callable[[BridgedCall, str], None] | None = None
        """Told each key the answered party presses (its in-call feature codes: #72 parks)."""
        self.on_seat_left: Callable[[Call], None] | None = None
        """Told when the seat's leg leaves this call while it goes on (its agent transferred
        or parked the customer): the seat is free again."""
        self.on_refer: Callable[[BridgedCall, Call, ReferReceived], int | None] | None = None
        """Asked when the answered party's phone sends REFER (see `Call.on_refer`)."""
        self._fallback: tuple[Callable[[], list[HuntStep]], str, float] | None = None
        """After a failed blind transfer: the transferor's ring-back steps, its name and the
        loop time until which its leaving means it gave up on the transfer."""
        self.handed_off = False
        """The caller's leg went to a new owner (hand_off): its summary is that owner's to
        journal, not this call's."""
        self.bookings: AgentBookings | None = None
        """Where an agent is claimed before this call rings its phone (shared by nodes);
        None: this node's own count (`Switchboard.busy`) decides alone."""
        self._booked: set[str] = set()
        """Agents this call claimed and has not released."""
        self.on_over: Callable[[BridgedCall], None] | None = None
        """Told once when the call is over, before the agents it booked are released: the
        owner takes the call off its books there (presence starts the parties' wrap-up), so
        the release carries that wrap-up to the other nodes and none of them sees the agent
        free in between."""

    @property
    def parties(self) -> tuple[str, str]:
        return (self.caller, self.callee)

    def involved(self) -> frozenset[str]:
        """The extensions this call counts busy: its parties and the phones it hunts."""
        return frozenset((self._caller, self._callee, *self._hunting))

    # The parties and the phones hunted are what `PartyIndex` counts: each change re-counts.
    @property
    def caller(self) -> str:
        return self._caller

    @caller.setter
    def caller(self, value: str) -> None:
        self._caller = value
        if self._index is not None:
            self._index.update(self)

    @property
    def callee(self) -> str:
        return self._callee

    @callee.setter
    def callee(self, value: str) -> None:
        self._callee = value
        if self._index is not None:
            self._index.update(self)

    @property
    def hunting(self) -> frozenset[str]:
        """Extensions this call rings or is about to ring (from the moment it is created, so
        two calls started together never both take the same agent)."""
        return self._hunting

    @hunting.setter
    def hunting(self, value: set[str] | frozenset[str]) -> None:
        self._hunting = frozenset(value)
        if self._index is not None:
            self._index.update(self)

    def when_answered(self, listener: Callable[[BridgedCall], object]) -> None:
        """Call `listener` when someone answers and the media is bridged (in the order they
        were added; the switchboard's comes first)."""
        self._on_answer.append(listener)

    def when_transferred(
        self, listener: Callable[[BridgedCall, Call, Call, dict[str, Any]], None]
    ) -> None:
        """Call `listener(bridged, old leg, new leg, transfer)` when a transfer completed and
        the new party is bridged to the caller (the recording follows the agent channel)."""
        self._on_transfer.append(listener)

    @property
    def transferring(self) -> bool:
        return (self._transfer is not None and not self._transfer.done()) or (
            self._consult is not None
        )

    def transfer(self, request: TransferRequest) -> bool:
        """Blind transfer of the caller (leg A) away from the answered party (leg B): the caller
        hears ringback while `request.steps` ring; the first to answer is bridged to the caller
        and B is hung up (if it has not left already, as a phone does after its REFER). When
        nobody answers, the caller goes back to B if B is still there, else the call ends.
        False when the call is not answered and bridged, or a transfer runs already."""
        if self.b is None or self.media is None or self.transferring or self.a.ended.done():
            return False
        if not request.steps:
            return False
        self._transfer = asyncio.get_running_loop().create_task(self._run_transfer(request))
        return True

    def _record(self, request: TransferRequest) -> dict[str, Any]:
        """The chain's entry of a transfer away from the answered party, before its result."""
        return self._entry(self.callee, request.target, by=request.by, mode=request.mode,
                           id=request.id)  # fmt: skip

    def _entry(
        self, from_: str, to: str, *, by: str, mode: str, id: int | None = None
    ) -> dict[str, Any]:
        """A new entry of the call's chain (`id`: the next one when None)."""
        return {
            "at": datetime.now(UTC).isoformat(),
            "from": from_,
            "to": to,
            "by": by,
            "mode": mode,
            "id": len(self.summary.transfers) + 1 if id is None else id,
        }

    async def _run_transfer(self, request: TransferRequest) -> None:
        old = self.b
        assert old is not None and self.media is not None
        record = self._record(request)
        logger.info("call %s: %s transfers %s to %s (%s)", self.call_id, request.by,
                    self.callee, request.target, request.mode)  # fmt: skip
        self._end_music()
        self.media.close()
        self.media = None
        self.a.on_hold = old.on_hold = None
        caller_media = self.a.media
        warm = request.mode == "warm"
        # Blind: the caller hears ringback. Warm: music on hold (else ringback) for the caller,
        # ringback for the agent who consults.
        hearing = [(caller_media, self._hold_source() if warm else ringback())]
        if warm and old.media is not None:
            hearing.append((old.media, ringback()))
        for media, source in hearing:
            if media is not None:
                media.continue_relayed_stream()
                media.play(source)
        winner: Call | None = None
        statuses: list[int] = []
        previous = self.callee
        try:
            for step in request.steps:
                self.hunting = {t.extension for t in step.targets}
                legs = await self._dial(step)
                if not legs:
                    continue
                winner = await self._ring(legs, step.timeout, statuses)
                if winner is not None or self.a.ended.done():
                    break
        finally:
            self.hunting = set()
            answered_by, self.callee = self.callee, previous
            self.summary.callee = previous
            for media, _ in hearing[1:] if winner is not None and warm else hearing:
                if media is not None:
                    media.stop_playing()
        if winner is None or self.a.ended.done():
            status = 487 if self.a.ended.done() else (_final(statuses) if statuses else 480)
            record["result"] = "failed"
            record["outcome"] = "caller-gone" if self.a.ended.done() else transfer_outcome(status)
            record["status"] = status
            self.summary.transfers.append(record)
            if caller_media is not None:
                caller_media.stop_playing()
            if winner is not None:
                await winner.hangup(reason="caller-gone")
            if request.notify is not None:
                request.notify.notify_transfer(status)
            if request.ring_back is not None:
                # The transferor's phone left already, or it asked by REFER and may hang up
                # now that it failed; an agent whose phone stays (the API's transfer) and
                # hangs up later means to end the call.
                grace = FALLBACK_GRACE if request.notify is not None else 0.0
                self.ring_back_if_left(request.ring_back, previous, grace=grace)
            if not old.ended.done() and not self.a.ended.done():
                logger.info("call %s: transfer to %s failed (%d), back to %s",
                            self.call_id, request.target, status, previous)  # fmt: skip
                self._bridge(old)
            return
        record["to"] = answered_by
        if warm and not old.ended.done():
            # The consultation: the agent and the target talk, the caller hears the music.
            self._consult = _Consultation(winner, answered_by, record, bridge(old, winner))
            logger.info("call %s: %s consults %s", self.call_id, previous, answered_by)
            return
        self._complete(old, winner, answered_by, record, request.notify)

    def _complete(
        self,
        old: Call,
        new: Call,
        party: str,
        record: dict[str, Any],
        notify: Call | None = None,
    ) -> None:
        """The transfer is done: `new` (`party`) talks to the caller, `old` goes."""
        if notify is not None:
            notify.notify_transfer(200)
        if self.a.media is not None:
            self.a.media.stop_playing()
        record["result"] = "completed"
        self.summary.transfers.append(record)
        self.callee = self.summary.callee = party
        self._bridge(new)
        for listener in self._on_transfer:
            try:
                listener(self, old, new, record)
            except Exception:
                logger.exception("call %s: transfer listener failed", self.call_id)
        if not old.ended.done():
            self._hang_up_later(old, "transferred")

    def swap(self) -> bool:
        """Make the answered party's leg the kept one (`a`) and the caller's the one a
        transfer replaces (`b`): the caller's side transfers (the agent who placed the call
        hands its customer on). Swapping back undoes it. False while not answered and
        bridged, or a transfer runs."""
        if self.b is None or self.media is None or self.transferring:
            return False
        self.a, self.b = self.b, self.a
        self.caller, self.callee = self.callee, self.caller
        self.swapped = not self.swapped
        self._bind_refer(self.b)
        self._wake()
        return True

    def hand_off(self, request: TransferRequest) -> Call | None:
        """Blind transfer of the caller to someone who takes the leg over for good (a queue):
        the bridge closes, the answered party is hung up ("transferred"), and this call ends
        without hanging up the caller's leg, which is returned (its summary and recording go
        with it). The chain gets the attempt with result "queued" until the new owner
        completes it. None when the call is not answered and bridged, or a transfer runs."""
        if self.b is None or self.media is None or self.transferring or self.a.ended.done():
            return None
        old, caller = self.b, self.a
        record = {**self._record(request), "result": "queued"}
        logger.info("call %s: %s hands %s from %s to %s", caller.call_id, request.by,
                    self.caller, self.callee, request.target)  # fmt: skip
        self.summary.transfers.append(record)
        self._end_music()
        self.media.close()
        self.media = None
        caller.on_hold = caller.on_digit = caller.on_refer = None
        old.on_hold = old.on_digit = old.on_refer = None
        self._released.add(caller)
        self.handed_off = True
        if request.notify is not None:
            request.notify.notify_transfer(200)
        if not old.ended.done():
            self._hang_up_later(old, "transferred")
        self._wake()
        return caller

    def park(self, request: ParkRequest) -> bool:
        """Park the caller: it hears the music on hold, the answered party hears the
        announcement (the slot) and is hung up; the leg `request.retrieval` brings (answered
        here, its party) takes the call, or after `request.timeout` seconds the ring-back
        steps ring (the parker's phones). One call and one recording throughout, like a
        transfer (summary.transfers says "park"). False when the call is not answered and
        bridged, or a transfer runs."""
        if self.b is None or self.media is None or self.transferring or self.a.ended.done():
            return False
        self._transfer = asyncio.get_running_loop().create_task(self._run_park(request))
        return True

    async def _run_park(self, request: ParkRequest) -> None:
        retrieval, slot, by = request.retrieval, request.slot, request.by
        old = self.b
        assert old is not None and self.media is not None
        parker, lot = self.callee, f"park:{slot}"
        record = {**self._entry(lot, lot, by=by, mode="park"), "parker": parker}
        # Parked, the call has no agent: the parker is free for other calls meanwhile.
        self.callee = self.summary.callee = lot
        logger.info("call %s: %s parks %s on %s", self.call_id, by, self.caller, slot)
        self._end_music()
        self.media.close()
        self.media = None
        self.a.on_hold = old.on_hold = None
        caller_media = self.a.media
        if caller_media is not None:
            caller_media.continue_relayed_stream()
            caller_media.play(self._hold_source())
        prompt = request.announce
        if prompt is not None and not isinstance(prompt, Path):
            try:
                prompt = await prompt(slot)
            except Exception as exc:  # parked all the same; the parker misses the slot
                logger.warning("call %s: no announcement of %s: %s", self.a.call_id, slot, exc)
                prompt = None
        if prompt is not None and old.media is not None:
            # As the caller's music: the slot continues the stream relayed to the parker so
            # far (baresip drops a new stream whose timestamps lie behind).
            old.media.continue_relayed_stream()
            with contextlib.suppress(TimeoutError, RuntimeError):
                await asyncio.wait_for(old.play(WavSource(prompt)), 15)
        if request.notify is not None:
            request.notify.notify_transfer(200)
        self._hang_up_later(old, "parked")
        winner: Call | None = None
        party = parker
        try:
            done, _ = await asyncio.wait(
                {retrieval, self.a.ended},
                timeout=request.timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if retrieval in done:
                leg, party = retrieval.result()
                try:
                    await leg.answer()
                    winner = leg
                    self.summary.legs.append(leg.call_id)
                except Exception as exc:  # no codec, no port: ring the parker back instead
                    logger.warning("call %s: retrieval by %s failed: %s", self.call_id,
                                   party, exc)  # fmt: skip
                    leg.reject(getattr(exc, "status_code", 500))
            if winner is None and not self.a.ended.done():
                logger.info("call %s: parked on %s too long, %s rung back", self.call_id,
                            slot, parker)  # fmt: skip
                statuses: list[int] = []
                for step in request.ring_back():
                    self.hunting = {t.extension for t in step.targets}
                    legs = await self._dial(step)
                    if legs:
                        winner = await self._ring(legs, step.timeout, statuses)
                    if winner is not None or self.a.ended.done():
                        break
                party = self.callee
        finally:
            self.hunting = set()
            if not retrieval.done():
                retrieval.cancel()
            if caller_media is not None:
                caller_media.stop_playing()
        if winner is None or self.a.ended.done():
            record["result"] = "failed"
            self.summary.transfers.append(record)
            self.summary.callee = parker  # the journal's agent: who had the call last
            if winner is not None:
                await winner.hangup(reason="caller-gone")
            if not self.a.ended.done():
                self.summary.hangup_cause = "park-timeout"
                await self.a.hangup(reason="park-timeout")
            return
        record["to"] = party
        self._complete(old, winner, party, record)

    def _hold_source(self) -> ToneSource | WavSource:
        if self.music_on_hold is not None:
            return WavSource(self.music_on_hold, loop=True)
        return ringback()

    @property
    def consult_id(self) -> int | None:
        """The id of the warm transfer whose consultation runs (None: none)."""
        return int(self._consult.record["id"]) if self._consult is not None else None

    @property
    def consulting(self) -> str | None:
        """The party the agent consults in a warm transfer (None: no consultation)."""
        return self._consult.party if self._consult is not None else None

    def complete_consultation(self) -> bool:
        """Warm transfer: hand the caller to the consulted party; the agent leaves."""
        consult, self._consult = self._consult, None
        if consult is None or self.b is None:
            return False
        consult.media.close()
        self._complete(self.b, consult.leg, consult.party, consult.record)
        self._wake()
        return True

    def cancel_consultation(self) -> bool:
        """Warm transfer: the consulted party goes, the agent and the caller talk again."""
        consult, self._consult = self._consult, None
        if consult is None or self.b is None:
            return False
        consult.media.close()
        consult.record["result"] = "cancelled"
        self.summary.transfers.append(consult.record)
        self._hang_up_later(consult.leg, "transfer-cancelled")
        if self.a.media is not None:
            self.a.media.stop_playing()
        if not self.b.ended.done():
            self._bridge(self.b)
        self._wake()
        return True

    def release(self, leg: Call) -> Call | None:
        """Hand `leg` (answered, bridged here) to another call: the media stops, the other
        party of this call is hung up ("transferred"), `leg` stays up. Returns that other
        party's leg, None when `leg` is not bridged here."""
        if self.b is None or leg not in (self.a, self.b) or self.transferring:
            return None
        other = self.b if leg is self.a else self.a
        self._released.add(leg)
        if self.media is not None:
            self.media.close()
            self.media = None
        self._end_music()
        leg.on_hold = leg.on_digit = leg.on_refer = None
        self._hang_up_later(other, "transferred")
        return other

    def take_over(self, old: Call, new: Call, party: str, *, by: str, mode: str,
                  notify: Call | None = None) -> bool:  # fmt: skip
        """Attended transfer or Replaces: `new` (answered, `party`'s) takes the place of the
        answered party's leg `old`, which is hung up; the caller's leg stays. False when `old`
        is not this call's answered party or a transfer runs."""
        if old is not self.b or self.transferring or self.a.ended.done():
            return False
        record = self._entry(self.callee, party, by=by, mode=mode)
        self._end_music()
        if self.media is not None:
            self.media.close()
        self._complete(old, new, party, record, notify)
        self._wake()
        return True

    def play_prompt(self, path: Path, *, to: str) -> asyncio.Future[list[None]] | None:
        """Play the WAV at `path` to the caller, the answered party or both ("caller",
        "callee", "both"), in place of the other's audio meanwhile (the relay to that leg
        pauses and resumes spliced). Done when it ended everywhere; None when the call is not
        bridged now."""
        if self.b is None or self.media is None or self.transferring:
            return None
        legs = {"caller": [self.a], "callee": [self.b], "both": [self.a, self.b]}[to]
        playing = []
        for leg in legs:
            media = leg.media
            other = self.b if leg is self.a else self.a
            source = other.media
            if media is None or source is None:
                continue
            paused = source.peer is media
            if paused:
                source.peer = None
            media.continue_relayed_stream()
            done = media.play(WavSource(path))

            def resume(_: object, media: Any = media, source: Any = source, paused: bool = paused,
                       ) -> None:  # fmt: skip
                media.splice_relay()
                if paused and source.peer is None and media.peer is source:
                    source.peer = media

            done.add_done_callback(resume)
            playing.append(done)
        return asyncio.ensure_future(asyncio.gather(*playing)) if playing else None

    def _hang_up_later(self, leg: Call, reason: str) -> None:
        if leg is self.seat:
            self._leave_seat(leg, reason)
            return
        self._hangups.spawn(leg.hangup(reason=reason))

    def _leave_seat(self, leg: Call, reason: str) -> None:
        """The seated agent handed the customer on (a transfer, a park): the seat's call stays
        up, free for the dialer's next person, instead of being hung up with the old party."""
        leg.on_hold = leg.on_digit = leg.on_refer = None
        self.seat = None
        logger.info("call %s: the seat's agent left it (%s); the seat stays", self.call_id, reason)
        if self.on_seat_left is not None:
            self.on_seat_left(leg)

    def _wake(self) -> None:
        if not self._changed.done():
            self._changed.set_result(None)

    @property
    def on_hold_by_api(self) -> bool:
        return self.b is not None and self._holding == (self.b, self.a)

    def hold_by_api(self, on: bool) -> bool:
        """Hold the call for the answered party (the API's hold): the caller hears the music
        on hold, the party's audio stops reaching the caller. False when that cannot be now
        (no music configured, not bridged, a transfer running, held already the other way)."""
        if self.b is None or self.media is None or self.transferring:
            return False
        if on:
            if self.on_hold_by_api:
                return True
            self._hold_changed(self.b, self.a, True)
            return self.on_hold_by_api
        if self._holding is not None and not self.on_hold_by_api:
            return False  # the caller's own phone holds: its un-hold ends it
        self._end_music()
        return True

    def _bridge(self, b: Call) -> None:
        """Relay the caller's media to and from `b`, the answered party now."""
        self.b = b
        self.media = bridge(self.a, b)
        self._bind_refer(b)
        self.a.on_hold = functools.partial(self._hold_changed, self.a, b)
        b.on_hold = functools.partial(self._hold_changed, b, self.a)
        self.a.on_digit = functools.partial(self._relay_digit, self.a)
        b.on_digit = functools.partial(self._relay_digit, b)

    def _bind_refer(self, b: Call) -> None:
        """Both parties' REFERs reach `on_refer` (the kept leg's too: the switchboard decides
        whether that side may transfer, and swaps)."""
        on_refer = self.on_refer
        if on_refer is None:
            return
        a = self.a
        b.on_refer = lambda refer: on_refer(self, b, refer)
        a.on_refer = lambda refer: on_refer(self, a, refer)

    def _relay_digit(self, source: Call, digit: str, method: str) -> None:
        """A key pressed on one party's phone reaches the other's, the way it understands
        (dtmf_route): RFC 4733 packets already cross the relay when both sides speak it; a SIP
        INFO becomes RFC 4733, INFO or a tone; RFC 4733 towards a phone without
        telephone-event becomes INFO or a tone. In-band tones are in the audio already."""
        if method == "inband" or self.b is None or self.media is None:
            return  # not bridged now (a transfer rings, a consultation runs): not relayed
        if source is self.b and self.on_answered_digit is not None:
            self.on_answered_digit(self, digit)
        other = self.b if source is self.a else self.a if source is self.b else None
        if other is None or other.media is None:
            return
        route = dtmf_route(other)
        if method == "rfc4733" and route == "rfc4733":
            return  # relayed packet by packet
        self._hangups.spawn(self._send_digit(other, digit, route))

    async def _send_digit(self, leg: Call, digit: str, route: str) -> None:
        try:
            await leg.send_dtmf(digit, method=route)
        except (RuntimeError, MediaError, OSError) as exc:  # the leg ended meanwhile
            logger.info("call %s: key %s not relayed by %s: %s", self.call_id, digit,
                        route, exc)  # fmt: skip

    def pick_up(self, leg: Call, picker: str) -> bool:
        """Let `picker`'s incoming, unanswered `leg` (its INVITE to *8 or **EXT) take this call
        while it rings: the ringing phones get CANCEL, the leg is answered and bridged to the
        caller, and `picker` becomes the answering agent. False when the call no longer rings."""
        if not self.ringing or self.b is not None or self._picked.done():
            return False
        self._picked.set_result((leg, picker))
        return True

    async def run(self) -> CallSummary:
        try:
            await self._run()
        finally:
            self._over()
            await self._release_bookings(keep=None)
            if not self.handed_off:
                self.summary.ended_at = datetime.now(UTC)
            picker = self._picked.result()[0] if self._picked.done() else None
            kept = self.keep_caller and self.b is None and picker is None
            consulted = self._consult.leg if self._consult is not None else None
            for leg in (None if kept else self.a, self.b, picker, consulted):
                if leg is not None and leg not in self._released and leg is not self.seat:
                    with contextlib.suppress(Exception):
                        await leg.hangup(reason="shutdown")
        return self.summary

    def _over(self) -> None:
        told, self.on_over = self.on_over, None
        if told is not None:
            try:
                told(self)
            except Exception:  # a bug: the bookings still go, the legs still hang up
                logger.exception("call %s: ending it failed", self.call_id)

    async def _run(self) -> None:
        if self.seat is not None:
            await self._connect(self.seat)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ring_timeout
        statuses: list[int] = []
        for step in self.steps:
            left = deadline - loop.time()
            if left <= 0:
                break
            self.hunting = {t.extension for t in step.targets}
            legs = await self._dial(step)
            if not legs:
                continue
            winner = await self._ring(legs, min(step.timeout, left), statuses)
            self.hunting = set()
            await self._release_bookings(keep=self.callee if winner is not None else None)
            if self.a.ended.done():
                self.summary.sip_status = self.a.final_status or 487
                if self.a.end_reason == "shutdown":  # the engine stops, not the caller
                    self.summary.stopped(datetime.now(UTC))
                    return
                # An agent who gives up calling (another agent, or a customer out through
                # a trunk) cancelled the call; a customer who hung up before anyone answered
                # (calling in, or a dialer's call waiting for an agent) is a missed call.
                gave_up = self.summary.direction == "internal" or (
                    self.summary.direction == "outbound" and self.a.incoming
                )
                self.summary.outcome = "cancelled" if gave_up else "missed"
                self.summary.hangup_cause = "caller-cancel"
                return
            if winner is not None:
                await self._connect(winner)
                return
            if step.failover and statuses and not fails_over(statuses[-1]):
                break
        self.hunting = set()
        if not self.summary.legs:
            await self._give_up(503, "failed", "no-reachable-phone")
        elif self._timed_out or loop.time() >= deadline:
            await self._give_up(480, "no-answer", "ring-timeout")
        else:
            status = _final(statuses)
            await self._give_up(status, _OUTCOME_BY_STATUS.get(status, "rejected"), "refused")

    async def _dial(self, step: HuntStep) -> dict[Call, str]:
        legs: dict[Call, str] = {}
        for target in step.targets:
            uri = target.binding.contact.uri
            if not isinstance(uri, SipUri):
                continue
            if not target.external and target.trunk is None and not await self._book(target):
                continue
            to_uri = (
                uri if target.external or target.trunk is not None else self._uri(target.extension)
            )
            to = NameAddr(display_name=None, uri=to_uri, params={})
            try:
                leg = await self.ua.dial(
                    uri,
                    target.binding.peer,
                    from_=target.from_ or self.caller_identity,
                    to=to,
                    headers=[*target.binding.route_headers(), *target.headers],
                    credentials=target.credentials,
                )
            except OSError as exc:
                logger.warning("call %s: cannot dial %s: %s", self.call_id, uri, exc)
                continue
            legs[leg] = target.extension
            self.summary.legs.append(leg.call_id)
        return legs

    async def _book(self, target: Target) -> bool:
        """Claim the target's agent for this call (once per agent); False when another call,
        on any node, holds it (or the store cannot say: better not ring than book twice)."""
        extension = target.extension
        if self.bookings is None or extension in self._booked:
            return True
        try:
            booked = await self.bookings.claim(extension, self.a.call_id)
        except Exception as exc:
            logger.error("call %s: cannot book %s: %s", self.a.call_id, extension, exc)
            return False
        if not booked:
            logger.info("call %s: %s is booked by another call", self.a.call_id, extension)
            return False
        self._booked.add(extension)
        return True

    async def _release_bookings(self, *, keep: str | None) -> None:
        """Give back every agent this call booked but `keep` (its answering agent)."""
        if self.bookings is None:
            return
        for extension in sorted(self._booked - {keep} if keep else self._booked):
            self._booked.discard(extension)
            try:
                await self.bookings.release(extension, self.a.call_id)
            except Exception as exc:  # the lease runs out by itself
                logger.error("call %s: cannot release %s: %s", self.a.call_id, extension, exc)

    def _uri(self, user: str) -> SipUri:
        endpoint = self.ua.endpoint
        return SipUri(
            scheme="sip",
            user=user,
            password=None,
            host=endpoint.host,
            port=endpoint.port,
            params={},
            headers={},
        )

    async def _ring(
        self, legs: dict[Call, str], timeout: float, statuses: list[int]
    ) -> Call | None:
        """The first leg to answer; None on timeout, caller CANCEL or when all refuse."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending = {leg: loop.create_task(leg.next_event()) for leg in legs}
        self._set_ringing(set(legs.values()))
        try:
            while pending:
                waiters: set[asyncio.Future[Any]] = {*pending.values(), self.a.ended, self._picked}
                done, _ = await asyncio.wait(
                    waiters,
                    timeout=max(0.0, deadline - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not done:
                    # The deadline and a phone's 200 OK can come due in the same turn of a
                    # loop that fell behind: the timer runs first, before the leg's waiter
                    # sees its Answered. A phone that answered in time takes the call.
                    answered = _answered_leg(pending)
                    if answered is not None and not self.a.ended.done():
                        pending.pop(answered).cancel()
                        await self._drop(pending, reason=ANSWERED_ELSEWHERE)
                        self.callee = self.summary.callee = legs[answered]
                        return answered
                if self.a.ended in done or not done:
                    self._timed_out = self._timed_out or not done
                    await self._drop(pending, reason="cancelled" if done else "timeout")
                    return None
                if self._picked in done:
                    picker = await self._answer_picker()
                    if picker is not None:
                        await self._drop(pending, reason=PICKED_UP)
                        return picker
                    continue  # the picker's leg is gone: the phones ring on
                for leg, task in list(pending.items()):
                    if task not in done:
                        continue
                    event = task.result()
                    if isinstance(event, Ringing):
                        if self.a.state.value == "incoming":
                            self.a.ring()
                        if not self._rang:
                            self._rang = True
                            if self.on_ringing is not None:
                                self.on_ringing(self, True)
                    if isinstance(event, Answered):
                        del pending[leg]
                        await self._drop(pending, reason=ANSWERED_ELSEWHERE)
                        self.callee = self.summary.callee = legs[leg]
                        return leg
                    if isinstance(event, Ended):
                        del pending[leg]
                        self._set_ringing(self.ringing - {legs[leg]})
                        statuses.append(event.sip_status or 500)
                        continue
                    pending[leg] = loop.create_task(leg.next_event())
            return None
        finally:
            self._set_ringing(set())

    def _set_ringing(self, agents: set[str]) -> None:
        if agents == self.ringing:
            return
        self.ringing = agents
        if self.on_ringing is not None:
            self.on_ringing(self, False)

    async def _answer_picker(self) -> Call | None:
        leg, picker = self._picked.result()
        try:
            await leg.answer()
        except Exception as exc:  # no codec, no port, picker hung up: the call rings on
            logger.warning("call %s: pickup by %s failed: %s", self.call_id, picker, exc)
            leg.reject(getattr(exc, "status_code", 500))
            self._picked = asyncio.get_running_loop().create_future()
            return None
        logger.info("call %s: picked up by %s", self.call_id, picker)
        self.summary.legs.append(leg.call_id)
        self.callee = self.summary.callee = picker
        return leg

    async def _drop(self, pending: Mapping[Call, asyncio.Task[Any]], *, reason: str) -> None:
        for leg, task in pending.items():
            task.cancel()
            await leg.hangup(reason=reason)

    async def _connect(self, b: Call) -> None:
        self.b = b
        try:
            # An originated customer leg, or one an IVR answered, is connected already.
            if self.a.incoming and self.a.state.value != "connected":
                await self.a.answer(codecs=[b.media.codec_name] if b.media else None)
        except Exception as exc:  # no common codec between the two phones, or no port
            # Out of RTP ports is the engine's shortage (503, RFC 3261 21.5.4), not the
            # caller's offer (488).
            status = 503 if isinstance(exc, OSError) else 488
            logger.warning("call %s: cannot answer the caller (%d): %s", self.call_id, status, exc)
            self.summary.outcome, self.summary.sip_status = "failed", status
            await b.hangup(reason="failed")
            self.a.reject(status)
            return
        self.summary.answered_at = datetime.now(UTC)
        self.summary.outcome, self.summary.sip_status = "answered", 200
        self._bridge(b)
        for listener in self._on_answer:
            try:
                listener(self)
            except Exception:  # one listener's failure is not the call's
                logger.exception("call %s: answer listener failed", self.call_id)
        first = await self._talk()
        b = self.b
        self.a.on_hold = b.on_hold = None
        self._end_music()
        if self.media is not None:
            self.media.close()
        if self.handed_off:
            return  # the summary is the new owner's to finish
        other = b if first is self.a else self.a
        side = "caller" if (first is self.a) != self.swapped else "callee"
        if other in self._released:
            self.summary.hangup_cause = "transferred"
            return
        if self.summary.hangup_cause != "transfer-failed":
            self.summary.hangup_cause = f"{side}-{first.end_reason}"
        if other is self.seat:
            other.on_digit = other.on_refer = None
            return  # the agent's seat stays up for the next call
        await other.hangup(reason="peer-hangup")

    async def _talk(self) -> Call:
        """Wait while the call lasts, through its transfers; the leg that ended it."""
        while True:
            b = self.b
            assert b is not None
            if self._changed.done():
                self._changed = asyncio.get_running_loop().create_future()
            waiters: set[asyncio.Future[Any]] = {self.a.ended, b.ended, self._changed}
            if self._transfer is not None:
                waiters.add(self._transfer)
            consult = self._consult
            if consult is not None:
                waiters.add(consult.leg.ended)
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if self.handed_off:
                return b  # the caller's leg is someone else's now (released)
            if self.b is not b and not self.a.ended.done():
                continue  # the party changed meanwhile (a Replaces took over)
            if self.a.ended in done:
                if self._transfer is not None:
                    await asyncio.wait({self._transfer})  # it drops its ringing legs
                if self._consult is not None:
                    await self._consult.leg.hangup(reason="caller-gone")
                    self._consult.media.close()
                    self._consult = None
                return self.a
            if self._changed in done:
                continue
            if consult is not None and consult.leg.ended in done:
                self.cancel_consultation()  # the consulted party hung up: back to the agent
                continue
            if consult is not None and b.ended in done:
                self.complete_consultation()  # the agent hung up while consulting: hand over
                continue
            if self._transfer is None:
                if await self._ring_back_transferor():
                    continue  # its REFER was refused and its phone hung up: rung back
                return b
            # A transfer runs or just ended: the old party leaving is part of it.
            await asyncio.wait({self._transfer})
            task, self._transfer = self._transfer, None
            if not task.cancelled() and task.exception() is not None:
                logger.error("call %s: transfer failed", self.call_id,
                             exc_info=task.exception())  # fmt: skip
            if self.a.ended.done():
                return self.a
            if self._consult is not None:
                continue
            assert self.b is not None
            if self.b.ended.done():
                if self.b is b and await self._ring_back_transferor():
                    continue
                if self.b is b and self.summary.transfers:
                    self.summary.hangup_cause = "transfer-failed"
                return self.b

    def ring_back_if_left(
        self, ring_back: Callable[[], list[HuntStep]], party: str, *, grace: float
    ) -> None:
        """A transfer by `party` (the answered party now) failed: if its leg has ended, or
        ends within `grace` seconds, ring `ring_back`'s phones so the caller is not lost (a
        phone that hangs up once its REFER failed, or was refused, gave up on the
        transfer, not on the call)."""
        if self.a.ended.done() or self.b is None:
            return
        now = asyncio.get_running_loop().time()
        until = float("inf") if self.b.ended.done() else now + grace
        self._fallback = (ring_back, party, until)

    async def _ring_back_transferor(self) -> bool:
        """The transferor's phone left around a failed blind transfer: ring it back, the
        caller hearing ringback meanwhile. True when it answered and talks to the caller again
        (the chain gets a "ring-back" entry)."""
        fallback, self._fallback = self._fallback, None
        loop = asyncio.get_running_loop()
        if fallback is None or self.a.ended.done() or self.b is None:
            return False
        steps_for, party, until = fallback
        steps = steps_for() if loop.time() <= until else []
        if not steps:
            return False
        old, media = self.b, self.a.media
        logger.info("call %s: transfer failed and %s left: ringing it back", self.call_id, party)
        if media is not None:
            media.continue_relayed_stream()
            media.play(ringback())
        winner: Call | None = None
        try:
            for step in steps:
                self.hunting = {t.extension for t in step.targets}
                legs = await self._dial(step)
                if legs:
                    winner = await self._ring(legs, step.timeout, [])
                if winner is not None or self.a.ended.done():
                    break
        finally:
            self.hunting = set()
            if media is not None:
                media.stop_playing()
        if winner is None or self.a.ended.done():
            if winner is not None:
                await winner.hangup(reason="caller-gone")
            self.callee = self.summary.callee = party
            return False
        self._complete(old, winner, party, self._entry(party, party, by=party, mode="ring-back"))
        return True

    def _hold_changed(self, held: Call, other: Call, on: bool) -> None:
        """`held`'s phone put the call on hold (or took it off): the other party hears the music
        on hold meanwhile, instead of the held phone's silence."""
        if self.music_on_hold is None or held.media is None or other.media is None:
            return
        if on and self._holding is None:
            if held.media.peer is not other.media:
                return  # mixed (a supervisor is on the call) or no longer bridged
            held.media.peer = None  # the held side's audio stops reaching the other meanwhile
            other.media.continue_relayed_stream()
            other.media.play(WavSource(self.music_on_hold, loop=True))
            self._holding = (held, other)
            logger.info("call %s: %s holds, music on hold", self.call_id, held.call_id)
        elif not on and self._holding == (held, other):
            self._end_music()

    def _end_music(self) -> None:
        if self._holding is None:
            return
        held, other = self._holding
        self._holding = None
        if other.media is None or held.media is None:
            return
        other.media.stop_playing()
        if held.media.peer is None and other.media.peer is held.media:
            other.media.splice_relay()  # the phone took our music stream: continue it
            held.media.peer = other.media  # the relay again, both ways

    async def _give_up(self, status: int, outcome: str, cause: str) -> None:
        self.summary.sip_status = status
        self.summary.hangup_cause = self.summary.hangup_cause or cause
        self.summary.outcome = "missed" if self.summary.direction == "inbound" else outcome
        if self.keep_caller:
            return
        waiting = self.a.state.value in ("incoming", "ringing") or (
            not self.a.incoming and self.a.state.value == "connected"
        )
        if self.on_no_answer is not None and waiting:
            await self.on_no_answer(self.a)
        elif self.a.incoming:
            self.a.reject(status)
        else:
            await self.a.hangup(reason=cause)
        if self.a.incoming and self.a.final_status is not None:
            self.summary.sip_status = self.a.final_status  # what the caller was answered


def _answered_leg(pending: Mapping[Call, asyncio.Task[Any]]) -> Call | None:
    """A ringing leg whose phone answered already (its 2xx processed, its Answered event not
    yet taken by its waiter)."""
    for leg in pending:
        if leg.state.value == "connected":
            return leg
    return None


def _final(statuses: list[int]) -> int:
    """The status the caller gets when every phone refused: busy wins, then the last one."""
    if 486 in statuses or 600 in statuses:
        return 486
    return statuses[-1] if statuses else 480
