"""A provider's digest challenges to our INVITE and to our in-dialog requests, in memory: the
challenger is the real `DigestServer`; the INVITE goes again with the next CSeq and the same
Call-ID and tags, answered once per challenger (RFC 3261 22.2, RFC 8760)."""

from __future__ import annotations

import secrets

import pytest

from telephony.call import Answered, Ended
from telephony.call.session import (
    InviteSession,
    Respond,
    Role,
    Send,
    SendAck,
    SendInvite,
    SessionState,
)
from telephony.sip import (
    AuthResult,
    DigestConfig,
    DigestServer,
    NameAddr,
    SipRequest,
    SipResponse,
    make_response,
)
from telephony.sip.challenge import DigestClient

from .test_session import UAS_HOST, Pair, _uri, _via, _wire, answered, events, invite_pair

REALM = "sip.provider.test"
USER, PASSWORD = "4951234567", "trunk-secret"


class Challenger:
    """A provider's proxy (407) or registrar-like UA (401) with one account."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self.server = DigestServer(secrets.token_bytes(32), DigestConfig(algorithms=(algorithm,)))

    def challenge(self, request: SipRequest, status: int) -> SipResponse:
        header = "Proxy-Authenticate" if status == 407 else "WWW-Authenticate"
        values = self.server.challenge(REALM, now=0.0)
        response = make_response(_wire(request), status, to_tag="px", extra=[(header, values[0])])  # type: ignore[arg-type]
        parsed = _wire(response)
        assert isinstance(parsed, SipResponse)
        return parsed

    def verify(self, request: SipRequest, header: str) -> AuthResult:
        value = request.headers.get(header)
        assert value is not None, f"no {header} in {request.method}"
        assert f"algorithm={self.algorithm}" in value or self.algorithm == "MD5"
        return self.server.verify(
            value,
            method=request.method,
            realm=REALM,
            now=0.0,
            password_lookup=lambda user: PASSWORD if user == USER else None,
        )


def _provider_pair() -> Pair:
    pair = invite_pair()
    pair.uac.digest = DigestClient(USER, PASSWORD)
    return pair


def _resent(effects: list[object], method: str) -> SipRequest:
    (effect,) = effects
    # The first INVITE again replaces the leg's INVITE transaction (SendInvite); a request in
    # the dialog (a re-INVITE, BYE, INFO) is a Send.
    assert isinstance(effect, Send | SendInvite) and effect.request.method == method
    assert isinstance(effect, SendInvite) == (
        method == "INVITE" and "tag=" not in str(effect.request.headers.get("To"))
    )
    request = _wire(effect.request)
    assert isinstance(request, SipRequest)
    return request


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
@pytest.mark.parametrize("status", [401, 407])
def test_a_challenged_invite_goes_again_and_connects(algorithm: str, status: int) -> None:
    challenger = Challenger(algorithm)
    pair = _provider_pair()
    first = pair.uac.invite
    effects = pair.uac.receive_response(challenger.challenge(first, status))
    retry = _resent(effects, "INVITE")
    assert retry.call_id == first.call_id
    assert retry.from_.tag == first.from_.tag and retry.to.tag is None
    assert retry.cseq.seq == first.cseq.seq + 1
    assert retry.top_via.branch != first.top_via.branch
    assert retry.body == first.body  # the same offer
    header = "Proxy-Authorization" if status == 407 else "Authorization"
    assert challenger.verify(retry, header) is AuthResult.OK
    assert "qop=auth" in (retry.headers.get(header) or "")
    assert pair.uac.state is SessionState.CALLING and not events(pair, "uac", Ended)
    # The far end answers the INVITE that carried the credentials.
    pair.uas = InviteSession(
        retry,
        Role.UAS,
        local_tag=secrets.token_hex(4),
        contact=NameAddr(None, _uri(None, UAS_HOST), {}),
        new_via=lambda: _via(UAS_HOST),
        negotiator=pair.uas_sdp,
    )
    answered(pair)
    assert (pair.uac.state, pair.uas.state) == (SessionState.CONNECTED, SessionState.CONNECTED)
    assert events(pair, "uac", Answered)
    assert pair.uac.dialog is not None and pair.uac.dialog.local_seq == retry.cseq.seq


def test_the_same_challenger_twice_means_refused_credentials() -> None:
    challenger = Challenger("MD5")
    pair = _provider_pair()
    retry = _resent(pair.uac.receive_response(challenger.challenge(pair.uac.invite, 407)), "INVITE")
    effects = pair.uac.receive_response(challenger.challenge(retry, 407))
    assert effects == [Ended(pair.uac.call_id, "rejected", 407)]
    assert pair.uac.final_status == 407


def test_without_credentials_a_challenge_ends_the_leg() -> None:
    pair = invite_pair()
    effects = pair.uac.receive_response(Challenger("MD5").challenge(pair.uac.invite, 407))
    assert effects == [Ended(pair.uac.call_id, "rejected", 407)]


def test_a_cancelled_invite_is_not_sent_again() -> None:
    pair = _provider_pair()
    cancel = pair.uac.hangup(reason="ring-timeout")
    assert [type(e) for e in cancel] == [Send]
    effects = pair.uac.receive_response(Challenger("MD5").challenge(pair.uac.invite, 407))
    assert effects == [Ended(pair.uac.call_id, "cancelled", 407)] or effects == [
        Ended(pair.uac.call_id, "ring-timeout", 407)
    ]


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_a_challenged_bye_goes_again_with_credentials(algorithm: str) -> None:
    challenger = Challenger(algorithm)
    pair = answered(_provider_pair())
    assert pair.uac.state is SessionState.CONNECTED
    hangup = pair.uac.hangup()
    bye = _resent([e for e in hangup if isinstance(e, Send)], "BYE")
    assert events(pair, "uac", Ended) == [] and isinstance(hangup[-1], Ended)
    effects = pair.uac.receive_response(challenger.challenge(bye, 401))
    again = _resent(effects, "BYE")
    assert again.cseq.seq == bye.cseq.seq + 1 and again.call_id == bye.call_id
    assert challenger.verify(again, "Authorization") is AuthResult.OK
    # Its 200 (or a second challenge) ends the matter: nothing more is sent.
    assert pair.uac.receive_response(challenger.challenge(again, 401)) == []


def test_a_challenged_info_keeps_its_body() -> None:
    challenger = Challenger("MD5")
    pair = answered(_provider_pair())
    info = _resent(pair.uac.info("application/dtmf-relay", b"Signal=5\r\nDuration=100\r\n"), "INFO")
    again = _resent(pair.uac.receive_response(challenger.challenge(info, 407)), "INFO")
    assert again.body == info.body
    assert again.headers.get("Content-Type") == "application/dtmf-relay"
    assert challenger.verify(again, "Proxy-Authorization") is AuthResult.OK


def test_responses_to_unchallenged_requests_change_nothing() -> None:
    pair = answered(_provider_pair())
    effects = [e for e in pair.uac.hangup() if isinstance(e, Send)]
    bye = _resent(effects, "BYE")
    ok = _wire(make_response(bye, 200))
    assert isinstance(ok, SipResponse)
    assert pair.uac.receive_response(ok) == []
    assert not [e for e in effects if isinstance(e, Respond | SendAck)]


def test_a_challenged_reinvite_goes_again_with_credentials() -> None:
    challenger = Challenger("SHA-256")
    pair = answered(_provider_pair())
    assert pair.uac.dialog is not None
    offer = pair.uac_sdp.local_sdp()
    reinvite = pair.uac.dialog.create_request(
        "INVITE", via=_via(UAS_HOST), body=offer, content_type="application/sdp"
    )
    sent = _resent([pair.uac._send_in_dialog(reinvite)], "INVITE")
    again = _resent(pair.uac.receive_response(challenger.challenge(sent, 407)), "INVITE")
    assert again.cseq.seq == sent.cseq.seq + 1 and again.body == offer
    assert challenger.verify(again, "Proxy-Authorization") is AuthResult.OK
    assert pair.uac.state is SessionState.CONNECTED  # the call itself goes on
    assert pair.uac.dialog.local_seq == again.cseq.seq
