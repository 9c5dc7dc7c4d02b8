"""check_request: what a UAS refuses, with which status and headers (RFC 3261 8.2)."""

from __future__ import annotations

import pytest

from telephony.sip.errors import RemoteProtocolError
from telephony.sip.message import SipRequest, parse_message, response_to_unparsable
from telephony.sip.validate import check_request

ALLOWED = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER"})


def request(
    method: str = "INVITE",
    uri: str = "sip:bob@example.com",
    extra: str = "",
    body: bytes = b"",
    cseq_method: str | None = None,
) -> SipRequest:
    text = (
        f"{method} {uri} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        "From: <sip:a@example.com>;tag=1\r\n"
        "To: <sip:bob@example.com>\r\n"
        "Call-ID: c1\r\n"
        f"CSeq: 1 {cseq_method or method}\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    msg = parse_message(text.encode() + body)
    assert isinstance(msg, SipRequest)
    return msg


def refusal(req: SipRequest, **kwargs: frozenset[str]) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        check_request(req, allowed_methods=ALLOWED, **kwargs)
    assert info.value.partial is req
    return info.value


def test_ordinary_requests_pass() -> None:
    check_request(request(), allowed_methods=ALLOWED)
    sdp = request(extra="Content-Type: application/sdp\r\n", body=b"v=0\r\n")
    check_request(sdp, allowed_methods=ALLOWED)
    check_request(request("OPTIONS", extra="Accept: text/plain\r\n"), allowed_methods=ALLOWED)
    check_request(request(extra="Accept: application/*\r\n"), allowed_methods=ALLOWED)
    check_request(
        request(extra="Require: Timer\r\n"),
        allowed_methods=ALLOWED,
        supported=frozenset({"timer"}),
    )


@pytest.mark.parametrize("header", ["To", "From", "Call-ID", "CSeq", "Via"])
def test_missing_required_header_is_400(header: str) -> None:
    req = request()
    req.headers.remove(header)
    assert refusal(req).status_code == 400


def test_missing_max_forwards_is_tolerated() -> None:
    req = request()
    req.headers.remove("Max-Forwards")
    check_request(req, allowed_methods=ALLOWED)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Call-ID", "c2"),
        ("To", "<sip:x@y>"),
        ("From", "<sip:x@y>;tag=2"),
        ("CSeq", "2 INVITE"),
        ("Max-Forwards", "5"),
        ("l", "0"),
    ],
)
def test_duplicate_single_value_header_is_400(name: str, value: str) -> None:
    req = request()
    req.headers.add(name, value)
    assert refusal(req).status_code == 400


def test_unknown_method_is_501_with_allow() -> None:
    err = refusal(request("NEWMETHOD", cseq_method="INVITE"))  # 501 beats the CSeq mismatch
    assert err.status_code == 501
    assert err.headers == [("Allow", "ACK, BYE, CANCEL, INVITE, OPTIONS, REGISTER")]
    resp = response_to_unparsable(err)
    assert resp is not None
    assert resp.status == 501
    assert resp.headers.get("Allow") == "ACK, BYE, CANCEL, INVITE, OPTIONS, REGISTER"


def test_cseq_method_mismatch_is_400() -> None:
    assert refusal(request("OPTIONS", cseq_method="INVITE")).status_code == 400


def test_non_sip_request_uri_is_416() -> None:
    assert refusal(request(uri="tel:+15551234")).status_code == 416


def test_request_uri_with_headers_is_400() -> None:
    assert refusal(request(uri="sip:a@b?Route=%3Csip:x%3E")).status_code == 400


def test_unsupported_require_is_420_with_unsupported() -> None:
    err = refusal(
        request("OPTIONS", extra="Require: foo, timer\r\nProxy-Require: bar\r\n"),
        supported=frozenset({"timer"}),
    )
    assert err.status_code == 420
    assert err.headers == [("Unsupported", "foo")]


def test_require_ignored_on_ack_and_cancel() -> None:
    for method in ("ACK", "CANCEL"):
        check_request(request(method, extra="Require: foo\r\n"), allowed_methods=ALLOWED)


def test_unknown_body_type_is_415_with_accept() -> None:
    err = refusal(request(extra="Content-Type: application/unknown\r\n", body=b"<x/>"))
    assert err.status_code == 415
    assert err.headers == [("Accept", "application/sdp")]


def test_unknown_content_encoding_is_415() -> None:
    req = request(
        extra="Content-Type: application/sdp\r\nContent-Encoding: gzip\r\n", body=b"\x1f\x8b"
    )
    err = refusal(req)
    assert err.status_code == 415
    assert err.headers == [("Accept-Encoding", "identity")]


def test_body_without_content_type_is_400() -> None:
    assert refusal(request(body=b"v=0")).status_code == 400


def test_bodies_of_other_methods_are_not_inspected() -> None:
    req = request("OPTIONS", extra="Content-Type: application/x-whatever\r\n", body=b"abc")
    check_request(req, allowed_methods=ALLOWED)


def test_accept_without_sdp_is_406() -> None:
    err = refusal(request(extra="Accept: text/nobodyKnowsThis\r\n"))
    assert err.status_code == 406
