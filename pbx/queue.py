"""Waiting queues (ACD): callers wait in arrival order for the next free agent.

Pure: time comes in as `now` (docs/architecture.md 5.1); the switchboard plays the music,
rings the agents and tells the queue what happened. A `Queue` holds its configuration, the
callers waiting (in arrival order; a caller who asked to be called back keeps its place), the
members logged in, the per-queue wrap-up of each member and the figures a supervisor wants:
service level (answered within `service_level` seconds), average speed of answer, abandon rate
and the longest wait.

Members are offered a caller one step at a time: `offer()` picks, among the members free
now, those of the lowest penalty tier and orders them by the queue's strategy; ringall rings
the whole tier at once, the others one member per step. A step nobody answers puts the caller
back at its place and the next dispatch tries again (round-robin moves on).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

QUEUE_STRATEGIES = ("ringall", "round-robin", "longest-idle", "fewest-calls")
OVERFLOW_KINDS = ("queue", "ringgroup", "voicemail", "callback", "agent")


@dataclass(frozen=True)
class QueueMember:
    extension: str
    penalty: int = 0
    """Lower rings first: members of a higher penalty ring only when no lower one is free."""


@dataclass(frozen=True)
class QueueConfig:
    name: str
    members: tuple[QueueMember, ...]
    """Who may log in (all of them are logged in at start)."""
    strategy: str = "longest-idle"
    """ringall, round-robin, longest-idle or fewest-calls."""
    member_timeout: float = 15.0
    """Seconds one offer rings before the caller goes back to wait."""
    wrap_up: float = 10.0
    """Seconds after a call from this queue before the member is offered the next one."""
    max_wait: float = 300.0
    """Seconds a caller waits before the overflow takes it (0: for ever)."""
    max_length: int = 0
    """Callers waiting at most (0: no limit); one more goes to the overflow at once."""
    overflow: str = "callback"
    """Where callers over max_wait or max_length go: queue:NAME, ringgroup:NAME, agent:EXT,
    voicemail:OWNER, voicemail (the queue's own box, for its owner) or callback (a callback
    task for the owner)."""
    announce_every: float = 30.0
    """Seconds between position and estimated-wait announcements (0: none)."""
    service_level: float = 20.0
    """A call answered within this many seconds of waiting counts inside the service level."""
    callback_digit: str = "1"
    """The digit a waiting caller presses to be called back, keeping its place ('' off)."""
    owner: str | None = None
    """Gets the callback tasks and voicemail of the queue: an extension, or RESPONSIBLE (the
    caller's responsible manager in the CRM; nobody for an unknown caller)."""
    music: str | None = None
    """Music on hold for the waiting callers (a WAV; None: the engine's music on hold)."""
    greeting: str | None = None
    """Played once when a caller joins (a WAV or a text for espeak-ng)."""
    voicemail_greeting: str | None = None
    """What callers hear in the queue's own box before the tone (a WAV or a text); None:
    queue_voicemail_greeting(name)."""
    when_empty: str = "wait"
    """A caller who finds no member logged in with a phone and not away: "wait" (someone may
    log in) or "overflow" at once (Asterisk's joinempty = no)."""

    def __post_init__(self) -> None:
        if self.strategy not in QUEUE_STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(QUEUE_STRATEGIES)}")
        if self.when_empty not in ("wait", "overflow"):
            raise ValueError(f"when_empty must be wait or overflow, got {self.when_empty!r}")
        kind, _, target = self.overflow.partition(":")
        if kind not in OVERFLOW_KINDS or (kind not in ("callback", "voicemail") and not target):
            raise ValueError(
                "overflow must be queue:NAME, ringgroup:NAME, agent:EXT, voicemail:OWNER, "
                f"voicemail or callback, got {self.overflow!r}"
            )

    @property
    def voicemail_box(self) -> VoicemailBox:
        """The queue's own box (overflow = "voicemail"); its owner is resolved per call."""
        greeting = self.voicemail_greeting or queue_voicemail_greeting(self.name)
        return VoicemailBox(self.owner or "", greeting)


RESPONSIBLE = "responsible"
"""A queue owner: the caller's responsible manager (the CRM contact's)."""


def queue_voicemail_greeting(name: str) -> str:
    return (
        f"You have reached {name}. Nobody can take your call now. Please leave a message "
        "after the tone, and press hash when done."
    )


@dataclass(frozen=True)
class VoicemailBox:
    """An agent's (or a queue owner's) voicemail: what callers hear before the tone."""

    owner: str
    greeting: str | None = None
    """A WAV, or a text spoken by espeak-ng; None: "Please leave a message after the tone"."""
    max_seconds: float = 120.0
    """The longest message kept."""


@dataclass
class QueuedCaller:
    key: str
    """The caller's Call-ID (a callback keeps the original one)."""
    number: str
    joined: float
    offering: bool = False
    """Agents ring for this caller right now."""
    callback: bool = False
    """Virtual hold: the caller hung up and is called back when its turn comes."""
    announced: float = -math.inf
    """When the caller last heard its position (never: it hears it as it joins)."""


@dataclass(frozen=True)
class Joined:
    position: int


@dataclass(frozen=True)
class Full:
    """The queue holds max_length callers already (or, with when_empty = "overflow", has
    nobody to answer): the overflow takes this one."""

    reason: str = "queue-full"


@dataclass
class QueueStats:
    """Counts since start (Prometheus counters) and the recent figures."""

    entered: int = 0
    answered: int = 0
    answered_in_sla: int = 0
    abandoned: int = 0
    overflowed: int = 0
    callbacks: int = 0
    wait_answered: float = 0.0
    """Sum of the waits of answered callers (ASA = wait_answered / answered)."""
    talk: float = 0.0
    talked: int = 0


@dataclass
class _MemberState:
    logged_in: bool = True
    calls: int = 0
    """Calls from this queue the member answered (fewest-calls)."""
    free_at: float = 0.0
    """End of the member's wrap-up for this queue."""


@dataclass
class Queue:
    config: QueueConfig
    callers: list[QueuedCaller] = field(default_factory=list)
    stats: QueueStats = field(default_factory=QueueStats)
    members: dict[str, _MemberState] = field(default_factory=dict)
    default_talk: float = 120.0
    """Talk time assumed for the estimated wait before any call was answered."""
    _last: str | None = None

    def __post_init__(self) -> None:
        for member in self.config.members:
            self.members.setdefault(member.extension, _MemberState())

    @property
    def name(self) -> str:
        return self.config.name

    # -- members ------------------------------------------------------------------------------

    def log_in(self, extension: str) -> bool:
        """Log a member in; False when `extension` is no member of this queue."""
        state = self.members.get(extension)
        if state is None:
            return False
        state.logged_in = True
        logger.info("queue %s: %s logged in", self.name, extension)
        return True

    def log_out(self, extension: str) -> bool:
        state = self.members.get(extension)
        if state is None:
            return False
        state.logged_in = False
        logger.info("queue %s: %s logged out", self.name, extension)
        return True

    def logged_in(self) -> list[str]:
        return [m.extension for m in self.config.members if self.members[m.extension].logged_in]

    def penalty(self, extension: str) -> int:
        return next(m.penalty for m in self.config.members if m.extension == extension)

    def ready(self, extension: str, *, now: float) -> bool:
        """Logged in and past this queue's wrap-up."""
        state = self.members.get(extension)
        return state is not None and state.logged_in and now >= state.free_at

    def offer(
        self, free: Iterable[str], *, idle_for: Callable[[str], float], now: float
    ) -> list[str]:
        """The members to ring at once for the next caller, of those `free` now (available
        in presence, not busy, registered), by penalty tier and then strategy; [] for none."""
        ready = [m for m in free if self.ready(m, now=now)]
        if not ready:
            return []
        tier = min(self.penalty(m) for m in ready)
        order = [m.extension for m in self.config.members if m.extension in ready]
        order = [m for m in order if self.penalty(m) == tier]
        strategy = self.config.strategy
        if strategy == "ringall":
            return order
        if strategy == "round-robin":
            names = [m.extension for m in self.config.members]
            start = (names.index(self._last) + 1) % len(names) if self._last in names else 0
            rotated = names[start:] + names[:start]
            chosen = next(m for m in rotated if m in order)
            self._last = chosen
            return [chosen]
        if strategy == "fewest-calls":
            return [min(order, key=lambda m: (self.members[m].calls, -idle_for(m)))]
        return [max(order, key=idle_for)]  # longest-idle

    # -- callers ------------------------------------------------------------------------------

    def join(self, key: str, number: str, *, now: float, staffed: bool = True) -> Joined | Full:
        """The caller's place in line, or Full when the overflow takes it at once: the line
        is at max_length, or nobody could answer (`staffed` False: no member logged in with a
        phone and not away) and the queue says when_empty = "overflow"."""
        limit = self.config.max_length
        if limit and len(self.callers) >= limit:
            self.stats.overflowed += 1
            logger.info("queue %s: full (%d), %s overflows", self.name, limit, number)
            return Full()
        if not staffed and self.config.when_empty == "overflow":
            self.stats.overflowed += 1
            logger.info("queue %s: nobody to answer, %s overflows", self.name, number)
            return Full("no-agents")
        self.callers.append(QueuedCaller(key, number, now))
        self.stats.entered += 1
        return Joined(len(self.callers))

    def find(self, key: str) -> QueuedCaller | None:
        return next((c for c in self.callers if c.key == key), None)

    def position(self, key: str) -> int:
        """1 for the caller next in line; 0 for a caller no longer waiting."""
        for index, caller in enumerate(self.callers):
            if caller.key == key:
                return index + 1
        return 0

    def next_waiting(self) -> QueuedCaller | None:
        """The first caller in line not being offered to an agent already."""
        return next((c for c in self.callers if not c.offering), None)

    def estimated_wait(self, key: str, *, now: float) -> float:
        """Seconds until `key` is answered, roughly: the callers ahead of it (and itself)
        divided among the members logged in, each taking the average talk time."""
        position = self.position(key)
        if position == 0:
            return 0.0
        staffed = max(1, len(self.logged_in()))
        talk = self.stats.talk / self.stats.talked if self.stats.talked else self.default_talk
        return math.ceil(position / staffed) * talk

    def expired(self, *, now: float) -> list[QueuedCaller]:
        """Waiting callers (not being offered) past max_wait: the overflow takes them."""
        limit = self.config.max_wait
        if not limit:
            return []
        return [
            c for c in self.callers if not c.offering and not c.callback and now - c.joined >= limit
        ]

    def due_announcement(self, key: str, *, now: float) -> bool:
        every = self.config.announce_every
        caller = self.find(key)
        if not every or caller is None or caller.callback or caller.offering:
            return False
        return now - caller.announced >= every

    def announced(self, key: str, *, now: float) -> None:
        caller = self.find(key)
        if caller is not None:
            caller.announced = now

    def request_callback(self, key: str) -> bool:
        """Virtual hold: the caller hangs up, keeps its place and is called back at its turn."""
        caller = self.find(key)
        if caller is None or caller.callback:
            return False
        caller.callback = True
        self.stats.callbacks += 1
        logger.info("queue %s: %s waits for a callback at %d", self.name, caller.number,
                    self.position(key))  # fmt: skip
        return True

    def answered(self, key: str, member: str, *, now: float) -> float:
        """`member` answered `key`: the caller leaves the line; returns its wait."""
        caller = self._remove(key)
        wait = now - caller.joined if caller is not None else 0.0
        self.stats.answered += 1
        self.stats.wait_answered += wait
        if wait <= self.config.service_level:
            self.stats.answered_in_sla += 1
        state = self.members.get(member)
        if state is not None:
            state.calls += 1
        return wait

    def call_ended(self, member: str, talk: float, *, now: float) -> None:
        """An answered call from this queue ended: the member wraps up for this queue."""
        self.stats.talk += talk
        self.stats.talked += 1
        state = self.members.get(member)
        if state is not None:
            state.free_at = now + self.config.wrap_up

    def abandoned(self, key: str, *, now: float) -> None:
        """The caller hung up while waiting."""
        if self._remove(key) is not None:
            self.stats.abandoned += 1

    def overflowed(self, key: str) -> None:
        if self._remove(key) is not None:
            self.stats.overflowed += 1

    def leave(self, key: str) -> None:
        """The caller left the line without counting as answered or abandoned (a callback
        that could not reach the customer is a task now)."""
        self._remove(key)

    def _remove(self, key: str) -> QueuedCaller | None:
        caller = self.find(key)
        if caller is not None:
            self.callers.remove(caller)
        return caller

    # -- figures ------------------------------------------------------------------------------

    def longest_wait(self, *, now: float) -> float:
        return max((now - c.joined for c in self.callers), default=0.0)

    @property
    def service_level(self) -> float | None:
        """Share of answered calls answered within the service level (None before any)."""
        if not self.stats.answered:
            return None
        return self.stats.answered_in_sla / self.stats.answered

    @property
    def average_speed_of_answer(self) -> float | None:
        if not self.stats.answered:
            return None
        return self.stats.wait_answered / self.stats.answered

    @property
    def abandon_rate(self) -> float | None:
        done = self.stats.answered + self.stats.abandoned
        return self.stats.abandoned / done if done else None

    def snapshot(self, *, now: float) -> dict[str, object]:
        """What GET /queues and the dashboard show."""
        return {
            "name": self.name,
            "strategy": self.config.strategy,
            "waiting": [
                {
                    "position": i + 1,
                    "number": c.number,
                    "waited_seconds": round(now - c.joined, 1),
                    "callback": c.callback,
                    "offering": c.offering,
                }
                for i, c in enumerate(self.callers)
            ],
            "members": [
                {
                    "extension": m.extension,
                    "penalty": m.penalty,
                    "logged_in": self.members[m.extension].logged_in,
                    "calls": self.members[m.extension].calls,
                    "wrap_up_left": round(max(0.0, self.members[m.extension].free_at - now), 1),
                }
                for m in self.config.members
            ],
            "entered": self.stats.entered,
            "answered": self.stats.answered,
            "answered_within_service_level": self.stats.answered_in_sla,
            "abandoned": self.stats.abandoned,
            "overflowed": self.stats.overflowed,
            "callbacks": self.stats.callbacks,
            "service_level_seconds": self.config.service_level,
            "service_level": self.service_level,
            "average_speed_of_answer": self.average_speed_of_answer,
            "abandon_rate": self.abandon_rate,
            "longest_wait": round(self.longest_wait(now=now), 1),
        }


def parse_queue_code(dialled: str) -> tuple[bool, str | None] | None:
    """*45 / *45NAME log in (to every queue of the agent, or NAME), *46 / *46NAME log out."""
    for code, login in (("*45", True), ("*46", False)):
        if dialled.startswith(code):
            rest = dialled[len(code) :]
            return login, rest or None
    return None


__all__ = [
    "OVERFLOW_KINDS",
    "QUEUE_STRATEGIES",
    "Full",
    "Joined",
    "Queue",
    "QueueConfig",
    "QueueMember",
    "QueueStats",
    "QueuedCaller",
    "VoicemailBox",
    "parse_queue_code",
]
