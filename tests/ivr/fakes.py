"""Test doubles of the IvrCall and IvrActions protocols: no clock, no network.

The fake caller follows a script: what it does each time the flow waits for a key (a digit,
None for letting it time out, "hangup"), and what it does while named prompts play (press a
key: barge-in, or hang up). Prompts "play" instantly unless the script interrupts them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from ivr import BeepDetector, FlowContext, IvrCall
from telephony.media import Frame, FrameSource


class FakeCall:
    def __init__(
        self,
        answers: list[str | None] | None = None,
        during: list[tuple[str, str]] | None = None,
        heard_by_machine: list[Frame] | None = None,
    ) -> None:
        self.call_id = "fake-call"
        self.ended: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.answers = list(answers or [])
        self.during = list(during or [])
        self.heard: list[str] = []
        """Prompt names (file stems) in the order they started; "!" marks an interrupted one."""
        self.hung_up = False
        self.inband_on = 0
        self.frames = heard_by_machine or []
        self._barge: asyncio.Queue[str] = asyncio.Queue()
        self.waits: list[float | None] = []

    def _end(self, reason: str) -> None:
        if not self.ended.done():
            self.ended.set_result(reason)

    async def play(self, source: FrameSource) -> None:
        name = Path(getattr(source, "path", "?")).stem
        for i, (prompt, action) in enumerate(self.during):
            if prompt == name:
                del self.during[i]
                self.heard.append(name + "!")
                if action == "hangup":
                    self._end("remote-bye")
                else:
                    self._barge.put_nowait(action)
                await asyncio.Event().wait()  # cut short: the runner cancels us
        self.heard.append(name)
        await asyncio.sleep(0)

    async def next_digit(self, timeout: float | None = None) -> str | None:
        if timeout is None:  # the barge-in watch while a prompt plays
            return await self._barge.get()
        self.waits.append(timeout)
        answer = self.answers.pop(0) if self.answers else None
        if answer == "hangup":
            self._end("remote-bye")
            await asyncio.Event().wait()
        await asyncio.sleep(0)
        return answer

    def flush_digits(self) -> str:
        dropped = ""
        while not self._barge.empty():
            dropped += self._barge.get_nowait()
        return dropped

    def detect_inband(self) -> Callable[[], None]:
        self.inband_on += 1

        def undo() -> None:
            self.inband_on -= 1

        return undo

    def listen(self, listener: Callable[[Frame], None]) -> Callable[[], None]:
        frames = list(self.frames)

        async def feed() -> None:
            for frame in frames:
                listener(frame)
                await asyncio.sleep(0)

        task = asyncio.get_running_loop().create_task(feed())
        return task.cancel  # type: ignore[return-value]

    async def hangup(self, *, reason: str = "local-bye") -> None:
        self.hung_up = True
        self._end(reason)


class FakeActions:
    def __init__(self, *, connect: bool = True, available: set[str] | None = None) -> None:
        self.connect = connect
        self.available = available or set()
        self.transfers: list[tuple[str, float]] = []
        self.callbacks: list[tuple[str | None, timedelta, str]] = []
        self.opt_outs: list[tuple[str, str]] = []

    def agents_available(self, target: str) -> bool:
        return target in self.available

    async def transfer(
        self, call: IvrCall, target: str, *, timeout: float, context: FlowContext
    ) -> bool:
        self.transfers.append((target, timeout))
        return self.connect

    async def create_callback(
        self, context: FlowContext, *, assignee: str | None, due_in: timedelta, text: str
    ) -> None:
        self.callbacks.append((assignee, due_in, text))

    async def opt_out(self, context: FlowContext, *, scope: str) -> None:
        self.opt_outs.append((context.caller, scope))

    def beep_detector(self) -> BeepDetector | None:
        return None


def frames_of(samples: np.ndarray) -> list[Frame]:
    usable = samples.size - samples.size % 160
    return [f.astype(np.int16) for f in samples[:usable].reshape(-1, 160)]
