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
    """Adapter: "webhook" (generic signed JSON), "amocrm" (amoCRM API v4) or "bitrix24"."""
    url: str
    """Webhook URL; the amoCRM account base URL (https://example.amocrm.ru); the Bitrix24
    portal (https://example.bitrix24.ru) or its incoming-webhook URL
    (https://example.bitrix24.ru/rest/1/<code>/)."""
    secret: str = ""
    """Webhook: the signing secret (`whsec_<base64>` or plain text). amoCRM: a long-lived
    access token (when not using OAuth)."""
    timeout: float = 10.0
    """Seconds for one delivery attempt (connect + response) before it counts as failed."""
    events: frozenset[str] | None = None
    """Event types to deliver (call.started, call.ended, task.created...); None means every
    type the adapter knows."""
    user_map: Mapping[str, int] = field(default_factory=dict)
    """amoCRM: agent extension -> amoCRM user id, for responsible_user_id."""
    recording_link: str | None = None
    """URL template of a call's recording: `{id}` (call row id), `{format}`, `{expires}` and
    `{signature}` (a signed link that plays without an API key until it expires), e.g.
    "https://pbx.example.com/recordings/{id}.{format}?expires={expires}&signature={signature}";
    None sends no link."""
    recording_format: str = "wav"
    """`{format}` of the link: "wav" (the master) or "mp3" (for CRM players; the engine
    encodes it on first request when an MP3 encoder is installed)."""
    link_secret: str = ""
    """Key of link signatures (`[crm] link_secret`, the same on every node)."""
    link_ttl: float = 30 * 86400.0
    """Seconds a signed link works after the delivery attempt that made it."""
    source: str = "callcenter"
    """amoCRM: the `source` field of call records."""
    old_secrets: tuple[str, ...] = ()
    """Webhook: secrets being rotated out; requests carry a signature with each as well."""
    legacy_signature: bool = True
    """Webhook: also send the pre-Standard-Webhooks `X-Callcenter-Signature` header (kept for
    one release)."""
    oauth: OAuthClient | None = None
    """amoCRM / Bitrix24 local app: OAuth 2.0 client; tokens live in PostgreSQL."""
    rate_limit: float | None = None
    """Requests per second to this endpoint's account (None: the kind's default: amoCRM 7,
    Bitrix24 2, webhook unlimited)."""
    burst: int | None = None
    """Requests the limiter lets through at once (None: the kind's default)."""

    @property
    def signing_secrets(self) -> tuple[str, ...]:
        """The current secret, then the ones being rotated out."""
        return tuple(s for s in (self.secret, *self.old_secrets) if s)

    @property
    def account(self) -> str:
        """Key of the CRM account (rate limits and OAuth tokens are per account): the URL's
        scheme and host."""
        scheme, _, rest = self.url.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0]}"


@dataclass(frozen=True)
class OAuthClient:
    """An OAuth 2.0 client registered with the CRM (amoCRM integration, Bitrix24 local app)."""

    client_id: str
    client_secret: str
    redirect_uri: str = ""
    """amoCRM wants the integration's redirect URI on every token request."""
    token_url: str | None = None
    """Token endpoint; None: the kind's default (amoCRM `<account>/oauth2/access_token`,
    Bitrix24 `https://oauth.bitrix.info/oauth/token/`)."""


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
