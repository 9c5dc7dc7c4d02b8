"""Agent presence: available, on call, wrap-up, away, driven by the engine's calls.

Pure: time comes in as `now`. Wrap-up ends by itself (the state is computed, not timed), so a
restart or a missed timer can never leave an agent stuck in wrap-up.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


class AgentState(enum.StrEnum):
    AVAILABLE = "available"
    ON_CALL = "on-call"
    WRAP_UP = "wrap-up"
    AWAY = "away"


@dataclass
class _Agent:
    away: bool = False
    dnd: bool = False
    """Do not disturb (pbx.forwarding): shown, and treated by every hunt, as away."""
    calls: int = 0
    wrap_up_until: float = 0.0
    idle_since: float = 0.0
    """When the agent last became free (start-up, or the end of their last call)."""
    busy_since: float = 0.0
    """When the agent's current call (the first of several) began."""
    elsewhere: bool = False
    """On a call another engine node holds (a cluster's shared bookings)."""


class Presence:
    def __init__(self, extensions: Iterable[str], *, wrap_up_seconds: float, now: float) -> None:
        self.wrap_up_seconds = wrap_up_seconds
        self._agents = {ext: _Agent(idle_since=now) for ext in extensions}
        self.on_change: Callable[[str, AgentState], None] | None = None
        """Called when an agent's state changes through a call or a set (for dashboards)."""
        self.on_share: Callable[[str], None] | None = None
        """Called when what the other nodes of a cluster follow (`shared`) changes here."""

    def state(self, extension: str, *, now: float) -> AgentState:
        agent = self._agents[extension]
        if agent.calls or agent.elsewhere:
            return AgentState.ON_CALL
        if agent.away or agent.dnd:
            return AgentState.AWAY
        if now < agent.wrap_up_until:
            return AgentState.WRAP_UP
        return AgentState.AVAILABLE

    def available(self, extension: str, *, now: float) -> bool:
        return extension in self._agents and self.state(extension, now=now) is AgentState.AVAILABLE

    def idle_for(self, extension: str, *, now: float) -> float:
        agent = self._agents[extension]
        return max(0.0, now - max(agent.idle_since, agent.wrap_up_until))

    def on_call_for(self, extension: str, *, now: float) -> float | None:
        """Seconds the agent has been on their current call, None when not on a call."""
        agent = self._agents[extension]
        return max(0.0, now - agent.busy_since) if agent.calls or agent.elsewhere else None

    def wrap_up_left(self, extension: str, *, now: float) -> float:
        """Seconds of wrap-up the agent has left at most (0 when not wrapping up)."""
        return max(0.0, self._agents[extension].wrap_up_until - now)

    def set_away(self, extension: str, away: bool, *, now: float) -> None:
        agent = self._agents[extension]
        if agent.away != away:
            agent.away = away
            if not away:
                agent.idle_since = now
            self._changed(extension, now)
            self._share(extension)

    def shared(self, extension: str) -> tuple[bool, float]:
        """(away, end of wrap-up): what the other nodes of a cluster follow."""
        agent = self._agents[extension]
        return agent.away, agent.wrap_up_until

    def apply_shared(self, extension: str, away: bool, wrap_up_until: float, *, now: float) -> None:
        """Another node set the agent away or available, or their wrap-up began or ended
        there (`wrap_up_until` on this clock): the last change wins, as it does here."""
        agent = self._agents.get(extension)
        if agent is None or (agent.away, agent.wrap_up_until) == (away, wrap_up_until):
            return
        before = self.state(extension, now=now)
        if agent.away and not away:
            agent.idle_since = now
        agent.away, agent.wrap_up_until = away, wrap_up_until
        if self.state(extension, now=now) is not before:
            self._changed(extension, now)

    def set_elsewhere(self, extension: str, on_call: bool, *, now: float) -> None:
        """The agent is on a call another node holds (or no longer)."""
        agent = self._agents.get(extension)
        if agent is None or agent.elsewhere == on_call:
            return
        before = self.state(extension, now=now)
        agent.elsewhere = on_call
        if on_call and not agent.calls:
            agent.busy_since = now
        elif not on_call and not agent.calls:
            agent.idle_since = now
        if self.state(extension, now=now) is not before:
            self._changed(extension, now)

    def set_dnd(self, extension: str, dnd: bool, *, now: float) -> None:
        """Do not disturb on or off: away-like while on, apart from *50/*51's away flag."""
        agent = self._agents.get(extension)
        if agent is not None and agent.dnd != dnd:
            before = self.state(extension, now=now)
            agent.dnd = dnd
            if not dnd and not agent.away and not agent.calls:
                agent.idle_since = now
            if self.state(extension, now=now) is not before:
                self._changed(extension, now)

    def dnd(self, extension: str) -> bool:
        agent = self._agents.get(extension)
        return agent is not None and agent.dnd

    def call_started(self, extension: str, *, now: float) -> None:
        agent = self._agents.get(extension)
        if agent is None:
            return
        agent.calls += 1
        if agent.calls == 1:
            agent.busy_since = now
        self._changed(extension, now)

    def call_ended(self, extension: str, *, now: float, wrap_up: bool = True) -> None:
        """An agent's call is over: wrap-up after answered customer calls, else free at once."""
        agent = self._agents.get(extension)
        if agent is None or agent.calls == 0:
            return
        agent.calls -= 1
        if agent.calls == 0:
            agent.idle_since = now
            if wrap_up:
                agent.wrap_up_until = now + self.wrap_up_seconds
        self._changed(extension, now)
        if agent.calls == 0 and wrap_up:
            self._share(extension)

    def end_wrap_up(self, extension: str, *, now: float) -> None:
        """The agent posted a disposition or said they are ready."""
        agent = self._agents[extension]
        agent.wrap_up_until = min(agent.wrap_up_until, now)
        self._changed(extension, now)
        self._share(extension)

    def notify(self, extension: str, *, now: float) -> None:
        """Tell the listeners the agent may take calls differently (e.g. they took a seat)."""
        if extension in self._agents:
            self._changed(extension, now)

    def _share(self, extension: str) -> None:
        if self.on_share is not None:
            self.on_share(extension)

    def _changed(self, extension: str, now: float) -> None:
        state = self.state(extension, now=now)
        logger.info("presence: %s is %s", extension, state.value)
        if self.on_change is not None:
            self.on_change(extension, state)
