"""Back-to-back calls between extensions: the caller's leg, forked outgoing legs, one bridge.

The engine anchors media (DESIGN.md 1): the caller talks to our RTP port on leg A, the callee to
ours on leg B, and the bridge relays between them, so recording, whisper and AMD can join later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from telephony.aio import Call, UserAgent, bridge
from telephony.call import Answered, Ended, Ringing
from telephony.sip import NameAddr, SipUri

from .registrar import Binding

logger = logging.getLogger(__name__)


@dataclass
class CallSummary:
    """What the call log needs when a bridged call is over."""

    call_id: str
    caller: str
    callee: str
    started_at: datetime
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: str = "failed"
    """answered, busy, no-answer, cancelled, unavailable, rejected, failed."""
    sip_status: int | None = None
    hangup_cause: str | None = None
    legs: list[str] = field(default_factory=list)

    @property
    def talk_seconds(self) -> float:
        if self.answered_at is None or self.ended_at is None:
            return 0.0
        return (self.ended_at - self.answered_at).total_seconds()


_OUTCOME_BY_STATUS = {
    486: "busy",
    600: "busy",
    480: "no-answer",
    408: "no-answer",
    487: "cancelled",
    603: "rejected",
}


class BridgedCall:
    """Rings every binding of the callee; the first to answer is bridged to the caller."""

    def __init__(
        self,
        ua: UserAgent,
        a_leg: Call,
        *,
        caller: str,
        callee: str,
        bindings: list[Binding],
        ring_timeout: float,
        caller_identity: NameAddr,
    ) -> None:
        self.ua = ua
        self.a = a_leg
        self.b: Call | None = None
        self.caller = caller
        self.callee = callee
        self.bindings = bindings
        self.ring_timeout = ring_timeout
        self.caller_identity = caller_identity
        self.summary = CallSummary(a_leg.call_id, caller, callee, datetime.now(UTC))
        self.on_answer: Callable[[BridgedCall], None] | None = None

    @property
    def parties(self) -> tuple[str, str]:
        return (self.caller, self.callee)

    async def run(self) -> CallSummary:
        try:
            await self._run()
        finally:
            self.summary.ended_at = datetime.now(UTC)
            for leg in (self.a, self.b):
                if leg is not None:
                    with contextlib.suppress(Exception):
                        await leg.hangup(reason="shutdown")
        return self.summary

    async def _run(self) -> None:
        codecs = None  # offer the callee what we support, in the caller's order when known
        to = NameAddr(display_name=None, uri=self._callee_uri(), params={})
        legs: list[Call] = []
        for binding in self.bindings:
            uri = binding.contact.uri
            if not isinstance(uri, SipUri):
                continue
            try:
                legs.append(
                    await self.ua.dial(
                        uri, binding.peer, from_=self.caller_identity, to=to, codecs=codecs
                    )
                )
            except OSError as exc:
                logger.warning("call %s: cannot dial %s: %s", self.a.call_id, uri, exc)
        self.summary.legs = [leg.call_id for leg in legs]
        if not legs:
            self._reject(503, "failed")
            return
        winner = await self._ring(legs)
        if winner is None:
            return
        self.b = winner
        try:
            await self.a.answer(codecs=[winner.media.codec_name] if winner.media else None)
        except Exception as exc:  # no common codec between the two phones, or no port
            logger.warning("call %s: cannot answer the caller: %s", self.a.call_id, exc)
            self.summary.outcome, self.summary.sip_status = "failed", 488
            await winner.hangup(reason="failed")
            self.a.reject(488)
            return
        await self._talk(winner)

    def _callee_uri(self) -> SipUri:
        return SipUri(
            scheme="sip",
            user=self.callee,
            password=None,
            host=self.ua.endpoint.host,
            port=self.ua.endpoint.port,
            params={},
            headers={},
        )

    async def _ring(self, legs: list[Call]) -> Call | None:
        """The first callee leg to answer; ring timeout, caller CANCEL or rejections give None."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ring_timeout
        pending = {leg: loop.create_task(leg.next_event()) for leg in legs}
        caller_gone = self.a.ended
        statuses: list[int] = []
        ringing = False
        while pending:
            waiters: set[asyncio.Future[object]] = {*pending.values(), caller_gone}  # type: ignore[arg-type]
            done, _ = await asyncio.wait(
                waiters,
                timeout=max(0.0, deadline - loop.time()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if caller_gone in done:
                self.summary.outcome = "cancelled"
                self.summary.sip_status = self.a.final_status or 487
                self.summary.hangup_cause = "caller-cancel"
                await self._drop(pending, reason="cancelled")
                return None
            if not done:
                self.summary.hangup_cause = "ring-timeout"
                await self._drop(pending, reason="timeout")
                self._reject(480, "no-answer")
                return None
            for leg, task in list(pending.items()):
                if task not in done:
                    continue
                event = task.result()
                if isinstance(event, Ringing) and not ringing:
                    ringing = True
                    self.a.ring()
                if isinstance(event, Answered):
                    del pending[leg]
                    await self._drop(pending, reason="answered-elsewhere")
                    return leg
                if isinstance(event, Ended):
                    del pending[leg]
                    statuses.append(event.sip_status or 500)
                    continue
                pending[leg] = loop.create_task(leg.next_event())
        status = 486 if 486 in statuses or 600 in statuses else (statuses[-1] if statuses else 480)
        self._reject(status, _OUTCOME_BY_STATUS.get(status, "rejected"))
        return None

    async def _drop(self, pending: dict[Call, asyncio.Task[object]], *, reason: str) -> None:
        for leg, task in pending.items():
            task.cancel()
            await leg.hangup(reason=reason)

    async def _talk(self, b: Call) -> None:
        self.summary.answered_at = datetime.now(UTC)
        self.summary.outcome, self.summary.sip_status = "answered", 200
        media_bridge = bridge(self.a, b)
        if self.on_answer is not None:
            self.on_answer(self)
        done, _ = await asyncio.wait({self.a.ended, b.ended}, return_when=asyncio.FIRST_COMPLETED)
        media_bridge.close()
        first = self.a if self.a.ended in done else b
        other = b if first is self.a else self.a
        side = "caller" if first is self.a else "callee"
        self.summary.hangup_cause = f"{side}-{first.end_reason}"
        await other.hangup(reason="peer-hangup")

    def _reject(self, status: int, outcome: str) -> None:
        self.summary.outcome, self.summary.sip_status = outcome, status
        self.a.reject(status)
