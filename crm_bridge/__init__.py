"""PostgreSQL store of the engine and its CRM bridge.

- versioned schema (numbered SQL migrations, applied under an advisory lock);
- CrmStore: calls, contacts, callback tasks; each change writes its outbox event in the same
  transaction;
- PgLeadStore: the dialer's campaigns, leads, attempts (claimed with SKIP LOCKED) and DNC list;
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
from .dialogs import DialogStore, StoredDialog
from .errors import Conflict, CrmError, InvalidFilter, InvalidInput, NotFound, PhoneNumberError
from .leads import (
    CAMPAIGN_TRANSITIONS,
    DialerProgress,
    DncEntry,
    LeadClaim,
    LeadImportSummary,
    PgLeadStore,
    StoredAttempt,
    StoredCampaign,
    StoredLead,
)
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
from .outbox import OutboxWorker, Verdict, WorkerStats, backoff_delay, classify_status
from .phone import normalize_phone
from .registrations import RegistrationStore, StoredBinding
from .store import CrmStore

__all__ = [
    "CAMPAIGN_TRANSITIONS",
    "DEFAULT_ADAPTERS",
    "DIRECTIONS",
    "OUTCOMES",
    "SIGNATURE_HEADER",
    "TASK_STATUSES",
    "TASK_TYPES",
    "AmoCrmAdapter",
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
    "DialerProgress",
    "DialogStore",
    "DncEntry",
    "HttpRequest",
    "InvalidFilter",
    "InvalidInput",
    "JsonWebhook",
    "LeadClaim",
    "LeadImportSummary",
    "MonitoringStore",
    "NotFound",
    "OutboxEvent",
    "OutboxWorker",
    "PgLeadStore",
    "PhoneNumberError",
    "PickupRecord",
    "RegistrationStore",
    "RetryPolicy",
    "StoredAttempt",
    "StoredBinding",
    "StoredCampaign",
    "StoredDialog",
    "StoredLead",
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
