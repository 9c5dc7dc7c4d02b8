"""Ring-group strategies: which members ring, in which order (DESIGN.md 5.11: a registry dict).

A strategy turns the members that can take a call now into hunt steps; the B2BUA rings each step
until someone answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .b2bua import HuntStep, Target
from .presence import Presence
from .registrar import Binding


class HuntStrategy(Protocol):
    def steps(
        self,
        members: list[str],
        reachable: dict[str, list[Binding]],
        *,
        presence: Presence,
        member_timeout: float,
        ring_timeout: float,
        now: float,
    ) -> list[HuntStep]:
        """Steps over the members in `reachable` (available and registered), in hunt order."""
        ...


def _targets(extension: str, bindings: list[Binding]) -> tuple[Target, ...]:
    return tuple(Target(extension, b) for b in bindings)


class RingAll:
    """Every available member rings at once; the first to answer wins."""

    def steps(
        self,
        members: list[str],
        reachable: dict[str, list[Binding]],
        *,
        presence: Presence,
        member_timeout: float,
        ring_timeout: float,
        now: float,
    ) -> list[HuntStep]:
        targets = tuple(t for m in members if m in reachable for t in _targets(m, reachable[m]))
        return [HuntStep(targets, ring_timeout)] if targets else []


class RoundRobin:
    """One member at a time, starting after the member who was tried first last time."""

    def __init__(self) -> None:
        self._last: str | None = None

    def steps(
        self,
        members: list[str],
        reachable: dict[str, list[Binding]],
        *,
        presence: Presence,
        member_timeout: float,
        ring_timeout: float,
        now: float,
    ) -> list[HuntStep]:
        start = (members.index(self._last) + 1) % len(members) if self._last in members else 0
        order = [m for m in members[start:] + members[:start] if m in reachable]
        if order:
            self._last = order[0]
        return [HuntStep(_targets(m, reachable[m]), member_timeout) for m in order]


class LongestIdle:
    """One member at a time, the one idle longest first (fair distribution on a sales floor)."""

    def steps(
        self,
        members: list[str],
        reachable: dict[str, list[Binding]],
        *,
        presence: Presence,
        member_timeout: float,
        ring_timeout: float,
        now: float,
    ) -> list[HuntStep]:
        order = sorted(
            (m for m in members if m in reachable), key=lambda m: -presence.idle_for(m, now=now)
        )
        return [HuntStep(_targets(m, reachable[m]), member_timeout) for m in order]


# Strategies keep per-group state (round-robin's pointer), so each group gets its own instance.
STRATEGIES: dict[str, Callable[[], HuntStrategy]] = {
    "ringall": RingAll,
    "round-robin": RoundRobin,
    "longest-idle": LongestIdle,
}
