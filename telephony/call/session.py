"""The INVITE session of one call leg, sans-IO (RFC 3261 13-15, RFC 6026): states and inputs in a
table, requests and responses in, messages to send and typed call events out.

A session never touches a socket, a transaction or a clock. The layer below (the asyncio
`Call` facade) feeds it what the transaction layer delivered and carries out what it returns:

- `Respond(to, response)`: send `response` in the server transaction of the request `to`;
- `Send(request)`: send `request` in a new client transaction (BYE, CANCEL, INFO);
- `SendAck(request)`: send the ACK of a 2xx outside any transaction (RFC 3261 13.2.2.4);
- a `CallEvent` (Ringing, Answered, HoldChanged, Ended) for the features above, and
  `InfoDigit` for a key pressed by SIP INFO (the facade merges it with the other DTMF routes).

The session description side of offer/answer is the `Negotiator` passed in (the leg's media
session): the session decides *when* an offer or answer is taken or made, the negotiator *what*
it contains.
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
    SipRequest,
    SipResponse,
    Via,
    make_response,
)
from telephony.sip.challenge import DigestClient
from telephony.sip.transaction import build_cancel

from .events import Answered, CallEvent, Ended, HoldChanged, Ringing

logger = logging.getLogger(__name__)

__all__ = [
    "TRANSITIONS",
    "Effect",
    "InfoDigit",
    "InviteSession",
    "Negotiator",
    "OfferRejected",
    "Respond",
    "Role",
    "Send",
    "SendAck",
    "SessionInput",
    "SessionState",
]


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
    (_UAS, _S.CONNECTED, _I.BYE): _S.ENDED,
    **{(_UAS, s, _I.HANGUP): _S.ENDED for s in SessionState if s is not _S.ENDED},
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
class InfoDigit:
    digit: str


Effect = Respond | Send | SendAck | InfoDigit | CallEvent


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
        digest: DigestClient | None = None,
    ) -> None:
        self.invite = invite
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

    def answer(self) -> list[Effect]:
        """200 OK with the negotiator's SDP (an answer to the INVITE's offer, or our offer when
        the INVITE had none); CONNECTED once the ACK arrives."""
        if self.negotiator is None:
            raise RuntimeError(f"{self!r}: answering needs a negotiator")
        self._set_state(SessionInput.ANSWER)
        ok = self._response(200, body=self.negotiator.local_sdp(), content_type="application/sdp")
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

    def receive_request(self, request: SipRequest) -> list[Effect]:
        """An in-dialog request (or the ACK of our 2xx) for this leg."""
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
            return self._on_reoffer(request)
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
        return [Answered(self.call_id)]

    def _on_reoffer(self, request: SipRequest) -> list[Effect]:
        """re-INVITE/UPDATE: hold, unhold, session refresh, a new address; answered here."""
        negotiator = self.negotiator
        if negotiator is None or self.state is not SessionState.CONNECTED:
            # Our own offer/answer is still open (RFC 3261 14.2 glare): try again later.
            return [Respond(request, make_response(request, 491))]
        was_held = negotiator.held
        if request.body:
            try:
                negotiator.accept_offer(request.body, codecs=[negotiator.codec_name])
            except OfferRejected as exc:
                return [Respond(request, make_response(request, exc.status_code))]
        response = make_response(
            request,
            200,
            to_tag=self.local_tag,
            body=negotiator.local_sdp(),
            extra=[("Content-Type", "application/sdp")],
        )
        response.headers.add("Contact", str(self.contact))
        effects: list[Effect] = [Respond(request, response)]
        if negotiator.held != was_held:
            effects.append(HoldChanged(self.call_id, negotiator.held))
        return effects

    # -- responses to our INVITE ------------------------------------------------------------------

    def receive_response(self, response: SipResponse) -> list[Effect]:
        """A response from the far end to one of this leg's requests."""
        if response.cseq.method != "INVITE":
            # Responses to our CANCEL, BYE and INFO need no action, but a provider's challenge.
            return self._challenged_in_dialog(response)
        seq = response.cseq.seq
        if seq != self.invite.cseq.seq and seq in self._in_dialog:
            # Our re-INVITE (sent through _send_in_dialog): a challenge is answered here.
            if response.status in (401, 407):
                return self._challenged_in_dialog(response)
            if response.status >= 200:
                del self._in_dialog[seq]
        status = response.status
        if status in (401, 407) and (retry := self._challenged_invite(response)) is not None:
            return [retry]
        if status < 200:
            if status in (180, 183) and self._allowed(SessionInput.PROVISIONAL):
                first = self.state is SessionState.CALLING
                self._set_state(SessionInput.PROVISIONAL)
                return [Ringing(self.call_id)] if first else []
            return []
        if status < 300:
            return self._on_2xx(response)
        if not self._allowed(SessionInput.FAILURE):
            return []
        self.final_status = status
        reason = "cancelled" if status == 487 else "rejected"
        return self._end(SessionInput.FAILURE, reason, status)

    def _on_2xx(self, response: SipResponse) -> list[Effect]:
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
        return effects

    # -- digest challenges (a provider's proxy or registrar, RFC 3261 22.2) ------------------------

    def _challenged_invite(self, response: SipResponse) -> Send | None:
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
        return Send(self.invite)

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
