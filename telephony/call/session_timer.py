"""SIP session timers (RFC 4028), sans-IO: the header rules and one leg's two deadlines.

`InviteSession` owns a `SessionTimer` per leg and asks it three kinds of question:

- what an INVITE we send must say (`offer_headers`), and what to ask after a 422
  (`retry_after_422`);
- what a request we received asks for: `check_request` raises `IntervalTooSmall` when the 422
  applies, `negotiate_request` returns the headers of our 2xx; and what a 2xx to our INVITE
  agreed (`negotiate_response`). Both (re)start the timer at the `now` given;
- what is due at `now` (`due`): a refresh when we are the refresher (half the interval), the
  end of the session when no refresh came (the interval less min(32, interval/3), section 10).

Nothing here reads a clock: every instant is passed in, so a test drives hours of session in
microseconds.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from telephony.sip import SipRequest, SipResponse

logger = logging.getLogger(__name__)

__all__ = [
    "RFC_MIN_SE",
    "IntervalTooSmall",
    "SessionTimer",
    "SessionTimerConfig",
    "TimerDue",
    "parse_session_expires",
    "supports_timer",
]

RFC_MIN_SE = 90
"""RFC 4028 4: the smallest Min-SE, and the one assumed when a request carries none."""

_TAG = "timer"


@dataclass(frozen=True)
class SessionTimerConfig:
    """What one leg asks for and accepts."""

    enabled: bool = True
    """False: the leg neither offers nor honours session timers (a peer that misbehaves)."""
    session_expires: int = 1800
    """The interval we ask for (Session-Expires of our INVITEs), seconds."""
    min_se: int = RFC_MIN_SE
    """Shorter intervals get 422 with this Min-SE. RFC 4028 says at least 90; smaller values
    only make tests fast."""

    def __post_init__(self) -> None:
        if self.min_se < 1 or self.session_expires < self.min_se:
            raise ValueError(
                f"session timers need 1 <= min_se <= session_expires, got min_se={self.min_se}"
                f" session_expires={self.session_expires}"
            )


DISABLED = SessionTimerConfig(enabled=False)


class IntervalTooSmall(Exception):
    """The far end asked for an interval below our Min-SE: answer 422 with `min_se`."""

    status_code = 422

    def __init__(self, asked: int, min_se: int) -> None:
        super().__init__(f"Session-Expires {asked} below our Min-SE {min_se}")
        self.min_se = min_se

    @property
    def headers(self) -> list[tuple[str, str]]:
        return [("Min-SE", str(self.min_se))]


class TimerDue(enum.Enum):
    REFRESH = "refresh"
    """We are the refresher and half the interval has passed: send a refresh."""
    EXPIRED = "expired"
    """No refresh came in time: end the session with BYE."""


def parse_session_expires(value: str) -> tuple[int, str | None]:
    """`1800;refresher=uac` -> (1800, "uac"); ValueError for anything else."""
    delta, *params = (part.strip() for part in value.split(";"))
    if not delta.isdigit() or len(delta) > 10:
        raise ValueError(f"bad Session-Expires {value[:40]!r}")
    refresher = None
    for param in params:
        name, _, val = param.partition("=")
        if name.strip().lower() == "refresher":
            refresher = val.strip().lower()
            if refresher not in ("uac", "uas"):
                raise ValueError(f"bad refresher {val[:10]!r}")
    return int(delta), refresher


def _delta(value: str | None) -> int | None:
    """A Min-SE (delta-seconds, maybe with parameters) or None."""
    if value is None:
        return None
    text = value.split(";")[0].strip()
    return int(text) if text.isdigit() and len(text) <= 10 else None


def supports_timer(message: SipRequest | SipResponse) -> bool:
    """The sender named the `timer` option tag in Supported or Require."""
    tags = message.headers.get_all("Supported") + message.headers.get_all("Require")
    return any(tag.strip().lower() == _TAG for tag in tags)


def _session_expires(message: SipRequest | SipResponse) -> tuple[int, str | None] | None:
    value = message.headers.get("Session-Expires")
    if value is None:
        return None
    try:
        return parse_session_expires(value)
    except ValueError:
        logger.info("call %s: ignoring %s", message.call_id, value[:60])
        return None


class SessionTimer:
    """One leg's session timer: off until a request or response agrees on an interval."""

    def __init__(self, config: SessionTimerConfig) -> None:
        self.config = config
        self.interval: int | None = None
        """The agreed Session-Expires; None while no session timer runs."""
        self.we_refresh = False
        """True when we are the refresher."""
        self.asked = config.session_expires
        """The interval our next offer asks for (raised by a 422's Min-SE)."""
        self.refresh_at: float | None = None
        self.expires_at: float | None = None

    @property
    def active(self) -> bool:
        return self.interval is not None

    # -- what we send ------------------------------------------------------------------------

    def offer_headers(self, *, refresh: bool = False) -> list[tuple[str, str]]:
        """For an INVITE we send: `refresh` when it is our own refresh (we stay the refresher:
        refresher=uac names the sender of the request, RFC 4028 7.4)."""
        if not self.config.enabled:
            return []
        asked = self.interval if refresh and self.interval is not None else self.asked
        expires = f"{asked};refresher=uac" if refresh else str(asked)
        return [
            ("Supported", _TAG),
            ("Session-Expires", expires),
            ("Min-SE", str(self.config.min_se)),
        ]

    def retry_after_422(self, response: SipResponse) -> bool:
        """A 422 to our INVITE: ask for its Min-SE next time (True), unless it asks for no more
        than we did (a broken peer: no retry, no loop)."""
        wanted = _delta(response.headers.get("Min-SE"))
        if wanted is None or wanted <= self.asked:
            return False
        self.asked = wanted
        if self.interval is not None:
            self.interval = max(self.interval, wanted)
        return True

    # -- what we receive ---------------------------------------------------------------------

    def check_request(self, request: SipRequest) -> None:
        """Raise IntervalTooSmall when an INVITE or UPDATE asks for less than our Min-SE (the
        422 comes before anything else is done with the request, RFC 4028 9)."""
        asked = _session_expires(request) if self.config.enabled else None
        if asked is not None and asked[0] < self.config.min_se:
            raise IntervalTooSmall(asked[0], self.config.min_se)

    def negotiate_request(self, request: SipRequest, now: float | None) -> list[tuple[str, str]]:
        """An INVITE or UPDATE we will answer with a 2xx (RFC 4028 9): the headers that 2xx
        carries, and the timer restarts at `now`. Raises IntervalTooSmall for a 422."""
        if not self.config.enabled:
            return []
        self.check_request(request)
        asked = _session_expires(request)
        peer_supports = supports_timer(request)
        if asked is None and not peer_supports:
            # Nobody on the path wants a session timer: none runs (RFC 4028 9).
            self._stop()
            return [("Supported", _TAG)]
        refresher = "uac"
        if asked is None:
            interval = self.config.session_expires
        else:
            interval, wanted = asked
            if interval > self.config.session_expires:
                # We may shorten it, never below the Min-SE of the request (RFC 4028 9).
                floor = _delta(request.headers.get("Min-SE")) or RFC_MIN_SE
                interval = min(interval, max(self.config.session_expires, floor))
            # Only a UAC that supports the extension can be made to refresh.
            refresher = "uas" if wanted == "uas" or not peer_supports else "uac"
        self._start(interval, we_refresh=refresher == "uas", now=now)
        headers = [("Supported", _TAG), ("Session-Expires", f"{interval};refresher={refresher}")]
        if peer_supports:
            headers.append(("Require", _TAG))
        return headers

    def negotiate_response(self, response: SipResponse, now: float | None) -> None:
        """The 2xx to an INVITE we sent (RFC 4028 7.2): without Session-Expires no timer runs;
        refresher=uac means us."""
        if not self.config.enabled:
            return
        agreed = _session_expires(response)
        if agreed is None:
            self._stop()
            return
        interval, refresher = agreed
        self._start(interval, we_refresh=refresher != "uas", now=now)

    # -- time ---------------------------------------------------------------------------------

    def _start(self, interval: int, *, we_refresh: bool, now: float | None) -> None:
        if now is None:
            raise RuntimeError("a session timer starts at a time: pass now")
        self.interval = max(interval, 1)
        self.we_refresh = we_refresh
        self.refresh_at = now + self.interval / 2 if we_refresh else None
        self.expires_at = now + self.interval - min(32.0, self.interval / 3)

    def _stop(self) -> None:
        self.interval = None
        self.refresh_at = self.expires_at = None

    def refresh_failed(self, now: float) -> None:
        """A refresh got an error that leaves the session up (491, 5xx...): try again halfway
        to the expiry, if there is time for it."""
        if self.expires_at is not None and self.we_refresh:
            left = self.expires_at - now
            self.refresh_at = now + left / 2 if left > 1.0 else None

    def refresh_sent(self) -> None:
        self.refresh_at = None

    def get_timer(self) -> float | None:
        """When `due` next has something to say; None: never (no timer runs)."""
        times = [t for t in (self.refresh_at, self.expires_at) if t is not None]
        return min(times) if times else None

    def due(self, now: float) -> TimerDue | None:
        if self.expires_at is not None and now >= self.expires_at:
            self._stop()
            return TimerDue.EXPIRED
        if self.refresh_at is not None and now >= self.refresh_at:
            self.refresh_at = None
            return TimerDue.REFRESH
        return None
