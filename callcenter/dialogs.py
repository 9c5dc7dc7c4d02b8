"""Answered dialogs kept in PostgreSQL, and the BYEs a restarted engine sends in the ones a crash
left: without them both phones of a call cut off by a kill -9 would stay on a dead call.

Writes are queued and coalesced by one writer task (only a dialog's latest state matters), so
the call path never waits for the database; a dialog that ends before its row was written costs
no write at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

from crm_bridge import DialogStore, StoredDialog
from telephony.aio import Call, LegState, Peer, UserAgent
from telephony.sip import SipError, SipUri, bye_from_record, parse_uri
from telephony.sip.dialog import DialogId

logger = logging.getLogger(__name__)

RESTART_REASON = ("Reason", 'Q.850;cause=41;text="engine restart"')
"""What our BYEs after a restart say (RFC 3326; Q.850 41: temporary failure)."""


def destination(stored: StoredDialog) -> Peer:
    """Where the BYE of a stored dialog goes: over UDP where the leg's messages came from, as
    for a live leg; over TCP the connection died with the old process, so a new one to the
    peer's Contact (RFC 3261 18.1.1: the peer listens there)."""
    if stored.transport == "udp":
        return ("udp", stored.host, stored.port)
    target = parse_uri(stored.record.remote_target)
    if not isinstance(target, SipUri):
        raise SipError(f"remote target is not a SIP URI: {stored.record.remote_target}")
    return (stored.transport, target.host.strip("[]"), target.port or 5060)


class PersistentDialogs:
    """Keeps every answered leg's dialog in the store while it lasts (UserAgent.on_dialog)."""

    def __init__(
        self, store: DialogStore, ua: UserAgent, *, retry_delay: float = 1.0, parallel: int = 64
    ) -> None:
        self.store = store
        self.ua = ua
        self.retry_delay = retry_delay
        self.parallel = parallel
        """BYEs in flight at once after a restart."""
        self._pending: dict[DialogId, StoredDialog | None] = {}
        """Changes not yet written: the latest state of each dialog, None to delete it."""
        self._written: set[DialogId] = set()
        """Dialogs whose row exists (as far as this process knows)."""
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer: asyncio.Task[None] | None = None
        ua.on_dialog = self._changed

    def start(self) -> None:
        self._writer = self.ua.loop.create_task(self._write_forever())

    async def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued (the calls the shutdown ended), then stop writing."""
        if self._writer is None:
            return
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            logger.error("dialogs: %d change(s) not written at stop", len(self._pending))
        self._writer.cancel()
        await asyncio.gather(self._writer, return_exceptions=True)
        self._writer = None

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until every change so far is written."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    def _changed(self, call: Call) -> None:
        dialog = call.dialog
        if dialog is None:
            return
        key = dialog.dialog_id
        if call.state is LegState.ENDED:
            if key not in self._written and self._pending.get(key) is not None:
                del self._pending[key]  # never written: nothing to delete
                return
            self._pending[key] = None
        else:
            transport, host, port = call.peer
            record = dialog.to_record(local_contact=self.ua.contact(call.peer))
            self._pending[key] = StoredDialog(record, transport, host, port, datetime.now(UTC))
        self._idle.clear()
        self._wake.set()

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, {}
            if batch:
                saved = [d for d in batch.values() if d is not None]
                gone = [key for key, d in batch.items() if d is None]
                try:
                    await self.store.apply(saved, gone)
                except Exception as exc:  # the calls go on; only a crash now would miss them
                    logger.error("dialogs: %d change(s) not written, retrying: %s", len(batch), exc)
                    for key, change in batch.items():
                        self._pending.setdefault(key, change)  # a newer change wins
                    self._wake.set()
                    await asyncio.sleep(self.retry_delay)
                    continue
                self._written.update(d.dialog_id for d in saved)
                self._written.difference_update(gone)
            if not self._pending:
                self._idle.set()

    # -- after a restart -------------------------------------------------------------------

    async def end_interrupted(self, dialogs: Iterable[StoredDialog]) -> Counter[str]:
        """BYE in each dialog a previous run of this node left (loaded before this run took any
        call), then drop its row whatever the answer: 200, 481 (the phone hung up meanwhile),
        another error or no answer at all. Returns the outcomes, by status or 'timeout'."""
        limit = asyncio.Semaphore(self.parallel)

        async def one(stored: StoredDialog) -> str:
            async with limit:
                return await self._end(stored)

        outcomes = Counter(await asyncio.gather(*(one(d) for d in dialogs)))
        if outcomes:
            logger.warning(
                "dialogs left by the last run ended with BYE: %s",
                ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items())),
            )
        return outcomes

    async def _end(self, stored: StoredDialog) -> str:
        call_id = stored.record.call_id
        try:
            peer = destination(stored)
            bye = bye_from_record(
                stored.record,
                via=self.ua.endpoint.new_via(peer),
                headers=[RESTART_REASON],
            )
        except SipError as exc:
            logger.error("call %s: stored dialog unusable, dropped: %s", call_id, exc)
            outcome = "unusable"
        else:
            try:
                response = await self.ua.request(bye, peer)
            except Exception:  # e.g. a peer address the transport refuses: never a stuck row
                logger.exception("call %s: BYE after restart not sent", call_id)
                outcome = "error"
            else:
                outcome = "timeout" if response is None else str(response.status)
                logger.info("call %s: BYE after restart to %s:%d: %s", call_id, *peer[1:], outcome)
        try:
            await self.store.delete(stored.dialog_id)
        except Exception as exc:  # the next start tries again
            logger.error("call %s: stored dialog not dropped: %s", call_id, exc)
        return outcome
