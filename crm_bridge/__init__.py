"""PostgreSQL store of the engine and its CRM bridge.

- versioned schema (numbered SQL migrations, applied under an advisory lock), the engine's one
  schema: the dialer's tables (dialer/store.py) are in it too;
- CrmStore: calls, contacts, callback tasks; each change writes its outbox event in the same
  transaction;
- OutboxWorker: delivers outbox events to CRM endpoints (Standard Webhooks JSON, amoCRM
  API v4, Bitrix24 REST) at least once, in order per call/task, with backoff, dead letters
  and restarts.
"""

from __future__ import annotations

from . import webhooks
from .adapters import (
    SIGNATURE_HEADER,
    Attempt,
    CrmAdapter,
    HttpRequest,
    JsonWebhook,
    OutboxEvent,
    Outcome,
    Verdict,
    classify_status,
    sign_body,
    verify_signature,
)
from .agent_sessions import SessionStore
from .amocrm import AmoCrmAdapter, amo_call_status
from .bookings import PgAgentBookings
from .cluster_secrets import NONCE_KEY, shared_secret
from .config import CrmEndpoint, OAuthClient, RetryPolicy
from .dialogs import DialogStore, StoredDialog
from .errors import Conflict, CrmError, InvalidFilter, InvalidInput, NotFound, PhoneNumberError
from .follow_up import FOLLOW_UP_TEXT, follow_up_forever, open_follow_ups, purge_outbox_forever
from .forwarding import ForwardingStore, StoredForwarding
from .kinds import DEFAULT_ADAPTERS, check_endpoints, endpoint_problems
from .migrations import apply_migrations, migration_files
from .models import (
    DIRECTIONS,
    OUTCOMES,
    TASK_STATUSES,
    TASK_TYPES,
    Call,
    CallbackRequest,
    CallEnded,
    CallFilter,
    CallStarted,
    Contact,
    Task,
    TaskFilter,
)
from .monitoring import AuditEntry, MonitoringStore, PickupRecord
from .outbox import OutboxWorker, WorkerStats, backoff_delay
from .phone import normalize_phone
from .presence import PresenceStore, StoredPresence
from .registrations import RegistrationStore, StoredBinding
from .store import DISPOSITIONS, CrmStore

__all__ = [
    "DEFAULT_ADAPTERS",
    "DIRECTIONS",
    "DISPOSITIONS",
    "FOLLOW_UP_TEXT",
    "NONCE_KEY",
    "OUTCOMES",
    "SIGNATURE_HEADER",
    "TASK_STATUSES",
    "TASK_TYPES",
    "AmoCrmAdapter",
    "Attempt",
    "AuditEntry",
    "Call",
    "CallEnded",
    "CallFilter",
    "CallStarted",
    "CallbackRequest",
    "Conflict",
    "Contact",
    "CrmAdapter",
    "CrmEndpoint",
    "CrmError",
    "CrmStore",
    "DialogStore",
    "ForwardingStore",
    "HttpRequest",
    "InvalidFilter",
    "InvalidInput",
    "JsonWebhook",
    "MonitoringStore",
    "NotFound",
    "OAuthClient",
    "OutboxEvent",
    "OutboxWorker",
    "Outcome",
    "PgAgentBookings",
    "PhoneNumberError",
    "PickupRecord",
    "PresenceStore",
    "RegistrationStore",
    "RetryPolicy",
    "SessionStore",
    "StoredBinding",
    "StoredDialog",
    "StoredForwarding",
    "StoredPresence",
    "Task",
    "TaskFilter",
    "Verdict",
    "WorkerStats",
    "amo_call_status",
    "apply_migrations",
    "backoff_delay",
    "check_endpoints",
    "classify_status",
    "endpoint_problems",
    "follow_up_forever",
    "migration_files",
    "normalize_phone",
    "open_follow_ups",
    "purge_outbox_forever",
    "shared_secret",
    "sign_body",
    "verify_signature",
    "webhooks",
]
