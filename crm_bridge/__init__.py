"""PostgreSQL store of the engine and its CRM bridge.

- versioned schema (numbered SQL migrations, applied under an advisory lock);
- CrmStore: calls, contacts, callback tasks; each change writes its outbox event in the same
  transaction;
- OutboxWorker: delivers outbox events to CRM endpoints (generic signed JSON webhook, amoCRM
  API v4) at least once, in order per call/task, with backoff, dead letters and restarts.
"""

from __future__ import annotations

from .adapters import (
    DEFAULT_ADAPTERS,
    SIGNATURE_HEADER,
    AmoCrmAdapter,
    CrmAdapter,
    HttpRequest,
    JsonWebhook,
    OutboxEvent,
    amo_call_status,
    sign_body,
    verify_signature,
)
from .config import CrmEndpoint, RetryPolicy
from .errors import Conflict, CrmError, InvalidFilter, InvalidInput, NotFound, PhoneNumberError
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
from .outbox import OutboxWorker, Verdict, WorkerStats, backoff_delay, classify_status
from .phone import normalize_phone
from .store import CrmStore

__all__ = [
    "DEFAULT_ADAPTERS",
    "DIRECTIONS",
    "OUTCOMES",
    "SIGNATURE_HEADER",
    "TASK_STATUSES",
    "TASK_TYPES",
    "AmoCrmAdapter",
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
    "HttpRequest",
    "InvalidFilter",
    "InvalidInput",
    "JsonWebhook",
    "NotFound",
    "OutboxEvent",
    "OutboxWorker",
    "PhoneNumberError",
    "RetryPolicy",
    "Task",
    "TaskFilter",
    "Verdict",
    "WorkerStats",
    "amo_call_status",
    "apply_migrations",
    "backoff_delay",
    "classify_status",
    "migration_files",
    "normalize_phone",
    "sign_body",
    "verify_signature",
]
