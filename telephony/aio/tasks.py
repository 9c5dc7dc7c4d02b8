"""Tasks started beside the code that needs them (a hang-up decided in a SIP callback, a call's
hunt, a journal write), held until they end and never failing in silence; and `Started`, the
`async with` of anything with its own start() and stop() (a cluster, a test peer)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self

logger = logging.getLogger(__name__)

current_call: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_call", default=None
)
"""The Call-ID of the incoming call whose handling this code runs in: set for the incoming-call
handler and inherited by every task it starts (asyncio copies the context into new tasks), so
a log line of a call's hunt, bridge or journal names the call without passing it along."""


class TaskSet(set["asyncio.Task[Any]"]):
    """The running tasks of one owner. The event loop keeps only weak references to tasks, so
    the set holds each until it ends; a task that fails has its exception logged with the
    traceback as it ends, instead of "Task exception was never retrieved" whenever the garbage
    collector gets to it (or never). Cancelled tasks are not failures."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what
        """Names the owner in the log line ("call", "engine"...)."""

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(work)
        self.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            logger.error("%s task %s failed", self.what, task.get_name(), exc_info=exc)


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until it has ended. The CancelledError it ends with is absorbed;
    one meant for the caller, cancelled while it waits, is not (a bare
    `suppress(CancelledError)` swallowed it: a campaign supervisor whose stop came while it
    stopped a finished campaign's runner polled on forever, and the engine never stopped)."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise


class Started:
    """An async context manager over the subclass's own `start()` and `stop()`."""

    async def start(self) -> Any:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


__all__ = ["Started", "TaskSet", "cancel_and_wait", "current_call"]
