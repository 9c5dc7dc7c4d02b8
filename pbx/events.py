"""What happens on the PBX, as typed events on one bus: the journal, the recordings, the live
dashboard, the campaigns and the CRM subscribe; the switchboard publishes. No feature wraps
another's hook, so the order of wiring never changes what anyone sees.

Handlers run in the order they subscribed. A handler may return an awaitable: `publish` (from
synchronous code) runs it as a task of the bus, logged if it fails; `deliver` (from a coroutine)
awaits each in turn, so a call's end is journaled before the switchboard lets go of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from telephony.aio import TaskSet

from .presence import AgentState

if TYPE_CHECKING:
    from .b2bua import BridgedCall, CallSummary
    from .monitor import MonitorEvent
    from .pickup import Pickup

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallStarted:
    """A call reached the PBX (its summary: who, to what, when)."""

    summary: CallSummary


@dataclass(frozen=True)
class CallRinging:
    """The phones of `agents` are being rung for the call: published each time that set
    changes (empty once the hunt is over), and with `first` when the first phone rings (its
    180/183: the call is ringing)."""

    summary: CallSummary
    agents: frozenset[str]
    first: bool


@dataclass(frozen=True)
class CallAnswered:
    """Someone answered: the caller and `bridged.callee` talk (media bridged)."""

    bridged: BridgedCall

    @property
    def summary(self) -> CallSummary:
        return self.bridged.summary


@dataclass(frozen=True)
class CallTransferred:
    """The caller was handed from `old_agent` to `new_agent` (bridged now); `transfer` is the
    summary's record of it ({at, from, to, by, mode, result})."""

    bridged: BridgedCall
    old_agent: str
    new_agent: str
    transfer: dict[str, Any]

    @property
    def summary(self) -> CallSummary:
        return self.bridged.summary


@dataclass(frozen=True)
class CallEnded:
    """The call is over; its summary is final."""

    summary: CallSummary


@dataclass(frozen=True)
class CallPickedUp:
    """`picker` took the ringing call with a pickup code."""

    bridged: BridgedCall
    pickup: Pickup
    picker: str


@dataclass(frozen=True)
class PresenceChanged:
    extension: str
    state: AgentState


@dataclass(frozen=True)
class MonitorChanged:
    """A supervisor's monitor session started, changed mode or ended."""

    event: MonitorEvent


PbxEvent = (
    CallStarted
    | CallRinging
    | CallAnswered
    | CallEnded
    | CallPickedUp
    | CallTransferred
    | PresenceChanged
    | MonitorChanged
)
E = TypeVar("E", bound=PbxEvent)
Handler = Callable[[Any], Awaitable[None] | None]


class EventBus:
    """Subscribers by event type, called in subscription order."""

    def __init__(self) -> None:
        self._handlers: list[tuple[type, Handler]] = []
        self.tasks = TaskSet("pbx-event")
        """Handlers' coroutines started by `publish`, held until done."""

    def subscribe(
        self, kind: type[E], handler: Callable[[E], Awaitable[None] | None]
    ) -> Callable[[], None]:
        """Call `handler` with every event of `kind`; returns the undo."""
        entry: tuple[type, Handler] = (kind, handler)
        self._handlers.append(entry)

        def unsubscribe() -> None:
            if entry in self._handlers:
                self._handlers.remove(entry)

        return unsubscribe

    def _results(self, event: PbxEvent) -> list[Awaitable[None]]:
        pending = []
        for kind, handler in list(self._handlers):
            if not isinstance(event, kind):
                continue
            try:
                result = handler(event)
            except Exception:
                logger.exception("%s handler %r failed", type(event).__name__, handler)
                continue
            if result is not None:
                pending.append(result)
        return pending

    def publish(self, event: PbxEvent) -> None:
        """From synchronous code: handlers run now; what they return runs as tasks."""
        for awaitable in self._results(event):
            self.tasks.spawn(_awaited(awaitable))

    async def deliver(self, event: PbxEvent) -> None:
        """From a coroutine: handlers run now, and what they return is awaited in order."""
        for awaitable in self._results(event):
            try:
                await awaitable
            except Exception:
                logger.exception("%s handler failed", type(event).__name__)

    async def drain(self) -> None:
        """Wait for the handlers' tasks started so far (shutdown)."""
        if self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


async def _awaited(awaitable: Awaitable[None]) -> None:
    await awaitable


__all__ = [
    "CallAnswered",
    "CallEnded",
    "CallPickedUp",
    "CallRinging",
    "CallStarted",
    "EventBus",
    "MonitorChanged",
    "PbxEvent",
    "PresenceChanged",
]
