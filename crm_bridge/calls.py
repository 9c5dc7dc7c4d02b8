"""The call log: one row per call, written when the call ends."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import asyncpg

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallRecord:
    call_id: str
    """SIP Call-ID of the caller's leg."""
    direction: str
    """internal, inbound or outbound."""
    from_number: str
    to_number: str
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime
    outcome: str
    """answered, missed, busy, no-answer, failed, cancelled, unavailable."""
    sip_status: int | None
    """The final status the caller got (200 for answered calls)."""
    hangup_cause: str | None
    """Who or what ended the call: caller-bye, callee-bye, rtp-timeout, shutdown, ..."""


class CallLog:
    """Writes CallRecords to PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, call: CallRecord) -> int:
        row_id: int = await self._pool.fetchval(
            "INSERT INTO calls (call_id, direction, from_number, to_number, started_at,"
            " answered_at, ended_at, outcome, sip_status, hangup_cause)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) RETURNING id",
            call.call_id,
            call.direction,
            call.from_number,
            call.to_number,
            call.started_at,
            call.answered_at,
            call.ended_at,
            call.outcome,
            call.sip_status,
            call.hangup_cause,
        )
        return row_id
