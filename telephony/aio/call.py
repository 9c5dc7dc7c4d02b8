"""The Call facade: one INVITE dialog leg with its anchored RTP port, seen as typed events.

A `UserAgent` owns the SIP endpoint and every leg. Features (pbx, dialer, ivr) get inbound legs
through `on_incoming`, place outbound legs with `dial()`, and join two legs with `bridge()`; they
never touch SIP messages themselves (DESIGN.md 4).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from telephony.call import Answered, CallEvent, Dtmf, Ended, HoldChanged, Ringing
from telephony.media import DtmfDetector, DtmfDetectorConfig, Frame, FrameSource, dtmf_tone
from telephony.sip import (
    Dialog,
    Headers,
    NameAddr,
    RemoteProtocolError,
    RequestReceived,
    ResponseReceived,
    SipError,
    SipRequest,
    SipResponse,
    SipUri,
    TransactionEvent,
    TransactionTimedOut,
    make_response,
)

from .clock import MediaClock
from .dtmf import DtmfDebouncer
from .endpoint import EndpointConfig, Peer, SipEndpoint
from .media_session import MediaError, MediaSession
from .rtp import RtpPortPool

logger = logging.getLogger(__name__)

# Ended legs whose quality no call summary has taken yet (legs outside any summary age out).
_QUALITY_KEPT = 4096


class LegState(enum.Enum):
    INCOMING = "incoming"  # INVITE received, nothing decided yet
    DIALING = "dialing"  # INVITE sent
    RINGING = "ringing"  # 180 sent or received
    ANSWERING = "answering"  # 200 sent, waiting for the ACK
    CONNECTED = "connected"
    ENDED = "ended"


# (state, input) -> next state; a pair missing here is a bug in the caller (DESIGN.md 5.3).
_TRANSITIONS: dict[tuple[LegState, str], LegState] = {
    (LegState.INCOMING, "ring"): LegState.RINGING,
    (LegState.INCOMING, "answer"): LegState.ANSWERING,
    (LegState.RINGING, "answer"): LegState.ANSWERING,
    (LegState.ANSWERING, "ack"): LegState.CONNECTED,
    (LegState.DIALING, "ringing"): LegState.RINGING,
    (LegState.DIALING, "answered"): LegState.CONNECTED,
    (LegState.RINGING, "answered"): LegState.CONNECTED,
    (LegState.RINGING, "ringing"): LegState.RINGING,
    **{(state, "end"): LegState.ENDED for state in LegState if state is not LegState.ENDED},
}


@dataclass(frozen=True)
class UserAgentConfig:
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    """Where SIP listens and the transaction timers."""
    rtp_ports: tuple[int, int] = (20000, 29999)
    """Local RTP port range of the anchored legs."""
    rtp_inactivity_timeout: float = 30.0
    """An answered leg with no RTP for this long is hung up with BYE."""


class Call:
    """One leg. Incoming: ring()/answer()/reject(); outgoing legs come from UserAgent.dial()."""

    def __init__(self, ua: UserAgent, *, incoming: bool, invite: SipRequest, peer: Peer) -> None:
        self.ua = ua
        self.incoming = incoming
        self.invite = invite
        self.peer = peer
        self.call_id = invite.call_id
        self.state = LegState.INCOMING if incoming else LegState.DIALING
        self.local_tag = secrets.token_hex(6) if incoming else (invite.from_.tag or "")
        self.dialog: Dialog | None = None
        self.media: MediaSession | None = None
        self.transaction: object | None = None
        """The INVITE server (incoming) or client (outgoing) transaction."""
        self.transactions: list[object] = []
        """Every transaction of this leg, forgotten with it."""
        self.final_status: int | None = None
        self._events: asyncio.Queue[CallEvent] = asyncio.Queue()
        self._digits: asyncio.Queue[str] = asyncio.Queue()
        self._debouncer = DtmfDebouncer()
        self._inband: DtmfDetector | None = None
        self._inband_users = 0
        self.on_hold: Callable[[bool], None] | None = None
        """Told when the far end puts this leg on hold (True) or takes it off (False)."""
        self.end_reason: str | None = None
        self.ended = asyncio.get_running_loop().create_future()
        self._dialog_announced = False
        """True once `UserAgent.on_dialog` heard of the confirmed dialog (it hears its end)."""

    def __repr__(self) -> str:
        return f"<Call {self.call_id} {'in' if self.incoming else 'out'} {self.state.value}>"

    # -- identity ----------------------------------------------------------------------------

    @property
    def caller(self) -> NameAddr:
        return self.invite.from_

    @property
    def callee(self) -> NameAddr:
        return self.invite.to

    # -- events ------------------------------------------------------------------------------

    def _emit(self, event: CallEvent) -> None:
        self._events.put_nowait(event)

    async def next_event(self, timeout: float | None = None) -> CallEvent:
        return await asyncio.wait_for(self._events.get(), timeout)

    async def events(self) -> AsyncIterator[CallEvent]:
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, Ended):
                return

    def _set_state(self, action: str) -> None:
        new = _TRANSITIONS.get((self.state, action))
        if new is None:
            raise RuntimeError(f"{self!r}: {action} not allowed in state {self.state.value}")
        logger.debug("call %s: %s --%s--> %s", self.call_id, self.state.value, action, new.value)
        self.state = new

    # -- incoming leg ------------------------------------------------------------------------

    def ring(self) -> None:
        self._set_state("ring")
        self._respond(180)

    def reject(
        self, status: int, reason: str | None = None, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Final non-2xx to an incoming INVITE; ends the leg."""
        if self.state not in (LegState.INCOMING, LegState.RINGING):
            return
        self._respond(status, reason, headers)
        self._finish("rejected", status)

    async def answer(self, *, codecs: list[str] | None = None) -> None:
        """Send 200 OK with our SDP answer; the leg is CONNECTED once the ACK arrives."""
        media = await self._media_for_incoming(codecs)
        self._set_state("answer")
        ok = self._build_response(200, body=media.local_sdp(), content_type="application/sdp")
        self.dialog = Dialog.from_uas(self.invite, ok)
        # The transaction layer resends the 2xx until the ACK (RFC 3261 13.3.1.4 / RFC 6026).
        self.ua.endpoint.send_response(self.transaction, ok)
        self._dialog_changed()

    async def _media_for_incoming(self, codecs: list[str] | None) -> MediaSession:
        if self.media is None:
            self.media = await self.ua.open_media(self)
        if self.invite.body:
            self.media.accept_offer(self.invite.body, codecs=codecs)
        else:
            # Offer-less INVITE (RFC 3261 13.2.1): we offer in the 200, the answer comes in the ACK.
            self.media.make_offer(codecs=codecs)
        return self.media

    def _respond(
        self, status: int, reason: str | None = None, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        response = self._build_response(status, reason=reason, headers=headers)
        if status >= 200:
            self.final_status = status
        self.ua.endpoint.send_response(self.transaction, response)

    def _build_response(
        self,
        status: int,
        *,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> SipResponse:
        response = make_response(
            self.invite, status, reason, to_tag=self.local_tag, extra=headers, body=body
        )
        if status > 100 and status < 300:
            response.headers.add("Contact", str(self.ua.contact(self.peer[0])))
        if content_type:
            response.headers.set("Content-Type", content_type)
        return response

    # -- media -------------------------------------------------------------------------------

    async def play(self, source: FrameSource) -> None:
        """Play audio to this leg (a prompt, a tone) until the source ends or the call does."""
        if self.media is None or self.state is not LegState.CONNECTED:
            raise RuntimeError(f"{self!r}: play needs a connected call")
        await self.media.play(source)

    async def send_dtmf(self, digit: str, *, method: str = "rfc4733") -> None:
        """Press a key towards the far end: as RFC 4733 events, a SIP INFO
        (application/dtmf-relay) or an in-band tone pair (for peers that hear only audio)."""
        if self.media is None or self.dialog is None or self.state is not LegState.CONNECTED:
            raise RuntimeError(f"{self!r}: DTMF needs a connected call")
        if method == "rfc4733":
            await self.media.send_dtmf(digit)
        elif method == "info":
            info = self.dialog.create_request(
                "INFO", via=self.ua.endpoint.new_via(self.peer[0]), contact=None
            )
            info.headers.set("Content-Type", "application/dtmf-relay")
            info.body = f"Signal={digit}\r\nDuration=100\r\n".encode()
            info.headers.set("Content-Length", str(len(info.body)))
            self.ua.send_in_dialog(self, info)
            self._dialog_changed()  # our CSeq moved on
        elif method == "inband":
            await self.media.play(dtmf_tone(digit, duration=0.12))
        else:
            raise ValueError(f"DTMF method must be rfc4733, info or inband, not {method!r}")

    def listen(self, listener: Callable[[Frame], None]) -> Callable[[], None]:
        """Hand every decoded frame the far end sends to `listener`; returns the undo."""
        if self.media is None:
            raise RuntimeError(f"{self!r}: listening needs media")
        return self.media.listen(listener)

    async def collect_digits(
        self, count: int, *, timeout: float, terminator: str | None = "#"
    ) -> str:
        """Up to `count` DTMF digits, ending early on `terminator` (not included) or `timeout`
        seconds of silence between digits."""
        digits = ""
        while len(digits) < count:
            try:
                digit = await asyncio.wait_for(self._digits.get(), timeout)
            except TimeoutError:
                break
            if digit == terminator:
                break
            digits += digit
        return digits

    async def next_digit(self, timeout: float | None = None) -> str | None:
        """The next DTMF digit from any source (one per press), or None after `timeout` s."""
        try:
            return await asyncio.wait_for(self._digits.get(), timeout)
        except TimeoutError:
            return None

    def flush_digits(self) -> str:
        """Drop digits pressed but not yet read (type-ahead); returns them."""
        dropped = ""
        while not self._digits.empty():
            dropped += self._digits.get_nowait()
        return dropped

    def detect_inband(self, config: DtmfDetectorConfig | None = None) -> Callable[[], None]:
        """Also hear DTMF as tones in the caller's audio (Goertzel), for carriers that send
        only in-band; digits join the others through the same debouncing. Returns the undo."""
        if self.media is None:
            raise RuntimeError(f"{self!r}: in-band DTMF needs media")
        if self._inband is None:
            # One detector for the call's life, always fed: one switched off and on again
            # (around a failed transfer) must not hear a tone still sounding as a new press.
            detector = self._inband = DtmfDetector(config)

            def hear(frame: Frame) -> None:
                for digit in detector.feed(frame) or "":
                    if self._inband_users:
                        self._dtmf(digit, "inband")

            self.media.listen(hear)
        self._inband_users += 1
        undone = False

        def undo() -> None:
            nonlocal undone
            if not undone:
                undone = True
                self._inband_users -= 1

        return undo

    # -- both --------------------------------------------------------------------------------

    async def hangup(self, *, reason: str = "local-bye") -> None:
        """BYE an answered leg, CANCEL a ringing outgoing one, 480 an unanswered incoming one."""
        if self.state is LegState.ENDED:
            return
        if self.state in (LegState.CONNECTED, LegState.ANSWERING) and self.dialog is not None:
            bye = self.dialog.create_request(
                "BYE", via=self.ua.endpoint.new_via(self.peer[0]), contact=None
            )
            self.ua.send_in_dialog(self, bye)
            self._finish(reason, None)
        elif self.incoming:
            self._respond(480 if reason != "shutdown" else 503)
            self._finish(reason, self.final_status)
        else:
            self.cancel(reason=reason)

    def cancel(self, *, reason: str = "cancelled") -> None:
        """CANCEL an outgoing INVITE (RFC 3261 9.1); the 487 then ends the leg. Once only: a
        second CANCEL of the same INVITE would be the same transaction."""
        if self.incoming or self.state not in (LegState.DIALING, LegState.RINGING):
            return
        if self.end_reason is not None:
            return  # cancelled already; the 487 (or Timer B) ends the leg
        cancel = SipRequest(
            method="CANCEL", uri=self.invite.uri, headers=self.invite.headers.copy()
        )
        for name in ("Contact", "Content-Type", "Require", "Supported", "Allow"):
            cancel.headers.remove(name)
        cancel.headers.set("CSeq", f"{self.invite.cseq.seq} CANCEL")
        cancel.body = b""
        self.ua.endpoint.send_request(cancel, self.peer)
        self.end_reason = reason

    def _finish(self, reason: str, status: int | None) -> None:
        if self.state is LegState.ENDED:
            return
        self._set_state("end")
        self.end_reason = self.end_reason or reason
        self.ua.forget(self)
        if self._dialog_announced:
            self._dialog_changed()
        self._emit(Ended(self.call_id, self.end_reason, status))
        if not self.ended.done():
            self.ended.set_result(self.end_reason)

    # -- SIP input from the UserAgent -----------------------------------------------------------

    def _on_request(self, request: SipRequest, transaction: object | None) -> None:
        method = request.method
        if method == "ACK":
            if self.state is LegState.ANSWERING:
                if request.body and self.media is not None:
                    with contextlib.suppress(MediaError):
                        self.media.accept_answer(request.body)
                self._set_state("ack")
                self._emit(Answered(self.call_id))
            return
        if self.dialog is not None:
            target = self.dialog.remote_target
            try:
                self.dialog.receive_request(request)
            except RemoteProtocolError as exc:
                self.ua.endpoint.send_response(transaction, make_response(request, exc.status_code))
                return
            if self.dialog.remote_target != target and method != "BYE":
                self._dialog_changed()  # a target refresh: our next request goes elsewhere
        if method == "BYE":
            self.ua.endpoint.send_response(transaction, make_response(request, 200))
            self._finish("remote-bye", None)
        elif method in ("INVITE", "UPDATE"):
            self._on_reoffer(request, transaction)
        elif method == "INFO":
            self.ua.endpoint.send_response(transaction, make_response(request, 200))
            digit = _info_digit(request)
            if digit:
                self._dtmf(digit, "info")
        else:
            self.ua.endpoint.send_response(transaction, make_response(request, 200))

    def _on_reoffer(self, request: SipRequest, transaction: object | None) -> None:
        """re-INVITE/UPDATE: hold, unhold, session refresh, new address; answered locally."""
        if self.media is None or self.state is not LegState.CONNECTED:
            self.ua.endpoint.send_response(transaction, make_response(request, 491))
            return
        was_held = self.media.held
        if request.body:
            try:
                self.media.accept_offer(request.body, codecs=[self.media.codec_name])
            except MediaError as exc:
                self.ua.endpoint.send_response(transaction, make_response(request, exc.status_code))
                return
        response = make_response(
            request,
            200,
            to_tag=self.local_tag,
            body=self.media.local_sdp(),
            extra=[("Content-Type", "application/sdp")],
        )
        response.headers.add("Contact", str(self.ua.contact(self.peer[0])))
        self.ua.endpoint.send_response(transaction, response)
        if self.media.held != was_held:
            self._emit(HoldChanged(self.call_id, self.media.held))
            if self.on_hold is not None:
                self.on_hold(self.media.held)

    def _on_response(self, response: SipResponse) -> None:
        status = response.status
        if response.cseq.method != "INVITE":
            return  # responses to our CANCEL and BYE need no action
        if status < 200:
            if status in (180, 183) and self.state in (LegState.DIALING, LegState.RINGING):
                first = self.state is LegState.DIALING
                self._set_state("ringing")
                if first:
                    self._emit(Ringing(self.call_id))
            return
        if 200 <= status < 300:
            self._on_2xx(response)
            return
        self.final_status = status
        reason = "cancelled" if status == 487 else "rejected"
        self._finish(reason, status)

    def _on_2xx(self, response: SipResponse) -> None:
        confirmed = self.dialog is None
        if self.dialog is None:
            self.dialog = Dialog.from_uac(self.invite, response)
        ack = self.dialog.create_ack(
            self.invite.cseq.seq, via=self.ua.endpoint.new_via(self.peer[0])
        )
        self.ua.send_in_dialog(self, ack, stateless=True)
        if self.state in (LegState.DIALING, LegState.RINGING):
            self.final_status = response.status
            if self.media is not None and response.body:
                try:
                    self.media.accept_answer(response.body)
                except MediaError:
                    logger.info("call %s: unusable SDP answer, hanging up", self.call_id)
                    self.ua.loop.create_task(self.hangup(reason="failed"))
                    return
            self._set_state("answered")
            if confirmed:
                self._dialog_changed()
            self._emit(Answered(self.call_id))
            if self.end_reason:  # CANCEL crossed the 200: the call is answered, so BYE it
                self.ua.loop.create_task(self.hangup(reason=self.end_reason))

    def _on_timeout(self) -> None:
        if self.state in (LegState.DIALING, LegState.RINGING):
            self._finish("timeout", 408)
        elif self.state is LegState.ANSWERING:
            # Our 200 was never ACKed (RFC 3261 13.3.1.4): confirm and tear down with BYE.
            logger.info("call %s: no ACK for our 200, hanging up", self.call_id)
            self.ua.loop.create_task(self.hangup(reason="timeout"))

    def _dialog_changed(self) -> None:
        """Tell `UserAgent.on_dialog` the dialog was confirmed, changed what a request in it
        needs, or ended with the leg."""
        if self.dialog is None or self.ua.on_dialog is None:
            return
        self._dialog_announced = True
        try:
            self.ua.on_dialog(self)
        except Exception:  # the call goes on; only a restart would miss the dialog
            logger.exception("call %s: dialog listener failed", self.call_id)

    def _dtmf(self, digit: str, method: str) -> None:
        # One press may arrive by several routes (RFC 4733 + in-band tone, INFO + RFC 4733).
        if not self._debouncer.accept(digit, method, now=self.ua.loop.time()):
            return
        self._emit(Dtmf(self.call_id, digit, method))
        self._digits.put_nowait(digit)


def _info_digit(request: SipRequest) -> str | None:
    """SIP INFO application/dtmf-relay: `Signal=5`; application/dtmf: `5`."""
    kind = request.content_type or ""
    text = request.body.decode("latin-1", "replace")
    if kind == "application/dtmf-relay":
        for line in text.splitlines():
            name, _, value = line.partition("=")
            if name.strip().lower() == "signal" and value.strip():
                return value.strip()[0].upper()
    elif kind == "application/dtmf" and text.strip():
        return text.strip()[0].upper()
    return None


class UserAgent:
    """The SIP user agent core of the engine: all legs, their dialogs and RTP ports."""

    def __init__(self, config: UserAgentConfig) -> None:
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.endpoint = SipEndpoint(config.endpoint, self._on_transaction_event)
        low, high = config.rtp_ports
        self.ports = RtpPortPool(config.endpoint.host, low, high)
        self.clock = MediaClock(self.loop)
        self.calls: dict[str, Call] = {}
        """Live legs by SIP Call-ID (each leg of a bridged call has its own Call-ID)."""
        self._by_txn: dict[object, Call] = {}
        self.on_incoming: Callable[[Call], Awaitable[None] | None] | None = None
        """Gets each new incoming leg; it must ring, answer or reject it."""
        self.on_request: Callable[[SipRequest, object, Peer], bool] | None = None
        """Out-of-dialog non-INVITE requests (REGISTER...); return True when handled."""
        self.on_dialog: Callable[[Call], None] | None = None
        """Told when a leg's dialog is confirmed (2xx sent or received), when it changes what a
        request in it needs (our CSeq, the remote target) and when it ends (`call.state` is
        ENDED): what a restarted engine needs to BYE the dialogs a crash left (`Call.dialog`,
        `Call.peer`)."""
        self._waiting: dict[object, asyncio.Future[SipResponse | None]] = {}
        """Requests sent with request(), by client transaction: their final response."""
        self._watchdog: asyncio.Task[None] | None = None
        self._quality: OrderedDict[str, dict[str, Any]] = OrderedDict()
        """Media quality of ended legs by Call-ID, until `take_quality` (bounded)."""

    async def start(self) -> None:
        await self.endpoint.start()
        self._watchdog = self.loop.create_task(self._rtp_watchdog())

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        await self.endpoint.close()

    def contact(self, transport: str = "udp") -> NameAddr:
        params: dict[str, str | None] = {} if transport == "udp" else {"transport": transport}
        uri = SipUri(
            scheme="sip",
            user=None,
            password=None,
            host=self.endpoint.host,
            port=self.endpoint.port,
            params=params,
            headers={},
        )
        return NameAddr(display_name=None, uri=uri, params={})

    async def open_media(self, call: Call) -> MediaSession:
        rtp = await self.ports.open()
        return MediaSession(
            rtp, local_host=self.endpoint.host, on_dtmf=call._dtmf, clock=self.clock
        )

    def forget(self, call: Call) -> None:
        if self.calls.get(call.call_id) is call:
            del self.calls[call.call_id]
        for transaction in call.transactions:
            self._by_txn.pop(transaction, None)
        if call.media is not None:
            call.media.stop_playing()
            call.media.unbridge()
            self.ports.release(call.media.rtp)
            session = call.media.rtp.rtcp_session
            if session.source is not None or session.packets_sent:
                self._quality[call.call_id] = session.quality()
                while len(self._quality) > _QUALITY_KEPT:
                    self._quality.popitem(last=False)

    def take_quality(self, call_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The media quality of these ended legs (those that carried media), forgotten here."""
        found = {}
        for call_id in call_ids:
            quality = self._quality.pop(call_id, None)
            if quality is not None:
                found[call_id] = quality
        return found

    # -- placing calls ------------------------------------------------------------------------

    async def dial(
        self,
        target: SipUri,
        peer: Peer,
        *,
        from_: NameAddr,
        to: NameAddr | None = None,
        codecs: list[str] | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> Call:
        """Send an INVITE with our SDP offer to `peer`; progress arrives as the leg's events."""
        call_id = uuid.uuid4().hex + "@" + self.endpoint.host
        from_ = NameAddr(
            display_name=from_.display_name, uri=from_.uri, params={"tag": secrets.token_hex(6)}
        )
        to = to or NameAddr(display_name=None, uri=target, params={})
        invite = SipRequest(method="INVITE", uri=target, headers=Headers(), body=b"")
        invite.headers.add("Via", str(self.endpoint.new_via(peer[0])))
        invite.headers.add("Max-Forwards", "70")
        invite.headers.add("From", str(from_))
        invite.headers.add("To", str(to))
        invite.headers.add("Call-ID", call_id)
        invite.headers.add("CSeq", "1 INVITE")
        invite.headers.add("Contact", str(self.contact(peer[0])))
        invite.headers.add("Allow", ", ".join(sorted(self.config.endpoint.allowed_methods)))
        for name, value in headers:
            invite.headers.add(name, value)
        call = Call(self, incoming=False, invite=invite, peer=peer)
        call.media = await self.open_media(call)
        invite.body = call.media.make_offer(codecs=codecs)
        invite.headers.add("Content-Type", "application/sdp")
        self.calls[call_id] = call
        call.transaction = self.endpoint.send_request(invite, peer)
        self._own(call, call.transaction)
        return call

    async def request(self, request: SipRequest, peer: Peer) -> SipResponse | None:
        """Send a request that belongs to no live leg (e.g. a BYE in a dialog a crash left)
        through the transaction layer, retransmitted over UDP, and wait for its final response;
        None when the transaction timed out (Timer F) or the transport failed."""
        transaction = self.endpoint.send_request(request, peer)
        waiter: asyncio.Future[SipResponse | None] = self.loop.create_future()
        self._waiting[transaction] = waiter
        try:
            return await waiter
        finally:
            self._waiting.pop(transaction, None)

    def send_in_dialog(self, call: Call, request: SipRequest, *, stateless: bool = False) -> None:
        # No proxies stand between the engine and its phones: in-dialog requests go where the
        # leg's messages come from (symmetric signalling keeps NATed phones reachable).
        if stateless:
            self.endpoint.send_stateless(request, call.peer)
        else:
            self._own(call, self.endpoint.send_request(request, call.peer))

    def _own(self, call: Call, transaction: object) -> None:
        """Route the transaction's responses and timeouts to `call`."""
        self._by_txn[transaction] = call
        call.transactions.append(transaction)

    # -- SIP events ---------------------------------------------------------------------------

    def _on_transaction_event(self, event: TransactionEvent) -> None:
        waiter = self._waiting.get(getattr(event, "transaction", None))
        if waiter is not None:
            if isinstance(event, ResponseReceived) and event.response.status < 200:
                return
            if not waiter.done():
                waiter.set_result(event.response if isinstance(event, ResponseReceived) else None)
            return
        if isinstance(event, RequestReceived):
            self._on_request(event.request, event.transaction, event.peer)  # type: ignore[arg-type]
        elif isinstance(event, ResponseReceived):
            call = self._by_txn.get(event.transaction) or self.calls.get(event.response.call_id)
            if call is not None:
                call._on_response(event.response)
        elif isinstance(event, TransactionTimedOut):
            call = self._by_txn.get(event.transaction)
            if call is not None:
                call._on_timeout()

    def _on_request(self, request: SipRequest, transaction: object, peer: Peer) -> None:
        method = request.method
        call = self.calls.get(request.call_id)
        if method == "CANCEL":
            self._on_cancel(request, transaction, call)
            return
        if call is not None and (method != "INVITE" or request.to.tag):
            if (
                request.from_.tag not in (None, call.dialog.remote_tag if call.dialog else None)
                and call.incoming
            ):
                if method != "ACK":
                    self.endpoint.send_response(transaction, make_response(request, 481))
                return
            try:
                call._on_request(request, transaction)
            except SipError as exc:
                # e.g. a request for a dialog state we already left: 481, never silence.
                logger.info("call %s: %s %s refused: %s", call.call_id, method, request.uri, exc)
                if method != "ACK" and transaction is not None:
                    self.endpoint.send_response(transaction, make_response(request, 481))
            return
        if request.to.tag:
            # In-dialog request for a dialog we do not know (RFC 3261 12.2.2).
            if method != "ACK":
                self.endpoint.send_response(transaction, make_response(request, 481))
            return
        if method == "INVITE":
            if call is not None:
                return  # a retransmission the transaction layer let through: ignore
            incoming = Call(self, incoming=True, invite=request, peer=peer)
            incoming.transaction = transaction
            self.calls[request.call_id] = incoming
            self._own(incoming, transaction)
            self._dispatch_incoming(incoming)
            return
        if self.on_request is not None and self.on_request(request, transaction, peer):
            return
        if method == "OPTIONS":
            response = make_response(
                request,
                200,
                extra=[
                    ("Allow", ", ".join(sorted(self.config.endpoint.allowed_methods))),
                    ("Accept", "application/sdp"),
                ],
            )
            self.endpoint.send_response(transaction, response)
        elif method != "ACK":
            self.endpoint.send_response(
                transaction,
                make_response(
                    request, 405, extra=[("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER")]
                ),
            )

    def _dispatch_incoming(self, call: Call) -> None:
        if self.on_incoming is None:
            call.reject(480)
            return
        try:
            result = self.on_incoming(call)
        except Exception:
            logger.exception("incoming call handler failed")
            call.reject(500)
            return
        if asyncio.iscoroutine(result):
            task = self.loop.create_task(result)
            task.add_done_callback(lambda t: _report_failure(t, call))

    def _on_cancel(self, request: SipRequest, transaction: object, call: Call | None) -> None:
        if call is None or not call.incoming or call.invite.cseq.seq != request.cseq.seq:
            self.endpoint.send_response(transaction, make_response(request, 481))
            return
        self.endpoint.send_response(transaction, make_response(request, 200))
        if call.state in (LegState.INCOMING, LegState.RINGING):
            call._respond(487)
            call._finish("cancelled", 487)

    async def _rtp_watchdog(self) -> None:
        """Send the RTCP reports the legs owe, and hang up answered legs whose far end stopped
        sending RTP (a dead phone leaves no BYE)."""
        timeout = self.config.rtp_inactivity_timeout
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            now = self.loop.time()
            self.ports.send_reports(now)
            for call in list(self.calls.values()):
                if call.state is not LegState.CONNECTED or call.media is None:
                    continue
                last = call.media.rtp.last_received or call.media.connected_at or now
                if call.media.connected_at is None:
                    call.media.connected_at = now
                if now - last > timeout and not call.media.held:
                    logger.info("call %s: no RTP for %.0f s, hanging up", call.call_id, now - last)
                    await call.hangup(reason="rtp-timeout")


def _report_failure(task: asyncio.Task[None], call: Call) -> None:
    if task.cancelled() or task.exception() is None:
        return
    logger.error("incoming call handler failed", exc_info=task.exception())
    if call.state in (LegState.INCOMING, LegState.RINGING):
        call.reject(500)
