"""The finished-call log of the engine foundation, now a thin wrapper over CrmStore.

New code calls CrmStore.call_started when a call starts and call_ended when it ends, so a crash
leaves an open row that restart recovery closes; this wrapper writes both at the end.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from .models import CallEnded, CallStarted
from .store import CrmStore

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
    """answered, missed, busy, no-answer, failed, cancelled, unavailable, rejected..."""
    sip_status: int | None
    """The final status the caller got (200 for answered calls)."""
    hangup_cause: str | None
    """Who or what ended the call: caller-bye, callee-bye, rtp-timeout, shutdown, ..."""


class CallLog:
    """Writes finished calls (row + call.ended outbox event)."""

    def __init__(self, pool: asyncpg.Pool, store: CrmStore | None = None) -> None:
        self.store = store or CrmStore(pool)

    async def record(self, call: CallRecord) -> int:
        """Write the finished call (one transaction, one `call.ended` event); its row id."""
        return await self.store.record_call(
            CallStarted(
                call_id=call.call_id,
                direction=call.direction,
                from_number=call.from_number,
                to_number=call.to_number,
                started_at=call.started_at,
            ),
            CallEnded(
                ended_at=call.ended_at,
                outcome=call.outcome,
                sip_status=call.sip_status,
                hangup_cause=call.hangup_cause,
                answered_at=call.answered_at,
                agent=self._agent(call),
            ),
        )

    @staticmethod
    def _agent(call: CallRecord) -> str | None:
        """The extension on our side: the caller of an outbound call, else who answered."""
        if call.direction == "outbound":
            return call.from_number
        return call.to_number if call.answered_at is not None else None
