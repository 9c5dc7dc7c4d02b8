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

from telephony.aio import Call, MediaBridge, UserAgent, bridge
from telephony.call import Answered, Ended, Ringing
from telephony.media import WavSource
from telephony.sip import NameAddr, SipUri

if TYPE_CHECKING:
    from .pickup import Pickup

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

    @property
    def talk_seconds(self) -> float:
        if self.answered_at is None or self.ended_at is None:
            return 0.0
        return (self.ended_at - self.answered_at).total_seconds()


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


_OUTCOME_BY_STATUS = {
    486: "busy",
    600: "busy",
    480: "no-answer",
    408: "no-answer",
    487: "cancelled",
    603: "rejected",
}


class BridgedCall:
    """Hunts for a callee and bridges the first that answers to the caller."""

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
    ) -> None:
        self.ua = ua
        self.a = a_leg
        self.b: Call | None = None
        self.caller = caller
        self.callee = callee
        self.steps = steps
        self.ring_timeout = ring_timeout
        self.caller_identity = caller_identity
        self.summary = summary or CallSummary(a_leg.call_id, caller, callee, datetime.now(UTC))
        self.ringing: set[str] = set()
        """Extensions whose phones ring for this call right now."""
        self.hunting: set[str] = {t.extension for t in steps[0].targets} if steps else set()
        """Extensions this call rings or is about to ring (from the moment it is created, so
        two calls started together never both take the same agent)."""
        self._on_answer: list[Callable[[BridgedCall], None]] = []
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

    @property
    def parties(self) -> tuple[str, str]:
        return (self.caller, self.callee)

    def when_answered(self, listener: Callable[[BridgedCall], None]) -> None:
        """Call `listener` when someone answers and the media is bridged (in the order they
        were added; the switchboard's comes first)."""
        self._on_answer.append(listener)

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
            self.summary.ended_at = datetime.now(UTC)
            picker = self._picked.result()[0] if self._picked.done() else None
            kept = self.keep_caller and self.b is None and picker is None
            for leg in (None if kept else self.a, self.b, picker):
                if leg is not None:
                    with contextlib.suppress(Exception):
                        await leg.hangup(reason="shutdown")
        return self.summary

    async def _run(self) -> None:
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
            if self.a.ended.done():
                self.summary.outcome = (
                    "cancelled" if self.summary.direction == "internal" else "missed"
                )
                self.summary.sip_status = self.a.final_status or 487
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
                    headers=target.headers,
                    credentials=target.credentials,
                )
            except OSError as exc:
                logger.warning("call %s: cannot dial %s: %s", self.a.call_id, uri, exc)
                continue
            legs[leg] = target.extension
            self.summary.legs.append(leg.call_id)
        return legs

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
                if self.a.ended in done or not done:
                    self._timed_out = self._timed_out or not done
                    await self._drop(pending, reason="cancelled" if done else "timeout")
                    return None
                if self._picked in done:
                    picker = await self._answer_picker()
                    if picker is not None:
                        await self._drop(pending, reason="picked-up")
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
                        await self._drop(pending, reason="answered-elsewhere")
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
            logger.warning("call %s: pickup by %s failed: %s", self.a.call_id, picker, exc)
            leg.reject(getattr(exc, "status_code", 500))
            self._picked = asyncio.get_running_loop().create_future()
            return None
        logger.info("call %s: picked up by %s", self.a.call_id, picker)
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
            logger.warning("call %s: cannot answer the caller: %s", self.a.call_id, exc)
            self.summary.outcome, self.summary.sip_status = "failed", 488
            await b.hangup(reason="failed")
            self.a.reject(488)
            return
        self.summary.answered_at = datetime.now(UTC)
        self.summary.outcome, self.summary.sip_status = "answered", 200
        self.media = bridge(self.a, b)
        self.a.on_hold = functools.partial(self._hold_changed, self.a, b)
        b.on_hold = functools.partial(self._hold_changed, b, self.a)
        for listener in self._on_answer:
            try:
                listener(self)
            except Exception:  # one listener's failure is not the call's
                logger.exception("call %s: answer listener failed", self.a.call_id)
        done, _ = await asyncio.wait({self.a.ended, b.ended}, return_when=asyncio.FIRST_COMPLETED)
        self.a.on_hold = b.on_hold = None
        self._end_music()
        self.media.close()
        first = self.a if self.a.ended in done else b
        other = b if first is self.a else self.a
        side = "caller" if first is self.a else "callee"
        self.summary.hangup_cause = f"{side}-{first.end_reason}"
        await other.hangup(reason="peer-hangup")

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
            logger.info("call %s: %s holds, music on hold", self.a.call_id, held.call_id)
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


def _final(statuses: list[int]) -> int:
    """The status the caller gets when every phone refused: busy wins, then the last one."""
    if 486 in statuses or 600 in statuses:
        return 486
    return statuses[-1] if statuses else 480
