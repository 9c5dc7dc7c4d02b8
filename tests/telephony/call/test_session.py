"""The INVITE session in memory: a UAC and a UAS facing each other through bytes on a wire (no
sockets, no transactions, no clock), with real SDP offer/answer; then every (role, state, input)
triple of the table, driven from a session put in that state."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.call import Answered, Ended, HoldChanged, Ringing
from telephony.call.offer_answer import OfferAnswer
from telephony.call.session import (
    ANSWERED_ELSEWHERE,
    PICKED_UP,
    TRANSITIONS,
    Effect,
    InfoDigit,
    InviteSession,
    Respond,
    Role,
    Send,
    SendAck,
    SendInvite,
    SessionInput,
    SessionState,
)
from telephony.call.session_timer import DISABLED, SessionTimerConfig
from telephony.sip import (
    Dialog,
    Headers,
    NameAddr,
    SipRequest,
    SipResponse,
    SipUri,
    Via,
    parse_message,
)

UAC_HOST, UAS_HOST = "10.0.0.1", "10.0.0.2"


def _uri(user: str | None, host: str) -> SipUri:
    return SipUri(
        scheme="sip", user=user, password=None, host=host, port=5060, params={}, headers={}
    )


def _via(host: str) -> Via:
    return Via(
        protocol="SIP/2.0",
        transport="UDP",
        host=host,
        port=5060,
        params={"branch": "z9hG4bK" + secrets.token_hex(8)},
    )


def _wire(message: SipRequest | SipResponse) -> SipRequest | SipResponse:
    """What the other side parses off the network."""
    parsed = parse_message(bytes(message))
    assert isinstance(parsed, SipRequest | SipResponse)
    return parsed


@dataclass
class Pair:
    """A UAC and a UAS session; `deliver` carries effects across, recording what each side saw."""

    uac: InviteSession
    uas: InviteSession
    uac_sdp: OfferAnswer
    uas_sdp: OfferAnswer
    seen: dict[str, list[object]] = field(default_factory=lambda: {"uac": [], "uas": []})
    held_back: list[tuple[str, Effect]] = field(default_factory=list)
    now: float = 0.0
    """The virtual clock: passed with every message delivered (session timers)."""

    def side(self, name: str) -> InviteSession:
        return self.uac if name == "uac" else self.uas

    def deliver(self, sender: str, effects: list[Effect], *, hold: type | None = None) -> None:
        """Apply `effects` of `sender`: messages reach the other side at once (unless of type
        `hold`, kept in `held_back`), events are recorded as seen by the sender."""
        other = "uas" if sender == "uac" else "uac"
        for effect in effects:
            if hold is not None and isinstance(effect, Send) and effect.request.method == hold:
                self.held_back.append((sender, effect))
                continue
            if isinstance(effect, Respond):
                response = _wire(effect.response)
                assert isinstance(response, SipResponse)
                self.deliver(other, self.side(other).receive_response(response, now=self.now))
            elif isinstance(effect, SendInvite):
                # The INVITE again (after a 422): a new server transaction, a new UAS session.
                request = _wire(effect.request)
                assert isinstance(request, SipRequest)
                self.uas = InviteSession(
                    request,
                    Role.UAS,
                    local_tag=secrets.token_hex(4),
                    contact=self.uas.contact,
                    new_via=self.uas.new_via,
                    negotiator=self.uas_sdp,
                    session_timer=self.uas.timer.config,
                )
                self.deliver("uas", self.uas.admit())
            elif isinstance(effect, Send | SendAck):
                request = _wire(effect.request)
                assert isinstance(request, SipRequest)
                receiver = self.side(other)
                if request.method == "CANCEL":
                    self.deliver(other, receiver.receive_cancel(request))
                else:
                    self.deliver(other, receiver.receive_request(request, now=self.now))
            else:
                self.seen[sender].append(effect)
                if isinstance(effect, Respond | Send | SendAck):
                    raise AssertionError("unreachable")

    def release(self) -> None:
        held, self.held_back = self.held_back, []
        for sender, effect in held:
            self.deliver(sender, [effect])


def invite_pair(
    *,
    offer: bool = True,
    uac_timer: SessionTimerConfig = DISABLED,
    uas_timer: SessionTimerConfig = DISABLED,
    headers: tuple[tuple[str, str], ...] = (),
) -> Pair:
    """A UAC and a UAS session for one INVITE (`headers` added to it), with their session
    timer settings."""
    uac_sdp = OfferAnswer(local_host=UAC_HOST, local_port=40000)
    uas_sdp = OfferAnswer(local_host=UAS_HOST, local_port=50000)
    tag = secrets.token_hex(4)
    invite = SipRequest(method="INVITE", uri=_uri("102", UAS_HOST), headers=Headers(), body=b"")
    invite.headers.add("Via", str(_via(UAC_HOST)))
    invite.headers.add("Max-Forwards", "70")
    invite.headers.add("From", f"<sip:101@{UAC_HOST}>;tag={tag}")
    invite.headers.add("To", f"<sip:102@{UAS_HOST}>")
    invite.headers.add("Call-ID", secrets.token_hex(8) + "@" + UAC_HOST)
    invite.headers.add("CSeq", "1 INVITE")
    invite.headers.add("Contact", f"<sip:101@{UAC_HOST}:5060>")
    for name, value in headers:
        invite.headers.add(name, value)
    if offer:
        invite.body = uac_sdp.make_offer()
        invite.headers.add("Content-Type", "application/sdp")
    uac = InviteSession(
        invite,
        Role.UAC,
        local_tag=tag,
        contact=NameAddr(None, _uri(None, UAC_HOST), {}),
        new_via=lambda: _via(UAC_HOST),
        negotiator=uac_sdp,
        session_timer=uac_timer,
    )
    received = _wire(invite)
    assert isinstance(received, SipRequest)
    uas = InviteSession(
        received,
        Role.UAS,
        local_tag=secrets.token_hex(4),
        contact=NameAddr(None, _uri(None, UAS_HOST), {}),
        new_via=lambda: _via(UAS_HOST),
        negotiator=uas_sdp,
        session_timer=uas_timer,
    )
    return Pair(uac, uas, uac_sdp, uas_sdp)


def answered(pair: Pair) -> Pair:
    pair.deliver("uas", pair.uas.ring())
    pair.uas_sdp.accept_offer(pair.uas.invite.body)
    pair.deliver("uas", pair.uas.answer(now=pair.now))
    return pair


def events(pair: Pair, side: str, kind: type) -> list[object]:
    return [e for e in pair.seen[side] if isinstance(e, kind)]


# -- whole calls --------------------------------------------------------------------------------


def test_a_call_rings_connects_and_ends_with_bye() -> None:
    pair = invite_pair()
    pair.deliver("uas", pair.uas.ring())
    assert pair.uac.state is SessionState.RINGING
    assert events(pair, "uac", Ringing) == [Ringing(pair.uac.call_id)]
    pair.uas_sdp.accept_offer(pair.uas.invite.body)
    pair.deliver("uas", pair.uas.answer())
    assert (pair.uac.state, pair.uas.state) == (SessionState.CONNECTED, SessionState.CONNECTED)
    assert events(pair, "uac", Answered) and events(pair, "uas", Answered)
    assert pair.uac_sdp.remote == (UAS_HOST, 50000) and pair.uas_sdp.remote == (UAC_HOST, 40000)
    pair.deliver("uac", pair.uac.hangup())
    assert events(pair, "uac", Ended) == [Ended(pair.uac.call_id, "local-bye", None)]
    assert events(pair, "uas", Ended) == [Ended(pair.uas.call_id, "remote-bye", None)]
    assert pair.uac.dialog is not None and pair.uac.dialog.terminated
    assert pair.uas.dialog is not None and pair.uas.dialog.terminated


def test_the_2xx_to_an_invite_says_what_we_can() -> None:
    """Allow and Allow-Events (RFC 6665 4.4.4) in our 200 to an INVITE, not in a 180."""
    pair = invite_pair()
    pair.uas.capabilities = (("Allow", "INVITE, SUBSCRIBE"), ("Allow-Events", "dialog"))
    ringing = next(e.response for e in pair.uas.ring() if isinstance(e, Respond))
    assert ringing.headers.get("Allow-Events") is None
    pair.uas_sdp.accept_offer(pair.uas.invite.body)
    ok = next(e.response for e in pair.uas.answer() if isinstance(e, Respond))
    assert ok.status == 200
    assert (ok.headers.get("Allow"), ok.headers.get("Allow-Events")) == (
        "INVITE, SUBSCRIBE", "dialog",
    )  # fmt: skip


def test_an_offerless_invite_gets_our_offer_and_the_answer_comes_in_the_ack() -> None:
    pair = invite_pair(offer=False)
    pair.uas_sdp.make_offer()
    ok = next(e.response for e in pair.uas.answer() if isinstance(e, Respond))
    assert ok.status == 200 and ok.body.startswith(b"v=0")
    # The caller answers our offer in its ACK (RFC 3261 13.2.1).
    caller = OfferAnswer(local_host=UAC_HOST, local_port=40000)
    caller.accept_offer(ok.body)
    dialog = Dialog.from_uac(pair.uac.invite, _wire(ok))  # type: ignore[arg-type]
    ack = dialog.create_ack(
        1, via=_via(UAC_HOST), body=caller.local_sdp(), content_type="application/sdp"
    )
    effects = pair.uas.receive_request(_wire(ack))  # type: ignore[arg-type]
    assert effects == [Answered(pair.uas.call_id)]
    assert pair.uas.state is SessionState.CONNECTED
    assert pair.uas_sdp.remote == (UAC_HOST, 40000)


def test_the_answer_carries_the_record_route_of_the_invite() -> None:
    """RFC 3261 12.1.1: the caller's in-dialog requests go through the proxies that
    record-routed the INVITE (a Kamailio in front of the engine)."""
    routes = ("<sip:10.0.0.1;lr>", "<sip:10.0.0.2;lr;ftag=x>, <sip:10.0.0.3;lr>")
    pair = invite_pair(headers=tuple(("Record-Route", r) for r in routes))
    ringing = next(e.response for e in pair.uas.ring() if isinstance(e, Respond))
    pair.uas_sdp.accept_offer(pair.uas.invite.body)
    ok = next(e.response for e in pair.uas.answer() if isinstance(e, Respond))
    for response in (ringing, ok):
        assert response.headers.get_lines("Record-Route") == list(routes)
    dialog = Dialog.from_uac(pair.uac.invite, _wire(ok))  # type: ignore[arg-type]
    assert [str(r.uri) for r in dialog.route_set] == [
        "sip:10.0.0.3;lr", "sip:10.0.0.2;lr;ftag=x", "sip:10.0.0.1;lr"
    ]  # fmt: skip


def test_cancel_before_answer_gets_487() -> None:
    pair = invite_pair()
    pair.deliver("uas", pair.uas.ring())
    pair.deliver("uac", pair.uac.hangup(reason="ring-timeout"))
    assert events(pair, "uas", Ended) == [Ended(pair.uas.call_id, "cancelled", 487)]
    assert events(pair, "uac", Ended) == [Ended(pair.uac.call_id, "ring-timeout", 487)]
    assert pair.uac.final_status == 487
    assert pair.uac.cancel() == []  # once only


def test_a_cancel_crossing_the_200_ends_the_answered_call_with_bye() -> None:
    pair = invite_pair()
    pair.deliver("uas", pair.uas.ring())
    pair.deliver("uac", pair.uac.cancel("caller-gone"), hold="CANCEL")
    pair.uas_sdp.accept_offer(pair.uas.invite.body)
    pair.deliver("uas", pair.uas.answer())  # the UAS answers before the CANCEL arrives
    assert events(pair, "uac", Ended) == [Ended(pair.uac.call_id, "caller-gone", None)]
    assert events(pair, "uas", Ended) == [Ended(pair.uas.call_id, "remote-bye", None)]
    pair.release()  # the CANCEL arrives late: 200, no 487, nothing else
    assert pair.uas.final_status == 200


def test_hold_by_reinvite_is_answered_and_reported() -> None:
    pair = answered(invite_pair())
    assert pair.uac.dialog is not None
    hold_offer = pair.uac_sdp.make_offer().replace(b"a=sendrecv", b"a=sendonly")
    if b"a=sendonly" not in hold_offer:
        hold_offer += b"a=sendonly\r\n"
    reinvite = pair.uac.dialog.create_request(
        "INVITE", via=_via(UAC_HOST), contact=pair.uac.contact,
        body=hold_offer, content_type="application/sdp",
    )  # fmt: skip
    effects = pair.uas.receive_request(_wire(reinvite))  # type: ignore[arg-type]
    assert isinstance(effects[0], Respond) and effects[0].response.status == 200
    assert HoldChanged(pair.uas.call_id, True) in effects
    assert pair.uas.state is SessionState.CONNECTED


def test_a_reinvite_before_the_call_is_up_gets_491() -> None:
    pair = invite_pair()
    pair.deliver("uas", pair.uas.ring())
    early = SipRequest(
        method="INVITE", uri=pair.uas.invite.uri, headers=pair.uas.invite.headers.copy()
    )
    early.headers.set("To", f"{pair.uas.invite.headers.get('To')};tag={pair.uas.local_tag}")
    early.headers.set("CSeq", "2 INVITE")
    (effect,) = pair.uas.receive_request(early)
    assert isinstance(effect, Respond) and effect.response.status == 491


def test_an_unacceptable_reoffer_gets_488_and_changes_nothing() -> None:
    pair = answered(invite_pair())
    assert pair.uac.dialog is not None
    bad = pair.uac.dialog.create_request(
        "INVITE", via=_via(UAC_HOST), contact=pair.uac.contact,
        body=b"v=0\r\nnonsense\r\n", content_type="application/sdp",
    )  # fmt: skip
    (effect,) = pair.uas.receive_request(_wire(bad))  # type: ignore[arg-type]
    assert isinstance(effect, Respond) and effect.response.status in (400, 488)
    assert pair.uas.state is SessionState.CONNECTED


def test_info_digits_and_other_requests_in_the_dialog() -> None:
    pair = answered(invite_pair())
    pair.deliver("uac", pair.uac.info("application/dtmf-relay", b"Signal=5\r\nDuration=100\r\n"))
    assert events(pair, "uas", InfoDigit) == [InfoDigit("5")]
    assert pair.uas.dialog is not None
    old = pair.uas.dialog.remote_seq
    assert old is not None and pair.uac.dialog is not None
    stale = pair.uac.dialog.create_request("BYE", via=_via(UAC_HOST), contact=None)
    stale.headers.set("CSeq", f"{old - 1} BYE")
    (effect,) = pair.uas.receive_request(_wire(stale))  # type: ignore[arg-type]
    assert isinstance(effect, Respond) and effect.response.status == 500  # out of order
    assert pair.uas.state is SessionState.CONNECTED


def test_a_bye_after_the_end_gets_481() -> None:
    pair = answered(invite_pair())
    assert pair.uac.dialog is not None
    bye = pair.uac.dialog.create_request("BYE", via=_via(UAC_HOST), contact=None)
    pair.deliver("uac", [Send(bye)])
    again = _wire(bye)
    again.headers.set("CSeq", f"{bye.cseq.seq + 1} BYE")  # type: ignore[union-attr]
    (effect,) = pair.uas.receive_request(again)  # type: ignore[arg-type]
    assert isinstance(effect, Respond) and effect.response.status == 481


def test_no_ack_for_our_200_hangs_up_with_bye() -> None:
    pair = invite_pair()
    pair.uas_sdp.accept_offer(pair.uas.invite.body)
    effects = pair.uas.answer()
    assert pair.uas.state is SessionState.ANSWERING
    timeout = pair.uas.timeout()
    assert [type(e) for e in timeout] == [Send, Ended]
    assert isinstance(timeout[0], Send) and timeout[0].request.method == "BYE"
    assert timeout[1] == Ended(pair.uas.call_id, "timeout", None)
    assert effects and pair.uas.timeout() == []


def test_hanging_up_before_the_ack_waits_for_it_to_send_bye() -> None:
    """RFC 3261 15: no BYE on a confirmed dialog before the ACK of our 2xx (or its timeout)."""
    pair = invite_pair()
    pair.uas_sdp.accept_offer(pair.uas.invite.body)
    ok = pair.uas.answer()
    assert pair.uas.hangup("agent-left") == []
    assert pair.uas.state is SessionState.ANSWERING and pair.uas.hangup() == []
    [respond] = [e for e in ok if isinstance(e, Respond)]
    response = _wire(respond.response)
    assert isinstance(response, SipResponse)
    uac_effects = pair.uac.receive_response(response)
    [ack] = [e for e in uac_effects if isinstance(e, SendAck)]
    request = _wire(ack.request)
    assert isinstance(request, SipRequest)
    effects = pair.uas.receive_request(request)
    assert [type(e) for e in effects] == [Send, Ended]
    assert isinstance(effects[0], Send) and effects[0].request.method == "BYE"
    assert effects[1] == Ended(pair.uas.call_id, "agent-left", None)
    assert pair.uas.state is SessionState.ENDED


def test_hanging_up_before_an_ack_that_never_comes_byes_at_the_timeout() -> None:
    pair = invite_pair()
    pair.uas_sdp.accept_offer(pair.uas.invite.body)
    pair.uas.answer()
    assert pair.uas.hangup("agent-left") == []
    timeout = pair.uas.timeout()
    assert [type(e) for e in timeout] == [Send, Ended]
    assert timeout[1] == Ended(pair.uas.call_id, "agent-left", None)


def test_at_shutdown_the_bye_does_not_wait_for_the_ack() -> None:
    pair = invite_pair()
    pair.uas_sdp.accept_offer(pair.uas.invite.body)
    pair.uas.answer()
    effects = pair.uas.hangup("shutdown")
    assert [type(e) for e in effects] == [Send, Ended]


def test_an_unanswered_invite_times_out_with_408() -> None:
    pair = invite_pair()
    assert pair.uac.timeout() == [Ended(pair.uac.call_id, "timeout", 408)]


def test_reject_and_busy() -> None:
    pair = invite_pair()
    pair.deliver("uas", pair.uas.reject(486, headers=[("Retry-After", "60")]))
    assert events(pair, "uac", Ended) == [Ended(pair.uac.call_id, "rejected", 486)]
    assert pair.uas.reject(500) == []  # over already


def test_a_bye_in_the_early_dialog_ends_the_invite_with_487() -> None:
    pair = invite_pair()
    pair.deliver("uas", pair.uas.ring())
    bye = SipRequest(method="BYE", uri=pair.uas.invite.uri, headers=pair.uas.invite.headers.copy())
    bye.headers.set("To", f"{pair.uas.invite.headers.get('To')};tag={pair.uas.local_tag}")
    bye.headers.set("CSeq", "2 BYE")
    effects = pair.uas.receive_request(bye)
    statuses = [e.response.status for e in effects if isinstance(e, Respond)]
    assert statuses == [200, 487]
    assert effects[-1] == Ended(pair.uas.call_id, "remote-bye", 487)


def test_an_unusable_answer_is_acked_then_hung_up() -> None:
    pair = invite_pair()
    ok = pair.uas.invite  # a 200 whose SDP answer is garbage
    pair.uas_sdp.accept_offer(ok.body)
    effects = pair.uas.answer()
    response = next(e.response for e in effects if isinstance(e, Respond))
    response.body = b"v=0\r\ngarbage\r\n"
    response.headers.set("Content-Length", str(len(response.body)))
    got = pair.uac.receive_response(_wire(response))  # type: ignore[arg-type]
    assert [type(e) for e in got] == [SendAck, Send, Ended]
    assert isinstance(got[1], Send) and got[1].request.method == "BYE"
    assert got[2] == Ended(pair.uac.call_id, "failed", None)


def test_retransmitted_200_is_acked_again_and_nothing_else() -> None:
    pair = invite_pair()
    pair.uas_sdp.accept_offer(pair.uas.invite.body)
    response = next(e.response for e in pair.uas.answer() if isinstance(e, Respond))
    first = pair.uac.receive_response(_wire(response))  # type: ignore[arg-type]
    again = pair.uac.receive_response(_wire(response))  # type: ignore[arg-type]
    assert [type(e) for e in first] == [SendAck, Answered]
    assert [type(e) for e in again] == [SendAck]


# -- every (role, state, input) -----------------------------------------------------------------

LOCAL = {SessionInput.RING, SessionInput.ANSWER}
"""Local decisions that raise when the table has no such transition (a bug in the caller)."""


def in_state(role: Role, state: SessionState) -> Pair:
    """A fresh pair whose `role` side is in `state`."""
    pair = invite_pair()
    if role is Role.UAS:
        steps = {
            SessionState.INCOMING: [],
            SessionState.RINGING: ["ring"],
            SessionState.ANSWERING: ["answer-no-ack"],
            SessionState.CONNECTED: ["ring", "answer"],
            SessionState.ENDED: ["reject"],
        }[state]
    else:
        steps = {
            SessionState.CALLING: [],
            SessionState.RINGING: ["ring"],
            SessionState.CONNECTED: ["ring", "answer"],
            SessionState.ENDED: ["reject"],
        }[state]
    for step in steps:
        if step == "ring":
            pair.deliver("uas", pair.uas.ring())
        elif step == "answer":
            pair.uas_sdp.accept_offer(pair.uas.invite.body)
            pair.deliver("uas", pair.uas.answer())
        elif step == "answer-no-ack":
            pair.uas_sdp.accept_offer(pair.uas.invite.body)
            pair.uas.answer()  # the 200 never arrives
        else:
            pair.deliver("uas", pair.uas.reject(603))
    assert pair.side(role.value).state is state
    return pair


def apply_input(pair: Pair, role: Role, event: SessionInput) -> list[Effect]:
    """Feed `event` to the `role` side the way the layer below would."""
    me = pair.side(role.value)
    peer = pair.side("uas" if role is Role.UAC else "uac")
    if event is SessionInput.RING:
        return me.ring()
    if event is SessionInput.ANSWER:
        pair.uas_sdp.accept_offer(me.invite.body)
        return me.answer()
    if event is SessionInput.REJECT:
        return me.reject(486)
    if event is SessionInput.HANGUP:
        return me.hangup()
    if event is SessionInput.TIMEOUT:
        return me.timeout()
    if event is SessionInput.CANCEL:
        cancel = SipRequest(method="CANCEL", uri=me.invite.uri, headers=me.invite.headers.copy())
        cancel.headers.set("CSeq", f"{me.invite.cseq.seq} CANCEL")
        return me.receive_cancel(cancel)
    if event in (SessionInput.ACK, SessionInput.BYE):
        request = SipRequest(method=event.name, uri=me.invite.uri, headers=me.invite.headers.copy())
        if role is Role.UAS:
            request.headers.set("To", f"{me.invite.headers.get('To')};tag={me.local_tag}")
        else:  # from the UAS, in its dialog (or none)
            request = SipRequest(method=event.name, uri=_uri("101", UAC_HOST), headers=Headers())
            request.headers.add("Via", str(_via(UAS_HOST)))
            request.headers.add("From", f"<sip:102@{UAS_HOST}>;tag={peer.local_tag}")
            request.headers.add("To", f"<sip:101@{UAC_HOST}>;tag={me.local_tag}")
            request.headers.add("Call-ID", me.call_id)
            request.headers.add("Max-Forwards", "70")
        request.headers.set("CSeq", f"{9 if event is SessionInput.BYE else 1} {event.name}")
        return me.receive_request(request)
    status = {SessionInput.PROVISIONAL: 180, SessionInput.SUCCESS: 200, SessionInput.FAILURE: 486}
    if event in status:
        code = status[event]
        to_tag = peer.local_tag if role is Role.UAC else "x"
        from telephony.sip import make_response

        response = make_response(me.invite, code, to_tag=to_tag)
        response.headers.add("Contact", f"<sip:102@{UAS_HOST}:5060>")
        if code == 200:
            pair.uas_sdp.accept_offer(me.invite.body)
            response.body = pair.uas_sdp.local_sdp()
            response.headers.set("Content-Type", "application/sdp")
            response.headers.set("Content-Length", str(len(response.body)))
        return me.receive_response(_wire(response))  # type: ignore[arg-type]
    raise AssertionError(event)


STATES = {
    Role.UAS: [s for s in SessionState if s is not SessionState.CALLING],
    Role.UAC: [s for s in SessionState if s not in (SessionState.INCOMING, SessionState.ANSWERING)],
}
TRIPLES = [
    (role, state, event)
    for role in Role
    for state, event in itertools.product(STATES[role], SessionInput)
    if not (role is Role.UAC and event in (SessionInput.RING, SessionInput.ANSWER,
                                           SessionInput.REJECT, SessionInput.CANCEL,
                                           SessionInput.ACK))
    and not (role is Role.UAS and event in (SessionInput.PROVISIONAL, SessionInput.SUCCESS,
                                            SessionInput.FAILURE))
]  # fmt: skip


@pytest.mark.parametrize(("role", "state", "event"), TRIPLES, ids=str)
def test_every_triple_follows_the_table(
    role: Role, state: SessionState, event: SessionInput
) -> None:
    pair = in_state(role, state)
    me = pair.side(role.value)
    expected = TRANSITIONS.get((role, state, event), state)
    if event in LOCAL and (role, state, event) not in TRANSITIONS:
        with pytest.raises(RuntimeError):
            apply_input(pair, role, event)
        assert me.state is state
        return
    effects = apply_input(pair, role, event)
    assert me.state is expected, effects
    ended = [e for e in effects if isinstance(e, Ended)]
    assert len(ended) == (1 if expected is SessionState.ENDED and state is not expected else 0)
    for effect in effects:
        # Every request that reached us got exactly one answer; we never answer an ACK.
        if isinstance(effect, Respond):
            assert effect.response.cseq.method != "ACK"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(list(SessionInput)), max_size=8), st.sampled_from(list(Role)))
def test_any_sequence_of_inputs_keeps_the_session_consistent(
    inputs: list[SessionInput], role: Role
) -> None:
    """Random inputs in any order: no exception but the documented ones, one Ended at most,
    and nothing changes after it."""
    pair = in_state(role, SessionState.INCOMING if role is Role.UAS else SessionState.CALLING)
    me = pair.side(role.value)
    ends = 0
    for event in inputs:
        if (role, event) in {(Role.UAC, e) for e in (SessionInput.RING, SessionInput.ANSWER,
                                                     SessionInput.REJECT, SessionInput.CANCEL,
                                                     SessionInput.ACK)}:  # fmt: skip
            continue
        if role is Role.UAS and event in (
            SessionInput.PROVISIONAL,
            SessionInput.SUCCESS,
            SessionInput.FAILURE,
        ):
            continue
        before = me.state
        try:
            effects = apply_input(pair, role, event)
        except RuntimeError:
            assert event in LOCAL and (role, before, event) not in TRANSITIONS
            continue
        ends += sum(isinstance(e, Ended) for e in effects)
        if before is SessionState.ENDED:
            assert me.state is SessionState.ENDED
            assert not any(isinstance(e, Ended) for e in effects)
            # Only a late 2xx gets something sent: its ACK, then a BYE.
            sent = [e.request.method for e in effects if isinstance(e, Send | SendAck)]
            assert sent in ([], ["ACK"], ["ACK", "BYE"])
    assert ends <= 1
    assert (ends == 1) == (me.state is SessionState.ENDED)


def test_a_200_after_we_gave_up_is_acked_and_ended() -> None:
    pair = invite_pair()
    assert pair.uac.timeout() == [Ended(pair.uac.call_id, "timeout", 408)]
    pair.uas_sdp.accept_offer(pair.uas.invite.body)
    late = next(e.response for e in pair.uas.answer() if isinstance(e, Respond))
    got = pair.uac.receive_response(_wire(late))  # type: ignore[arg-type]
    assert [(type(e), getattr(e, "request", None) and e.request.method) for e in got] == [
        (SendAck, "ACK"),
        (Send, "BYE"),
    ]
    # Its retransmission is ACKed again, and not BYEd twice.
    again = pair.uac.receive_response(_wire(late))  # type: ignore[arg-type]
    assert [type(e) for e in again] == [SendAck]


def test_a_fork_another_phone_answered_is_cancelled_with_a_reason() -> None:
    """RFC 3326: the CANCEL to a phone that lost a fork, or whose call another agent picked
    up, says the call was completed elsewhere (the phone need not list it as missed); any other
    CANCEL carries no Reason."""
    for why in (ANSWERED_ELSEWHERE, PICKED_UP):
        lost = invite_pair()
        lost.deliver("uas", lost.uas.ring())
        (send,) = lost.uac.hangup(reason=why)
        assert isinstance(send, Send) and send.request.method == "CANCEL"
        reason = _wire(send.request).headers.get("Reason")
        assert reason == 'SIP;cause=200;text="Call completed elsewhere"'
    given_up = invite_pair()
    given_up.deliver("uas", given_up.uas.ring())
    (send,) = given_up.uac.hangup(reason="caller-gone")
    assert isinstance(send, Send) and _wire(send.request).headers.get("Reason") is None
