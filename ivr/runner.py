"""Walking a flow over a live call: prompts with barge-in, menus, input, branches and actions.

The runner knows calls only through the small `IvrCall` protocol (telephony.aio.Call fits it)
and the rest of the engine only through `IvrActions` (transfers, callback tasks, DNC, agent
availability), which the composition root implements. The same runner serves inbound DIDs and
broadcast campaigns; what happened comes back as a `FlowResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from telephony.media import Frame, FrameSource, SampleSource, read_wav

from .flow import (
    Branch,
    Callback,
    Collect,
    Flow,
    Hangup,
    Menu,
    Node,
    OptOut,
    Play,
    Prompt,
    Transfer,
    VoicemailDrop,
    expand,
)

logger = logging.getLogger(__name__)

# A flow that keeps going round without the caller doing anything is a flow bug; stop it.
MAX_STEPS = 500


class IvrCall(Protocol):
    """What the runner needs of a call (telephony.aio.Call has all of it)."""

    call_id: str
    ended: asyncio.Future[Any]
    """Done when the leg has ended (either side)."""

    async def play(self, source: FrameSource) -> None:
        """Play until the source ends; cancelling the awaiting task stops the audio."""

    async def next_digit(self, timeout: float | None = None) -> str | None:
        """The next digit (one per key press, any DTMF source) or None after `timeout`."""

    def flush_digits(self) -> str:
        """Forget digits pressed before now."""

    def detect_inband(self) -> Callable[[], None]:
        """Start hearing in-band DTMF tones too; returns the undo."""

    def listen(self, listener: Callable[[Frame], None]) -> Callable[[], None]:
        """Get the caller's audio frames; returns the undo."""

    async def hangup(self, *, reason: str = "local-bye") -> None: ...


BeepDetector = Callable[[Frame], bool]
"""Fed the called party's frames in order; True once a voicemail beep has ended."""


@dataclass
class FlowContext:
    """Who is on the line and what the flow may look at."""

    caller: str
    """The customer's number (E.164 or as the carrier sent it)."""
    call_id: str = ""
    did: str | None = None
    """The number the customer dialled (inbound)."""
    campaign_id: int | None = None
    lead_id: int | None = None
    data: Mapping[str, str] = field(default_factory=dict)
    """Lead fields and the like, for branch nodes (collected digits are added as variables)."""


class IvrActions(Protocol):
    """What a flow asks of the rest of the engine (implemented in the composition root)."""

    def agents_available(self, target: str) -> bool:
        """Could `target` (agent:EXT or ringgroup:NAME) take a call right now?"""

    async def transfer(
        self, call: IvrCall, target: str, *, timeout: float, context: FlowContext
    ) -> bool:
        """Connect the caller to agent:EXT / ringgroup:NAME / number:E164. True: connected
        (the call now belongs to the bridge); False: nobody answered or was free, and the
        caller's leg is still ours to continue the flow."""

    async def create_callback(
        self, context: FlowContext, *, assignee: str | None, due_in: timedelta, text: str
    ) -> None:
        """Put a callback task on `assignee` (None: the contact's responsible manager)."""

    async def opt_out(self, context: FlowContext, *, scope: str) -> None:
        """Put the caller's number on the do-not-call list (global or this campaign)."""

    def beep_detector(self) -> BeepDetector | None:
        """A fresh voicemail-beep detector, or None for the runner's own tone detector."""


@dataclass
class FlowResult:
    """What a call did in a flow (what a broadcast stores per call)."""

    flow: str
    path: list[str] = field(default_factory=list)
    """Node names in the order visited (a menu retried stays one entry per visit)."""
    digits: str = ""
    """Every digit the caller pressed, in order."""
    variables: dict[str, str] = field(default_factory=dict)
    """Collected input by variable name."""
    events: list[tuple[str, str]] = field(default_factory=list)
    """(node, what happened): "invalid:5", "timeout", "beep", "no-beep", "no-answer"..."""
    listened_to_end: bool = False
    """At least one prompt was played and none was cut short by the caller hanging up (a
    prompt stopped by a key press counts as heard: the caller reacted to it)."""
    outcome: str = "completed"
    """completed (the flow hung up), transferred, caller-hangup or failed."""
    transferred_to: str | None = None
    callback_created: bool = False
    opted_out: bool = False
    voicemail_left: bool = False
    """A voicemail-drop node played its whole message."""


class _CallerGone(Exception):
    """The caller hung up; the walk stops."""


class FlowRunner:
    """Walks one `flow` over calls; one runner may serve many calls at once."""

    def __init__(
        self,
        flow: Flow,
        actions: IvrActions,
        *,
        inband_dtmf: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.flow = flow
        self.actions = actions
        self.inband_dtmf = inband_dtmf
        self.clock = clock
        self._audio: dict[Path, npt.NDArray[np.int16]] = {}
        """Prompt samples read once, shared by every call of this flow."""

    def source(self, prompt: Prompt) -> FrameSource:
        """A fresh player of `prompt`'s audio."""
        path = prompt.audio or prompt.file
        if path is None:
            raise RuntimeError(f"prompt {prompt} was never prepared (load with a PromptCache)")
        samples = self._audio.get(path)
        if samples is None:
            samples = self._audio[path] = read_wav(path)
        return PromptSource(path, samples)

    async def run(self, call: IvrCall, context: FlowContext | None = None) -> FlowResult:
        """Walk the flow from its start over an answered call; hangs up at the end unless the
        call was transferred."""
        context = context or FlowContext(caller="", call_id=call.call_id)
        walk = _Walk(self, call, context)
        return await walk.run()


class _Walk:
    """One call's way through a flow."""

    def __init__(self, runner: FlowRunner, call: IvrCall, context: FlowContext) -> None:
        self.runner = runner
        self.flow = runner.flow
        self.actions = runner.actions
        self.call = call
        self.context = context
        self.result = FlowResult(runner.flow.name)
        self.typeahead: list[str] = []
        self.prompts_played = 0
        self.cut_by_hangup = False
        self.undo: list[Callable[[], None]] = []

    async def run(self) -> FlowResult:
        result = self.result
        if self.runner.inband_dtmf:
            try:
                self.undo.append(self.call.detect_inband())
            except RuntimeError as exc:  # no media (the call is already gone)
                logger.info("call %s: no in-band DTMF: %s", self.call.call_id, exc)
        name: str | None = self.flow.start
        try:
            for _ in range(MAX_STEPS):
                if name is None:
                    break
                result.path.append(name)
                logger.debug("call %s: flow %s node %s", self.call.call_id, self.flow.name, name)
                name = await self.step(name, self.flow.nodes[name])
            else:
                logger.warning(
                    "call %s: flow %s looped %d steps", self.call.call_id, self.flow.name, MAX_STEPS
                )
        except _CallerGone:
            result.outcome = "caller-hangup"
        except Exception:
            logger.exception("call %s: flow %s failed", self.call.call_id, self.flow.name)
            result.outcome = "failed"
        finally:
            self._stop_listening()
        result.listened_to_end = self.prompts_played > 0 and not self.cut_by_hangup
        if result.outcome != "transferred":
            if result.outcome == "completed" and self.call.ended.done():
                result.outcome = "caller-hangup"
            with contextlib.suppress(Exception):
                await self.call.hangup(reason="ivr-end")
        logger.info(
            "call %s: flow %s %s via %s, digits %r",
            self.call.call_id,
            self.flow.name,
            result.outcome,
            " > ".join(result.path),
            result.digits,
        )
        return result

    def _stop_listening(self) -> None:
        for undo in self.undo:
            undo()
        self.undo.clear()

    def note(self, node: str, what: str) -> None:
        self.result.events.append((node, what))

    # -- nodes ----------------------------------------------------------------------------------

    async def step(self, name: str, node: Node) -> str | None:
        if isinstance(node, Play):
            await self.say(node.prompts)
            return node.next
        if isinstance(node, Menu):
            return await self.menu(name, node)
        if isinstance(node, Collect):
            return await self.collect(name, node)
        if isinstance(node, Branch):
            return node.then if self.holds(node) else node.otherwise
        if isinstance(node, Transfer):
            return await self.transfer(name, node)
        if isinstance(node, Callback):
            await self.actions.create_callback(
                self.context,
                assignee=expand(node.assignee, self.data()) if node.assignee else None,
                due_in=timedelta(minutes=node.due_minutes),
                text=node.text,
            )
            self.result.callback_created = True
            await self.say(node.prompts)
            return node.next
        if isinstance(node, OptOut):
            await self.actions.opt_out(self.context, scope=node.scope)
            self.result.opted_out = True
            await self.say(node.prompts)
            return node.next
        if isinstance(node, VoicemailDrop):
            await self.voicemail(name, node)
            return node.next
        if isinstance(node, Hangup):
            await self.say(node.prompts, barge_in=False)
            return None
        raise TypeError(f"unknown node {node!r}")

    async def menu(self, name: str, node: Menu) -> str | None:
        tries = 0
        while True:
            await self.say(node.prompts)
            digit = await self.read_digit(node.timeout)
            if digit is not None and digit in node.choices:
                self.note(name, f"choice:{digit}")
                return node.choices[digit]
            self.note(name, "timeout" if digit is None else f"invalid:{digit}")
            self.call.flush_digits()  # keys mashed after a wrong one are not the next choice
            self.typeahead.clear()
            await self.say(node.timeout_prompts if digit is None else node.invalid_prompts)
            tries += 1
            if tries > node.retries:
                self.note(name, "retries-exhausted")
                return node.fallback

    async def collect(self, name: str, node: Collect) -> str | None:
        await self.say(node.prompts)
        entered = ""
        while len(entered) < node.digits:
            digit = await self.read_digit(node.timeout)
            if digit is None:
                break
            if digit == node.terminator:
                break
            entered += digit
        self.result.variables[node.variable] = entered
        if not entered:
            self.note(name, "nothing-entered")
            return node.fallback or node.next
        return node.next

    def holds(self, node: Branch) -> bool:
        if node.hours is not None:
            return node.hours.contains(self.runner.clock())
        data = self.data()
        if node.agents_available is not None:
            target = expand(node.agents_available, data)
            return target is not None and self.actions.agents_available(target)
        value = data.get(node.field or "")
        if node.equals is not None:
            return value is not None and str(value) == node.equals
        if node.one_of is not None:
            return value is not None and str(value) in node.one_of
        return bool(value)

    def data(self) -> dict[str, object]:
        """What `{field}` placeholders and field branches see: call data, then input."""
        return {**self.context.data, **self.result.variables}

    async def transfer(self, name: str, node: Transfer) -> str | None:
        target = expand(node.target, self.data())
        if target is None:
            self.note(name, "no-target")
            return node.fallback
        await self.say(node.prompts, barge_in=False)
        self._stop_listening()  # the agent hears the caller now; tones are theirs to hear
        connected = await self.actions.transfer(
            self.call, target, timeout=node.timeout, context=self.context
        )
        if connected:
            self.result.outcome = "transferred"
            self.result.transferred_to = target
            return None
        if self.call.ended.done():
            raise _CallerGone
        self.note(name, "no-answer")
        if self.runner.inband_dtmf:
            with contextlib.suppress(RuntimeError):
                self.undo.append(self.call.detect_inband())
        return node.fallback

    async def voicemail(self, name: str, node: VoicemailDrop) -> None:
        detector = self.actions.beep_detector() or ToneEndDetector()
        beep = asyncio.Event()

        def hear(frame: Frame) -> None:
            if not beep.is_set() and detector(frame):
                beep.set()

        undo = self.call.listen(hear)
        try:
            await self.until_ended(beep.wait(), node.beep_timeout)
        finally:
            undo()
        self.note(name, "beep" if beep.is_set() else "no-beep")
        self.result.voicemail_left = await self.say(node.prompts, barge_in=False)

    # -- prompts and digits ---------------------------------------------------------------------

    async def say(self, prompts: tuple[Prompt, ...], *, barge_in: bool = True) -> bool:
        """Play prompts in order; True when all played to the end. With `barge_in` a key press
        stops them and is kept as the next input."""
        for prompt in prompts:
            if barge_in and self.typeahead:
                return False
            source = self.runner.source(prompt)
            self.prompts_played += 1
            play = asyncio.ensure_future(self.call.play(source))
            digit = asyncio.ensure_future(self.call.next_digit(None)) if barge_in else None
            waiting: set[asyncio.Future[Any]] = {play, self.call.ended}
            if digit is not None:
                waiting.add(digit)
            try:
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if digit is not None and not digit.done():
                    digit.cancel()
            pressed = digit.result() if digit is not None and digit in done else None
            if pressed is not None:
                self.take(pressed)
                await _cancel(play)
                return False
            if self.call.ended.done():  # a hang-up also ends the playing (the leg is gone)
                await _cancel(play)
                self.cut_by_hangup = True
                raise _CallerGone
            if play in done and play.exception() is None:
                continue
            await _cancel(play)
            exc = play.exception() if play.done() and not play.cancelled() else None
            if exc is not None:
                raise exc
        return True

    def take(self, digit: str) -> None:
        self.typeahead.append(digit)
        self.result.digits += digit

    async def read_digit(self, timeout: float) -> str | None:
        if self.typeahead:
            return self.typeahead.pop(0)
        digit: str | None = await self.until_ended(self.call.next_digit(timeout), None)
        if digit is not None:
            self.result.digits += digit
        return digit

    async def until_ended(self, work: Any, timeout: float | None) -> Any:
        """Await `work` unless the caller hangs up first (then stop the walk)."""
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait(
            {task, self.call.ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            return task.result()
        await _cancel(task)
        if self.call.ended.done():
            raise _CallerGone
        return None


class PromptSource(SampleSource):
    """One playing of a prompt (`path` says which, for logs and tests)."""

    def __init__(self, path: Path, samples: npt.NDArray[np.int16]) -> None:
        super().__init__(samples)
        self.path = path


async def _cancel(task: asyncio.Future[Any]) -> None:
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


class ToneEndDetector:
    """A voicemail beep: one steady tone (300-2500 Hz) of at least `min_seconds`, then its end.

    Per 20 ms frame the strongest spectral peak must hold most of the power and stay within a
    few Hz of the last frame's; the beep is reported on the first frame that breaks the run.
    """

    def __init__(
        self, *, min_seconds: float = 0.15, min_share: float = 0.7, min_dbfs: float = -40.0
    ) -> None:
        self.min_frames = max(1, round(min_seconds / 0.02))
        self.min_share = min_share
        self.min_power = (32768.0**2) * 10 ** (min_dbfs / 10)
        self._run = 0
        self._freq = 0.0

    def __call__(self, frame: Frame) -> bool:
        x = np.asarray(frame, dtype=np.float64)
        power = float(np.dot(x, x)) / max(1, x.size)
        tone = None
        if power >= self.min_power and x.size >= 80:
            spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
            peak = int(np.argmax(spectrum[1:])) + 1
            share = float(spectrum[max(0, peak - 2) : peak + 3].sum() / spectrum.sum())
            freq = peak * 8000.0 / x.size
            if share >= self.min_share and 300.0 <= freq <= 2500.0:
                tone = freq
        if tone is not None and (self._run == 0 or abs(tone - self._freq) <= 60.0):
            self._run += 1
            self._freq = tone
            return False
        ended = self._run >= self.min_frames
        self._run = 1 if tone is not None else 0
        self._freq = tone or 0.0
        return ended


__all__ = [
    "MAX_STEPS",
    "BeepDetector",
    "FlowContext",
    "FlowResult",
    "FlowRunner",
    "IvrActions",
    "IvrCall",
    "ToneEndDetector",
]
