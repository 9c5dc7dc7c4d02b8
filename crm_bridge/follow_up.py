"""The rule "no open contact without a task": a contact waiting for us (latest inbound call
missed, nothing answered since) must have an open task. The optional job below repairs breaches
(a task completed by mistake, a callback lost to a crash before it was written) by opening a
follow-up task for the contact's responsible manager; the listing and the metric show them.

Beside it, the outbox's retention job: delivered events leave the outbox after the configured
days (CrmStore.purge_outbox), so the table does not grow with every call forever."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import asyncpg

from .errors import CrmError
from .store import CrmStore

logger = logging.getLogger(__name__)

FOLLOW_UP_TEXT = "Follow up: waiting for us with no open task"


async def open_follow_ups(store: CrmStore, *, due_in: timedelta) -> int:
    """One follow-up task per contact breaking the rule (for its responsible manager, or
    unassigned); returns how many were opened."""
    opened = 0
    for contact in await store.contacts_without_open_task():
        try:
            await store.open_callback_task(
                contact.phone,
                assignee=None,
                due_at=datetime.now(UTC) + due_in,
                call_row_id=None,
                text=FOLLOW_UP_TEXT,
            )
        except CrmError as exc:
            logger.warning("no follow-up task for contact %s: %s", contact.phone, exc)
            continue
        opened += 1
    if opened:
        logger.info("opened %d follow-up task(s) for contacts without an open task", opened)
    return opened


async def purge_outbox_forever(
    store: CrmStore,
    *,
    keep: timedelta,
    keep_dead: timedelta | None = None,
    every: float = 3600.0,
) -> None:
    """Every `every` seconds until cancelled: delete delivered events older than `keep` (and
    dead letters older than `keep_dead`; None keeps them). Every node may run it: a DELETE
    twice deletes nothing twice."""
    while True:
        now = datetime.now(UTC)
        try:
            purged = await store.purge_outbox(
                now - keep, dead_before=None if keep_dead is None else now - keep_dead
            )
        except (OSError, CrmError, asyncpg.PostgresError) as exc:
            logger.warning("outbox retention: %s", exc)
        else:
            if purged:
                logger.info("outbox retention: %d old event(s) deleted", purged)
        await asyncio.sleep(every)


async def follow_up_forever(store: CrmStore, *, every: float, due_in: timedelta) -> None:
    """Run open_follow_ups every `every` seconds until cancelled."""
    while True:
        try:
            await open_follow_ups(store, due_in=due_in)
        except (OSError, CrmError) as exc:
            logger.warning("follow-up job: %s", exc)
        await asyncio.sleep(every)
