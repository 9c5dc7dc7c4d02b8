"""Per-call status callbacks: a click-to-call may name a URL that hears how its call goes
(POSTed JSON on ringing, answered and ended), for a CRM widget that wants the live state of
the call it placed without the outbox's webhooks.

One attempt per status (5 s timeout); a receiver that fails is logged, never retried: the
outbox's `call.*` events are the reliable record, this is the live view. Only http(s) URLs.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from pbx import CallSummary
from pbx import events as pbx_events
from telephony.aio import TaskSet

logger = logging.getLogger(__name__)

MAX_URL = 2000
TIMEOUT = aiohttp.ClientTimeout(total=5)


def check_url(url: object) -> str:
    """`url` when it is an absolute http(s) URL; ValueError otherwise."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise ValueError(f"status_callback must be an http(s) URL of at most {MAX_URL} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("status_callback must be an http(s) URL")
    return url


class StatusCallbacks:
    """Watches the PBX's events for the calls that asked and POSTs their statuses."""

    def __init__(self, events: pbx_events.EventBus) -> None:
        self._urls: dict[str, str] = {}
        self._tasks = TaskSet("status-callback")
        self._session: aiohttp.ClientSession | None = None
        events.subscribe(pbx_events.CallRinging, self._ringing)
        events.subscribe(pbx_events.CallAnswered, lambda e: self._post(e.summary, "answered"))
        events.subscribe(pbx_events.CallEnded, self._ended)

    def watch(self, call_id: str, url: str) -> None:
        """POST the statuses of the call whose caller leg is `call_id` to `url` from now on."""
        self._urls[call_id] = check_url(url)

    def _ringing(self, event: pbx_events.CallRinging) -> None:
        if event.first:
            self._post(event.summary, "ringing")

    def _ended(self, event: pbx_events.CallEnded) -> None:
        self._post(event.summary, "ended")
        self._urls.pop(event.summary.call_id, None)

    def _post(self, summary: CallSummary, status: str) -> None:
        url = self._urls.get(summary.call_id)
        if url is None:
            return
        body = {
            "call_id": summary.call_id,
            "status": status,
            "at": datetime.now(UTC).isoformat(),
            "agent": summary.caller if summary.callee == summary.customer else summary.callee,
            "number": summary.customer,
            "outcome": summary.outcome if status == "ended" else None,
            "hangup_cause": summary.hangup_cause if status == "ended" else None,
        }
        self._tasks.spawn(self._send(url, body))

    async def _send(self, url: str, body: dict[str, Any]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT)
        try:
            async with self._session.post(url, json=body) as response:
                if response.status >= 300:
                    logger.warning("call %s: status callback %s answered %d", body["call_id"],
                                   body["status"], response.status)  # fmt: skip
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            logger.warning("call %s: status callback %s failed: %s", body["call_id"],
                           body["status"], exc)  # fmt: skip

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._session is not None:
            await self._session.close()
            self._session = None
