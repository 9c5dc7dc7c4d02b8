"""Dialogs (RFC 3261 section 12): creation on both sides, route sets, CSeq order, target refresh."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telephony.sip.dialog import (
    DIALOG_TRANSITIONS,
    Dialog,
    DialogInput,
    DialogState,
    dialog_id_of_received_request,
    dialog_id_of_response,
)
from telephony.sip.errors import LocalProtocolError, ParseError, RemoteProtocolError
from telephony.sip.message import SipRequest, SipResponse, make_response, parse_message
from telephony.sip.uri import NameAddr, SipUri, Via

ALICE_CONTACT = "<sip:alice@192.0.2.10:5070>"
BOB_CONTACT = "<sip:bob@192.0.2.20:5080;transport=udp>"


def invite(
    *,
    record_route: tuple[str, ...] | list[str] = (),
    uri: str = "sip:bob@example.com",
    contact: str | None = ALICE_CONTACT,
    cseq: int = 101,
) -> SipRequest:
    lines = [
        f"INVITE {uri} SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKproxy",
        "Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKalice",
        "Max-Forwards: 69",
        "To: Bob <sip:bob@example.com>",
        'From: "Alice" <sip:alice@example.com>;tag=alicetag',
        "Call-ID: dialog-test@192.0.2.10",
        f"CSeq: {cseq} INVITE",
    ]
    lines += [f"Record-Route: {rr}" for rr in record_route]
    if contact is not None:
        lines.append(f"Contact: {contact}")
    lines.append("Content-Length: 0")
    req = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(req, SipRequest)
    return req


def answer(
    req: SipRequest, status: int, *, contact: str | None = BOB_CONTACT, to_tag: str = "bobtag"
) -> SipResponse:
    extra = [("Contact", contact)] if contact is not None else []
    extra += [("Record-Route", rr) for rr in req.headers.get_all("Record-Route")]
    resp = parse_message(bytes(make_response(req, status, to_tag=to_tag, extra=extra)))
    assert isinstance(resp, SipResponse)
    return resp


RR = ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
VIA = Via(transport="UDP", host="192.0.2.10", port=5070, params={"branch": "z9hG4bKnew1"})


def roundtrip(req: SipRequest) -> SipRequest:
    parsed = parse_message(bytes(req))
    assert isinstance(parsed, SipRequest)
    return parsed


def test_uas_dialog() -> None:
    req = invite(record_route=RR)
    ringing = answer(req, 180)
    dialog = Dialog.from_uas(req, ringing)
    assert dialog.state is DialogState.EARLY and not dialog.is_uac
    assert dialog.dialog_id == ("dialog-test@192.0.2.10", "bobtag", "alicetag")
    assert dialog.remote_seq == 101 and dialog.local_seq == 0
    assert str(dialog.remote_target) == "sip:alice@192.0.2.10:5070"
    assert [str(r.uri) for r in dialog.route_set] == [
        "sip:p1.example.com;lr",
        "sip:p2.example.com;lr",
    ]
    assert dialog.local_uri.tag is None and str(dialog.local_uri.uri) == "sip:bob@example.com"
    assert dialog.remote_uri.display_name == "Alice" and dialog.remote_uri.tag is None
    assert not dialog.secure
    dialog.confirm()
    assert dialog.state is DialogState.CONFIRMED
    assert dialog_id_of_received_request(req)[0] == dialog.call_id


def test_uac_dialog_reverses_record_route() -> None:
    req = invite(record_route=RR)
    ok = answer(req, 200)
    dialog = Dialog.from_uac(req, ok)
    assert dialog.state is DialogState.CONFIRMED and dialog.is_uac
    assert dialog.dialog_id == ("dialog-test@192.0.2.10", "alicetag", "bobtag")
    assert dialog.dialog_id == dialog_id_of_response(ok)
    assert dialog.local_seq == 101 and dialog.remote_seq is None
    assert str(dialog.remote_target) == "sip:bob@192.0.2.20:5080;transport=udp"
    assert [str(r.uri) for r in dialog.route_set] == [
        "sip:p2.example.com;lr",
        "sip:p1.example.com;lr",
    ]


def test_uac_early_dialog_without_contact_targets_the_request_uri() -> None:
    req = invite()
    dialog = Dialog.from_uac(req, answer(req, 183, contact=None))
    assert dialog.state is DialogState.EARLY
    assert str(dialog.remote_target) == "sip:bob@example.com"
    with pytest.raises(ParseError):
        Dialog.from_uac(req, answer(req, 200, contact=None))


def test_creation_refuses_what_cannot_make_a_dialog() -> None:
    req = invite()
    with pytest.raises(LocalProtocolError):
        Dialog.from_uas(req, make_response(req, 180))  # no To tag
    with pytest.raises(LocalProtocolError):
        Dialog.from_uas(req, answer(req, 486))
    with pytest.raises(LocalProtocolError):
        Dialog.from_uac(req, make_response(req, 100))
    with pytest.raises(ParseError) as info:
        Dialog.from_uas(invite(contact=None), answer(req, 200))
    assert info.value.status_code == 400
    with pytest.raises(ParseError):
        Dialog.from_uas(invite(contact="<tel:+15550001>"), answer(req, 200))


def test_sips_request_uri_makes_a_secure_dialog() -> None:
    req = invite(uri="sips:bob@example.com")
    assert Dialog.from_uas(req, answer(req, 200)).secure
    assert not Dialog.from_uas(req, answer(req, 200), secure=False).secure


def test_loose_routing_request() -> None:
    req = invite(record_route=RR)
    dialog = Dialog.from_uac(req, answer(req, 200))
    contact = NameAddr(None, SipUri(user="alice", host="192.0.2.10", port=5070))
    info = roundtrip(
        dialog.create_request(
            "INFO",
            via=VIA,
            contact=contact,
            headers=[("Info-Package", "dtmf")],
            body=b"Signal=5\r\n",
            content_type="application/dtmf-relay",
        )
    )
    assert info.method == "INFO"
    assert str(info.uri) == "sip:bob@192.0.2.20:5080;transport=udp"
    assert [str(r.uri) for r in info.routes] == ["sip:p2.example.com;lr", "sip:p1.example.com;lr"]
    assert (info.cseq.seq, info.cseq.method) == (102, "INFO")
    assert info.from_.tag == "alicetag" and info.to.tag == "bobtag"
    assert info.from_.display_name == "Alice"
    assert info.call_id == "dialog-test@192.0.2.10"
    assert info.max_forwards == 70
    assert info.top_via.branch == "z9hG4bKnew1"
    assert info.contacts[0].uri == contact.uri
    assert info.headers.get("Info-Package") == "dtmf"
    assert info.content_type == "application/dtmf-relay" and info.body == b"Signal=5\r\n"
    assert dialog.local_seq == 102
    bye = dialog.create_request("BYE", via=VIA)
    assert bye.cseq.seq == 103


def test_no_route_set_means_no_route_header() -> None:
    req = invite()
    dialog = Dialog.from_uas(req, answer(req, 200))
    bye = roundtrip(dialog.create_request("BYE", via=VIA))
    assert "Route" not in bye.headers
    assert str(bye.uri) == "sip:alice@192.0.2.10:5070"
    assert bye.cseq.seq == 1  # a UAS picks its own first number
    assert bye.from_.tag == "bobtag" and bye.to.tag == "alicetag"


def test_strict_routing_request() -> None:
    req = invite(record_route=["<sip:strict.example.com;method=INVITE>", "<sip:p2.example.com;lr>"])
    # As UAS: the route set is in order, the first hop is a strict router.
    dialog = Dialog.from_uas(req, answer(req, 200))
    bye = roundtrip(dialog.create_request("BYE", via=VIA))
    assert str(bye.uri) == "sip:strict.example.com"  # method param not allowed in a Request-URI
    assert [str(r.uri) for r in bye.routes] == [
        "sip:p2.example.com;lr",
        "sip:alice@192.0.2.10:5070",
    ]


def test_ack_and_cancel_take_the_invite_cseq() -> None:
    req = invite()
    dialog = Dialog.from_uac(req, answer(req, 200))
    ack = roundtrip(dialog.create_ack(101, via=VIA))
    assert (ack.method, ack.cseq.seq, ack.cseq.method) == ("ACK", 101, "ACK")
    assert dialog.local_seq == 101
    with pytest.raises(LocalProtocolError):
        dialog.create_request("CANCEL", via=VIA)
    with pytest.raises(LocalProtocolError):
        dialog.create_request("BYE", via=VIA, cseq=5)
    with pytest.raises(LocalProtocolError):
        dialog.create_request("INFO", via=VIA, body=b"x")  # body without a type


def test_remote_cseq_order() -> None:
    req = invite(cseq=10)
    dialog = Dialog.from_uas(req, answer(req, 200))
    in_dialog = _peer_request(dialog, "INFO", 12)
    dialog.receive_request(in_dialog)
    assert dialog.remote_seq == 12
    with pytest.raises(RemoteProtocolError) as info:
        dialog.receive_request(_peer_request(dialog, "INFO", 11))
    assert info.value.status_code == 500
    assert dialog.remote_seq == 12
    # ACK and CANCEL carry the INVITE's (older) number: not an ordering error.
    dialog.receive_request(_peer_request(dialog, "ACK", 10))
    dialog.receive_request(_peer_request(dialog, "INFO", 13))
    assert dialog.remote_seq == 13


def test_uac_dialog_accepts_any_first_remote_cseq() -> None:
    req = invite()
    dialog = Dialog.from_uac(req, answer(req, 200))
    peer_bye = _peer_request(dialog, "BYE", 1)
    dialog.receive_request(peer_bye)
    assert dialog.remote_seq == 1
    assert dialog.state is DialogState.TERMINATED
    with pytest.raises(RemoteProtocolError) as info:
        dialog.receive_request(_peer_request(dialog, "INFO", 2))
    assert info.value.status_code == 481


def test_request_of_another_dialog_is_refused() -> None:
    req = invite()
    dialog = Dialog.from_uas(req, answer(req, 200))
    other = Dialog.from_uas(req, answer(req, 200, to_tag="othertag"))
    with pytest.raises(LocalProtocolError):
        dialog.receive_request(_peer_request(other, "INFO", 200))


def test_target_refresh_by_reinvite_not_by_info() -> None:
    req = invite()
    dialog = Dialog.from_uas(req, answer(req, 200))
    info = _peer_request(dialog, "INFO", 102, contact="<sip:alice@198.51.100.7>")
    dialog.receive_request(info)
    assert str(dialog.remote_target) == "sip:alice@192.0.2.10:5070"
    reinvite = _peer_request(dialog, "INVITE", 103, contact="<sip:alice@198.51.100.7>")
    dialog.receive_request(reinvite)
    assert str(dialog.remote_target) == "sip:alice@198.51.100.7"
    update = _peer_request(dialog, "UPDATE", 104, contact="<sip:alice@198.51.100.8>")
    dialog.receive_request(update)
    assert str(dialog.remote_target) == "sip:alice@198.51.100.8"


def test_target_refresh_by_2xx_to_our_reinvite() -> None:
    req = invite()
    dialog = Dialog.from_uac(req, answer(req, 200))
    reinvite = dialog.create_request("INVITE", via=VIA)
    dialog.receive_response(answer(reinvite, 200, contact="<sip:bob@198.51.100.9>"))
    assert str(dialog.remote_target) == "sip:bob@198.51.100.9"
    assert dialog.state is DialogState.CONFIRMED
    # A failed re-INVITE leaves the dialog alone, a 481 ends it.
    reinvite = dialog.create_request("INVITE", via=VIA)
    dialog.receive_response(answer(reinvite, 488, contact="<sip:bob@198.51.100.10>"))
    assert str(dialog.remote_target) == "sip:bob@198.51.100.9"
    assert dialog.state is DialogState.CONFIRMED
    info = dialog.create_request("INFO", via=VIA)
    dialog.receive_response(answer(info, 481))
    assert dialog.state is DialogState.TERMINATED


def test_early_dialog_confirmed_by_2xx_recomputes_route_set() -> None:
    req = invite(record_route=RR)
    ringing = answer(req, 180)
    dialog = Dialog.from_uac(req, ringing)
    assert dialog.state is DialogState.EARLY
    ok_headers = make_response(
        req,
        200,
        to_tag="bobtag",
        extra=[("Contact", "<sip:bob@198.51.100.11>"), ("Record-Route", "<sip:p9.example.com;lr>")],
    )
    dialog.receive_response(ok_headers)
    assert dialog.state is DialogState.CONFIRMED
    assert [str(r.uri) for r in dialog.route_set] == ["sip:p9.example.com;lr"]
    assert str(dialog.remote_target) == "sip:bob@198.51.100.11"


def test_early_dialog_ended_by_failure() -> None:
    req = invite()
    dialog = Dialog.from_uac(req, answer(req, 180))
    dialog.receive_response(answer(req, 486))
    assert dialog.state is DialogState.TERMINATED


def test_sending_bye_ends_the_dialog() -> None:
    req = invite()
    dialog = Dialog.from_uac(req, answer(req, 200))
    dialog.create_request("BYE", via=VIA)
    assert dialog.terminated
    with pytest.raises(LocalProtocolError):
        dialog.create_request("INFO", via=VIA)
    # A late ACK (2xx retransmission) is still allowed.
    dialog.create_ack(101, via=VIA)


def test_uac_bye_reaches_the_uas_dialog() -> None:
    """Both halves of one dialog agree on ids and numbers."""
    req = invite(record_route=RR)
    ok = answer(req, 200)
    uac = Dialog.from_uac(req, ok)
    uas = Dialog.from_uas(req, ok)
    bye = roundtrip(uac.create_request("BYE", via=VIA))
    assert dialog_id_of_received_request(bye) == uas.dialog_id
    uas.receive_request(bye)
    assert uas.remote_seq == 102 and uas.terminated
    bye_ok = parse_message(bytes(make_response(bye, 200)))
    assert isinstance(bye_ok, SipResponse)
    assert dialog_id_of_response(bye_ok) == uac.dialog_id


@given(st.lists(st.sampled_from(list(DialogInput)), max_size=12), st.sampled_from([180, 200]))
def test_state_table(inputs: list[DialogInput], status: int) -> None:
    req = invite()
    dialog = Dialog.from_uac(req, answer(req, status))
    for event in inputs:
        before = dialog.state
        if (before, event) in DIALOG_TRANSITIONS:
            dialog.handle(event)
            assert dialog.state is DIALOG_TRANSITIONS[(before, event)]
        else:
            with pytest.raises(LocalProtocolError):
                dialog.handle(event)
            assert dialog.state is before


def _peer_request(
    dialog: Dialog, method: str, cseq: int, *, contact: str | None = None
) -> SipRequest:
    """A request the peer sends inside ``dialog`` (From = their tag, To = ours)."""
    lines = [
        f"{method} {dialog.local_uri.uri} SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKpeer" + str(cseq),
        "Max-Forwards: 70",
        f"From: {dialog.remote_uri.with_tag(dialog.remote_tag)}",
        f"To: {dialog.local_uri.with_tag(dialog.local_tag)}",
        f"Call-ID: {dialog.call_id}",
        f"CSeq: {cseq} {method}",
    ]
    if contact is not None:
        lines.append(f"Contact: {contact}")
    lines.append("Content-Length: 0")
    req = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(req, SipRequest)
    return req
