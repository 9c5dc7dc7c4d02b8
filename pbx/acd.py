"""The queues' asyncio side: callers on the line hear music and their position, agents are
offered callers in arrival order as they come free, overflow and virtual hold.

The decisions are `pbx/queue.py:Queue`'s (pure); this module answers and plays, rings agents
through `BridgedCall` (one hunt step per offer, the caller's leg kept when nobody answers),
calls back customers who pressed the callback digit, and journals each caller's summary once.
Music on hold is one `telephony.aio.Playout` per queue: a frame is encoded once for every
caller hearing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from telephony.aio import Call, MediaError, Playout, TaskSet, UserAgent
from telephony.call import Answered, Ended
from telephony.call.session import ReferReceived
from telephony.media import SampleSource, ToneSource, WavSink, WavSource, read_wav

from .b2bua import ActiveCalls, BridgedCall, CallSummary, HuntStep, Target
from .booking import AgentBookings
from .presence import AgentState, Presence
from .queue import RESPONSIBLE, Full, Queue, QueueConfig, QueuedCaller, VoicemailBox
from .registrar import Binding, Registrar

logger = logging.getLogger(__name__)

Speaker = Callable[[str], Awaitable[Path]]
"""Text to an 8 kHz mono WAV (the IVR's prompt cache with espeak-ng, in a thread)."""

_CALLBACK_RING = 30.0
_TICK = 1.0
"""Seconds between dispatches when nothing wakes the queue (wrap-up ends by time)."""


class Board(Protocol):
    """What the queues use of `pbx.switchboard.Switchboard` (which owns them)."""

    ua: UserAgent
    presence: Presence
    registrar: Registrar
    music_on_hold: Path | None
    bookings: AgentBookings | None
    first_for: Callable[[str], Awaitable[str | None]] | None

    @property
    def active(self) -> ActiveCalls: ...

    def reachable(self, members: list[str], *, now: float) -> dict[str, list[Binding]]: ...
    def hold(self, extension: str) -> Callable[[], None]: ...
    def drop(self, bridged: BridgedCall) -> None: ...
    def parties_over(self, bridged: BridgedCall, *, wrap_up: bool) -> None: ...
    def identity(self, user: str, display: str | None) -> Any: ...
    def conclude(self, summary: CallSummary) -> None: ...
    async def transfer(
        self, call: Call, route: str, *, summary: CallSummary, timeout: float
    ) -> bool: ...
    async def originate(self, number: str, *, caller_id: str | None = None) -> Call: ...
    def _answered(self, bridged: BridgedCall) -> None: ...
    def _referred(self, bridged: BridgedCall, leg: Call, refer: ReferReceived) -> int | None: ...
    def _transferred(
        self, bridged: BridgedCall, old: Call, new: Call, transfer: dict[str, Any]
    ) -> None: ...
    def _ringing(self, bridged: BridgedCall, first: bool) -> None: ...
    def transferred_from_queue(self, bridged: BridgedCall, transfer: dict[str, Any]) -> None: ...


class QueueDesk:
    """Every queue of the engine and the callers on its lines."""

    def __init__(self, switchboard: Board, configs: tuple[QueueConfig, ...]) -> None:
        self.sb = switchboard
        self.queues = {c.name: Queue(c) for c in configs}
        self.speak: Speaker | None = None
        """Makes the spoken prompts (position, callback, voicemail); None: tones only."""
        self.voicemail_dir: Path | None = None
        """Where voicemail messages are written (under the recordings root); None: off."""
        self.voicemail_boxes: dict[str, VoicemailBox] = {}
        """Greetings and message lengths by owner (the default box for the others)."""
        self._legs: dict[str, Call] = {}
        """Callers on the line by key (their first Call-ID), while they wait."""
        self._summaries: dict[str, CallSummary] = {}
        self._playouts: dict[str, Playout] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._dispatching: set[str] = set()
        self._prompts: dict[Path, np.ndarray[Any, np.dtype[np.int16]]] = {}
        self._rang: set[str] = set()
        self._tasks = TaskSet("queue")
        self._closing = False

    # -- entry --------------------------------------------------------------------------------

    def owner(self, name: str) -> str | None:
        """The queue's owner when it is an extension (a RESPONSIBLE one is known per caller,
        once it entered)."""
        queue = self.queues.get(name)
        owner = queue.config.owner if queue is not None else None
        return None if owner == RESPONSIBLE else owner

    def wanted(self, *, now: float) -> set[str]:
        """Members a waiting caller needs now (logged in to a queue with callers waiting for
        an offer): the dialer leaves them alone."""
        return {
            member
            for queue in self.queues.values()
            if queue.next_waiting() is not None
            for member in queue.logged_in()
            if queue.ready(member, now=now)
        }

    def log_in(self, extension: str, name: str | None, *, login: bool) -> list[str]:
        """Log `extension` in or out of queue `name` (every queue it belongs to when None);
        the names of the queues changed."""
        changed = []
        for queue in self.queues.values():
            if name is not None and queue.name != name:
                continue
            if (queue.log_in if login else queue.log_out)(extension):
                changed.append(queue.name)
                self.wake(queue.name)
        return changed

    def wake(self, name: str | None = None) -> None:
        for queue_name, event in self._wake.items():
            if name is None or name == queue_name:
                event.set()

    async def enter(self, call: Call, name: str, summary: CallSummary) -> None:
        """A caller reaches queue `name` (from a DID, an IVR or another queue's overflow): it is
        answered, joins the line or overflows, and the queue journals it in the end."""
        queue = self.queues[name]
        summary.owner = summary.owner or await self._owner(queue, summary)
        if call.state.value != "connected":
            try:
                await call.answer()
                await asyncio.wait_for(call.next_event(), 5)  # the ACK
            except (MediaError, OSError, TimeoutError, RuntimeError) as exc:
                logger.info("call %s: not answered for queue %s: %s", call.call_id, name, exc)
                if call.state.value in ("incoming", "ringing"):
                    call.reject(exc.status_code if isinstance(exc, MediaError) else 503)
                summary.outcome, summary.hangup_cause = "failed", "queue-answer-failed"
                self.sb.conclude(summary)
                return
        key = summary.call_id
        joined = queue.join(
            key, summary.customer or summary.caller, now=self._now(), staffed=self._staffed(queue)
        )
        if isinstance(joined, Full):
            await self._overflow(queue, call, summary, reason=joined.reason)
            return
        logger.info("call %s: queue %s at position %d", key, name, joined.position)
        self._legs[key] = call
        self._summaries[key] = summary
        self._start_dispatch(queue)
        if queue.config.greeting:
            await self._say(call, queue.config.greeting)
        if self._legs.get(key) is not call:
            return  # an agent took the call during the greeting
        if call.ended.done() or call.media is None:
            self._abandoned(queue, key)
            return
        self._hear_music(queue, call, on=True)
        self._spawn(self._watch(queue, key, call))

    # -- the caller's side --------------------------------------------------------------------

    async def _watch(self, queue: Queue, key: str, call: Call) -> None:
        """Hang-up, the callback digit and the periodic announcements of one caller."""
        loop = asyncio.get_running_loop()
        while self._legs.get(key) is call:
            caller = queue.find(key)
            if caller is None:
                return
            every = queue.config.announce_every
            if caller.offering or not every:
                timeout: float | None = _TICK if caller.offering else None
            else:
                timeout = max(0.05, every - (self._now() - caller.announced))
            digit = loop.create_task(call.next_digit())
            done, _ = await asyncio.wait(
                {digit, call.ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if digit not in done:
                digit.cancel()
            if call.ended.done():
                if self._legs.get(key) is call and not caller.offering:
                    self._abandoned(queue, key)
                return
            if self._legs.get(key) is not call or caller.offering:
                continue
            pressed = digit.result() if digit in done else None
            if pressed and pressed == queue.config.callback_digit:
                await self._virtual_hold(queue, key, call)
                return
            if queue.due_announcement(key, now=self._now()):
                await self._announce(queue, key, call)

    async def _announce(self, queue: Queue, key: str, call: Call) -> None:
        now = self._now()
        position = queue.position(key)
        minutes = max(1, math.ceil(queue.estimated_wait(key, now=now) / 60))
        texts = [
            position_text(position),
            f"Your estimated wait is {minutes} minute{'s' if minutes > 1 else ''}.",
        ]
        if queue.config.callback_digit:
            texts.append(
                f"Press {queue.config.callback_digit} to be called back, keeping your place."
            )
        self._hear_music(queue, call, on=False)
        for text in texts:
            if self._legs.get(key) is not call or call.ended.done():
                break
            await self._say(call, text)
        queue.announced(key, now=self._now())  # the interval runs from the prompt's end
        if self._legs.get(key) is call and not call.ended.done():
            caller = queue.find(key)
            if caller is not None and not caller.offering:
                self._hear_music(queue, call, on=True)

    async def _virtual_hold(self, queue: Queue, key: str, call: Call) -> None:
        caller = queue.find(key)
        if caller is None or not queue.request_callback(key):
            return
        self._legs.pop(key, None)
        self._hear_music(queue, call, on=False)
        caller.offering = True  # not called back while it still hears the confirmation
        try:
            await self._say(call, "Thank you. We will call you back when it is your turn.")
            await call.hangup(reason="virtual-hold")
        finally:
            caller.offering = False
        summary = self._summaries.get(key)
        if summary is not None:
            summary.hangup_cause = "virtual-hold"
        self.wake(queue.name)

    def _abandoned(self, queue: Queue, key: str) -> None:
        call = self._legs.pop(key, None)
        if call is not None:
            self._hear_music(queue, call, on=False)
        if self._closing:
            queue.leave(key)  # the engine stops: not the caller's choice
        else:
            queue.abandoned(key, now=self._now())
        summary = self._summaries.pop(key, None)
        if summary is not None:
            # A caller an agent transferred here was answered already: it stays an answered
            # call whose transfer failed.
            summary.outcome = "answered" if handed_over(summary) is not None else "missed"
            summary.hangup_cause = "shutdown" if self._closing else "queue-abandoned"
            summary.sip_status = summary.sip_status or 200
            self.sb.conclude(summary)
        logger.info("call %s: abandoned in queue %s", key, queue.name)
        self.wake(queue.name)

    # -- dispatch -----------------------------------------------------------------------------

    def _start_dispatch(self, queue: Queue) -> None:
        self._wake.setdefault(queue.name, asyncio.Event()).set()
        if queue.name not in self._dispatching:
            self._dispatching.add(queue.name)
            self._spawn(self._dispatch(queue))

    async def _dispatch(self, queue: Queue) -> None:
        wake = self._wake[queue.name]
        try:
            while queue.callers:
                try:
                    await asyncio.wait_for(wake.wait(), _TICK)
                except TimeoutError:
                    pass
                wake.clear()
                self.dispatch_once(queue)
        finally:
            self._dispatching.discard(queue.name)

    def dispatch_once(self, queue: Queue) -> None:
        """Overflow the callers past max wait; offer the next callers to free members."""
        now = self._now()
        for caller in queue.expired(now=now):
            call = self._legs.get(caller.key)
            if call is None:
                continue
            self._legs.pop(caller.key, None)
            queue.overflowed(caller.key)  # out of the line now: offered to nobody below
            self._spawn(
                self._overflow(queue, call, self._summaries.pop(caller.key), reason="max-wait")
            )
        for caller in list(queue.callers):
            if caller.offering:
                continue
            free = self.sb.reachable(queue.logged_in(), now=now)
            members = queue.offer(
                free, idle_for=lambda m: self.sb.presence.idle_for(m, now=now), now=now
            )
            if not members:
                return
            caller.offering = True
            steps = [
                HuntStep(
                    tuple(Target(m, b) for m in members for b in free[m]),
                    queue.config.member_timeout,
                )
            ]
            # Busy from now on, so the next caller is offered someone else; released once the
            # offer rings them (or gave up before).
            held = [self.sb.hold(m) for m in members]
            self._spawn(self._offer(queue, caller, steps, held))

    async def _offer(
        self,
        queue: Queue,
        caller: QueuedCaller,
        steps: list[HuntStep],
        held: list[Callable[[], None]],
    ) -> None:
        try:
            await self._ring_members(queue, caller, steps, held)
        finally:
            for release in held:
                release()

    async def _ring_members(
        self,
        queue: Queue,
        caller: QueuedCaller,
        steps: list[HuntStep],
        held: list[Callable[[], None]],
    ) -> None:
        key = caller.key
        summary = self._summaries.get(key)
        call = self._legs.get(key)
        if summary is not None and caller.callback:
            call = await self._call_back(queue, caller, summary)
            if call is None:
                return
        if summary is None or call is None or call.ended.done():
            caller.offering = False
            return
        sb = self.sb
        # Who waits: the customer (the callee of an agent's call out that the agent handed
        # to the queue), else the caller.
        waiting = summary.customer or summary.caller
        bridged = BridgedCall(
            sb.ua,
            call,
            caller=waiting,
            callee=queue.name,
            steps=steps,
            ring_timeout=queue.config.member_timeout,
            caller_identity=sb.identity(waiting, f"{queue.name}: {waiting}"),
            summary=summary,
        )
        bridged.keep_caller = True
        bridged.music_on_hold = sb.music_on_hold
        bridged.bookings = sb.bookings
        bridged.on_over = self._over
        bridged.on_refer = sb._referred  # the agent may transfer the caller on
        bridged.when_transferred(sb._transferred)
        bridged.when_answered(lambda b: self._connected(queue, key, b))
        bridged.when_answered(sb._answered)

        def ringing(b: BridgedCall, first: bool) -> None:
            if first and key in self._rang:
                return  # the journal hears the first ring of the call only
            self._rang.add(key)
            sb._ringing(b, first)

        bridged.on_ringing = ringing
        sb.active[bridged.call_id] = bridged
        for release in held:
            release()  # the bridged call counts them busy now (its `hunting`)
        handed = handed_over(summary)
        answered_at = summary.answered_at
        try:
            await bridged.run()
        except Exception:
            logger.exception("call %s: queue offer failed", key)
        finally:
            sb.drop(bridged)  # (told already by `_over`, unless that failed)
            if handed is not None:
                summary.answered_at = answered_at  # by the agent who transferred it here
        if bridged.media is None:
            # Nobody answered: back to wait at the same place (or the caller hung up).
            summary.ended_at = summary.hangup_cause = summary.sip_status = None
            summary.outcome, summary.callee = "failed", queue.name
            if handed is not None:  # still the answered call of the agent who handed it over
                summary.outcome, summary.sip_status = "answered", 200
                summary.callee = handed["from"]
            caller.offering = False
            if call.ended.done():
                self._abandoned(queue, key)
            else:
                self.wake(queue.name)
            return
        queue.call_ended(bridged.callee, summary.talk_seconds, now=self._now())
        self._rang.discard(key)
        sb.conclude(summary)
        self.wake(queue.name)

    def _over(self, bridged: BridgedCall) -> None:
        """A queue's offer is over (before its agents' bookings go): the agent who answered
        it wraps up."""
        self.sb.drop(bridged)
        if bridged.media is not None:
            self.sb.parties_over(bridged, wrap_up=True)

    def _connected(self, queue: Queue, key: str, bridged: BridgedCall) -> None:
        """An agent answered: the caller leaves the line and hears the agent."""
        call = bridged.a
        self._legs.pop(key, None)
        self._summaries.pop(key, None)
        media = call.media
        if media is not None:
            self._music(queue).remove(media)
            media.stop_playing()
            media.splice_relay()  # the relayed agent continues our music stream
        wait = queue.answered(key, bridged.callee, now=self._now())
        logger.info("call %s: queue %s answered by %s after %.1f s", key, queue.name,
                    bridged.callee, wait)  # fmt: skip
        handed = handed_over(bridged.summary)
        if handed is not None:
            # A live call an agent transferred into the queue: the transfer completes now.
            handed.update(to=bridged.callee, queue=queue.name, result="completed")
            self.sb.transferred_from_queue(bridged, handed)

    async def _call_back(
        self, queue: Queue, caller: QueuedCaller, summary: CallSummary
    ) -> Call | None:
        """Virtual hold: the caller's turn came: dial the customer through a trunk. The leg
        when answered (it waits on as an ordinary caller at the head), else None (the caller
        leaves the line with a callback task)."""
        did = summary.did or ""
        try:
            leg = await self.sb.originate(caller.number, caller_id=did or None)
        except (LookupError, OSError) as exc:
            logger.warning("queue %s: cannot call %s back: %s", queue.name, caller.number, exc)
            leg = None
        answered = False
        if leg is not None:
            summary.legs.append(leg.call_id)
            try:
                while True:
                    event = await leg.next_event(_CALLBACK_RING)
                    if isinstance(event, Answered):
                        answered = True
                        break
                    if isinstance(event, Ended):
                        break
            except TimeoutError:
                await leg.hangup(reason="timeout")
        if not answered or leg is None:
            queue.leave(caller.key)
            self._summaries.pop(caller.key, None)
            summary.outcome, summary.hangup_cause = "missed", "queue-callback-failed"
            self.sb.conclude(summary)  # a missed call: the owner gets a callback task
            self.wake(queue.name)
            return None
        logger.info("call %s: called back at %s", caller.key, caller.number)
        caller.callback = False
        self._legs[caller.key] = leg
        self._hear_music(queue, leg, on=True)
        self._spawn(self._watch(queue, caller.key, leg))
        return leg

    # -- overflow -----------------------------------------------------------------------------

    async def _overflow(
        self, queue: Queue, call: Call, summary: CallSummary, *, reason: str
    ) -> None:
        queue.overflowed(summary.call_id)
        self._hear_music(queue, call, on=False)
        kind, _, target = queue.config.overflow.partition(":")
        logger.info("call %s: queue %s overflows (%s) to %s", summary.call_id, queue.name,
                    reason, queue.config.overflow)  # fmt: skip
        summary.hangup_cause = f"queue-{reason}"
        if call.ended.done():
            self._conclude_missed(summary, summary.hangup_cause)
            return
        if kind == "queue" and target in self.queues and target != queue.name:
            summary.hangup_cause = None
            await self.enter(call, target, summary)
            return
        if kind in ("ringgroup", "agent"):
            summary.hangup_cause = None
            if await self.sb.transfer(call, f"{kind}:{target}", summary=summary, timeout=30):
                return
        if kind == "voicemail" and self.voicemail_dir is not None:
            if target:
                await self.voicemail(call, target, summary)
            else:  # the queue's own box, for the queue's owner
                box = queue.config.voicemail_box
                await self.voicemail(call, summary.owner, summary, box=box, label=queue.name)
            return
        await self._say(call, "Nobody can take your call now. We will call you back.")
        await call.hangup(reason="queue-overflow")
        self._conclude_missed(summary, f"queue-{reason}")

    def _staffed(self, queue: Queue) -> bool:
        """Someone could answer the queue: a member logged in, with a phone, not away (on a
        call or in wrap-up counts: they will be free)."""
        now = self._now()
        sb = self.sb
        return any(
            sb.presence.state(member, now=now) is not AgentState.AWAY
            and sb.registrar.lookup(member, now=now)
            for member in queue.logged_in()
        )

    async def _owner(self, queue: Queue, summary: CallSummary) -> str | None:
        """Who gets the queue's callback tasks and voicemail for this caller: the configured
        extension, or the caller's responsible manager (None: unknown, or the CRM failed)."""
        owner = queue.config.owner
        if owner != RESPONSIBLE:
            return owner
        first_for = self.sb.first_for
        if first_for is None or summary.customer is None:
            return None
        try:
            return await asyncio.wait_for(first_for(summary.customer), 1.0)
        except Exception as exc:  # the message is kept all the same, for nobody in particular
            logger.warning("queue %s: responsible of %s unknown: %s", queue.name,
                           summary.customer, exc)  # fmt: skip
            return None

    def _conclude_missed(self, summary: CallSummary, cause: str) -> None:
        summary.outcome, summary.hangup_cause = "missed", cause
        summary.sip_status = summary.sip_status or 200
        self.sb.conclude(summary)

    async def voicemail(
        self,
        call: Call,
        owner: str | None,
        summary: CallSummary,
        *,
        box: VoicemailBox | None = None,
        label: str | None = None,
    ) -> None:
        """Take a message for `owner`: greeting, beep, the caller's audio until they hang up,
        press #, or the box's longest message. The message is the call's recording and the
        call is a missed one for `owner`, so the callback task carries it to the CRM. `box` is
        a queue's own (else the owner's), `label` names it in the message's file name."""
        assert self.voicemail_dir is not None
        summary.owner = owner
        if call.state.value != "connected":
            try:
                await call.answer()
                await asyncio.wait_for(call.next_event(), 5)  # the ACK
            except (MediaError, OSError, TimeoutError, RuntimeError) as exc:
                logger.info("call %s: voicemail not answered: %s", call.call_id, exc)
                if call.state.value in ("incoming", "ringing"):
                    call.reject(exc.status_code if isinstance(exc, MediaError) else 503)
                self._conclude_missed(summary, "voicemail-not-answered")
                return
        if box is None:
            box = self.voicemail_boxes.get(owner or "") or VoicemailBox(owner or "")
        await self._say(
            call, box.greeting or "Please leave a message after the tone. Press hash when done."
        )
        with contextlib.suppress(RuntimeError):  # the caller hung up meanwhile
            await call.play(ToneSource((1000.0,), duration=0.4))
        if call.ended.done() or call.media is None:
            self._conclude_missed(summary, "voicemail-no-message")
            return
        self.voicemail_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        path = self.voicemail_dir / f"{stamp}-{label or owner}-{summary.call_id}.wav"
        sink = WavSink(path)
        undo = call.listen(sink.write)
        call.flush_digits()
        try:
            deadline = self._now() + box.max_seconds
            while not call.ended.done() and self._now() < deadline:
                digit = asyncio.ensure_future(call.next_digit())
                await asyncio.wait(
                    {digit, call.ended},
                    timeout=deadline - self._now(),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not digit.done():
                    digit.cancel()
                elif digit.result() == "#":
                    break
        finally:
            undo()
            sink.close()
        if not call.ended.done():
            await call.hangup(reason="voicemail")
        summary.recording = str(path)
        logger.info("call %s: voicemail %sfor %s, %.1f s", summary.call_id,
                    f"of {label} " if label else "", owner, sink.duration)  # fmt: skip
        self._conclude_missed(summary, "voicemail")

    # -- audio --------------------------------------------------------------------------------

    def _hear_music(self, queue: Queue, call: Call, *, on: bool) -> None:
        """Start or stop the queue's music for one caller (a leg without media hears none)."""
        if call.media is None:
            return
        if on:
            self._music(queue).add(call.media)
        else:
            self._music(queue).remove(call.media)

    def _music(self, queue: Queue) -> Playout:
        playout = self._playouts.get(queue.name)
        if playout is None:
            music = queue.config.music or self.sb.music_on_hold
            source = (
                WavSource(music, loop=True)
                if music is not None
                else ToneSource((440.0,), cadence=(0.4, 4.0))
            )
            playout = self._playouts[queue.name] = Playout(source, self.sb.ua.clock)
        return playout

    async def _say(self, call: Call, text: str) -> None:
        """Play a prompt (a WAV path, or a text spoken once and cached) to the caller."""
        try:
            if text.endswith(".wav"):
                path = Path(text)
            elif self.speak is not None:
                path = await self.speak(text)
            else:
                await call.play(ToneSource((660.0,), duration=0.3))
                return
            samples = self._prompts.get(path)
            if samples is None:
                samples = self._prompts[path] = read_wav(path)
            await call.play(SampleSource(samples))
        except (RuntimeError, OSError) as exc:
            logger.info("call %s: prompt not played: %s", call.call_id, exc)
        except Exception:
            logger.exception("call %s: prompt %r failed", call.call_id, text)

    # -- plumbing -----------------------------------------------------------------------------

    def _now(self) -> float:
        return self.sb.ua.loop.time()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self._tasks.spawn(work)

    async def shutdown(self) -> None:
        """Hang up the callers waiting (journaled, cause shutdown) and stop the music."""
        self._closing = True
        for call in list(self._legs.values()):
            await call.hangup(reason="shutdown")
        for playout in self._playouts.values():
            playout.close()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)


def handed_over(summary: CallSummary) -> dict[str, Any] | None:
    """The transfer that brought an answered call into a queue, while it waits for an agent
    (its chain's entry with result "queued"); None for a caller who came from a DID or IVR."""
    return next((t for t in summary.transfers if t.get("result") == "queued"), None)


def position_text(position: int) -> str:
    """What a caller at `position` hears (one prompt, spoken once and cached)."""
    return f"You are caller number {position}."


__all__ = ["Board", "QueueDesk", "Speaker", "handed_over", "position_text"]
