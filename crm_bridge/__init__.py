"""PostgreSQL store of the engine: versioned schema, call log (CRM delivery comes later)."""

from __future__ import annotations

from .calls import CallLog, CallRecord
from .migrations import apply_migrations, migration_files

__all__ = ["CallLog", "CallRecord", "apply_migrations", "migration_files"]
