"""The Call facade: one INVITE dialog leg with its anchored RTP port, seen as typed events.

A `UserAgent` owns the SIP endpoint and every leg. Features (pbx, dialer, ivr) get inbound legs
through `on_incoming`, place outbound legs with `dial()`, and join two legs with `bridge()`; they
never touch SIP messages themselves (docs/architecture.md 4).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import logging
import secrets
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from telephony.call import Answered, CallEvent, Dtmf, Ended, HoldChanged, Ringing
from telephony.call.session import (
    Effect,
    InfoDigit,
    InviteSession,
    ReferReceived,
    Respond,
    Role,
    Send,
    SendAck,
    SendInvite,
    SessionState,
)
from telephony.call.session_timer import DISABLED, SessionTimerConfig
from telephony.media import DtmfDetector, DtmfDetectorConfig, Frame, FrameSource, dtmf_tone
from telephony.sip import (
    Dialog,
    Headers,
    NameAddr,
    RequestReceived,
    ResponseReceived,
    SipError,
    SipRequest,
    SipResponse,
    SipUri,
    TransactionEvent,
    TransactionTimedOut,
    TransportFailed,
    make_response,
)
from telephony.sip.challenge import DigestClient

from .clock import MediaClock
from .dtmf import DtmfDebouncer
from .endpoint import WEBSOCKET_TRANSPORTS, EndpointConfig, Peer, SipEndpoint
from .media_session import MediaBridge, MediaError, MediaSession, check_offer
from .rtp import RtpPortPool
from .tasks import TaskSet, current_call
from .webrtc import new_certificate

logger = logging.getLogger(__name__)

# Ended legs whose quality no call summary has taken yet (legs outside any summary age out).
_QUALITY_KEPT = 4096


# The leg's state is its INVITE session's (telephony.call): incoming, calling, ringing,
# answering, connected, ended.
LegState = SessionState


@dataclass(frozen=True)
class UserAgentConfig:
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    """Where SIP listens and the transaction timers."""
    rtp_ports: tuple[int, int] = (20000, 29999)
    """Local RTP port range of the anchored legs."""
    rtp_inactivity_timeout: float = 30.0
    """An answered leg with no RTP for this long is hung up with BYE."""
    session_timer: SessionTimerConfig = field(default_factory=SessionTimerConfig)
    """RFC 4028 session timers of every leg (`UserAgent.session_timers_for` turns them off for
    some peers, `dial(session_timer=...)` sets one leg's)."""
    srtp: str = "off"
    """SRTP policy of a leg nobody chose one for (off, optional, required: see
    telephony.call.offer_answer); features set it per leg (`Call.set_srtp`, `dial(srtp=)`)."""


class Call:
    """One leg: its sans-IO InviteSession (telephony.call) driven over the SIP endpoint, its
    anchored RTP, and what features see: typed events, digits, play/listen. Incoming legs:
    ring()/answer()/reject(); outgoing legs come from UserAgent.dial()."""

    def __init__(
        self,
        ua: UserAgent,
        *,
        incoming: bool,
        invite: SipRequest,
        peer: Peer,
        session_timer: SessionTimerConfig | None = None,
        digest: DigestClient | None = None,
    ) -> None:
        self.ua = ua
        self.incoming = incoming
        self.peer = peer
        self.call_id = invite.call_id
        self.session = InviteSession(
            invite,
            Role.UAS if incoming else Role.UAC,
            local_tag=secrets.token_hex(6) if incoming else (invite.from_.tag or ""),
            # RFC 3261 8.1.1.8, 12.1.1: a sips: request gets a sips: Contact.
            contact=ua.contact(peer, sips=_is_sips(invite.uri)),
            new_via=functools.partial(ua.endpoint.new_via, peer),
            session_timer=session_timer or ua.session_timer_of(invite, peer, incoming=incoming),
            digest=digest,
            capabilities=ua.capabilities(),
        )
        self._timer: asyncio.TimerHandle | None = None
        """The session's next timer (RFC 4028 refresh or expiry), armed at get_timer()."""
        self.media: MediaSession | None = None
        self.transaction: object | None = None
        """The INVITE server (incoming) or client (outgoing) transaction."""
        self.transactions: list[object] = []
        """Every transaction of this leg, forgotten with it."""
        self.srtp = ua.config.srtp
        """The leg's SRTP policy (off, optional, required), fixed before its media opens."""
        self.offer_error: MediaError | None = None
        """Why the SDP offer of an incoming INVITE cannot be answered (checked on arrival,
        before the leg is handed to `on_incoming`, and again by `set_srtp`); None when it can,
        or carries no offer."""
        self._judged_under: str | None = None
        """The SRTP policy `offer_error` was judged under (the INVITE's body does not change)."""
        self._events: asyncio.Queue[CallEvent] = asyncio.Queue()
        self._digits: asyncio.Queue[str] = asyncio.Queue()
        self._debouncer = DtmfDebouncer()
        self._inband: DtmfDetector | None = None
        self._inband_users = 0
        self.on_hold: Callable[[bool], None] | None = None
        """Told when the far end puts this leg on hold (True) or takes it off (False)."""
        self.on_ringing: Callable[[], None] | None = None
        """Outgoing leg: told once, when the far end first rings (its first 180/183)."""
        self.on_digit: Callable[[str, str], None] | None = None
        """Told each key press from the far end (digit, method: rfc4733, info, inband), once
        (after the routes are merged): the bridge relays it to the other party."""
        self.on_refer: Callable[[ReferReceived], int | None] | None = None
        """Asked when the far end sends REFER (a phone transferring the call): None accepts
        it (202; the transfer's progress then goes back with `notify_transfer`), a status
        refuses it. Unset: 603 Declined."""
        self.progressed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Outgoing leg: done at the far end's first ringing (180/183) or answer, whichever
        comes first (never, when it refuses or never answers)."""
        self.ended = asyncio.get_running_loop().create_future()
        self._dialog_announced: tuple[int, str] | None = None
        """What `UserAgent.on_dialog` last heard of the dialog (our CSeq, the remote target);
        None until the dialog is confirmed. Once it has heard, it hears the end too."""

    def __repr__(self) -> str:
        return f"<Call {self.call_id} {'in' if self.incoming else 'out'} {self.state.value}>"

    # -- the session's view --------------------------------------------------------------------

    @property
    def invite(self) -> SipRequest:
        """The INVITE of this leg (for an outgoing leg, the last sent: a challenge answered
        sends it again with credentials and the next CSeq)."""
        return self.session.invite

    @property
    def state(self) -> SessionState:
        return self.session.state

    @property
    def local_tag(self) -> str:
        return self.session.local_tag

    @property
    def dialog(self) -> Dialog | None:
        return self.session.dialog

    @property
    def final_status(self) -> int | None:
        return self.session.final_status

    @property
    def end_reason(self) -> str | None:
        return self.session.end_reason

    def _apply(
        self,
        effects: list[Effect],
        request: SipRequest | None = None,
        transaction: object | None = None,
    ) -> None:
        """Carry out what the session decided, in order. `request` and `transaction`: the
        request being handled and its server transaction (for responses to it)."""
        for effect in effects:
            if isinstance(effect, Respond):
                target = transaction if effect.to is request else self.transaction
                self.ua.endpoint.send_response(target, effect.response)
            elif isinstance(effect, Send):
                self.ua.send_in_dialog(self, effect.request)
            elif isinstance(effect, SendAck):
                self.ua.send_in_dialog(self, effect.request, stateless=True)
            elif isinstance(effect, SendInvite):  # the INVITE again (a 422, a 401/407)
                self.transaction = self.ua.endpoint.send_request(effect.request, self.peer)
                self.ua._own(self, self.transaction)
            elif isinstance(effect, InfoDigit):
                self._dtmf(effect.digit, "info")
            elif isinstance(effect, ReferReceived):
                self._referred(effect, transaction)
            elif isinstance(effect, Ended):
                self._finished(effect)
            else:
                self._events.put_nowait(effect)
                if isinstance(effect, Ringing | Answered) and not self.progressed.done():
                    self.progressed.set_result(None)
                if isinstance(effect, HoldChanged) and self.on_hold is not None:
                    self.on_hold(effect.held)
                elif isinstance(effect, Ringing) and self.on_ringing is not None:
                    on_ringing, self.on_ringing = self.on_ringing, None
                    on_ringing()
        dialog = self.dialog
        if dialog is not None and self.state is not LegState.ENDED:
            # Confirmed (2xx sent or received), our CSeq used, or a target refresh: what a
            # request in the dialog needs changed.
            now = (dialog.local_seq, str(dialog.remote_target))
            if now != self._dialog_announced:
                self._dialog_changed()
        self._arm_timer()

    def _arm_timer(self) -> None:
        deadline = self.session.get_timer()
        if self._timer is not None and (deadline is None or self._timer.when() != deadline):
            self._timer.cancel()
            self._timer = None
        if deadline is not None and self._timer is None:
            self._timer = self.ua.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._apply(self.session.handle_timer(self.ua.loop.time()))

    def _finished(self, event: Ended) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.ua.forget(self)
        if self._dialog_announced is not None:
            self._dialog_changed()
        self._events.put_nowait(event)
        if not self.ended.done():
            self.ended.set_result(event.reason)

    # -- events ------------------------------------------------------------------------------

    async def next_event(self, timeout: float | None = None) -> CallEvent:
        return await asyncio.wait_for(self._events.get(), timeout)

    async def events(self) -> AsyncIterator[CallEvent]:
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, Ended):
                return

    # -- incoming leg ------------------------------------------------------------------------

    def ring(self) -> None:
        self._apply(self.session.ring())

    def reject(
        self, status: int, reason: str | None = None, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Final non-2xx to an incoming INVITE; ends the leg."""
        self._apply(self.session.reject(status, reason, headers))

    def set_srtp(self, policy: str) -> None:
        """Choose an incoming leg's SRTP policy once the caller is known (an account's or a
        trunk's), before answering: the offer is judged again under it (`offer_error`; a plain
        RTP offer under `required` gets 488 from `refuse_offer`)."""
        if self.media is not None:
            raise RuntimeError(f"{self!r}: the SRTP policy is fixed once media is open")
        self.srtp = policy
        if self.incoming and self.invite.body and policy != self._judged_under:
            self.offer_error = _judge_offer(self.invite.body, policy)
            self._judged_under = policy

    def refuse_offer(self) -> int:
        """Answer an INVITE whose offer is unacceptable (`offer_error`) with 488 and a Warning
        saying why; returns the status sent."""
        error = self.offer_error or MediaError("no offer to refuse")
        self.reject(error.status_code, headers=[error.warning_header(self.ua.endpoint.host)])
        return error.status_code

    async def answer(self, *, codecs: list[str] | None = None) -> None:
        """Send 200 OK with our SDP answer; the leg is CONNECTED once the ACK arrives."""
        if self.media is None:
            self.media = await self.ua.open_media(self)
            self.session.negotiator = self.media
        if self.invite.body:
            self.media.accept_offer(self.invite.body, codecs=codecs)
        else:
            # Offer-less INVITE (RFC 3261 13.2.1): we offer in the 200, the answer comes in the ACK.
            self.media.make_offer(codecs=codecs)
        self._apply(self.session.answer(now=self.ua.loop.time()))

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
            if self.media.peer is not None:
                await self.media.relay_dtmf(digit)  # inside the stream relayed to the phone
            else:
                await self.media.send_dtmf(digit)
        elif method == "info":
            body = f"Signal={digit}\r\nDuration=100\r\n".encode()
            self._apply(self.session.info("application/dtmf-relay", body))
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
        self._apply(self.session.hangup(reason))

    def cancel(self, *, reason: str = "cancelled") -> None:
        """CANCEL an outgoing INVITE (RFC 3261 9.1); the 487 then ends the leg. Once only."""
        self._apply(self.session.cancel(reason))

    # -- SIP input from the UserAgent -----------------------------------------------------------

    def _on_request(self, request: SipRequest, transaction: object | None) -> None:
        now = self.ua.loop.time()
        self._apply(self.session.receive_request(request, now=now), request, transaction)

    def _on_cancel(self, request: SipRequest, transaction: object) -> None:
        self._apply(self.session.receive_cancel(request), request, transaction)

    def _on_response(self, response: SipResponse) -> None:
        self._apply(self.session.receive_response(response, now=self.ua.loop.time()))

    def _on_timeout(self, transaction: object, *, transport_failed: bool = False) -> None:
        if transaction is self.transaction:
            self._apply(self.session.timeout(transport_failed=transport_failed))
        elif isinstance(request := getattr(transaction, "request", None), SipRequest):
            # A session refresh that fails so ends the call; a CANCEL, BYE or INFO, nothing.
            self._apply(self.session.request_timed_out(request))

    def _referred(self, refer: ReferReceived, transaction: object | None) -> None:
        status: int | None = 603
        if self.on_refer is not None:
            try:
                status = self.on_refer(refer)
            except Exception:  # the call goes on; the transfer does not
                logger.exception("call %s: REFER handler failed", self.call_id)
                status = 500
        if status is None:
            self._apply(self.session.accept_refer(refer.request), refer.request, transaction)
        else:
            self._apply(
                self.session.reject_refer(refer.request, status), refer.request, transaction
            )

    def notify_transfer(self, status: int, reason: str | None = None) -> None:
        """Report the progress of a transfer this leg asked for by REFER (a sipfrag NOTIFY);
        a final status ends its subscription. Nothing after that or once the leg ended."""
        self._apply(self.session.notify_refer(status, reason))

    def _dialog_changed(self) -> None:
        """Tell `UserAgent.on_dialog` the dialog was confirmed, changed what a request in it
        needs, or ended with the leg."""
        dialog = self.dialog
        if dialog is None or self.ua.on_dialog is None:
            return
        self._dialog_announced = (dialog.local_seq, str(dialog.remote_target))
        try:
            self.ua.on_dialog(self)
        except Exception:  # the call goes on; only a restart would miss the dialog
            logger.exception("call %s: dialog listener failed", self.call_id)

    def _dtmf(self, digit: str, method: str) -> None:
        # One press may arrive by several routes (RFC 4733 + in-band tone, INFO + RFC 4733).
        if not self._debouncer.accept(digit, method, now=self.ua.loop.time()):
            return
        self._events.put_nowait(Dtmf(self.call_id, digit, method))
        self._digits.put_nowait(digit)
        if self.on_digit is not None:
            self.on_digit(digit, method)


def dtmf_route(leg: Call) -> str:
    """How a key press reaches `leg`'s phone: RFC 4733 when it offered telephone-event, else
    SIP INFO when its INVITE allowed INFO (or we placed the leg: phones and trunks take it),
    else an in-band tone pair."""
    if leg.media is not None and leg.media.remote_dte_pt is not None:
        return "rfc4733"
    allow = leg.invite.headers.get_all("Allow") if leg.incoming else []
    if not leg.incoming or not allow or "INFO" in (m.strip().upper() for m in allow):
        return "info"
    return "inband"


def bridge(a: Call, b: Call) -> MediaBridge:
    """Relay the media of two answered Calls to each other."""
    if a.media is None or b.media is None:
        raise MediaError("both calls need media to be bridged")
    return MediaBridge(a.media, b.media)


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
        self.on_dialog_request: Callable[[SipRequest, object, Peer], bool] | None = None
        """Requests in a dialog that is no call (a subscription's SUBSCRIBE refresh); return
        True when handled, else they get 481."""
        self.on_dialog: Callable[[Call], None] | None = None
        """Told when a leg's dialog is confirmed (2xx sent or received), when it changes what a
        request in it needs (our CSeq, the remote target) and when it ends (`call.state` is
        ENDED): what a restarted engine needs to BYE the dialogs a crash left (`Call.dialog`,
        `Call.peer`)."""
        self.session_timers_for: Callable[[SipRequest, Peer, bool], bool] | None = None
        """Asked (INVITE, peer, incoming) for each new leg: False turns session timers off for
        it (an account or trunk whose peer misbehaves with them), also the 422 on arrival."""
        self.srtp_for: Callable[[SipUri, Peer], str | None] | None = None
        """Asked the SRTP policy of a leg `dial()` places without one (the account or trunk
        behind the target); None or no answer: the configured default."""
        self._waiting: dict[object, asyncio.Future[SipResponse | None]] = {}
        """Requests sent with request(), by client transaction: their final response."""
        self._watchdog: asyncio.Task[None] | None = None
        self._quality: OrderedDict[str, dict[str, Any]] = OrderedDict()
        """Media quality of ended legs by Call-ID, until `take_quality` (bounded)."""
        self._tasks = TaskSet("user-agent")
        """Hang-ups decided in a transport callback (a WebSocket closed)."""
        self.dtls_certificate = new_certificate()
        """Our DTLS certificate for WebRTC legs (its fingerprint is in their SDP)."""

    async def start(self) -> None:
        await self.endpoint.start()
        self.endpoint.flow_closed.append(self._flow_closed)
        self._watchdog = self.loop.create_task(self._rtp_watchdog())

    def _flow_closed(self, peer: Peer) -> None:
        """A browser phone's WebSocket closed (a tab closed, a network gone): its calls can get
        no request any more, so they end now (the other party gets its BYE at once, not after
        the RTP timeout)."""
        for call in list(self.calls.values()):
            if call.peer == peer and call.state is not LegState.ENDED:
                logger.info("call %s: its WebSocket closed, hanging up", call.call_id)
                self._tasks.spawn(call.hangup(reason="flow-closed"))

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        await self.endpoint.close()

    def contact(self, peer: Peer, *, sips: bool = False) -> NameAddr:
        """Our Contact for a dialog with `peer`: its transport, the address it can reach;
        `sips` for a dialog set up by a sips: URI (the transport is TLS then, and the URI says
        so by its scheme)."""
        transport = peer[0]
        params: dict[str, str | None] = {}
        if transport != "udp" and not (sips and transport == "tls"):
            params["transport"] = transport
        uri = SipUri(
            scheme="sips" if sips else "sip",
            user=None,
            password=None,
            host=self.endpoint.advertised_host(peer),
            port=self.endpoint.port_for(transport),
            params=params,
            headers={},
        )
        return NameAddr(display_name=None, uri=uri, params={})

    def session_timer_of(
        self, invite: SipRequest, peer: Peer, *, incoming: bool
    ) -> SessionTimerConfig:
        """The session timer settings of a new leg: the agent's, unless `session_timers_for`
        turns them off."""
        decide = self.session_timers_for
        if decide is not None and not decide(invite, peer, incoming):
            return DISABLED
        return self.config.session_timer

    async def open_media(self, call: Call) -> MediaSession:
        rtp = await self.ports.open()
        # c=/o= carry the address this leg's peer reaches (its RTP goes where its SIP goes).
        return MediaSession(
            rtp,
            local_host=self.endpoint.advertised_address(call.peer),
            on_dtmf=call._dtmf,
            clock=self.clock,
            srtp=call.srtp,
            certificate=self.dtls_certificate,
        )

    def forget(self, call: Call) -> None:
        if self.calls.get(call.call_id) is call:
            del self.calls[call.call_id]
            if call.incoming:  # a call that came in is over: what it cost is all spent
                self.endpoint.overload.call_ended()
        for transaction in call.transactions:
            if not _may_be_challenged(call, transaction):
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
        session_timer: SessionTimerConfig | None = None,
        srtp: str | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> Call:
        """Send an INVITE with our SDP offer to `peer`; progress arrives as the leg's events.
        `session_timer`: this leg's RFC 4028 settings instead of the agent's (DISABLED: off).
        `srtp`: the leg's SRTP policy; None asks `srtp_for` (else the configured default).
        With `credentials` (username, password) the leg answers a provider's 401/407."""
        call_id = uuid.uuid4().hex + "@" + self.endpoint.host
        from_uri = from_.uri
        if isinstance(from_uri, SipUri) and from_uri.host == self.endpoint.host:
            # An identity on "our host" names the address this peer reaches us at (a carrier
            # checking the From host sees the NAT's address, an IPv6 peer our IPv6 one).
            from_uri = dataclasses.replace(from_uri, host=self.endpoint.advertised_host(peer))
        from_ = NameAddr(
            display_name=from_.display_name, uri=from_uri, params={"tag": secrets.token_hex(6)}
        )
        to = to or NameAddr(display_name=None, uri=target, params={})
        invite = SipRequest(method="INVITE", uri=target, headers=Headers(), body=b"")
        invite.headers.add("Via", str(self.endpoint.new_via(peer)))
        invite.headers.add("Max-Forwards", "70")
        invite.headers.add("From", str(from_))
        invite.headers.add("To", str(to))
        invite.headers.add("Call-ID", call_id)
        invite.headers.add("CSeq", "1 INVITE")
        invite.headers.add("Contact", str(self.contact(peer, sips=_is_sips(target))))
        for name, value in self.capabilities():
            invite.headers.add(name, value)
        for name, value in headers:
            invite.headers.add(name, value)
        digest = DigestClient(*credentials) if credentials is not None else None
        call = Call(
            self,
            incoming=False,
            invite=invite,
            peer=peer,
            session_timer=session_timer,
            digest=digest,
        )
        if srtp is None and self.srtp_for is not None:
            srtp = self.srtp_for(target, peer)
        call.srtp = srtp or self.config.srtp
        if peer[0] in WEBSOCKET_TRANSPORTS:
            call.srtp = "dtls"  # a browser phone: WebRTC media is all it takes
        call.media = call.session.negotiator = await self.open_media(call)
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

    def send_in_dialog(
        self, call: Call, request: SipRequest, *, stateless: bool = False
    ) -> object | None:
        """Send a request of `call`'s (its client transaction, None when stateless)."""
        # No proxies stand between the engine and its phones: in-dialog requests go where the
        # leg's messages come from (symmetric signalling keeps NATed phones reachable).
        if stateless:
            self.endpoint.send_stateless(request, call.peer)
            return None
        transaction = self.endpoint.send_request(request, call.peer)
        self._own(call, transaction)
        return transaction

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
                if event.response.status >= 200:
                    self._release_ended(call, event.transaction)
        elif isinstance(event, TransactionTimedOut | TransportFailed):
            call = self._by_txn.get(event.transaction)
            if call is not None:
                failed = isinstance(event, TransportFailed)
                call._on_timeout(event.transaction, transport_failed=failed)
                self._release_ended(call, event.transaction)

    def _release_ended(self, call: Call, transaction: object) -> None:
        """An ended leg's request (a BYE kept routed for its challenge) got its answer."""
        if self.calls.get(call.call_id) is not call and call.state is LegState.ENDED:
            self._by_txn.pop(transaction, None)

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
            if self.on_dialog_request is not None and self.on_dialog_request(
                request, transaction, peer
            ):
                return
            # In-dialog request for a dialog we do not know (RFC 3261 12.2.2).
            if method != "ACK":
                self.endpoint.send_response(transaction, make_response(request, 481))
            return
        if method == "INVITE":
            if call is not None:
                return  # a retransmission the transaction layer let through: ignore
            incoming = Call(self, incoming=True, invite=request, peer=peer)
            incoming.transaction = transaction
            if request.body:
                # Judged before any routing: whoever takes the leg knows at once whether it
                # can ever be answered, and no phone rings for a call that cannot be.
                incoming.offer_error = _judge_offer(request.body, incoming.srtp)
                incoming._judged_under = incoming.srtp
            self.calls[request.call_id] = incoming
            self._own(incoming, transaction)
            refused = incoming.session.admit()  # a Session-Expires below our Min-SE: 422
            if refused:
                incoming._apply(refused)
                return
            self._dispatch_incoming(incoming)
            return
        if self.on_request is not None and self.on_request(request, transaction, peer):
            return
        if method == "OPTIONS":
            response = make_response(
                request,
                200,
                extra=[
                    *self.capabilities(),
                    ("Accept", "application/sdp"),
                    *[("Supported", tag) for tag in sorted(self.config.endpoint.supported)],
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

    def capabilities(self) -> list[tuple[str, str]]:
        """Allow, and Allow-Events when we take subscriptions: what OPTIONS answers, INVITEs
        and 2xx to INVITEs say of us."""
        endpoint = self.config.endpoint
        found = [("Allow", ", ".join(sorted(endpoint.allowed_methods)))]
        if endpoint.allow_events:
            found.append(("Allow-Events", ", ".join(sorted(endpoint.allow_events))))
        return found

    def _dispatch_incoming(self, call: Call) -> None:
        if self.on_incoming is None:
            call.reject(480)
            return
        # The handler runs in a context of its own naming the call; the tasks it starts keep it.
        context = contextvars.copy_context()
        context.run(current_call.set, call.call_id)
        try:
            result = context.run(self.on_incoming, call)
        except Exception:
            logger.exception("incoming call handler failed")
            call.reject(500)
            return
        if asyncio.iscoroutine(result):
            task = self.loop.create_task(result, context=context)
            task.add_done_callback(lambda t: _report_failure(t, call))

    def _on_cancel(self, request: SipRequest, transaction: object, call: Call | None) -> None:
        if call is None or not call.incoming or call.invite.cseq.seq != request.cseq.seq:
            # RFC 3261 9.2: a CANCEL matching an INVITE transaction gets 200 even once that
            # INVITE has its final answer (the CANCEL then changes nothing); 481 matches none.
            matched = self.endpoint.layer.find_invite_server_txn(request) is not None
            self.endpoint.send_response(
                transaction, make_response(request, 200 if matched else 481)
            )
            return
        call._on_cancel(request, transaction)

    async def _rtp_watchdog(self) -> None:
        """Send the RTCP reports the legs owe, and hang up answered legs whose far end stopped
        sending RTP (a dead phone leaves no BYE) or whose DTLS-SRTP handshake failed."""
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
                webrtc = call.media.webrtc
                if webrtc is not None and webrtc.dtls.failed is not None:
                    # No keys, no media ever (a wrong certificate, a failed handshake).
                    logger.info("call %s: %s, hanging up", call.call_id, webrtc.dtls.failed)
                    await call.hangup(reason="dtls-failed")
                    continue
                if now - last > timeout and not call.media.held:
                    logger.info("call %s: no RTP for %.0f s, hanging up", call.call_id, now - last)
                    await call.hangup(reason="rtp-timeout")


def _is_sips(uri: object) -> bool:
    return isinstance(uri, SipUri) and uri.scheme == "sips"


def _judge_offer(body: bytes, srtp: str) -> MediaError | None:
    """Why an incoming offer cannot be answered under the SRTP policy `srtp`, or None."""
    try:
        check_offer(body, srtp=srtp)
    except MediaError as exc:
        logger.info("unacceptable offer (srtp %s): %.200s", srtp, exc)
        return exc
    return None


def _may_be_challenged(call: Call, transaction: object) -> bool:
    """A request of an ending leg whose 401/407 the leg may still answer (its BYE to a
    provider): its transaction stays routed to the leg until the final response."""
    method = getattr(transaction, "method", None)
    return (
        call.session.digest is not None
        and method is not None
        and method != "INVITE"
        and not getattr(transaction, "terminated", True)
    )


def _report_failure(task: asyncio.Task[None], call: Call) -> None:
    if task.cancelled() or task.exception() is None:
        return
    logger.error("incoming call handler failed", exc_info=task.exception())
    if call.state in (LegState.INCOMING, LegState.RINGING):
        call.reject(500)
