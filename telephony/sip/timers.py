"""SIP transaction timers (RFC 3261 section 17, table 4 of appendix A; RFC 6026 section 8.11).

Every timer is derived here from the three base values T1, T2 and T4; no other module holds a
timer figure. Durations are seconds (floats), to be added to a ``now`` passed in by the caller.

Retransmission timers (A, E, G and the UAS 2xx retransmission of RFC 3261 13.3.1.4) return
``None`` on reliable transports where the RFC says they are not started: the transport already
retransmits. Wait timers (D, I, J, K) are 0 on reliable transports: the transaction ends at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

_DOUBLE = 2.0
"""Retransmission intervals double each time (exponential back-off)."""

_TRANSACTION_TIMEOUT_FACTOR = 64
"""Timers B, F, H, J, L and M are 64*T1 (RFC 3261 table 4)."""


@dataclass(frozen=True)
class TimerConfig:
    """Base timer values, RFC 3261 section 17.1.1.1 and table 4.

    Defaults are the RFC's recommended values. T1 may be raised on high-latency links (never
    lowered below 500 ms on the public Internet); tests may shrink all three together.
    """

    t1: float = 0.5
    """T1, the round-trip time estimate: first retransmission interval."""

    t2: float = 4.0
    """T2, the maximum retransmission interval for non-INVITE requests and INVITE responses."""

    t4: float = 5.0
    """T4, the maximum time a message stays in the network (absorption of retransmissions)."""

    timer_d_unreliable: float = 32.0
    """Timer D on unreliable transports: "at least 32 seconds" (RFC 3261 17.1.1.2), the time
    a UAC keeps absorbing retransmitted non-2xx final responses to its INVITE."""

    trying_delay: float = 0.2
    """How long an INVITE server transaction waits for the TU's first response before it sends
    100 Trying itself: RFC 3261 17.2.1 allows skipping the 100 when the TU answers within 200 ms.
    0 sends the 100 at once."""

    def __post_init__(self) -> None:
        if not 0 < self.t1 <= self.t2:
            raise ValueError(f"need 0 < T1 <= T2, got T1={self.t1} T2={self.t2}")
        if self.t4 <= 0 or self.timer_d_unreliable < 0 or self.trying_delay < 0:
            raise ValueError("T4 must be positive, Timer D and the 100 Trying delay non-negative")

    @property
    def transaction_timeout(self) -> float:
        """64*T1, the common value of Timers B, F, H, J (unreliable), L and M."""
        return _TRANSACTION_TIMEOUT_FACTOR * self.t1

    # --- INVITE client transaction (17.1.1) -------------------------------------------------

    def timer_a(self, *, reliable: bool) -> float | None:
        """Timer A: first INVITE retransmission interval (T1); not started when reliable."""
        return None if reliable else self.t1

    def next_timer_a(self, interval: float) -> float:
        """Timer A after it fired: doubles without a cap (0.5, 1, 2, 4, 8, 16 s...)."""
        return interval * _DOUBLE

    @property
    def timer_b(self) -> float:
        """Timer B: INVITE transaction timeout, 64*T1."""
        return self.transaction_timeout

    def timer_d(self, *, reliable: bool) -> float:
        """Timer D: wait for response retransmits, >32 s unreliable, 0 reliable."""
        return 0.0 if reliable else max(self.timer_d_unreliable, self.transaction_timeout)

    @property
    def timer_m(self) -> float:
        """Timer M (RFC 6026): the client INVITE transaction stays Accepted, passing 2xx
        retransmissions (forked or not) to the TU, for 64*T1."""
        return self.transaction_timeout

    # --- non-INVITE client transaction (17.1.2) ---------------------------------------------

    def timer_e(self, *, reliable: bool) -> float | None:
        """Timer E: first non-INVITE retransmission interval (T1); not started when reliable."""
        return None if reliable else self.t1

    def next_timer_e(self, interval: float, *, proceeding: bool) -> float:
        """Timer E after it fired: doubles up to T2; once a provisional response arrived
        (Proceeding) it is reset to T2 (RFC 3261 17.1.2.2)."""
        if proceeding:
            return self.t2
        return min(interval * _DOUBLE, self.t2)

    @property
    def timer_f(self) -> float:
        """Timer F: non-INVITE transaction timeout, 64*T1."""
        return self.transaction_timeout

    def timer_k(self, *, reliable: bool) -> float:
        """Timer K: wait for response retransmits, T4 unreliable, 0 reliable."""
        return 0.0 if reliable else self.t4

    # --- INVITE server transaction (17.2.1) -------------------------------------------------

    def timer_g(self, *, reliable: bool) -> float | None:
        """Timer G: first retransmission interval of a non-2xx final INVITE response (T1);
        not started when reliable."""
        return None if reliable else self.t1

    def next_timer_g(self, interval: float) -> float:
        """Timer G after it fired: doubles up to T2."""
        return min(interval * _DOUBLE, self.t2)

    @property
    def timer_h(self) -> float:
        """Timer H: wait time for an ACK to a non-2xx final response, 64*T1."""
        return self.transaction_timeout

    def timer_i(self, *, reliable: bool) -> float:
        """Timer I: wait for ACK retransmits, T4 unreliable, 0 reliable."""
        return 0.0 if reliable else self.t4

    @property
    def timer_l(self) -> float:
        """Timer L (RFC 6026): the server INVITE transaction stays Accepted, absorbing INVITE
        retransmissions after a 2xx, for 64*T1. It is also the 64*T1 after which a UAS stops
        retransmitting a 2xx that was never ACKed (RFC 3261 13.3.1.4)."""
        return self.transaction_timeout

    @property
    def first_2xx_retransmit(self) -> float:
        """First interval of the UAS core's 2xx retransmission (RFC 3261 13.3.1.4): T1.

        Unlike Timer G it runs on reliable transports too: the 2xx must survive hops beyond
        the first, which may be UDP."""
        return self.t1

    def next_2xx_retransmit(self, interval: float) -> float:
        """2xx retransmission interval after it fired: doubles up to T2 (13.3.1.4)."""
        return min(interval * _DOUBLE, self.t2)

    # --- non-INVITE server transaction (17.2.2) ---------------------------------------------

    def timer_j(self, *, reliable: bool) -> float:
        """Timer J: wait for request retransmits, 64*T1 unreliable, 0 reliable."""
        return 0.0 if reliable else self.transaction_timeout
