"""Overload control for the SIP input, sans-IO: how far behind the engine runs decides whether a
new call is taken, refused at once, or dropped unread (docs/architecture.md 4).

The measure is how far behind the shell runs (its probe reports how late a timer fired, or how
long a datagram waited in the socket's buffer, whichever is more): datagrams wait that long,
and a caller whose INVITE waits past Timer A resends it, which feeds the overload. So, as Kamailio's
`sl_send_reply("503")` in front of a busy node does, new INVITEs are answered 503 with
Retry-After while the engine is behind (cheap: no transaction, no call, no database), and
dropped before parsing when it is far behind; everything else (ACK, BYE, CANCEL, requests in
a dialog, REGISTER, responses) is always taken, so calls in progress and registrations keep
working. Levels go up at once and come down only after the lag has stayed low for a while
(hysteresis), so the engine does not flap at the edge.

Shedding is not all or nothing: refusing every new call until the loop is calm for seconds,
then taking every one again, swings between idle and overloaded, and the calls set up per
second fall far under what the engine can do (measured: 17/s offered 300/s, against 95/s
offered 100/s). While shedding, new calls are admitted at a rate instead (the rate-based
control of RFC 7415, kept inside the node), and the calls over it get the 503. When the shell
reports the loop thread's CPU time, the rate is what `cpu_budget` (90 %) of the thread pays for
at the CPU a call cost while running steadily (the last 5 s), scaled down while the loop still
falls behind and up while it keeps up. Without it, the rate starts at 80 % of the rate the
engine was taking and goes to the capacity that the admitted calls and the lag's growth reveal;
that chases a signal a call's length late and undershoots (`tests/telephony/sip/
test_overload.py` models both). The level comes back to normal once the loop has been calm for
`recover_after` with no call refused.
"""

from __future__ import annotations

import enum
import logging
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


class OverloadLevel(enum.IntEnum):
    NORMAL = 0
    SHEDDING = 1
    """New INVITEs get 503 with Retry-After."""
    DROPPING = 2
    """New INVITEs are dropped before parsing."""


@dataclass(frozen=True)
class OverloadConfig:
    shed_lag: float = 0.2
    """Smoothed loop lag (s) above which new INVITEs get 503 (a loop 200 ms behind for a
    while is overloaded: a single stall, a GC pause or a slow disk write, is not)."""
    drop_lag: float = 1.0
    """Smoothed loop lag (s) above which new INVITEs are dropped unread."""
    recover_after: float = 2.0
    """Seconds the lag must stay under half `shed_lag` before new calls are taken again."""
    retry_after: int = 5
    """Retry-After (s) of the 503."""
    smoothing: float = 0.2
    """Weight of each new lag sample in the moving average (one late timer is no overload)."""
    min_rate: float = 5.0
    """New calls per second admitted while shedding, at least."""
    adjust_every: float = 0.25
    """Seconds between two adjustments of the admitted rate while shedding."""
    cpu_budget: float = 0.9
    """Share of the loop's thread that new calls may take while shedding, when the shell
    reports the thread's CPU time: the admitted rate is this over the CPU a call cost."""
    cost_window: float = 5.0
    """Seconds of normal running over which the CPU a call costs is measured (longer than a
    call's setup and teardown, so that both are in it)."""

    def __post_init__(self) -> None:
        if not 0 < self.shed_lag < self.drop_lag:
            raise ValueError("overload thresholds: 0 < shed_lag < drop_lag")
        if not 0 < self.smoothing <= 1 or self.recover_after < 0 or self.retry_after < 1:
            raise ValueError("overload smoothing in (0, 1], recover_after >= 0, retry_after >= 1")
        if self.min_rate < 0 or self.adjust_every <= 0:
            raise ValueError("overload min_rate >= 0, adjust_every > 0")
        if not 0 < self.cpu_budget <= 1 or self.cost_window <= 0:
            raise ValueError("overload cpu_budget in (0, 1], cost_window > 0")


class OverloadControl:
    def __init__(self, config: OverloadConfig | None = None) -> None:
        self.config = config or OverloadConfig()
        self.level = OverloadLevel.NORMAL
        self.lag = 0.0
        """The smoothed loop lag, seconds."""
        self._calm_since: float | None = None
        self.shed = 0
        """New INVITEs answered 503."""
        self.dropped = 0
        """New INVITEs dropped unread."""
        self.listeners: list[Callable[[OverloadLevel], None]] = []
        """Told each change of level (logs, metrics, tests)."""
        self.rate = 0.0
        """New calls per second admitted while shedding (0 when normal)."""
        self._tokens = 0.0
        self._filled_at = 0.0
        self._adjusted_at = 0.0
        self._refused_at = float("-inf")
        self._second: tuple[float, int] = (0.0, 0)
        """(start, new calls taken) of the current second, for the rate taken so far."""
        self._taken_rate = 0.0
        """New calls taken per second over the last whole second."""
        self._admitted = 0
        """New calls admitted since the rate was last adjusted."""
        self._lag_then = 0.0
        """The smoothed lag when the rate was last adjusted."""
        self._taken = 0
        """New calls taken, ever."""
        self._ended = 0
        """Calls that came in and are over, ever (`call_ended`)."""
        self._costs: deque[tuple[float, float, int, int]] = deque()
        """(now, CPU seconds, calls taken, calls over) at each probe of the last
        `cost_window` of normal running."""
        self.call_cost: float | None = None
        """CPU seconds of the loop's thread per call, measured over a steady stretch of normal
        running (None until known: the shell reports no CPU time, or no stretch was steady)."""
        self._scale = 1.0
        """While shedding with a known call cost: the admitted rate over the CPU budget's,
        lowered while the loop stays behind (the box shares its cores), raised while it keeps
        up."""

    def observe(self, lag: float, now: float, cpu: float | None = None) -> None:
        """A probe timer fired `lag` seconds late at `now`; `cpu`: the CPU seconds the loop's
        thread has used so far, if known."""
        c = self.config
        self.lag += c.smoothing * (max(0.0, lag) - self.lag)
        if cpu is not None and self.level is OverloadLevel.NORMAL:
            self._measure_cost(now, cpu)
        wanted = (
            OverloadLevel.DROPPING
            if self.lag > c.drop_lag
            else OverloadLevel.SHEDDING
            if self.lag > c.shed_lag
            else OverloadLevel.NORMAL
        )
        if wanted > self.level:
            self._calm_since = None
            if self.level is OverloadLevel.NORMAL:
                self._start_admitting(now)
            self._set(wanted)
            return
        if self.level is OverloadLevel.NORMAL:
            return
        self._adjust(now)
        if self.lag >= c.shed_lag / 2:
            self._calm_since = None
            if self.level is OverloadLevel.DROPPING and wanted is OverloadLevel.SHEDDING:
                self._set(OverloadLevel.SHEDDING)
            return
        if self._calm_since is None:
            self._calm_since = now
        calm = now - self._calm_since >= c.recover_after
        if calm and now - self._refused_at >= c.recover_after:
            self._calm_since = None
            self.rate = 0.0
            self._set(OverloadLevel.NORMAL)

    def call_ended(self) -> None:
        """A call that came in is over (the shell tells): its whole cost is spent."""
        self._ended += 1

    def _measure_cost(self, now: float, cpu: float) -> None:
        # Only over a steady stretch, as many calls ending as starting: a call's teardown (its
        # BYE, the end of its recording, its row) comes a hold time after its INVITE, so while
        # the rate climbs, CPU over the calls taken misses it (measured 2.7 ms against 5 ms),
        # and CPU over the calls ended counts setups whose calls are still up (34 ms).
        costs = self._costs
        costs.append((now, cpu, self._taken, self._ended))
        while now - costs[0][0] > self.config.cost_window:
            costs.popleft()
        _, cpu_then, taken_then, ended_then = costs[0]
        taken, ended = self._taken - taken_then, self._ended - ended_then
        if (
            min(taken, ended) >= _MIN_COST_CALLS
            and abs(taken - ended) <= _STEADY * max(taken, ended)
            and cpu > cpu_then
        ):
            self.call_cost = (cpu - cpu_then) / ((taken + ended) / 2)

    def _start_admitting(self, now: float) -> None:
        """Shedding begins: admit new calls at the rate the CPU budget pays for, when the
        call cost is known, else at 80 % of the rate taken when the loop fell behind."""
        self._costs.clear()  # the next normal stretch measures afresh
        start, taken = self._second
        recent = self._taken_rate
        if now - start >= 0.5:  # a part of a second long enough to say something
            recent = max(recent, taken / (now - start))
        self._scale = 1.0
        if self.call_cost is not None:
            self.rate = max(self.config.min_rate, self.config.cpu_budget / self.call_cost)
        else:
            self.rate = max(self.config.min_rate, 0.8 * recent)
        self._tokens = 0.0
        self._filled_at = self._adjusted_at = now
        self._admitted, self._lag_then = 0, self.lag

    def _adjust(self, now: float) -> None:
        """Each `adjust_every` while shedding.

        With the call cost known, the rate is what the CPU budget pays for, scaled down 5 %
        each time the loop is over half the shedding lag and still falling behind (15 % over
        all of it: the box's other processes take their share), held while it catches up, and
        scaled up 10 % each time it is under a quarter, within [0.3, 1.5] (CPU per call falls
        as the rate rises, 10 ms at 100 calls/s and 6 ms at 200/s on the test box, so the cost
        of a calmer stretch undercounts what a busy engine takes). A backlog drains
        at the rate it was built: cutting the rate while it drains only idles the engine
        afterwards (measured: the rate cut to 60/s while 800 ms of datagrams drained).
        The cost anchors the rate: a controller on the lag alone chases a signal that comes
        a call's length late (a call admitted now sends its BYE a hold time later), cut the
        rate far under capacity and climbed back slowly (measured: 55-70 calls/s admitted
        offered 300/s against about 200/s taken clean).

        Without it: the loop's lateness grows as fast as the calls admitted outrun what the
        engine sets up (lag' = admitted / capacity - 1), so the two give the capacity; the
        rate goes to it, less what drains the backlog. While the loop keeps up, the rate
        climbs by 10 % to find spare capacity."""
        c = self.config
        elapsed = now - self._adjusted_at
        if elapsed < c.adjust_every:
            return
        if self.call_cost is not None:
            rising = self.lag >= self._lag_then
            self._adjusted_at, self._admitted, self._lag_then = now, 0, self.lag
            if rising and self.lag > c.shed_lag:
                self._scale = max(_MIN_SCALE, self._scale * 0.85)
            elif rising and self.lag > c.shed_lag / 2:
                self._scale = max(_MIN_SCALE, self._scale * 0.95)
            elif self.lag < c.shed_lag / 4:
                self._scale = min(_MAX_SCALE, self._scale * 1.1)
            self.rate = max(c.min_rate, c.cpu_budget / self.call_cost * self._scale)
            return
        admitted = self._admitted / elapsed
        growth = (self.lag - self._lag_then) / elapsed
        self._adjusted_at, self._admitted, self._lag_then = now, 0, self.lag
        if self.lag > c.shed_lag / 2:
            capacity = admitted / max(0.2, 1.0 + growth)
            drain = min(0.2, self.lag - c.shed_lag / 2)
            self.rate = max(c.min_rate, min(self.rate, capacity * (1.0 - drain)))
        else:
            self.rate = self.rate * 1.1 + 1.0

    def _set(self, level: OverloadLevel) -> None:
        logger.warning("SIP overload: %s (loop lag %.0f ms)", level.name.lower(), self.lag * 1000)
        self.level = level
        for listener in list(self.listeners):
            listener(level)

    def drops_unread(self, data: bytes) -> bool:
        """Whether the datagram `data` is to be dropped before parsing: far behind, and it
        looks like a new INVITE (counted)."""
        if self.level is not OverloadLevel.DROPPING or not looks_like_new_invite(data):
            return False
        self.dropped += 1
        return True

    def sheds(self, method: str, to_tag: str | None, now: float) -> bool:
        """Whether a parsed request is answered 503 at once: a new INVITE (no To tag: not a
        re-INVITE in a dialog) while behind, over the admitted rate. Counted; a new INVITE
        taken counts towards the rate taken."""
        if method != "INVITE" or to_tag:
            return False
        if self.level is not OverloadLevel.NORMAL:
            self._tokens = min(
                self.rate * self.config.adjust_every,
                self._tokens + (now - self._filled_at) * self.rate,
            )
            self._filled_at = now
            if self._tokens < 1.0:
                self.shed += 1
                self._refused_at = now
                return True
            self._tokens -= 1.0
            self._admitted += 1
        self._taken += 1
        start, taken = self._second
        if now - start >= 1.0:
            self._taken_rate = taken / (now - start) if now - start < 2.0 else 0.0
            self._second = (now, 1)
        else:
            self._second = (start, taken + 1)
        return False


_MIN_COST_CALLS = 20
"""Calls over which a call's cost is first measured."""
_STEADY = 0.2
"""A stretch is steady when the calls taken and the calls ended differ by this share at most."""
_MIN_SCALE, _MAX_SCALE = 0.3, 1.5


_TO_LINE = re.compile(rb"\r?\n(?:to|t)[ \t]*:([^\r\n]*)", re.IGNORECASE)


def looks_like_new_invite(data: bytes) -> bool:
    """An INVITE whose To has no tag, judged from the bytes alone (no parse)."""
    if not data.startswith(b"INVITE "):
        return False
    to = _TO_LINE.search(data)
    return to is None or b"tag=" not in to.group(1).lower()


__all__ = ["OverloadConfig", "OverloadControl", "OverloadLevel", "looks_like_new_invite"]
