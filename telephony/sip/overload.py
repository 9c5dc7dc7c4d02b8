"""Overload control for the SIP input, sans-IO: how far behind the engine runs decides whether a
new call is taken, refused at once, or dropped unread (docs/architecture.md 4).

The measure is the event loop's lateness (the shell's probe reports how late a timer fires):
when the loop is behind, every datagram waits in the socket buffer that long, and a caller
whose INVITE waits past Timer A resends it, which feeds the overload. So, as Kamailio's
`sl_send_reply("503")` in front of a busy node does, new INVITEs are answered 503 with
Retry-After while the engine is behind (cheap: no transaction, no call, no database), and
dropped before parsing when it is far behind; everything else (ACK, BYE, CANCEL, requests in
a dialog, REGISTER, responses) is always taken, so calls in progress and registrations keep
working. Levels go up at once and come down only after the lag has stayed low for a while
(hysteresis), so the engine does not flap at the edge.
"""

from __future__ import annotations

import enum
import logging
import re
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

    def __post_init__(self) -> None:
        if not 0 < self.shed_lag < self.drop_lag:
            raise ValueError("overload thresholds: 0 < shed_lag < drop_lag")
        if not 0 < self.smoothing <= 1 or self.recover_after < 0 or self.retry_after < 1:
            raise ValueError("overload smoothing in (0, 1], recover_after >= 0, retry_after >= 1")


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

    def observe(self, lag: float, now: float) -> None:
        """A probe timer fired `lag` seconds late at `now`."""
        c = self.config
        self.lag += c.smoothing * (max(0.0, lag) - self.lag)
        wanted = (
            OverloadLevel.DROPPING
            if self.lag > c.drop_lag
            else OverloadLevel.SHEDDING
            if self.lag > c.shed_lag
            else OverloadLevel.NORMAL
        )
        if wanted > self.level:
            self._calm_since = None
            self._set(wanted)
            return
        if self.level is OverloadLevel.NORMAL:
            return
        if self.lag >= c.shed_lag / 2:
            self._calm_since = None
            if self.level is OverloadLevel.DROPPING and wanted is OverloadLevel.SHEDDING:
                self._set(OverloadLevel.SHEDDING)
            return
        if self._calm_since is None:
            self._calm_since = now
        if now - self._calm_since >= c.recover_after:
            self._calm_since = None
            self._set(OverloadLevel.NORMAL)

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

    def sheds(self, method: str, to_tag: str | None) -> bool:
        """Whether a parsed request is answered 503 at once: behind, and a new INVITE (no To
        tag: not a re-INVITE in a dialog). Counted."""
        if self.level is OverloadLevel.NORMAL or method != "INVITE" or to_tag:
            return False
        self.shed += 1
        return True


_TO_LINE = re.compile(rb"\r?\n(?:to|t)[ \t]*:([^\r\n]*)", re.IGNORECASE)


def looks_like_new_invite(data: bytes) -> bool:
    """An INVITE whose To has no tag, judged from the bytes alone (no parse)."""
    if not data.startswith(b"INVITE "):
        return False
    to = _TO_LINE.search(data)
    return to is None or b"tag=" not in to.group(1).lower()


__all__ = ["OverloadConfig", "OverloadControl", "OverloadLevel", "looks_like_new_invite"]
