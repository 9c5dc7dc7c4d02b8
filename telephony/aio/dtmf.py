"""One key press, one digit: merging DTMF that arrives by RFC 4733, SIP INFO and in-band tones.

A carrier may send the same press twice over (an RFC 4733 event and the tone left in the audio,
or INFO plus RFC 4733). Each source reports a press once on its own, so a digit is a duplicate
when the same digit came from a *different* source moments before. Time comes in as `now`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# How long after one source's digit another source's report of the same digit counts as the
# same press. RFC 4733 reports at the start of a press, Goertzel ~40-60 ms later, INFO whenever
# the phone's SIP stack gets to it; a person cannot press the same key twice in under ~150 ms
# on two channels at once, and on one channel the source itself tells presses apart.
DEFAULT_WINDOW = 0.5


@dataclass
class _Accepted:
    digit: str
    method: str
    at: float


class DtmfDebouncer:
    """Decides whether a reported digit is a new press or another source's copy of the last."""

    def __init__(self, window: float = DEFAULT_WINDOW) -> None:
        self.window = window
        self._last: _Accepted | None = None

    def accept(self, digit: str, method: str, *, now: float) -> bool:
        """True: a new press (report it); False: the same press seen through another source."""
        last = self._last
        if (
            last is not None
            and last.digit == digit
            and last.method != method
            and now - last.at <= self.window
        ):
            logger.debug("DTMF %s by %s: same press as by %s", digit, method, last.method)
            return False
        self._last = _Accepted(digit, method, now)
        return True
