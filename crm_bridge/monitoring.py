"""Pickups and the supervisor monitoring audit in PostgreSQL.

A pickup is a row in call_pickups plus a `call.pickup` outbox event, written in one transaction
(the CRM learns who took the call before the call ends). The monitoring audit is append-only:
the table refuses updates and deletes (migration 0010).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from .adapters import CrmAdapter
from .config import CrmEndpoint
from .kinds import DEFAULT_ADAPTERS, subscribed

logger = logging.getLogger(__name__)

PICKUP_EVENT = "call.pickup"
MONITOR_ACTIONS = ("started", "mode", "ended")
MONITOR_MODES = ("listen", "whisper", "barge")


@dataclass(frozen=True)
class PickupRecord:
    """One pickup as stored and delivered."""

    id: int
    call_row_id: int | None
    """The calls row (None when the call's row could not be written)."""
    call_id: str
    picker: str
    """The agent who took the call (the calls row names it as the answering agent)."""
    picked_from: str
    """The extension whose phone was ringing."""
    picked_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.call_row_id,
            "pickup_id": self.id,
            "call_id": self.call_id,
            "picker": self.picker,
            "picked_from": self.picked_from,
            "picked_at": self.picked_at.isoformat(),
        }


@dataclass(frozen=True)
class AuditEntry:
    """One line of the monitoring audit."""

    id: int
    node: str
    session: int
    call_row_id: int | None
    call_id: str
    supervisor: str
    agent: str
    action: str
    """started, mode or ended."""
    mode: str
    """listen, whisper or barge (from this entry on)."""
    at: datetime

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["at"] = self.at.isoformat()
        return data


class MonitoringStore:
    """Writes pickups (with their outbox event) and audit entries; reads the audit back."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        node: str,
        endpoints: Sequence[CrmEndpoint] = (),
        adapters: Mapping[str, CrmAdapter] = DEFAULT_ADAPTERS,
    ) -> None:
        self._pool = pool
        self.node = node
        self._pickup_endpoints = subscribed(tuple(endpoints), adapters, PICKUP_EVENT)

    async def record_pickup(
        self,
        *,
        call_row_id: int | None,
        call_id: str,
        picker: str,
        picked_from: str,
        at: datetime,
    ) -> PickupRecord:
        """Store a pickup and its `call.pickup` event in one transaction."""
        if at.tzinfo is None:
            raise ValueError("picked_at needs a time zone")
        async with self._pool.acquire() as conn, conn.transaction():
            pickup_id = await conn.fetchval(
                "INSERT INTO call_pickups (call_row_id, call_id, picker, picked_from, picked_at)"
                " VALUES ($1, $2, $3, $4, $5) RETURNING id",
                call_row_id,
                call_id,
                picker,
                picked_from,
                at,
            )
            record = PickupRecord(pickup_id, call_row_id, call_id, picker, picked_from, at)
            # The call's aggregate keeps the event in order with the call's other events.
            aggregate = f"call/{call_row_id}" if call_row_id is not None else f"pickup/{pickup_id}"
            await conn.execute(
                "WITH e AS (INSERT INTO outbox (aggregate, event_type, payload, occurred_at)"
                " VALUES ($1, $2, $3::jsonb, $4) RETURNING id)"
                " INSERT INTO outbox_deliveries (event_id, endpoint, aggregate)"
                " SELECT e.id, name, $1 FROM e, unnest($5::text[]) AS name",
                aggregate,
                PICKUP_EVENT,
                json.dumps(record.to_json()),
                at,
                self._pickup_endpoints,
            )
        return record

    async def audit(
        self,
        *,
        session: int,
        call_row_id: int | None,
        call_id: str,
        supervisor: str,
        agent: str,
        action: str,
        mode: str,
        at: datetime,
    ) -> int:
        """Append one audit entry; returns its id."""
        if action not in MONITOR_ACTIONS or mode not in MONITOR_MODES:
            raise ValueError(f"bad audit entry {action}/{mode}")
        if at.tzinfo is None:
            raise ValueError("at needs a time zone")
        entry_id: int = await self._pool.fetchval(
            "INSERT INTO monitor_audit (node, session, call_row_id, call_id, supervisor, agent,"
            " action, mode, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            self.node,
            session,
            call_row_id,
            call_id,
            supervisor,
            agent,
            action,
            mode,
            at,
        )
        return entry_id

    async def audit_entries(
        self, *, call_id: str | None = None, supervisor: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """Audit entries, oldest first, filtered by call and/or supervisor."""
        rows = await self._pool.fetch(
            "SELECT id, node, session, call_row_id, call_id, supervisor, agent, action, mode, at"
            " FROM monitor_audit WHERE ($1::text IS NULL OR call_id = $1)"
            " AND ($2::text IS NULL OR supervisor = $2) ORDER BY id LIMIT $3",
            call_id,
            supervisor,
            limit,
        )
        return [AuditEntry(**dict(row)) for row in rows]

    async def pickups(self, call_id: str) -> list[PickupRecord]:
        rows = await self._pool.fetch(
            "SELECT id, call_row_id, call_id, picker, picked_from, picked_at FROM call_pickups"
            " WHERE call_id = $1 ORDER BY id",
            call_id,
        )
        return [PickupRecord(**dict(row)) for row in rows]
