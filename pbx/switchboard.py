"""The PBX: registrations and calls between extensions, on top of the telephony UserAgent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from telephony.aio import Call, Peer, UserAgent
from telephony.sip import NameAddr, SipRequest, SipUri, make_response

from .auth import Authenticator
from .b2bua import BridgedCall, CallSummary
from .registrar import Binding, Registrar, RegistrationError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Extension:
    number: str
    display_name: str
    role: str
    max_calls: int = 1
    """Simultaneous calls before the extension counts as busy."""


class Switchboard:
    """Routes REGISTER to the registrar and INVITEs between extensions as bridged calls."""

    def __init__(
        self,
        ua: UserAgent,
        *,
        extensions: dict[str, Extension],
        registrar: Registrar,
        authenticator: Authenticator,
        ring_timeout: float,
        on_call_end: Callable[[CallSummary], Awaitable[None] | None] | None = None,
    ) -> None:
        self.ua = ua
        self.extensions = extensions
        self.registrar = registrar
        self.auth = authenticator
        self.ring_timeout = ring_timeout
        self.on_call_end = on_call_end
        self.active: dict[str, BridgedCall] = {}
        """Bridged calls in progress by the caller leg's Call-ID."""
        self._tasks: set[asyncio.Task[None]] = set()
        ua.on_incoming = self._on_incoming
        ua.on_request = self._on_request
        ua.endpoint.filter = lambda peer: self.auth.allows(peer, now=ua.loop.time())

    def busy(self, extension: str) -> bool:
        in_calls = sum(extension in call.parties for call in self.active.values())
        ext = self.extensions.get(extension)
        return in_calls >= (ext.max_calls if ext is not None else 1)

    # -- REGISTER -----------------------------------------------------------------------------

    def _on_request(self, request: SipRequest, transaction: object, peer: Peer) -> bool:
        if request.method != "REGISTER":
            return False
        now = self.ua.loop.time()
        respond = self.ua.endpoint.send_response
        aor = request.to.uri
        if not isinstance(aor, SipUri):
            respond(transaction, make_response(request, 400, "To must be a SIP AOR"))
            return True
        decision = self.auth.check(request, peer, now=now)
        if decision.extension is None:
            respond(transaction, make_response(request, decision.status, extra=decision.headers))
            return True
        try:
            bindings = self.registrar.register(decision.extension, request, peer, now=now)
        except RegistrationError as exc:
            respond(transaction, make_response(request, exc.status, str(exc), extra=exc.headers))
            return True
        extra = [*self.registrar.contact_headers(bindings, now=now), ("Date", _http_date())]
        respond(transaction, make_response(request, 200, extra=extra))
        return True

    # -- INVITE -------------------------------------------------------------------------------

    def _on_incoming(self, call: Call) -> None:
        now = self.ua.loop.time()
        decision = self.auth.check(call.invite, call.peer, now=now)
        if decision.extension is None:
            call.reject(decision.status, headers=decision.headers)
            return
        caller = decision.extension
        target = call.invite.uri
        callee = target.user if isinstance(target, SipUri) else None
        bindings = self.registrar.lookup(callee, now=now) if callee else []
        if callee is None or callee not in self.extensions:
            self._refuse(call, caller, callee or "", 404, "failed")
        elif callee == caller or self.busy(callee):
            self._refuse(call, caller, callee, 486, "busy")
        elif not bindings:
            self._refuse(call, caller, callee, 480, "unavailable")
        else:
            self._connect(call, caller, callee, bindings)

    def _refuse(self, call: Call, caller: str, callee: str, status: int, outcome: str) -> None:
        """An authenticated call that cannot ring anyone: answered at once, still logged."""
        call.reject(status)
        summary = CallSummary(call.call_id, caller, callee, datetime.now(UTC))
        summary.ended_at = summary.started_at
        summary.outcome, summary.sip_status, summary.hangup_cause = outcome, status, "refused"
        self._track(self._finish(summary))

    def _connect(self, call: Call, caller: str, callee: str, bindings: list[Binding]) -> None:
        ext = self.extensions[caller]
        identity = NameAddr(
            display_name=ext.display_name or None,
            uri=SipUri(
                scheme="sip",
                user=caller,
                password=None,
                host=self.ua.endpoint.host,
                port=self.ua.endpoint.port,
                params={},
                headers={},
            ),
            params={},
        )
        bridged = BridgedCall(
            self.ua,
            call,
            caller=caller,
            callee=callee,
            bindings=bindings,
            ring_timeout=self.ring_timeout,
            caller_identity=identity,
        )
        self.active[call.call_id] = bridged
        self._track(self._run(bridged))

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        task = self.ua.loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, bridged: BridgedCall) -> None:
        try:
            summary = await bridged.run()
        finally:
            self.active.pop(bridged.a.call_id, None)
        await self._finish(summary)

    async def _finish(self, summary: CallSummary) -> None:
        logger.info(
            "call %s %s -> %s: %s (status %s, talk %.1f s, cause %s)",
            summary.call_id,
            summary.caller,
            summary.callee,
            summary.outcome,
            summary.sip_status,
            summary.talk_seconds,
            summary.hangup_cause,
        )
        if self.on_call_end is not None:
            result = self.on_call_end(summary)
            if asyncio.iscoroutine(result):
                await result

    async def shutdown(self) -> None:
        """Hang up every call with BYE (or CANCEL / 503 before answer) and wait for the logs."""
        for bridged in list(self.active.values()):
            for leg in (bridged.a, bridged.b):
                if leg is not None:
                    await leg.hangup(reason="shutdown")
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)


def _http_date() -> str:
    from email.utils import formatdate

    return formatdate(usegmt=True)
