"""Brute-force defence for SIP digest authentication: a per-IP failure ban and a security log.

Password scanners (sipvicious' ``svcrack``, friendly-scanner) send thousands of REGISTERs with
guessed passwords. :class:`AuthFailureBan` counts failures per source IP in a sliding window
and bans the IP for a while once the window holds ``max_failures``; the transport then drops
the IP's requests without answering. It is sans-IO: time comes in as ``now``.

:func:`log_auth_failure` writes one line per failure to the ``callcenter.security`` logger, in
the key=value form fail2ban filters match, for a host firewall to act on as well::

    auth failure ip=203.0.113.9 port=5060 user="101" reason=wrong_password method=REGISTER

Successes do not reset an IP's count: a scanner that knows one valid account could otherwise
interleave good logins to guess other accounts' passwords without ever reaching the limit. A
phone with a right password has no failures to reset in the first place, except its first
unauthenticated request per nonce, which is a challenge and not a failure.
"""

from __future__ import annotations

import heapq
import logging
import re
from collections import deque
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

security_logger = logging.getLogger("callcenter.security")
"""One line per authentication failure or ban; route it to its own file for fail2ban."""

__all__ = ["AuthFailureBan", "BanPolicy", "log_auth_failure", "security_logger"]


@dataclass(frozen=True)
class BanPolicy:
    """When a source IP gets banned for failing authentication, and for how long."""

    max_failures: int = 10
    """Failures within :attr:`window` that trigger a ban (the last one is the trigger)."""

    window: float = 60.0
    """Sliding window, seconds: failures older than this no longer count."""

    ban_seconds: float = 600.0
    """How long a ban lasts, seconds from the triggering failure."""

    exempt: frozenset[str] = field(default_factory=frozenset)
    """IPs never banned (the carrier trunk, monitoring), like fail2ban's ``ignoreip``."""

    max_tracked_ips: int = 65536
    """Bound on IPs with failures in memory; the oldest are forgotten first (spoofed UDP
    sources must not exhaust memory)."""

    max_banned_ips: int = 65536
    """Bound on simultaneous bans; past it the ban closest to expiry is lifted early."""

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.window <= 0 or self.ban_seconds <= 0:
            raise ValueError("max_failures, window and ban_seconds must be positive")
        if self.max_tracked_ips < 1 or self.max_banned_ips < 1:
            raise ValueError("memory bounds must be positive")


class AuthFailureBan:
    """Sliding-window failure counter and ban list per source IP (sans-IO)."""

    def __init__(self, policy: BanPolicy | None = None) -> None:
        self.policy = policy if policy is not None else BanPolicy()
        # ip -> times of recent failures, oldest first; dict order = least recently failed first
        self._failures: dict[str, deque[float]] = {}
        self._banned: dict[str, float] = {}  # ip -> ban end
        self._expiries: list[tuple[float, str]] = []  # heap of (ban end, ip), lazily pruned

    def record_failure(self, ip: str, *, now: float) -> bool:
        """Count one failed authentication from ``ip``; True when this failure starts a ban.

        Failures from an already banned IP (in flight when the ban started) are ignored.
        """
        if ip in self.policy.exempt or self.is_banned(ip, now=now):
            return False
        times = self._failures.pop(ip, None)
        if times is None:
            times = deque()
        horizon = now - self.policy.window
        while times and times[0] <= horizon:
            times.popleft()
        times.append(now)
        if len(times) >= self.policy.max_failures:
            self._ban(ip, now=now, failures=len(times))
            return True
        self._failures[ip] = times  # re-inserted last: most recently failed
        while len(self._failures) > self.policy.max_tracked_ips:
            del self._failures[next(iter(self._failures))]
        return False

    def _ban(self, ip: str, *, now: float, failures: int) -> None:
        self._prune_bans(now)
        until = now + self.policy.ban_seconds
        self._banned[ip] = until
        heapq.heappush(self._expiries, (until, ip))
        while len(self._banned) > self.policy.max_banned_ips:
            end, victim = heapq.heappop(self._expiries)
            if self._banned.get(victim) == end:
                del self._banned[victim]
                logger.warning("ban list full: lifted the ban of %s early", victim)
        security_logger.warning(
            "auth ban ip=%s failures=%d seconds=%g",
            _field(ip),
            failures,
            self.policy.ban_seconds,
        )

    def is_banned(self, ip: str, *, now: float) -> bool:
        """Whether requests from ``ip`` should be dropped at ``now``."""
        until = self._banned.get(ip)
        if until is None:
            return False
        if now < until:
            return True
        del self._banned[ip]
        return False

    def banned_ips(self, *, now: float) -> dict[str, float]:
        """The IPs banned at ``now``, each with the time its ban ends. Prunes expired bans."""
        self.prune(now=now)
        return dict(self._banned)

    def failure_count(self, ip: str, *, now: float) -> int:
        """Failures from ``ip`` still inside the window at ``now``."""
        times = self._failures.get(ip)
        if times is None:
            return 0
        horizon = now - self.policy.window
        return sum(1 for t in times if t > horizon)

    def unban(self, ip: str) -> bool:
        """Lift a ban by hand (an operator's decision); True if ``ip`` was banned."""
        self._failures.pop(ip, None)
        return self._banned.pop(ip, None) is not None

    def prune(self, *, now: float) -> None:
        """Forget expired bans and failures that left the window; call it now and then."""
        self._prune_bans(now)
        horizon = now - self.policy.window
        stale = [ip for ip, times in self._failures.items() if times[-1] <= horizon]
        for ip in stale:
            del self._failures[ip]

    def _prune_bans(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            end, ip = heapq.heappop(self._expiries)
            if self._banned.get(ip) == end:
                del self._banned[ip]

    @property
    def tracked_ips(self) -> int:
        """IPs with failures or bans held in memory."""
        return len(self._failures) + len(self._banned)


_UNSAFE = re.compile(r"[\x00-\x20\"\\\x7f-\x9f]")
"""Characters escaped in bare values: they could end the line, the value or the quote."""

_UNSAFE_QUOTED = re.compile(r"[\x00-\x1f\"\\\x7f-\x9f]")
"""The same inside a quoted value, where a space is harmless."""

_MAX_FIELD = 64


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return "\\" + char if char in '"\\' else f"\\x{ord(char):02x}"


def _field(value: object) -> str:
    """A bare log value that cannot break the line or fake another key (peer-controlled)."""
    return _UNSAFE.sub(_escape, str(value)[:_MAX_FIELD]) or "-"


def _quoted_field(value: str | None) -> str:
    if value is None:
        return "-"
    return '"' + _UNSAFE_QUOTED.sub(_escape, value[:_MAX_FIELD]) + '"'


def log_auth_failure(ip: str, port: int, user: str | None, reason: object, method: str) -> None:
    """One grep-friendly security line per failed authentication.

    ``reason`` is an ``AuthResult`` (its value is used) or any short text. ``user`` and
    ``method`` come from the peer, so they are escaped and cut to 64 characters; ``user`` is
    quoted (it may hold spaces), ``-`` when the request carried none.
    """
    security_logger.warning(
        "auth failure ip=%s port=%d user=%s reason=%s method=%s",
        _field(ip),
        port,
        _quoted_field(user),
        _field(getattr(reason, "value", reason)),
        _field(method),
    )
