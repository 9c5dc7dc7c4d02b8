"""Parsing, serialising and answering SIP messages (RFC 3261 sections 7, 8.2.6, 18.3)."""

from __future__ import annotations

import pytest

from telephony.sip.errors import ParseError, RemoteProtocolError, VersionNotSupported
from telephony.sip.headers import Headers
from telephony.sip.message import (
    REASON_PHRASES,
    CSeq,
    SipRequest,
    SipResponse,
    make_response,
    parse_message,
    response_to_unparsable,
)
from telephony.sip.uri import SipUri

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8;rport\r\n"
    b"Via: SIP/2.0/UDP bigbox3.site3.atlanta.example.com;branch=z9hG4bK77ef4c2312983.1\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>\r\n"
    b"Content-Type: application/sdp; charset=utf-8\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def test_parse_invite() -> None:
    msg = parse_message(INVITE)
    assert isinstance(msg, SipRequest)
    assert msg.method == "INVITE"
    assert msg.uri == SipUri(user="bob", host="biloxi.example.com")
    assert msg.version == "SIP/2.0"
    assert msg.body == b"v=0\n"
    assert msg.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert msg.cseq == CSeq(314159, "INVITE")
    assert str(msg.cseq) == "314159 INVITE"
    assert msg.from_.display_name == "Alice"
    assert msg.from_.tag == "1928301774"
    assert msg.to.tag is None
    assert [v.host for v in msg.vias] == [
        "pc33.atlanta.example.com",
        "bigbox3.site3.atlanta.example.com",
    ]
    assert msg.top_via.rport == ""
    assert len(msg.contacts) == 1
    assert not msg.contact_star
    assert [str(r.uri) for r in msg.record_routes] == [
        "sip:p2.example.com;lr",
        "sip:p1.example.com;lr",
    ]
    assert msg.routes == []
    assert msg.max_forwards == 70
    assert msg.expires is None
    assert msg.content_type == "application/sdp"
    assert msg.content_length == 4


def test_serialise_round_trip() -> None:
    msg = parse_message(INVITE)
    data = bytes(msg)
    assert data == INVITE
    assert parse_message(data) == msg


def test_folding_compact_forms_and_lws_around_colon() -> None:
    data = (
        b"OPTIONS sip:a@b SIP/2.0\r\n"
        b"v  : SIP/2.0/UDP h1;branch=z9hG4bK1 ,\r\n"
        b"  SIP/2.0/TCP h2;branch=z9hG4bK2\r\n"
        b"f:<sip:x@y>;tag=1\r\n"
        b"t :\r\n\t<sip:a@b>\r\n"
        b"i: abc\r\n"
        b"cseq: 0009\r\n  OPTIONS\r\n"
        b"l: 0\r\n"
        b"\r\n"
    )
    msg = parse_message(data)
    assert [v.transport for v in msg.vias] == ["UDP", "TCP"]
    assert msg.headers.get("To") == "<sip:a@b>"
    assert msg.headers.get("t") == "<sip:a@b>"
    assert msg.cseq == CSeq(9, "OPTIONS")
    assert [name for name, _ in msg.headers] == [
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Content-Length",
    ]
    assert parse_message(bytes(msg)) == msg


def test_response_parse_and_empty_reason() -> None:
    msg = parse_message(
        b"SIP/2.0 100 \r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 1 INVITE\r\n\r\n"
    )
    assert isinstance(msg, SipResponse)
    assert (msg.status, msg.reason) == (100, "")
    assert bytes(msg).startswith(b"SIP/2.0 100 \r\n")
    assert msg.body == b""


def test_utf8_reason_phrase() -> None:
    reason = "\u043d\u043e \u0441\u0442\u043e"
    msg = parse_message(f"SIP/2.0 200 {reason}\r\nContent-Length: 0\r\n\r\n".encode())
    assert isinstance(msg, SipResponse)
    assert msg.reason == reason


def test_body_framing_over_udp() -> None:
    head = b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
    # trailing octets after Content-Length are ignored (RFC 3261 18.3)
    assert parse_message(head + b"Content-Length: 2\r\n\r\nhiTRAILING").body == b"hi"
    # without Content-Length the body is the rest of the datagram
    assert parse_message(head + b"\r\nwhole rest").body == b"whole rest"
    for bad in (b"9999", b"-1", b"five", b" "):
        with pytest.raises(ParseError):
            parse_message(head + b"Content-Length: " + bad + b"\r\n\r\nhi")
    with pytest.raises(ParseError, match="conflicting"):
        parse_message(head + b"Content-Length: 2\r\nl: 1\r\n\r\nhi")
    # identical duplicates frame fine (check_request still refuses them)
    assert parse_message(head + b"Content-Length: 2\r\nl: 2\r\n\r\nhi").body == b"hi"


def test_leading_crlf_ignored() -> None:
    msg = parse_message(b"\r\n\r\n" + INVITE)
    assert isinstance(msg, SipRequest)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0",  # no header terminator
        b"INVITE  sip:a@b SIP/2.0\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0 \r\n\r\n",
        b"INVITE <sip:a@b> SIP/2.0\r\n\r\n",
        b"INVITE sip:a@b\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nNoColonHere\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nX: a\nY: b\r\n\r\n",  # bare LF
        b"INVITE sip:a@b SIP/2.0\r\nX: a\rY: b\r\n\r\n",  # bare CR
        b"SIP/2.0 4294967301 big\r\n\r\n",
        b"SIP/2.0 099 low\r\n\r\n",
        b"SIP/2.0 700 high\r\n\r\n",
        b"SIP/2.0\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nCSeq: 99999999999 INVITE\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nCSeq: INVITE\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;;\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nMax-Forwards: -1\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nCall-ID: has space\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nTo: <sip:a@b\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nContact: *, <sip:a@b>\r\n\r\n",
    ],
)
def test_malformed_messages_raise_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError):
        parse_message(data)


def test_version_not_supported_keeps_partial() -> None:
    data = INVITE.replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1)
    with pytest.raises(VersionNotSupported) as info:
        parse_message(data)
    assert info.value.status_code == 505
    response = response_to_unparsable(info.value)
    assert response is not None
    assert response.status == 505
    assert response.reason == "Version Not Supported"


def test_lowercase_version_is_normalised() -> None:
    msg = parse_message(INVITE.replace(b"SIP/2.0\r\n", b"sip/2.0\r\n", 1))
    assert msg.version == "SIP/2.0"


def test_typed_accessors_raise_on_missing() -> None:
    req = SipRequest("OPTIONS", SipUri(host="example.com"))
    for name in ("call_id", "cseq", "from_", "to", "vias", "top_via"):
        with pytest.raises(ParseError):
            getattr(req, name)
    assert req.contacts == []
    assert req.routes == []
    assert req.max_forwards is None
    assert req.content_type is None


def test_scalar_limits() -> None:
    base = b"REGISTER sip:a@b SIP/2.0\r\n"
    msg = parse_message(base + b"Max-Forwards: 300\r\nExpires: " + b"1" * 100 + b"\r\n\r\n")
    assert msg.max_forwards is None  # RFC 4475 3.1.2.4: may be treated as absent
    assert msg.expires == 3600
    assert parse_message(base + b"Expires: 0600\r\n\r\n").expires == 600
    assert parse_message(base + b"CSeq: 4294967295 REGISTER\r\n\r\n").cseq.seq == 2**32 - 1
    with pytest.raises(ParseError):
        parse_message(base + b"CSeq: 4294967296 REGISTER\r\n\r\n")


def test_contact_star() -> None:
    msg = parse_message(b"REGISTER sip:a@b SIP/2.0\r\nContact: *\r\nExpires: 0\r\n\r\n")
    assert msg.contact_star
    assert msg.contacts == []


def test_make_response_copies_rfc3261_headers() -> None:
    req = parse_message(INVITE)
    assert isinstance(req, SipRequest)
    resp = make_response(req, 180, to_tag="a6c85cf", extra=[("Contact", "<sip:bob@192.0.2.4>")])
    assert (resp.status, resp.reason) == (180, "Ringing")
    assert resp.headers.get_lines("Via") == req.headers.get_lines("Via")
    assert resp.headers.get("From") == req.headers.get("From")
    assert resp.to.tag == "a6c85cf"
    assert resp.headers.get("To") == "Bob <sip:bob@biloxi.example.com>;tag=a6c85cf"
    assert resp.call_id == req.call_id
    assert resp.cseq == req.cseq
    assert resp.headers.get("Contact") == "<sip:bob@192.0.2.4>"
    assert "Record-Route" not in resp.headers
    again = parse_message(bytes(resp))
    assert again == resp

    trying = make_response(req, 100, to_tag="x")
    assert trying.to.tag is None  # never on 100 Trying
    custom = make_response(req, 486, "Busy Now")
    assert custom.reason == "Busy Now"
    assert custom.to.tag is None

    tagged = parse_message(INVITE.replace(b"Bob <sip:bob@biloxi.example.com>", b"<sip:b@c>;tag=1"))
    assert isinstance(tagged, SipRequest)
    assert make_response(tagged, 200, to_tag="2").to.tag == "1"


def test_reason_phrases() -> None:
    assert REASON_PHRASES[420] == "Bad Extension"
    assert REASON_PHRASES[491] == "Request Pending"
    assert REASON_PHRASES[493] == "Undecipherable"
    req = parse_message(INVITE)
    assert isinstance(req, SipRequest)
    assert make_response(req, 499).reason == "Client Error"


def test_response_to_unparsable_builds_400_with_copied_headers() -> None:
    data = INVITE.replace(b"Content-Length: 4", b"Content-Length: 40")
    with pytest.raises(ParseError) as info:
        parse_message(data)
    resp = response_to_unparsable(info.value)
    assert resp is not None
    assert resp.status == 400
    assert resp.headers.get_lines("Via") == [
        "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8;rport",
        "SIP/2.0/UDP bigbox3.site3.atlanta.example.com;branch=z9hG4bK77ef4c2312983.1",
    ]
    assert resp.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert resp.cseq == CSeq(314159, "INVITE")
    assert resp.to.tag  # error responses carry a To tag


def test_response_to_unparsable_stays_silent() -> None:
    cases = [
        b"SIP/2.0 200 OK\r\nCSeq: 99999999999 INVITE\r\n\r\n",  # a response
        b"ACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: x\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nCSeq: x\r\n\r\n",  # no Via
        b"garbage\r\n\r\n",
    ]
    for data in cases:
        with pytest.raises(RemoteProtocolError) as info:
            parse_message(data)
        assert response_to_unparsable(info.value) is None


def test_error_without_partial_is_silent() -> None:
    assert response_to_unparsable(ParseError("x")) is None


def test_error_status_override_and_headers() -> None:
    err = RemoteProtocolError("no", status_code=420, headers=[("Unsupported", "foo")])
    assert err.status_code == 420
    assert err.headers == [("Unsupported", "foo")]
    assert ParseError("x").status_code == 400
    assert VersionNotSupported("x").status_code == 505


def test_bytes_sets_content_length() -> None:
    req = SipRequest(
        "MESSAGE",
        SipUri(user="bob", host="example.com"),
        Headers([("Content-Length", "999"), ("l", "3"), ("Content-Type", "text/plain")]),
        b"hello",
    )
    data = bytes(req)
    assert data == (
        b"MESSAGE sip:bob@example.com SIP/2.0\r\n"
        b"Content-Length: 5\r\n"
        b"Content-Type: text/plain\r\n"
        b"\r\n"
        b"hello"
    )
    resp = SipResponse(200, "OK")
    assert bytes(resp) == b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"


def test_binary_body_with_nul_and_lf_survives() -> None:
    body = b"\x00\x01\nbinary\r\n\r\n\x00"
    req = SipRequest("MESSAGE", SipUri(host="h"), Headers([("Content-Type", "x/y")]), body)
    assert parse_message(bytes(req)).body == body


def test_typed_headers_follow_local_edits() -> None:
    # The accessors keep what they parsed while the header's text stays the same, and parse
    # again after a local edit, including one that makes the header malformed.
    msg = parse_message(INVITE)
    assert msg.to is msg.to and msg.to.tag is None
    msg.headers.set("To", "Bob <sip:bob@biloxi.example.com>;tag=abc")
    assert msg.to.tag == "abc"
    assert msg.top_via.branch == "z9hG4bKnashds8"
    msg.headers.insert(0, "Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKnew")
    assert msg.top_via.branch == "z9hG4bKnew"
    assert [v.branch for v in msg.vias][:2] == ["z9hG4bKnew", "z9hG4bKnashds8"]
    vias = msg.vias
    vias.clear()  # a caller's list is its own
    assert len(msg.vias) == 3
    msg.headers.set("CSeq", "314160 INVITE")
    assert msg.cseq == CSeq(314160, "INVITE")
    msg.headers.set("CSeq", "many INVITE")
    with pytest.raises(ParseError):
        msg.cseq  # noqa: B018
    msg.headers.set("Call-ID", "bad id with spaces")
    with pytest.raises(ParseError):
        msg.call_id  # noqa: B018
    msg.headers.set("Contact", "<sip:alice@elsewhere.example.com>")
    assert [c.uri.host for c in msg.contacts] == ["elsewhere.example.com"]
    msg.headers.remove("Record-Route")
    assert msg.record_routes == []
