"""Pacing: how many new lines a campaign dials now, and how fast a trunk may take them.

Two strategies behind the `Pacer` protocol, registered by campaign mode in `PACERS`:

- `PowerPacer`: a fixed number of lines per idle agent,
  `ceil(ratio * idle_agents) - calls_in_flight`, never negative.
- `PredictivePacer`: learns the live-answer rate, ring time, talk time and wrap-up time from
  observed outcomes, predicts how many agents will be free by the time a line dialled now is
  answered, and dials so that the expected live answers (from calls already in flight plus the
  new lines) match them. It throttles as the abandon ledger nears its cap and falls back to a
  ratio of 1.0 at or over it.

`TokenBucket` caps the calls per second a trunk accepts. All of it is pure: time comes in as
`now`, nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

import numpy as np

from .ledger import CONNECT_DEADLINE, AbandonLedger

logger = logging.getLogger(__name__)

__all__ = [
    "LIVE_OUTCOMES",
    "MACHINE_OUTCOMES",
    "PACERS",
    "BroadcastPacer",
    "Bucket",
    "Pacer",
    "PacingState",
    "PowerPacer",
    "PredictiveConfig",
    "PredictivePacer",
    "TokenBucket",
    "free_agents_pmf",
    "make_pacer",
    "no_agent_chance",
]

LIVE_OUTCOMES = frozenset({"answered-human", "abandoned"})
"""Attempt outcomes that were a live (human) answer."""

MACHINE_OUTCOMES = frozenset({"answered-machine"})
"""Attempt outcomes answered by a machine (detected and dropped, or given the voicemail)."""

MIN_RATIO = 1.0
MAX_RATIO = 5.0


@dataclass(frozen=True, slots=True)
class PacingState:
    """A snapshot of one campaign's agents and lines, taken when the dialer asks for pacing."""

    idle_agents: int
    """Agents logged in to the campaign and free to take a call now."""

    on_call_since: tuple[float, ...] = ()
    """For each agent talking: when the call was connected."""

    wrap_up_until: tuple[float, ...] = ()
    """For each agent in wrap-up: when the wrap-up ends (the latest it can end)."""

    dialing_since: tuple[float, ...] = ()
    """For each call in flight (dialling, ringing, answered and being classified): when it
    was dialled."""

    live_waiting: int = 0
    """Live answers waiting for an agent (inside the connect deadline)."""

    @property
    def calls_in_flight(self) -> int:
        """Calls placed that no agent has yet: dialling, ringing, classifying or waiting."""
        return len(self.dialing_since) + self.live_waiting

    @property
    def agents(self) -> int:
        """Agents logged in: idle, talking or in wrap-up."""
        return self.idle_agents + len(self.on_call_since) + len(self.wrap_up_until)


class Pacer(Protocol):
    """A pacing strategy: the dialer feeds outcomes in and asks for lines to dial."""

    def lines_to_dial(self, state: PacingState, *, now: float) -> int:
        """How many new lines to dial now (never negative)."""
        ...

    def observe(
        self,
        outcome: str,
        ring_seconds: float,
        talk_seconds: float | None = None,
        wrap_seconds: float | None = None,
    ) -> None:
        """Learn from one finished dial: its outcome name and seconds from dial to answer (or
        to giving up); talk and wrap-up seconds when already known."""
        ...

    def observe_talk(self, talk_seconds: float, wrap_seconds: float | None = None) -> None:
        """Learn from one finished agent call, when it ended after the dial was observed."""
        ...


POWER_MIN_ANSWERS = 30
"""Live answers a power campaign's abandon rate is judged over at least: one abandon among the
first answers of a day already reaches a 3% cap, so the ratio drops to 1.0 at once."""


POWER_THROTTLE = 0.85
"""Power mode stops overdialing when the abandon rate reaches this share of the cap (at the cap
itself the calls already in flight would carry it over)."""


class _FixedPacer:
    """A pacer that dials by a fixed rule and learns nothing from outcomes."""

    def observe(
        self,
        outcome: str,
        ring_seconds: float,
        talk_seconds: float | None = None,
        wrap_seconds: float | None = None,
    ) -> None:
        """Nothing to learn."""

    def observe_talk(self, talk_seconds: float, wrap_seconds: float | None = None) -> None:
        """Nothing to learn."""


class PowerPacer(_FixedPacer):
    """A fixed ratio of lines per idle agent: ceil(ratio * idle) - calls in flight. With an
    abandon ledger near its cap (POWER_THROTTLE), the ratio falls to 1.0 (one line per idle
    agent) until the rate is back under that."""

    def __init__(
        self,
        ratio: float = 1.0,
        ledger: AbandonLedger | None = None,
        *,
        min_answers: int = POWER_MIN_ANSWERS,
    ) -> None:
        if not MIN_RATIO <= ratio <= MAX_RATIO:
            raise ValueError(f"power ratio must be within {MIN_RATIO}..{MAX_RATIO}, got {ratio}")
        self.ratio = ratio
        self.ledger = ledger
        self.min_answers = min_answers

    def current_ratio(self, *, now: float) -> float:
        ledger = self.ledger
        if ledger is not None and ledger.rate(now, min_answers=self.min_answers) >= (
            POWER_THROTTLE * ledger.policy.cap
        ):
            return MIN_RATIO
        return self.ratio

    def lines_to_dial(self, state: PacingState, *, now: float) -> int:
        # The epsilon keeps 1.5 * 2 from becoming 4 through float rounding.
        wanted = math.ceil(self.current_ratio(now=now) * state.idle_agents - 1e-9)
        return max(0, wanted - state.calls_in_flight)


@dataclass(frozen=True, slots=True)
class PredictiveConfig:
    """Tuning of the predictive pacer; the defaults are tuned with bench/dialer_sim.py."""

    live_rate_prior: float = 0.2
    """Live answers per dial assumed before enough dials were observed."""

    ring_prior: float = 12.0
    """Seconds from dial to a live answer assumed before enough were observed."""

    talk_prior: float = 150.0
    """Seconds of talk per connected call assumed before enough were observed."""

    wrap_prior: float = 10.0
    """Seconds of wrap-up assumed before enough were observed."""

    min_samples: int = 30
    """Observations before a learned figure fully replaces its prior (blended linearly below)."""

    half_life: float = 400.0
    """Observations after which an old one weighs half in the moving averages."""

    history: int = 600
    """Recent dials and calls kept to estimate conditional ring and talk times."""

    tolerance: float = 0.2
    """Highest chance, with the ledger far from its cap, that one more line's live answer finds
    no agent free (the marginal abandon risk accepted for the occupancy it buys)."""

    min_tolerance: float = 0.02
    """Tolerance as the ledger's rate reaches the cap (just before the ratio 1.0 fallback)."""

    throttle_from: float = 0.5
    """Fraction of the cap at which throttling starts; tolerance falls geometrically from
    there to `min_tolerance` at the cap."""

    min_answers: int = 100
    """Live answers the ledger's rates are judged over at least, so a handful of early answers
    in a day does not read as a huge rate."""

    max_lines_per_agent: float = 8.0
    """Never more calls in flight than this many per logged-in agent (a guard on bad estimates)."""


def _blend(value: float, prior: float, samples: int, min_samples: int) -> float:
    if samples >= min_samples:
        return value
    weight = samples / min_samples
    return weight * value + (1.0 - weight) * prior


@dataclass(slots=True)
class _Ewma:
    """An exponentially weighted mean over observations, blended with a prior while young."""

    prior: float
    alpha: float
    value: float = 0.0
    samples: int = 0

    def add(self, x: float) -> None:
        self.samples += 1
        # A plain mean until there are enough samples, so the first one does not linger.
        self.value += max(self.alpha, 1.0 / self.samples) * (x - self.value)

    def estimate(self, min_samples: int) -> float:
        return _blend(self.value, self.prior, self.samples, min_samples)


class _Sorted:
    """A sorted multiset of floats with counts above a value (bisect keeps it cheap)."""

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values: list[float] = []

    def add(self, x: float) -> None:
        bisect.insort(self.values, x)

    def remove(self, x: float) -> None:
        del self.values[bisect.bisect_left(self.values, x)]

    def count_above(self, x: float) -> int:
        return len(self.values) - bisect.bisect_right(self.values, x)

    def __len__(self) -> int:
        return len(self.values)


class _RecentSpans:
    """The last `size` spans (seconds), a subset marked; counts of either above a value."""

    __slots__ = ("all", "marked", "recent", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.recent: deque[tuple[float, bool]] = deque()
        self.all = _Sorted()
        self.marked = _Sorted()

    def add(self, span: float, marked: bool = False) -> None:
        if len(self.recent) == self.size:
            old, old_marked = self.recent.popleft()
            self.all.remove(old)
            if old_marked:
                self.marked.remove(old)
        self.recent.append((span, marked))
        self.all.add(span)
        if marked:
            self.marked.add(span)

    def __len__(self) -> int:
        return len(self.recent)


class PredictivePacer:
    """Dials so that expected live answers match the agents expected to be free to take them."""

    def __init__(
        self, ledger: AbandonLedger | None = None, config: PredictiveConfig | None = None
    ) -> None:
        self.config = cfg = config or PredictiveConfig()
        self.ledger = ledger
        alpha = 1.0 - 0.5 ** (1.0 / cfg.half_life)
        self._live_rate = _Ewma(cfg.live_rate_prior, alpha)
        self._ring = _Ewma(cfg.ring_prior, alpha)
        self._talk = _Ewma(cfg.talk_prior, alpha)
        self._wrap = _Ewma(cfg.wrap_prior, alpha)
        # Seconds in flight of recent dials, those ending in a live answer marked.
        self._dials = _RecentSpans(cfg.history)
        self._talks = _RecentSpans(cfg.history)

    # -- learning --------------------------------------------------------------------------------

    def observe(
        self,
        outcome: str,
        ring_seconds: float,
        talk_seconds: float | None = None,
        wrap_seconds: float | None = None,
    ) -> None:
        live = outcome in LIVE_OUTCOMES
        self._live_rate.add(1.0 if live else 0.0)
        ring_seconds = max(0.0, ring_seconds)
        self._dials.add(ring_seconds, live)
        if live:
            self._ring.add(ring_seconds)
        if talk_seconds is not None:
            self.observe_talk(talk_seconds, wrap_seconds)

    def observe_talk(self, talk_seconds: float, wrap_seconds: float | None = None) -> None:
        self._talk.add(max(0.0, talk_seconds))
        self._talks.add(max(0.0, talk_seconds))
        if wrap_seconds is not None:
            self._wrap.add(max(0.0, wrap_seconds))

    # -- estimates -------------------------------------------------------------------------------

    @property
    def live_rate(self) -> float:
        """Estimated live answers per dial."""
        return min(1.0, max(0.005, self._live_rate.estimate(self.config.min_samples)))

    @property
    def ring_time(self) -> float:
        """Estimated seconds from dial to a live answer."""
        return self._ring.estimate(self.config.min_samples)

    @property
    def talk_time(self) -> float:
        """Estimated seconds of talk per connected call."""
        return max(1.0, self._talk.estimate(self.config.min_samples))

    @property
    def wrap_time(self) -> float:
        """Estimated seconds of wrap-up after a call."""
        return self._wrap.estimate(self.config.min_samples)

    def live_chance(self, elapsed: float) -> float:
        """Chance that a call still in flight `elapsed` seconds after dialling ends in a live
        answer (calls that ring long are mostly no-answers)."""
        dials = self._dials
        if len(dials) < self.config.min_samples:
            return self.live_rate
        still = dials.all.count_above(elapsed)
        if still == 0:
            return 0.0
        return dials.marked.count_above(elapsed) / still

    def free_chance(self, talking_for: float, within: float) -> float:
        """Chance that a call already `talking_for` seconds long ends within `within` seconds."""
        if within <= 0:
            return 0.0
        talks = self._talks.all
        if len(talks) >= self.config.min_samples:
            longer = talks.count_above(talking_for)
            if longer >= 5:
                return 1.0 - talks.count_above(talking_for + within) / longer
        # Few samples, or a call longer than nearly all seen: memoryless estimate.
        return 1.0 - math.exp(-within / self.talk_time)

    def ring_reaches(self, seconds: float) -> float:
        """Chance that a live answer comes `seconds` or more after the dial."""
        if seconds <= 0:
            return 1.0
        live = self._dials.marked
        if len(live) >= self.config.min_samples:
            return live.count_above(seconds) / len(live)
        # Few samples: ring times spread evenly up to twice the estimate.
        return max(0.0, 1.0 - seconds / (2.0 * self.ring_time))

    def free_in_time(self, state: PacingState, *, now: float) -> np.ndarray:
        """Distribution of the agents free in time for the live answer of a line dialled now
        (element k: the chance that k agents are).

        Idle agents are sure; an agent in wrap-up counts by the chance that the answer comes
        after the wrap-up ends less the connect deadline; a talking agent by the chance that
        the call and its wrap-up end within the typical ring time plus the deadline.
        """
        deadline = CONNECT_DEADLINE if self.ledger is None else self.ledger.policy.connect_deadline
        chances = [self.ring_reaches(end - now - deadline) for end in state.wrap_up_until]
        talk_window = self.ring_time + deadline - self.wrap_time
        if talk_window > 0:
            chances.extend(self.free_chance(now - t, talk_window) for t in state.on_call_since)
        return free_agents_pmf(state.idle_agents, chances)

    def tolerance(self, *, now: float) -> float | None:
        """Accepted chance that one more line's live answer finds no agent, given the ledger;
        None means fall back to a ratio of 1.0 (the ledger is at or over its cap)."""
        cfg = self.config
        if self.ledger is None:
            return cfg.tolerance
        cap = self.ledger.policy.cap
        if cap <= 0:
            return None
        pressure = self.ledger.rate(now, min_answers=cfg.min_answers) / cap
        if pressure >= 1.0:
            return None
        if pressure <= cfg.throttle_from:
            return cfg.tolerance
        span = (pressure - cfg.throttle_from) / (1.0 - cfg.throttle_from)
        return float(cfg.tolerance * (cfg.min_tolerance / cfg.tolerance) ** span)

    # -- pacing ----------------------------------------------------------------------------------

    def lines_to_dial(self, state: PacingState, *, now: float) -> int:
        """Add lines while one more line's live answer would find an agent often enough.

        If X live answers come from the other lines and F agents are free in time, a new line's
        live answer adds an abandon exactly when X >= F. X is taken as Poisson (calls in flight
        weighted by their chance of a live answer, plus the new lines before this one); F as
        the sure (idle) agents plus a Poisson number of the others. Lines are added while
        P(X >= F) stays within the tolerance, which the ledger lowers near its cap.
        """
        tolerance = self.tolerance(now=now)
        if tolerance is None:
            return max(0, state.idle_agents - state.calls_in_flight)
        ceiling = math.floor(self.config.max_lines_per_agent * state.agents)
        room = ceiling - state.calls_in_flight
        if room <= 0:
            return 0
        ahead = sum(self.live_chance(now - t) for t in state.dialing_since)
        free = self.free_in_time(state, now=now)
        p = self.live_rate
        # Past this many lines the expected answers exceed every agent: no need to look further.
        candidates = min(room, math.ceil((len(free) + state.live_waiting) / p) + 1)
        risk = no_agent_chance(ahead + p * np.arange(candidates), state.live_waiting, free)
        over = risk > tolerance
        return int(np.argmax(over)) if over.any() else candidates


_SURE = 0.995
"""An agent at least this likely to be free counts as free."""

_BERNOULLI = 0.05
"""Agents at least this likely to be free are convolved one by one; the rest, each unlikely,
are pooled as a Poisson count (close for small chances)."""


def free_agents_pmf(sure: int, chances: list[float]) -> np.ndarray:
    """Distribution of sure + sum of independent Bernoulli(chances): element k is P(count = k)."""
    sure += sum(1 for q in chances if q >= _SURE)
    pmf = np.zeros(1 + sure)
    pmf[sure] = 1.0
    pooled = 0.0
    for q in chances:
        if _BERNOULLI <= q < _SURE:
            grown = np.zeros(len(pmf) + 1)
            grown[:-1] = pmf * (1.0 - q)
            grown[1:] += pmf * q
            pmf = grown
        elif q < _BERNOULLI:
            pooled += q
    if pooled > 0:
        span = math.ceil(pooled + 6.0 * math.sqrt(pooled) + 3.0)
        j = np.arange(span)
        poisson = np.exp(j * math.log(pooled) - pooled - _log_factorial(j))
        pmf = np.convolve(pmf, poisson)
    return pmf


def no_agent_chance(others: np.ndarray, waiting: int, free: np.ndarray) -> np.ndarray:
    """P(waiting + X >= F) for X ~ Poisson(others) (one per element) and F distributed as
    `free` (element k: P(F = k)): the chance that one more live answer finds no agent."""
    # cdf[n, k] = P(X_n <= k); P(X >= f - waiting) = 1 - cdf[n, f - waiting - 1], 1 when <= 0.
    k = np.arange(len(free))
    lam = np.maximum(others, 1e-12)[:, None]
    cdf = np.cumsum(np.exp(k * np.log(lam) - lam - _log_factorial(k)), axis=1)
    index = np.arange(len(free)) - waiting - 1
    below = np.where(index >= 0, cdf[:, np.maximum(index, 0)], 0.0)
    return np.asarray(np.clip((1.0 - below) @ free, 0.0, 1.0))


_LOG_FACTORIALS = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, 4097)))])


def _log_factorial(k: np.ndarray) -> np.ndarray:
    return np.asarray(_LOG_FACTORIALS[np.minimum(k, len(_LOG_FACTORIALS) - 1)])


class Bucket(Protocol):
    """A trunk's calls-per-second cap as the dialer spends it."""

    async def acquire(self, wanted: int, *, now: float) -> int:
        """Start up to `wanted` calls now; returns how many the cap allows (and spends them)."""
        ...

    async def give_back(self, unused: int) -> None:
        """Calls acquired but not started (no lead was due): the cap may spend them again."""
        ...


class TokenBucket:
    """A calls-per-second cap for one trunk: `rate` tokens a second, at most `burst` saved
    (this node's alone; dialer.PgTokenBucket is the one nodes share)."""

    def __init__(self, rate: float, burst: float | None = None, *, now: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError(f"calls per second must be positive, got {rate}")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._tokens = self.burst
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now

    def available(self, *, now: float) -> int:
        """Calls that may start now."""
        self._refill(now)
        return math.floor(self._tokens + 1e-9)

    def take(self, wanted: int, *, now: float) -> int:
        """Start up to `wanted` calls now; returns how many the cap allows (and spends them)."""
        granted = max(0, min(wanted, self.available(now=now)))
        self._tokens -= granted
        return granted

    async def acquire(self, wanted: int, *, now: float) -> int:
        return self.take(wanted, now=now)

    async def give_back(self, unused: int) -> None:
        self._tokens = min(self.burst, self._tokens + max(0, unused))

    def next_token_at(self, *, now: float) -> float:
        """When the next call may start (`now` if one may start already)."""
        self._refill(now)
        if self._tokens + 1e-9 >= 1.0:
            return now
        return now + (1.0 - self._tokens) / self.rate


class BroadcastPacer(_FixedPacer):
    """A broadcast needs no agent to start: keep `lines` calls up (ringing, in the flow or
    transferred), whatever the agents do."""

    def __init__(self, lines: int) -> None:
        if lines < 1:
            raise ValueError(f"a broadcast needs at least one line, got {lines}")
        self.lines = lines

    def lines_to_dial(self, state: PacingState, *, now: float) -> int:
        return max(0, self.lines - state.calls_in_flight)


PacerFactory = Callable[[float, AbandonLedger | None, int], Pacer]

PACERS: Mapping[str, PacerFactory] = MappingProxyType(
    {
        "power": lambda ratio, ledger, lines: PowerPacer(ratio, ledger),
        "predictive": lambda ratio, ledger, lines: PredictivePacer(ledger),
        "broadcast": lambda ratio, ledger, lines: BroadcastPacer(lines),
    }
)
"""Pacing strategies by campaign mode; each factory takes (power ratio, abandon ledger,
broadcast lines)."""


def make_pacer(
    mode: str, *, ratio: float = 1.0, ledger: AbandonLedger | None = None, lines: int = 10
) -> Pacer:
    """The pacer for a campaign's mode ('power', 'predictive' or 'broadcast')."""
    try:
        factory = PACERS[mode]
    except KeyError:
        raise ValueError(f"unknown pacing mode {mode!r}; known: {sorted(PACERS)}") from None
    return factory(ratio, ledger, lines)
