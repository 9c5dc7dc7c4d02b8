"""The call journal: every call the PBX handles becomes a calls row (opened when the call starts,
closed when it ends), and a missed inbound call also a callback task, through the CRM store
(whose outbox delivers both to external CRMs)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crm_bridge import CallbackRequest, CallEnded, CallStarted, CrmError, CrmStore
from pbx import CallSummary

logger = logging.getLogger(__name__)


class CallJournal:
    def __init__(
        self, store: CrmStore, *, callback_due: timedelta, recordings_root: Path | None
    ) -> None:
        self.store = store
        self.callback_due = callback_due
        self.recordings_root = recordings_root
        self._rows: dict[str, asyncio.Task[int]] = {}
        """Row ids of open calls, by Call-ID (a task: the INSERT runs beside the ringing)."""

    async def row_id(self, call_id: str) -> int | None:
        """The calls row of a call in progress (waits for its INSERT)."""
        row = self._rows.get(call_id)
        return None if row is None else await row

    def started(self, summary: CallSummary) -> None:
        """Open the call's row at once, so a crash mid-call still leaves it to be closed."""
        self._rows[summary.call_id] = asyncio.get_running_loop().create_task(
            self.store.call_started(self._started(summary))
        )

    def _started(self, summary: CallSummary) -> CallStarted:
        customer = summary.customer
        return CallStarted(
            call_id=summary.call_id,
            direction=summary.direction,
            from_number=summary.caller,
            to_number=summary.callee,
            started_at=summary.started_at,
            did=summary.did,
            agent=summary.caller
            if summary.direction == "outbound" and summary.caller != customer
            else None,
            ring_group=summary.ring_group,
            customer_phone=customer if customer and customer[-1:].isdigit() else None,
            campaign_id=summary.campaign_id,
            lead_id=summary.lead_id,
        )

    async def ended(self, summary: CallSummary) -> None:
        ended = CallEnded(
            ended_at=summary.ended_at or datetime.now(UTC),
            outcome=summary.outcome,
            sip_status=summary.sip_status,
            hangup_cause=summary.hangup_cause,
            answered_at=summary.answered_at,
            agent=self._agent(summary),
            recording_path=self._relative(summary.recording),
            analytics=summary.analytics,
        )
        callback = None
        if summary.outcome == "missed":
            callback = CallbackRequest(
                assignee=summary.owner,
                due_at=ended.ended_at + self.callback_due,
                text=f"Call back {summary.caller}: missed call to {summary.did or summary.callee}",
                prefer_responsible=True,
            )
        try:
            row = self._rows.pop(summary.call_id, None)
            if row is None:  # refused before it started: one row, written whole
                await self.store.record_call(self._started(summary), ended, callback=callback)
            else:
                await self.store.call_ended(await row, ended, callback=callback)
        except (CrmError, OSError) as exc:
            # The call is over either way; a lost row is an error to see, never a crash.
            logger.error("call %s: not journaled: %s", summary.call_id, exc)
        except Exception:
            logger.exception("call %s: not journaled", summary.call_id)

    def _agent(self, summary: CallSummary) -> str | None:
        """The party that is not the customer, once someone answered (an IVR that answered a
        DID is no agent)."""
        if summary.answered_at is None:
            return None
        agent = summary.caller if summary.callee == summary.customer else summary.callee
        return None if agent == summary.did else agent

    def _relative(self, recording: str | None) -> str | None:
        if recording is None or self.recordings_root is None:
            return recording
        try:
            return str(Path(recording).relative_to(self.recordings_root))
        except ValueError:
            return recording


async def responsible_of(store: CrmStore, caller: str) -> str | None:
    """The extension of the caller's responsible manager (kept in step with amoCRM's
    responsible user through the endpoint's user_map), for inbound routing; None when the
    caller is withheld, unknown or has none."""
    try:
        contact = await store.get_contact(caller)
    except CrmError:
        return None  # withheld or not a number
    return None if contact is None else contact.responsible
