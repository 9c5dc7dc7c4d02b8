"""The call journal: every call the PBX handles becomes a calls row (opened when the call starts,
closed when it ends), and a missed inbound call also a callback task, through the CRM store
(whose outbox delivers both to external CRMs)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crm_bridge import (
    CallbackRequest,
    CallEnded,
    CallStarted,
    Conflict,
    CrmError,
    CrmStore,
    MonitoringStore,
    PhoneNumberError,
)
from pbx import BridgedCall, CallSummary, MonitorEvent, Pickup
from recordings import RecordingError, recover_recording

logger = logging.getLogger(__name__)

_NUMBER_MAX = 256
"""Caller and callee as stored: a caller ID is what a peer wrote in its From (PROTOS sends tens
of kilobytes), and calls.from_number / to_number are indexed (a B-tree entry holds ~2.7 kB)."""


class CallJournal:
    def __init__(
        self, store: CrmStore, *, callback_due: timedelta, recordings_root: Path | None
    ) -> None:
        self.store = store
        self.callback_due = callback_due
        self.recordings_root = recordings_root
        self._rows: dict[str, asyncio.Task[int]] = {}
        """Row ids of open calls, by Call-ID (a task: the INSERT runs beside the ringing)."""
        self._steps: dict[str, asyncio.Task[None]] = {}
        """The last ringing/answered write of each open call: the next waits for it, so the
        CRM hears call.started, call.ringing, call.answered, call.ended in that order."""

    async def row_id(self, call_id: str) -> int | None:
        """The calls row of a call in progress (waits for its INSERT)."""
        row = self._rows.get(call_id)
        return None if row is None else await row

    async def find_row(self, call_id: str) -> int | None:
        """Like row_id, but None when the row's INSERT failed (the journal logged it)."""
        try:
            return await self.row_id(call_id)
        except Exception as exc:
            logger.info("call %s: no calls row: %s", call_id, exc)
            return None

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
            from_number=summary.caller[:_NUMBER_MAX],
            to_number=summary.callee[:_NUMBER_MAX],
            started_at=summary.started_at,
            did=summary.did,
            # An agent's own call out (or click-to-call) names the agent from the start; the
            # dialer's caller is the campaign's caller ID, no agent until one takes the call.
            agent=summary.caller
            if summary.direction == "outbound"
            and summary.caller != customer
            and not self._callable(summary.caller)
            else None,
            ring_group=summary.ring_group,
            customer_phone=customer if self._callable(customer) else None,
            campaign_id=summary.campaign_id,
            lead_id=summary.lead_id,
        )

    def ringing(self, summary: CallSummary, at: datetime | None = None) -> None:
        """The call's first phone rings: `call.ringing` (once)."""
        self._step(summary.call_id, "ringing", at or datetime.now(UTC), None)

    def answered(self, summary: CallSummary) -> None:
        """Someone answered: `call.answered` with the agent (once: an IVR that answered first
        already made the call answered)."""
        at = summary.answered_at or datetime.now(UTC)
        self._step(summary.call_id, "answered", at, self._agent(summary))

    def transferred(self, summary: CallSummary, transfer: dict[str, Any]) -> None:
        """The customer was handed to another agent: `call.transferred`, after the answer."""
        at = datetime.fromisoformat(transfer["at"]) if "at" in transfer else datetime.now(UTC)
        self._step(summary.call_id, "transferred", at, None, transfer)

    def _step(
        self,
        call_id: str,
        what: str,
        at: datetime,
        agent: str | None,
        transfer: dict[str, Any] | None = None,
    ) -> None:
        row = self._rows.get(call_id)
        if row is None:
            return  # never opened (refused at once): the end writes it whole
        before = self._steps.get(call_id)

        async def write() -> None:
            if before is not None:
                await asyncio.gather(before, return_exceptions=True)
            try:
                if what == "ringing":
                    await self.store.call_ringing(await row, at)
                elif transfer is not None:
                    await self.store.call_transferred(await row, transfer, at)
                else:
                    await self.store.call_answered(await row, at, agent=agent)
            except Conflict:
                logger.debug("call %s: %s already journaled", call_id, what)
            except (CrmError, OSError) as exc:
                logger.error("call %s: %s not journaled: %s", call_id, what, exc)
            except Exception:
                logger.exception("call %s: %s not journaled", call_id, what)

        self._steps[call_id] = asyncio.get_running_loop().create_task(write())

    async def recording_started(self, call_id: str, path: str) -> None:
        """Point the call's open row at its recording as soon as it is written: a crash later
        leaves the WAV findable (and analysed at the next start)."""
        row = self._rows.get(call_id)
        if row is None:
            return
        try:
            await self.store.call_recording(await row, self._relative(path) or path)
        except (CrmError, OSError) as exc:
            # Only a crash before the end would miss it: the end writes the path again.
            logger.error("call %s: recording path not stored: %s", call_id, exc)
        except Exception:
            logger.exception("call %s: recording path not stored", call_id)

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
            quality=summary.quality,
            transfers=summary.transfers or None,
        )
        callback = None
        # A missed call is a callback task when there is a number to call back; a caller ID
        # like "anonymous" still leaves its row, without a task nobody could act on.
        if summary.outcome == "missed" and self._callable(summary.customer):
            callback = CallbackRequest(
                assignee=summary.owner,
                due_at=ended.ended_at + self.callback_due,
                text=f"Call back {summary.caller}: missed call to {summary.did or summary.callee}",
                prefer_responsible=True,
            )
        step = self._steps.pop(summary.call_id, None)
        if step is not None:
            await asyncio.gather(step, return_exceptions=True)
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

    def _callable(self, number: str | None) -> bool:
        """Whether `number` is a phone number we could call back (it normalises to E.164)."""
        if not number:
            return False
        try:
            self.store.normalize(number)
        except PhoneNumberError:
            return False
        return True

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


class MonitorAudit:
    """Pickups and supervisor monitoring (listen, whisper, barge) as CRM events and audit
    entries against the call's row. The audit is required: an entry that cannot be written is
    logged as an error; a session's entries are written in the order they happened."""

    def __init__(self, monitoring: MonitoringStore, journal: CallJournal | None) -> None:
        self.monitoring = monitoring
        self.journal = journal
        self._order = asyncio.Lock()
        self._writes: set[asyncio.Task[None]] = set()
        """Entries being written: finished (not cancelled) when the engine stops."""
        self._rows: dict[int, int | None] = {}
        """calls row of each monitor session (looked up once, at its start)."""

    async def _row(self, call_id: str) -> int | None:
        return None if self.journal is None else await self.journal.find_row(call_id)

    async def pickup(self, bridged: BridgedCall, pickup: Pickup, picker: str) -> None:
        """A pickup is an event in the CRM delivery (the calls row names the picker at its
        end)."""
        try:
            await self.monitoring.record_pickup(
                call_row_id=await self._row(bridged.call_id),
                call_id=bridged.call_id,
                picker=picker,
                picked_from=pickup.picked_from,
                at=bridged.summary.answered_at or datetime.now(UTC),
            )
        except Exception:
            logger.exception("call %s: pickup by %s not stored", bridged.call_id, picker)

    def monitor(self, event: MonitorEvent) -> None:
        task = asyncio.get_running_loop().create_task(self._monitor(event))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def drain(self, *, timeout: float) -> None:
        if self._writes:
            await asyncio.wait(self._writes, timeout=timeout)

    async def _monitor(self, event: MonitorEvent) -> None:
        try:
            async with self._order:
                if event.session not in self._rows:
                    self._rows[event.session] = await self._row(event.call_id)
                rows = self._rows
                row = rows.pop(event.session) if event.action == "ended" else rows[event.session]
                await self.monitoring.audit(
                    session=event.session,
                    call_row_id=row,
                    call_id=event.call_id,
                    supervisor=event.supervisor,
                    agent=event.agent,
                    action=event.action,
                    mode=event.mode.value,
                    at=event.at,
                )
        except Exception:
            logger.exception("monitor %d: audit entry %s not stored", event.session, event.action)


async def close_interrupted_calls(
    store: CrmStore, *, recordings_root: Path | None, now: datetime
) -> int:
    """At start-up, before the node takes a call: close the calls a crash cut off, each with
    the analytics of its recording as the crash left it (the WAV's header is brought up to the
    audio on disk first). A recording that is missing or damaged is reported and the call
    closed without analytics; its path stays on the row. Returns how many were closed."""
    analytics: dict[int, dict[str, Any]] = {}
    for call in await store.interrupted_calls():
        if call.recording_path is None:
            continue
        path = Path(call.recording_path)
        if recordings_root is not None and not path.is_absolute():
            path = recordings_root / path
        try:
            recovered = await asyncio.to_thread(recover_recording, path)
        except RecordingError as exc:
            logger.error("call %s: recording not analysed: %s", call.call_id, exc)
            continue
        if recovered.analytics is not None:
            analytics[call.id] = recovered.analytics.to_dict()
        seconds = recovered.duration_seconds
        logger.info("call %s: recording %s recovered, %.2f s", call.call_id, path, seconds)
    return await store.close_interrupted_calls(now, analytics=analytics)


async def responsible_of(store: CrmStore, caller: str) -> str | None:
    """The extension of the caller's responsible manager (kept in step with amoCRM's
    responsible user through the endpoint's user_map), for inbound routing; None when the
    caller is withheld, unknown or has none."""
    try:
        contact = await store.get_contact(caller)
    except CrmError:
        return None  # withheld or not a number
    return None if contact is None else contact.responsible
