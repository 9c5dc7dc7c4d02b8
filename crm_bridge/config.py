"""Configuration of CRM delivery: endpoints and the retry policy (dataclasses, passed in)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CrmEndpoint:
    """One external CRM the outbox delivers to."""

    name: str
    """Unique name; delivery state is kept per (event, name), so renaming starts afresh."""
    kind: str
    """Adapter: "webhook" (generic signed JSON) or "amocrm" (amoCRM API v4 calls/tasks)."""
    url: str
    """Webhook URL, or the amoCRM account base URL (https://example.amocrm.ru)."""
    secret: str = ""
    """HMAC-SHA256 key of the webhook signature; for amoCRM the long-lived access token."""
    timeout: float = 10.0
    """Seconds for one delivery attempt (connect + response) before it counts as failed."""
    events: frozenset[str] | None = None
    """Event types to deliver (call.started, call.ended, task.created...); None means every
    type the adapter knows."""
    user_map: Mapping[str, int] = field(default_factory=dict)
    """amoCRM: agent extension -> amoCRM user id, for responsible_user_id."""
    recording_link: str | None = None
    """URL template of a call's recording, `{id}` = call row id, e.g.
    "https://pbx.example.com/calls/{id}/recording"; None sends no link."""
    source: str = "callcenter"
    """amoCRM: the `source` field of call records."""


@dataclass(frozen=True)
class RetryPolicy:
    """How the outbox worker retries and when it gives up."""

    base_delay: float = 1.0
    """Seconds before the first retry."""
    factor: float = 2.0
    """Each further retry waits this many times longer..."""
    max_delay: float = 300.0
    """...but never longer than this many seconds."""
    jitter: float = 0.25
    """Up to this fraction of each delay is taken off at random, so nodes and events that failed
    together do not retry in lockstep."""
    max_age: float = 72 * 3600.0
    """Seconds after the event was written when a failed attempt dead-letters it instead of
    retrying (a CRM down for an hour loses nothing)."""
    batch_size: int = 50
    """Deliveries claimed (and sent concurrently) per round."""
    lanes: int = 2
    """Concurrent claim loops per worker, each on its own database connection."""
    poll_interval: float = 1.0
    """Longest idle wait between looks at the outbox (new rows also wake the worker through
    LISTEN/NOTIFY)."""
    stop_grace: float = 5.0
    """Seconds `stop()` lets in-flight deliveries finish before cancelling them (cancelled ones
    are rolled back and sent again later, with the same idempotency key)."""

    def __post_init__(self) -> None:
        if self.base_delay <= 0 or self.max_delay < self.base_delay or self.factor < 1:
            raise ValueError("need 0 < base_delay <= max_delay and factor >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if self.max_age <= 0 or self.batch_size < 1 or self.lanes < 1 or self.poll_interval <= 0:
            raise ValueError("max_age, batch_size, lanes and poll_interval must be positive")
