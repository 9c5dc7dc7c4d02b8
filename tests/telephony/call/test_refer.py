"""REFER (RFC 3515) and Replaces (RFC 3891) in the INVITE session, in memory: the transferor's
REFER reaches the layer above as ReferReceived, which accepts (202, NOTIFYs with
message/sipfrag progress ending the implicit subscription) or refuses it."""

from __future__ import annotations

import pytest

from telephony.call.session import (
    ReferReceived,
    Replaces,
    Respond,
    Send,
    SessionState,
)
from telephony.sip import SipRequest

from .test_session import UAC_HOST, Pair, _via, _wire, answered, events, invite_pair


def _refer(pair: Pair, *refer_to: str, referred_by: str | None = None) -> SipRequest:
    assert pair.uac.dialog is not None
    headers = [("Refer-To", target) for target in refer_to]
    if referred_by:
        headers.append(("Referred-By", referred_by))
    request = pair.uac.dialog.create_request("REFER", via=_via(UAC_HOST), headers=headers)
    received = _wire(request)
    assert isinstance(received, SipRequest)
    return received


def test_a_blind_refer_is_handed_up_then_accepted_with_202_and_sipfrag_notifies() -> None:
    pair = answered(invite_pair())
    refer = _refer(pair, "<sip:103@10.0.0.9>", referred_by="<sip:101@10.0.0.1>")
    effects = pair.uas.receive_request(refer)
    assert len(effects) == 1 and isinstance(effects[0], ReferReceived)
    received = effects[0]
    assert str(received.refer_to.uri) == "sip:103@10.0.0.9"
    assert received.replaces is None and received.referred_by == "<sip:101@10.0.0.1>"

    accepted = pair.uas.accept_refer(refer)
    assert isinstance(accepted[0], Respond) and accepted[0].response.status == 202
    notify = accepted[1]
    assert isinstance(notify, Send) and notify.request.method == "NOTIFY"
    assert notify.request.headers.get("Event") == f"refer;id={refer.cseq.seq}"
    assert notify.request.headers.get("Subscription-State") == "active;expires=60"
    assert notify.request.headers.get("Content-Type") == "message/sipfrag;version=2.0"
    assert notify.request.body == b"SIP/2.0 100 Trying\r\n"
    pair.deliver("uas", accepted)  # the transferor takes the NOTIFY (200) in its dialog

    ringing = pair.uas.notify_refer(180)
    assert isinstance(ringing[0], Send) and ringing[0].request.body == b"SIP/2.0 180 Ringing\r\n"
    final = pair.uas.notify_refer(200)
    assert isinstance(final[0], Send)
    assert final[0].request.body == b"SIP/2.0 200 OK\r\n"
    assert final[0].request.headers.get("Subscription-State") == "terminated;reason=noresource"
    pair.deliver("uas", final)
    assert pair.uas.notify_refer(200) == []  # the subscription is over: nothing more to say
    # The dialog's CSeq moved on: the NOTIFYs were ours and went out in order.
    assert ringing[0].request.cseq.seq < final[0].request.cseq.seq


def test_an_attended_refer_carries_the_replaces_of_the_consultation_dialog() -> None:
    pair = answered(invite_pair())
    target = "<sip:103@10.0.0.9?Replaces=abc%4010.0.0.1%3Bto-tag%3D11%3Bfrom-tag%3D22>"
    (effect,) = pair.uas.receive_request(_refer(pair, target))
    assert isinstance(effect, ReferReceived)
    assert effect.replaces == Replaces("abc@10.0.0.1", "11", "22")
    assert str(effect.replaces) == "abc@10.0.0.1;to-tag=11;from-tag=22"


@pytest.mark.parametrize(
    ("targets", "status"),
    [((), 400), (("<sip:1@h>", "<sip:2@h>"), 400), (("<sip:1@h?Replaces=only-a-call-id>",), 400)],
)
def test_a_refer_without_one_usable_refer_to_gets_400(
    targets: tuple[str, ...], status: int
) -> None:
    pair = answered(invite_pair())
    (effect,) = pair.uas.receive_request(_refer(pair, *targets))
    assert isinstance(effect, Respond) and effect.response.status == status


def test_a_refused_refer_gets_its_status_and_no_notify() -> None:
    pair = answered(invite_pair())
    refer = _refer(pair, "<sip:103@10.0.0.9>")
    pair.uas.receive_request(refer)
    (effect,) = pair.uas.reject_refer(refer, 403, "Transfer not allowed")
    assert isinstance(effect, Respond) and effect.response.status == 403
    assert pair.uas.notify_refer(200) == []


def test_a_second_refer_while_the_first_runs_gets_491_and_one_after_a_hangup_481() -> None:
    pair = answered(invite_pair())
    first = _refer(pair, "<sip:103@10.0.0.9>")
    pair.uas.receive_request(first)
    pair.deliver("uas", pair.uas.accept_refer(first))
    (busy,) = pair.uas.receive_request(_refer(pair, "<sip:104@10.0.0.9>"))
    assert isinstance(busy, Respond) and busy.response.status == 491
    late = _refer(pair, "<sip:104@10.0.0.9>")
    pair.deliver("uac", pair.uac.hangup())
    assert pair.uas.state is SessionState.ENDED
    assert pair.uas.notify_refer(200) == []  # the transferor left: no NOTIFY to send
    (gone,) = pair.uas.receive_request(late)
    assert isinstance(gone, Respond) and gone.response.status == 481


def test_a_notify_in_the_dialog_is_answered_200_by_the_transferor_side() -> None:
    pair = answered(invite_pair())
    refer = _refer(pair, "<sip:103@10.0.0.9>")
    pair.uas.receive_request(refer)
    pair.deliver("uas", pair.uas.accept_refer(refer))
    assert not events(pair, "uac", ReferReceived)
    assert pair.uac.state is SessionState.CONNECTED


def test_replaces_parsing_needs_both_tags() -> None:
    assert Replaces.parse("a@b;from-tag=2;to-tag=1;early-only") == Replaces("a@b", "1", "2", True)
    with pytest.raises(ValueError):
        Replaces.parse("a@b;to-tag=1")
