"""Ring-group strategies: which members ring, in which order (a registry dict,
docs/architecture.md 5).

A strategy turns the members that can take a call now into hunt steps; the B2BUA rings each step
until someone answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .b2bua import HuntStep, Target
from .presence import Presence
from .registrar import Binding


@dataclass(frozen=True)
class Hunt:
    """What a strategy decides on."""

    members: list[str]
    """The group's members in configured order."""
    reachable: dict[str, list[Binding]]
    """Members that can take a call now (available, registered), with their phones."""
    presence: Presence
    member_timeout: float
    ring_timeout: float
    now: float

    def step(self, member: str) -> HuntStep:
        """One member's phones, rung for the member timeout."""
        return HuntStep(
            tuple(Target(member, b) for b in self.reachable[member]), self.member_timeout
        )


class HuntStrategy(Protocol):
    def steps(self, hunt: Hunt) -> list[HuntStep]:
        """Steps over the reachable members, in hunt order."""
        ...


class RingAll:
    """Every available member rings at once; the first to answer wins."""

    def steps(self, hunt: Hunt) -> list[HuntStep]:
        targets = tuple(
            t for m in hunt.members if m in hunt.reachable for t in hunt.step(m).targets
        )
        return [HuntStep(targets, hunt.ring_timeout)] if targets else []


class RoundRobin:
    """One member at a time, starting after the member who was tried first last time."""

    def __init__(self) -> None:
        self._last: str | None = None

    def steps(self, hunt: Hunt) -> list[HuntStep]:
        members = hunt.members
        start = (members.index(self._last) + 1) % len(members) if self._last in members else 0
        order = [m for m in members[start:] + members[:start] if m in hunt.reachable]
        if order:
            self._last = order[0]
        return [hunt.step(m) for m in order]


class LongestIdle:
    """One member at a time, the one idle longest first (fair distribution on a sales floor)."""

    def steps(self, hunt: Hunt) -> list[HuntStep]:
        reachable = [m for m in hunt.members if m in hunt.reachable]
        order = sorted(reachable, key=lambda m: -hunt.presence.idle_for(m, now=hunt.now))
        return [hunt.step(m) for m in order]


# Strategies keep per-group state (round-robin's pointer), so each group gets its own instance.
STRATEGIES: dict[str, Callable[[], HuntStrategy]] = {
    "ringall": RingAll,
    "round-robin": RoundRobin,
    "longest-idle": LongestIdle,
}
