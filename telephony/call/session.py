"""The INVITE session of one call leg, sans-IO (RFC 3261 13-15, RFC 6026): states and inputs in a
table, requests and responses in, messages to send and typed call events out.

A session never touches a socket, a transaction or a clock. The layer below (the asyncio
`Call` facade) feeds it what the transaction layer delivered and carries out what it returns:

- `Respond(to, response)`: send `response` in the server transaction of the request `to`;
- `Send(request)`: send `request` in a new client transaction (BYE, CANCEL, INFO);
- `SendAck(request)`: send the ACK of a 2xx outside any transaction (RFC 3261 13.2.2.4);
- `SendInvite(request)`: send `request` as the leg's INVITE, in a new client transaction that
  replaces the one before (the INVITE again after a 422, RFC 4028 7.4);
- a `CallEvent` (Ringing, Answered, HoldChanged, Ended) for the features above, and
  `InfoDigit` for a key pressed by SIP INFO (the facade merges it with the other DTMF routes);
- `ReferReceived(request)`: the far end asks us to transfer the call (REFER, RFC 3515). It gets
  no answer yet: the layer above decides at once with `accept_refer` (202, then NOTIFYs of the
  implicit subscription through `notify_refer`, message/sipfrag) or `reject_refer`.

The session description side of offer/answer is the `Negotiator` passed in (the leg's media
session): the session decides *when* an offer or answer is taken or made, the negotiator *what*
it contains.

Session timers (RFC 4028, `session_timer.py`): time is passed in. The methods that can start
or restart the timer take `now` (`answer`, `receive_request`, `receive_response`); the layer
below calls `handle_timer(now)` when `get_timer()` says, which refreshes by re-INVITE when we
are the refresher and hangs up with BYE ("session-expired") when no refresh came.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from telephony.sip import (
    Dialog,
    NameAddr,
    RemoteProtocolError,
    SipError,
    SipRequest,
    SipResponse,
    SipUri,
    Via,
    make_response,
)
from telephony.sip.challenge import DigestClient
from telephony.sip.message import reason_phrase
from telephony.sip.transaction import build_cancel

from .events import Answered, CallEvent, Ended, HoldChanged, Ringing
from .session_timer import DISABLED, IntervalTooSmall, SessionTimer, SessionTimerConfig, TimerDue

logger = logging.getLogger(__name__)

__all__ = [
    "ANSWERED_ELSEWHERE",
    "PICKED_UP",
    "TRANSITIONS",
    "Effect",
    "InfoDigit",
    "InviteSession",
    "Negotiator",
    "OfferRejected",
    "ReferReceived",
    "Replaces",
    "Respond",
    "Role",
    "Send",
    "SendAck",
    "SendInvite",
    "SessionInput",
    "SessionState",
]


ANSWERED_ELSEWHERE = "answered-elsewhere"
"""The hang-up reason of a forked INVITE that another phone answered: its CANCEL says so."""
PICKED_UP = "picked-up"
"""The hang-up reason of a ringing INVITE another agent picked up: its CANCEL says so too."""
_COMPLETED_ELSEWHERE = frozenset({ANSWERED_ELSEWHERE, PICKED_UP})


class Role(enum.Enum):
    UAC = "uac"
    """We sent the INVITE."""
    UAS = "uas"
    """We received it."""


class SessionState(enum.Enum):
    INCOMING = "incoming"
    """UAS: INVITE received, nothing sent beyond 100 Trying."""
    CALLING = "calling"
    """UAC: INVITE sent, no ringing yet."""
    RINGING = "ringing"
    """180/183 sent (UAS) or received (UAC)."""
    ANSWERING = "answering"
    """UAS: 2xx sent, waiting for the ACK."""
    CONNECTED = "connected"
    ENDED = "ended"


class SessionInput(enum.Enum):
    # Local decisions.
    RING = "ring"
    ANSWER = "answer"
    REJECT = "reject"
    HANGUP = "hangup"
    # From the far end, or the transaction layer.
    PROVISIONAL = "provisional"
    """180/183 to our INVITE."""
    SUCCESS = "success"
    """2xx to our INVITE (the first one)."""
    FAILURE = "failure"
    """300-699 to our INVITE."""
    ACK = "ack"
    """The ACK of our 2xx."""
    BYE = "bye"
    CANCEL = "cancel"
    """The far end cancelled its INVITE."""
    TIMEOUT = "timeout"
    """The INVITE transaction timed out (UAC: no final answer; UAS: no ACK for our 2xx)."""


_S, _I, _UAS, _UAC = SessionState, SessionInput, Role.UAS, Role.UAC
_EARLY_UAS = (_S.INCOMING, _S.RINGING)
_EARLY_UAC = (_S.CALLING, _S.RINGING)
#: (role, state, input) -> next state. A triple not in the table is not a transition: a local
#: decision (ring, answer) there is a bug in the caller and raises; anything from the far end is
#: answered as the RFCs say (a request gets its error status) and changes nothing. A UAC that
#: hangs up while its INVITE rings sends CANCEL and stays put until the 487 (or a 2xx) comes.
#: tests/telephony/call/test_session.py drives every triple.
TRANSITIONS: dict[tuple[Role, SessionState, SessionInput], SessionState] = {
    (_UAS, _S.INCOMING, _I.RING): _S.RINGING,
    (_UAS, _S.RINGING, _I.RING): _S.RINGING,
    **{(_UAS, s, _I.ANSWER): _S.ANSWERING for s in _EARLY_UAS},
    **{(_UAS, s, _I.REJECT): _S.ENDED for s in _EARLY_UAS},
    **{(_UAS, s, _I.CANCEL): _S.ENDED for s in _EARLY_UAS},
    **{(_UAS, s, _I.BYE): _S.ENDED for s in _EARLY_UAS},  # BYE in the early dialog (15.1.2)
    (_UAS, _S.ANSWERING, _I.ACK): _S.CONNECTED,
    (_UAS, _S.ANSWERING, _I.TIMEOUT): _S.ENDED,  # no ACK (13.3.1.4): BYE
    (_UAS, _S.ANSWERING, _I.BYE): _S.ENDED,
    # Our hang-up before the ACK: the BYE waits for the ACK or its timeout (RFC 3261 15).
    (_UAS, _S.ANSWERING, _I.HANGUP): _S.ANSWERING,
    (_UAS, _S.CONNECTED, _I.BYE): _S.ENDED,
    **{(_UAS, s, _I.HANGUP): _S.ENDED for s in SessionState if s not in (_S.ENDED, _S.ANSWERING)},
    **{(_UAC, s, _I.PROVISIONAL): _S.RINGING for s in _EARLY_UAC},
    **{(_UAC, s, _I.SUCCESS): _S.CONNECTED for s in _EARLY_UAC},
    **{(_UAC, s, _I.FAILURE): _S.ENDED for s in _EARLY_UAC},
    **{(_UAC, s, _I.TIMEOUT): _S.ENDED for s in _EARLY_UAC},
    (_UAC, _S.CONNECTED, _I.BYE): _S.ENDED,
    (_UAC, _S.CONNECTED, _I.HANGUP): _S.ENDED,
}


class OfferRejected(Exception):
    """An offer or answer the negotiator cannot take; `status_code` is the SIP answer and
    `warning` its RFC 3261 20.43 Warning code and text (fixed texts: the offending SDP is the
    peer's own input and never echoed back)."""

    status_code = 488

    def __init__(self, message: str, *, warning: tuple[int, str] | None = None) -> None:
        super().__init__(message)
        self.warning = warning or (399, "Unacceptable session description")

    def warning_header(self, host: str) -> tuple[str, str]:
        code, text = self.warning
        return ("Warning", f'{code} {host} "{text}"')


class Negotiator(Protocol):
    """The media side of offer/answer (RFC 3264), as the session needs it."""

    @property
    def held(self) -> bool:
        """The far end's last offer put the stream on hold."""
        ...

    @property
    def codec_name(self) -> str: ...

    def accept_offer(self, body: bytes, *, codecs: list[str] | None = None) -> None:
        """Take the far end's offer; raises OfferRejected."""
        ...

    def accept_answer(self, body: bytes) -> None:
        """Take the far end's answer to our offer; raises OfferRejected."""
        ...

    def local_sdp(self) -> bytes:
        """Our current offer or answer."""
        ...


@dataclass(frozen=True)
class Respond:
    to: SipRequest
    response: SipResponse


@dataclass(frozen=True)
class Send:
    request: SipRequest


@dataclass(frozen=True)
class SendAck:
    request: SipRequest


@dataclass(frozen=True)
class SendInvite:
    request: SipRequest


@dataclass(frozen=True)
class InfoDigit:
    digit: str


@dataclass(frozen=True)
class ReferReceived:
    """A REFER in the dialog (RFC 3515): transfer the far end to `refer_to`. With `replaces`
    (RFC 3891: Call-ID, to-tag, from-tag of a dialog the transfer target has with the
    transferor) it is an attended transfer."""

    request: SipRequest
    refer_to: NameAddr
    replaces: Replaces | None
    referred_by: str | None


@dataclass(frozen=True)
class Replaces:
    """A Replaces header or Refer-To `?Replaces=` parameter (RFC 3891 6.1): the dialog to take
    over, as its Call-ID and the tags seen from the side that holds it."""

    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False

    @classmethod
    def parse(cls, text: str) -> Replaces:
        """`callid;to-tag=x;from-tag=y[;early-only]`; ValueError when a part is missing."""
        call_id, *params = (part.strip() for part in text.split(";"))
        values: dict[str, str] = {}
        flags: set[str] = set()
        for param in params:
            name, eq, value = param.partition("=")
            if eq:
                values[name.strip().lower()] = value.strip()
            else:
                flags.add(name.strip().lower())
        if not call_id or "to-tag" not in values or "from-tag" not in values:
            raise ValueError(f"malformed Replaces: {text[:80]!r}")
        return cls(call_id, values["to-tag"], values["from-tag"], "early-only" in flags)

    def __str__(self) -> str:
        early = ";early-only" if self.early_only else ""
        return f"{self.call_id};to-tag={self.to_tag};from-tag={self.from_tag}{early}"


Effect = Respond | Send | SendAck | SendInvite | InfoDigit | ReferReceived | CallEvent


class InviteSession:
    """One leg's INVITE session. Construct it with the INVITE (received or about to be sent);
    call its methods with what happens; carry out the effects each returns, in order."""

    def __init__(
        self,
        invite: SipRequest,
        role: Role,
        *,
        local_tag: str,
        contact: NameAddr,
        new_via: Callable[[], Via],
        negotiator: Negotiator | None = None,
        session_timer: SessionTimerConfig = DISABLED,
        digest: DigestClient | None = None,
        capabilities: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.invite = invite
        self.capabilities = tuple(capabilities)
        """Headers of our 2xx to the INVITE that say what we can (Allow, Allow-Events)."""
        self.role = role
        self.call_id = invite.call_id
        self.local_tag = local_tag
        self.contact = contact
        self.new_via = new_via
        self.negotiator = negotiator
        self.state = SessionState.INCOMING if role is Role.UAS else SessionState.CALLING
        self.dialog: Dialog | None = None
        self.final_status: int | None = None
        """The final status of the INVITE, sent (UAS) or received (UAC)."""
        self.end_reason: str | None = None
        self.cancelling = False
        """UAC: our CANCEL is out; the 487 (or a crossing 2xx, then BYE) ends the leg."""
        self.bye_after_ack = False
        """UAS: we hung up after our 2xx, before its ACK; the ACK (or its timeout) sends BYE."""
        self.timer = SessionTimer(session_timer)
        """The leg's session timer (RFC 4028): runs once a 2xx agreed on an interval."""
        self._refresh: SipRequest | None = None
        """Our session refresh (re-INVITE) waiting for its final response."""
        self._invite_retries = 0
        self._refer_seq: int | None = None
        """CSeq of the REFER we accepted: its implicit subscription's `id` (RFC 3515 2.4.6);
        None once the final NOTIFY went out."""
        if role is Role.UAC:
            _put_headers(invite, self.timer.offer_headers())
        self.digest = digest
        """Credentials for the 401/407 challenges of a provider (UAC): the INVITE and our
        in-dialog requests are sent again with the answer, once per challenger."""
        self._in_dialog: dict[int, SipRequest] = {}
        """Our in-dialog requests awaiting a final response, by CSeq (to answer a challenge)."""

    def __repr__(self) -> str:
        return f"<InviteSession {self.call_id} {self.role.value} {self.state.value}>"

    @property
    def ended(self) -> bool:
        return self.state is SessionState.ENDED

    def _allowed(self, event: SessionInput) -> bool:
        return (self.role, self.state, event) in TRANSITIONS

    def _set_state(self, event: SessionInput) -> None:
        new = TRANSITIONS.get((self.role, self.state, event))
        if new is None:
            raise RuntimeError(f"{self!r}: {event.value} not allowed in state {self.state.value}")
        logger.debug(
            "call %s: %s --%s--> %s", self.call_id, self.state.value, event.value, new.value
        )
        self.state = new

    def _end(self, event: SessionInput, reason: str, status: int | None) -> list[Effect]:
        self._set_state(event)
        self.end_reason = self.end_reason or reason
        if self.dialog is not None and not self.dialog.terminated:
            self.dialog.terminate()
        return [Ended(self.call_id, self.end_reason, status)]

    # -- UAS decisions ------------------------------------------------------------------------

    def ring(self) -> list[Effect]:
        self._set_state(SessionInput.RING)
        return [Respond(self.invite, self._response(180))]

    def reject(
        self, status: int, reason: str | None = None, headers: Iterable[tuple[str, str]] = ()
    ) -> list[Effect]:
        """A final non-2xx to the INVITE; ends the leg. Nothing once answered or ended."""
        if not self._allowed(SessionInput.REJECT):
            return []
        self.final_status = status
        response = self._response(status, reason=reason, headers=headers)
        return [Respond(self.invite, response), *self._end(SessionInput.REJECT, "rejected", status)]

    def admit(self) -> list[Effect]:
        """What the session itself refuses of a new INVITE before anyone rings: a
        Session-Expires below our Min-SE gets 422 (RFC 4028 9). Empty when the INVITE may go on.
        """
        try:
            self.timer.check_request(self.invite)
        except IntervalTooSmall as exc:
            logger.info("call %s: %s, 422", self.call_id, exc)
            return self.reject(exc.status_code, headers=exc.headers)
        return []

    def answer(self, *, now: float | None = None) -> list[Effect]:
        """200 OK with the negotiator's SDP (an answer to the INVITE's offer, or our offer when
        the INVITE had none); CONNECTED once the ACK arrives. The session timer the INVITE
        asked for starts at `now`."""
        if self.negotiator is None:
            raise RuntimeError(f"{self!r}: answering needs a negotiator")
        if not self._allowed(SessionInput.ANSWER):
            self._set_state(SessionInput.ANSWER)  # raises: a bug in the caller
        try:
            timer_headers = self.timer.negotiate_request(self.invite, now)
        except IntervalTooSmall as exc:  # admit() was not asked first
            return self.reject(exc.status_code, headers=exc.headers)
        self._set_state(SessionInput.ANSWER)
        ok = self._response(
            200,
            headers=timer_headers,
            body=self.negotiator.local_sdp(),
            content_type="application/sdp",
        )
        self.final_status = 200
        self.dialog = Dialog.from_uas(self.invite, ok)
        # The transaction layer resends the 2xx until the ACK (RFC 3261 13.3.1.4 / RFC 6026).
        return [Respond(self.invite, ok)]

    def _response(
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
        if 100 < status < 300:
            response.headers.add("Contact", str(self.contact))
            # RFC 3261 12.1.1: the proxies that record-routed the INVITE stay on the path of
            # the caller's in-dialog requests too (the route set we keep is from the INVITE).
            for value in self.invite.headers.get_lines("Record-Route"):
                response.headers.add("Record-Route", value)
        if 200 <= status < 300:
            for name, value in self.capabilities:
                response.headers.add(name, value)
        if content_type:
            response.headers.set("Content-Type", content_type)
        return response

    # -- both roles -----------------------------------------------------------------------------

    def hangup(self, reason: str = "local-bye") -> list[Effect]:
        """BYE once answered, CANCEL while our INVITE rings, 480 (503 at shutdown) to an INVITE
        we never answered."""
        state = self.state
        if state is SessionState.ENDED:
            return []
        if state is SessionState.ANSWERING and self.role is Role.UAS and reason != "shutdown":
            # "MUST NOT send a BYE on a confirmed dialog until it has received an ACK for its
            # 2xx response or until the server transaction times out" (RFC 3261 15): the ACK
            # (or the timeout) sends it. At shutdown nothing will be left to: BYE now.
            self._set_state(SessionInput.HANGUP)
            self.end_reason = self.end_reason or reason
            self.bye_after_ack = True
            return []
        if state in (SessionState.CONNECTED, SessionState.ANSWERING) and self.dialog is not None:
            return [self._bye(), *self._end(SessionInput.HANGUP, reason, None)]
        if self.role is Role.UAS:
            status = 503 if reason == "shutdown" else 480
            self.final_status = status
            return [
                Respond(self.invite, self._response(status)),
                *self._end(SessionInput.HANGUP, reason, status),
            ]
        return self.cancel(reason)

    def cancel(self, reason: str = "cancelled") -> list[Effect]:
        """CANCEL our ringing INVITE (RFC 3261 9.1), once: the 487 then ends the leg."""
        if self.role is Role.UAS or self.state not in (SessionState.CALLING, SessionState.RINGING):
            return []
        if self.cancelling:
            return []
        self.cancelling = True
        self.end_reason = reason
        cancel = build_cancel(self.invite)
        if reason in _COMPLETED_ELSEWHERE:
            # RFC 3326, as Asterisk and FreeSWITCH send it: a phone that lost a fork (a ring
            # group, an agent's other phones) or whose call was picked up need not list it
            # as missed.
            cancel.headers.set("Reason", 'SIP;cause=200;text="Call completed elsewhere"')
        return [Send(cancel)]

    def info(self, content_type: str, body: bytes) -> list[Effect]:
        """An INFO in the dialog (DTMF relay)."""
        if self.dialog is None or self.state is not SessionState.CONNECTED:
            raise RuntimeError(f"{self!r}: INFO needs a connected call")
        request = self.dialog.create_request("INFO", via=self.new_via(), contact=None)
        request.headers.set("Content-Type", content_type)
        request.body = body
        request.headers.set("Content-Length", str(len(body)))
        return [self._send_in_dialog(request)]

    def _bye(self) -> Send:
        assert self.dialog is not None
        return self._send_in_dialog(
            self.dialog.create_request("BYE", via=self.new_via(), contact=None)
        )

    def _send_in_dialog(self, request: SipRequest) -> Send:
        """Send a request of ours in the dialog (BYE, INFO, a re-INVITE or UPDATE): with
        credentials, a 401/407 to it is answered by sending it again."""
        if self.digest is not None:
            self._in_dialog[request.cseq.seq] = request
        return Send(request)

    def timeout(self, *, transport_failed: bool = False) -> list[Effect]:
        """The INVITE transaction timed out, or (`transport_failed`) could not reach the far end
        at all: for a UAC that is a 503 (RFC 3261 8.1.3.1), ended as "unreachable"."""
        if not self._allowed(SessionInput.TIMEOUT):
            return []
        if self.role is Role.UAC:
            status, reason = (503, "unreachable") if transport_failed else (408, "timeout")
            self.final_status = status
            return self._end(SessionInput.TIMEOUT, reason, status)
        if self.dialog is not None:
            # Our 2xx was never ACKed (RFC 3261 13.3.1.4): confirm and tear down with BYE.
            logger.info("call %s: no ACK for our 200, hanging up", self.call_id)
            return [self._bye(), *self._end(SessionInput.TIMEOUT, "timeout", None)]
        return []

    # -- requests from the far end ----------------------------------------------------------------

    def receive_cancel(self, request: SipRequest) -> list[Effect]:
        """A CANCEL matching our server INVITE (the caller checked Call-ID and CSeq)."""
        ok = Respond(request, make_response(request, 200))
        if not self._allowed(SessionInput.CANCEL):
            return [ok]  # answered already: the CANCEL has no effect (RFC 3261 9.2)
        self.final_status = 487
        return [
            ok,
            Respond(self.invite, self._response(487)),
            *self._end(SessionInput.CANCEL, "cancelled", 487),
        ]

    def receive_request(self, request: SipRequest, *, now: float | None = None) -> list[Effect]:
        """An in-dialog request (or the ACK of our 2xx) for this leg; `now` restarts the
        session timer when the request is a session refresh."""
        method = request.method
        if method == "ACK":
            return self._on_ack(request)
        if self.dialog is not None:
            try:
                self.dialog.receive_request(request)
            except RemoteProtocolError as exc:
                return [Respond(request, make_response(request, exc.status_code))]
        if self.state is SessionState.ENDED:
            return [Respond(request, make_response(request, 481))]  # RFC 3261 12.2.2
        if method == "BYE":
            if not self._allowed(SessionInput.BYE):
                # Not in a dialog we have (or a callee ending an early dialog, RFC 3261 15).
                return [Respond(request, make_response(request, 481))]
            ok = Respond(request, make_response(request, 200))
            if self.state in _EARLY_UAS and self.role is Role.UAS:
                # A BYE in the early dialog (RFC 3261 15.1.2): the INVITE gets 487.
                self.final_status = 487
                return [
                    ok,
                    Respond(self.invite, self._response(487)),
                    *self._end(SessionInput.BYE, "remote-bye", 487),
                ]
            return [ok, *self._end(SessionInput.BYE, "remote-bye", None)]
        if method in ("INVITE", "UPDATE"):
            return self._on_reoffer(request, now)
        if method == "REFER":
            return self._on_refer(request)
        ok = Respond(request, make_response(request, 200))
        if method == "INFO":
            digit = _info_digit(request)
            return [ok, InfoDigit(digit)] if digit else [ok]
        return [ok]

    def _on_ack(self, request: SipRequest) -> list[Effect]:
        if self.state is not SessionState.ANSWERING:
            return []  # a retransmitted ACK, or one for a 2xx we resent: absorbed
        if request.body and self.negotiator is not None:
            # The answer to the offer of our 2xx (an offer-less INVITE, RFC 3261 13.2.1); an
            # unusable one leaves the media as offered (the call goes on, as phones expect).
            try:
                self.negotiator.accept_answer(request.body)
            except OfferRejected as exc:
                logger.info("call %s: unusable SDP in the ACK: %s", self.call_id, exc)
        self._set_state(SessionInput.ACK)
        if self.bye_after_ack:
            assert self.end_reason is not None
            return [self._bye(), *self._end(SessionInput.HANGUP, self.end_reason, None)]
        return [Answered(self.call_id)]

    def _on_reoffer(self, request: SipRequest, now: float | None) -> list[Effect]:
        """re-INVITE/UPDATE: hold, unhold, session refresh, a new address; answered here."""
        negotiator = self.negotiator
        if (
            negotiator is None
            or self.state is not SessionState.CONNECTED
            or self._refresh is not None
        ):
            # Our own offer/answer is still open (RFC 3261 14.2 glare): try again later.
            return [Respond(request, make_response(request, 491))]
        try:
            self.timer.check_request(request)
        except IntervalTooSmall as exc:
            return [Respond(request, make_response(request, 422, extra=exc.headers))]
        was_held = negotiator.held
        if request.body:
            try:
                negotiator.accept_offer(request.body, codecs=[negotiator.codec_name])
            except OfferRejected as exc:
                return [Respond(request, make_response(request, exc.status_code))]
        # A 2xx to a re-INVITE or UPDATE is a session refresh (RFC 4028 10).
        extra = self.timer.negotiate_request(request, now)
        body = b""
        if request.body or request.method == "INVITE":
            # An offer gets our answer; an offer-less re-INVITE our offer. An UPDATE without a
            # body (a bare refresh, RFC 4028 9) gets no SDP: there is nothing to answer.
            body = negotiator.local_sdp()
            extra.append(("Content-Type", "application/sdp"))
        response = make_response(request, 200, to_tag=self.local_tag, body=body, extra=extra)
        response.headers.add("Contact", str(self.contact))
        effects: list[Effect] = [Respond(request, response)]
        if negotiator.held != was_held:
            effects.append(HoldChanged(self.call_id, negotiator.held))
        return effects

    # -- transfer (RFC 3515 REFER, RFC 3891 Replaces) ---------------------------------------------

    def _on_refer(self, request: SipRequest) -> list[Effect]:
        """A REFER: judged here (connected call, one Refer-To, a well-formed Replaces), decided
        above (ReferReceived, answered by accept_refer or reject_refer)."""
        if self.state is not SessionState.CONNECTED or self.dialog is None:
            return [Respond(request, make_response(request, 491 if self.state in (
                SessionState.ANSWERING,) else 481))]  # fmt: skip
        targets = request.headers.get_all("Refer-To")
        if len(targets) != 1:
            # RFC 3515 2.4.1: exactly one Refer-To, else 400.
            return [Respond(request, make_response(request, 400, "One Refer-To required"))]
        try:
            refer_to = NameAddr.parse(targets[0])
        except SipError:
            return [Respond(request, make_response(request, 400, "Malformed Refer-To"))]
        replaces = None
        uri = refer_to.uri
        embedded = uri.headers.get("replaces") if isinstance(uri, SipUri) else None
        if embedded is None and isinstance(uri, SipUri):
            embedded = next((v for k, v in uri.headers.items() if k.lower() == "replaces"), None)
        if embedded:
            try:
                replaces = Replaces.parse(embedded)
            except ValueError:
                return [Respond(request, make_response(request, 400, "Malformed Replaces"))]
        if self._refer_seq is not None:
            # One transfer at a time: the first one's subscription is still running.
            return [Respond(request, make_response(request, 491))]
        return [ReferReceived(request, refer_to, replaces, request.headers.get("Referred-By"))]

    def accept_refer(self, request: SipRequest) -> list[Effect]:
        """202 Accepted to the REFER, then the first NOTIFY ("100 Trying", RFC 3515 2.4.4)."""
        self._refer_seq = request.cseq.seq
        accepted = make_response(request, 202, to_tag=self.local_tag)
        accepted.headers.add("Contact", str(self.contact))
        return [Respond(request, accepted), *self.notify_refer(100, "Trying")]

    def reject_refer(
        self, request: SipRequest, status: int, reason: str | None = None
    ) -> list[Effect]:
        """Refuse a REFER (403 not allowed, 488 not here, 603 declined...)."""
        return [Respond(request, make_response(request, status, reason))]

    def notify_refer(self, status: int, reason: str | None = None) -> list[Effect]:
        """Tell the transferor how the referred call goes (message/sipfrag, RFC 3515 2.4.5):
        a provisional status keeps the subscription active, a final one terminates it. Nothing
        once the leg or the subscription is over (a transferor that hung up hears no more)."""
        if (
            self._refer_seq is None
            or self.dialog is None
            or self.state is not SessionState.CONNECTED
        ):
            return []
        final = status >= 200
        event = f"refer;id={self._refer_seq}"
        if final:
            self._refer_seq = None
        body = f"SIP/2.0 {status} {reason or reason_phrase(status)}\r\n".encode()
        request = self.dialog.create_request(
            "NOTIFY",
            via=self.new_via(),
            contact=self.contact,
            headers=[
                ("Event", event),
                (
                    "Subscription-State",
                    "terminated;reason=noresource" if final else "active;expires=60",
                ),
            ],
            body=body,
            content_type="message/sipfrag;version=2.0",
        )
        return [Send(request)]

    # -- responses to our INVITE ------------------------------------------------------------------

    def receive_response(self, response: SipResponse, *, now: float | None = None) -> list[Effect]:
        """A response from the far end to one of this leg's requests; `now` (re)starts the
        session timer a 2xx agrees on."""
        if response.cseq.method != "INVITE":
            # Responses to our CANCEL, BYE and INFO need no action, but a provider's challenge.
            return self._challenged_in_dialog(response)
        seq = response.cseq.seq
        refresh = self._refresh
        if seq != self.invite.cseq.seq and seq in self._in_dialog:
            # Our re-INVITE (sent through _send_in_dialog): a challenge is answered here.
            if response.status in (401, 407):
                effects = self._challenged_in_dialog(response)
                if refresh is not None and seq == refresh.cseq.seq:
                    # The session refresh again, with credentials: its answer is awaited now.
                    again = next((e.request for e in effects if isinstance(e, Send)), None)
                    self._refresh = again
                return effects
            if response.status >= 200:
                del self._in_dialog[seq]
        if refresh is not None and seq == refresh.cseq.seq:
            return self._on_refresh_response(response, now)
        status = response.status
        if status == 422 and self._allowed(SessionInput.FAILURE) and not self.cancelling:
            retry = self._retry_invite(response)
            if retry:
                return retry
        if status in (401, 407):
            challenged = self._challenged_invite(response)
            if challenged is not None:
                return [challenged]
        if status < 200:
            if status in (180, 183) and self._allowed(SessionInput.PROVISIONAL):
                first = self.state is SessionState.CALLING
                self._set_state(SessionInput.PROVISIONAL)
                return [Ringing(self.call_id)] if first else []
            return []
        if status < 300:
            return self._on_2xx(response, now)
        if not self._allowed(SessionInput.FAILURE):
            return []
        self.final_status = status
        reason = "cancelled" if status == 487 else "rejected"
        return self._end(SessionInput.FAILURE, reason, status)

    def _on_2xx(self, response: SipResponse, now: float | None) -> list[Effect]:
        if self.dialog is None:
            self.dialog = Dialog.from_uac(self.invite, response)
        # Every 2xx gets its ACK, retransmissions too (RFC 3261 13.2.2.4).
        # (the ACK carries the CSeq number of the INVITE it confirms: a re-INVITE's is not ours)
        effects: list[Effect] = [
            SendAck(self.dialog.create_ack(response.cseq.seq, via=self.new_via()))
        ]
        if not self._allowed(SessionInput.SUCCESS):
            if self.state is SessionState.ENDED and not self.dialog.terminated:
                # A 2xx after we gave up (timeout, a failed answer): confirm it, then end it
                # (RFC 3261 13.2.2.4 and 15).
                effects.append(self._bye())
            return effects
        self.final_status = response.status
        if self.negotiator is not None and response.body:
            try:
                self.negotiator.accept_answer(response.body)
            except OfferRejected:
                logger.info("call %s: unusable SDP answer, hanging up", self.call_id)
                self._set_state(SessionInput.SUCCESS)
                self.end_reason = "failed"
                return [*effects, *self.hangup("failed")]
        self._set_state(SessionInput.SUCCESS)
        effects.append(Answered(self.call_id))
        if self.cancelling:
            # Our CANCEL crossed the 200: the call is answered, so it gets a BYE.
            effects += self.hangup(self.end_reason or "cancelled")
        else:
            self.timer.negotiate_response(response, now)
        return effects

    def _retry_invite(self, response: SipResponse) -> list[Effect]:
        """Our INVITE got 422: send it again asking for the Min-SE the 422 names (RFC 4028
        7.4), a few times at most; empty when it cannot be retried."""
        if self._invite_retries >= _MAX_INVITE_RETRIES or not self.timer.retry_after_422(response):
            return []
        self._invite_retries += 1
        old = self.invite
        invite = SipRequest(method="INVITE", uri=old.uri, headers=old.headers.copy(), body=old.body)
        invite.headers.set("Via", str(self.new_via()))
        invite.headers.set("CSeq", f"{old.cseq.seq + 1} INVITE")
        _put_headers(invite, self.timer.offer_headers())
        asked = self.timer.asked
        logger.info("call %s: 422, INVITE again with Session-Expires %d", self.call_id, asked)
        self.invite = invite
        return [SendInvite(invite)]

    # -- session timer (RFC 4028) ---------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When `handle_timer` must next be called; None: not until something else happens."""
        if self.state is not SessionState.CONNECTED:
            return None
        return self.timer.get_timer()

    def handle_timer(self, now: float) -> list[Effect]:
        """Time passed: refresh the session (we are the refresher and half the interval is
        gone) or end it with BYE (no refresh came in time, RFC 4028 10)."""
        if self.state is not SessionState.CONNECTED:
            return []
        due = self.timer.due(now)
        if due is TimerDue.EXPIRED:
            logger.info("call %s: session expired without a refresh, hanging up", self.call_id)
            return self.hangup("session-expired")
        if due is TimerDue.REFRESH:
            return self._send_refresh()
        return []

    def _send_refresh(self) -> list[Effect]:
        """A re-INVITE with our current SDP, unchanged (same version: no new offer in
        substance) and Session-Expires with refresher=uac: us."""
        if self.dialog is None or self.negotiator is None or self._refresh is not None:
            return []
        request = self.dialog.create_request(
            "INVITE",
            via=self.new_via(),
            contact=self.contact,
            headers=self.timer.offer_headers(refresh=True),
            body=self.negotiator.local_sdp(),
            content_type="application/sdp",
        )
        self._refresh = request
        self.timer.refresh_sent()
        return [self._send_in_dialog(request)]

    def _on_refresh_response(self, response: SipResponse, now: float | None) -> list[Effect]:
        status = response.status
        if status < 200:
            return []
        assert self.dialog is not None
        self._refresh = None
        if self.state is not SessionState.CONNECTED:
            # Ended while the refresh was out: a 2xx still gets its ACK.
            if status < 300:
                return [SendAck(self.dialog.create_ack(response.cseq.seq, via=self.new_via()))]
            return []
        if status < 300:
            effects: list[Effect] = [
                SendAck(self.dialog.create_ack(response.cseq.seq, via=self.new_via()))
            ]
            if response.body and self.negotiator is not None:
                try:
                    self.negotiator.accept_answer(response.body)
                except OfferRejected as exc:  # the media stays as it was
                    logger.debug("call %s: refresh answer not taken: %s", self.call_id, exc)
            self.timer.negotiate_response(response, now)
            return effects
        if status == 422 and self.timer.retry_after_422(response):
            return self._send_refresh()
        if status in (408, 481):
            return self._refresh_failed(status)
        logger.info("call %s: session refresh got %d, trying again", self.call_id, status)
        if now is not None:
            self.timer.refresh_failed(now)
        return []

    def request_timed_out(self, request: SipRequest) -> list[Effect]:
        """A request of ours in the dialog (not the INVITE) got no final response, or could not
        be sent: a session refresh that fails so ends the call (RFC 4028 10)."""
        if self._refresh is None or request.cseq.seq != self._refresh.cseq.seq:
            return []
        self._refresh = None
        return self._refresh_failed(408)

    def _refresh_failed(self, status: int) -> list[Effect]:
        logger.info("call %s: session refresh failed with %d, hanging up", self.call_id, status)
        if self.state is not SessionState.CONNECTED:
            return []
        if status == 481:
            # The far end has no such dialog: nobody to say BYE to (RFC 3261 12.2.1.2).
            return self._end(SessionInput.HANGUP, "refresh-failed", None)
        return self.hangup("refresh-failed")

    # -- digest challenges (a provider's proxy or registrar, RFC 3261 22.2) ------------------------

    def _challenged_invite(self, response: SipResponse) -> SendInvite | None:
        """The INVITE again with the answer to its challenge: same Call-ID and tags, the next
        CSeq, a new branch (RFC 3261 8.1.3.5, 22.2); None when it is not to be answered."""
        if self.digest is None or self.role is Role.UAS or self.cancelling:
            return None
        if self.state not in _EARLY_UAC or response.cseq.seq != self.invite.cseq.seq:
            return None
        header = self.digest.authorize(self.invite, response)
        if header is None:
            return None
        self.invite = _resent(self.invite, header, self.new_via())
        return SendInvite(self.invite)

    def _challenged_in_dialog(self, response: SipResponse) -> list[Effect]:
        sent = self._in_dialog.pop(response.cseq.seq, None)
        if sent is None or response.status not in (401, 407) or self.dialog is None:
            return []
        assert self.digest is not None
        header = self.digest.authorize(sent, response)
        if header is None:
            return []
        again = _resent(sent, header, self.new_via())
        # The dialog's next request (an INFO later on) numbers after this one.
        self.dialog.local_seq = max(self.dialog.local_seq, again.cseq.seq)
        return [self._send_in_dialog(again)]


_MAX_INVITE_RETRIES = 3
"""INVITEs sent again after a 422 before the call is given up."""


def _put_headers(message: SipRequest, headers: Iterable[tuple[str, str]]) -> None:
    """Set each header on `message`; an option tag joins Supported/Require when not there."""
    for name, value in headers:
        if name in ("Supported", "Require"):
            if value.lower() not in (t.lower() for t in message.headers.get_all(name)):
                message.headers.add(name, value)
        else:
            message.headers.set(name, value)


def _resent(request: SipRequest, header: tuple[str, str], via: Via) -> SipRequest:
    """`request` with a new top Via, the next CSeq and the credentials `header`."""
    again = SipRequest(request.method, request.uri, request.headers.copy(), request.body)
    again.headers.set("Via", str(via))  # our single Via, with a new branch
    cseq = request.cseq
    again.headers.set("CSeq", f"{cseq.seq + 1} {cseq.method}")
    again.headers.set(*header)
    return again


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
