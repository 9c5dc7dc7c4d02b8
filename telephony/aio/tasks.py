"""Tasks started beside the code that needs them (a hang-up decided in a SIP callback, a call's
hunt, a journal write), held until they end and never failing in silence."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Coroutine
from typing import Any

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


__all__ = ["TaskSet", "current_call"]
