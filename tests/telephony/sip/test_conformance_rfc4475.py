"""RFC 4475 torture tests at a UAS endpoint (registrar + B2BUA).

Each file goes through parse_message and, for requests, check_request; the outcome must
be the one recorded in conformance_data.RFC4475_EXPECTED, and the fields RFC 4475 talks
about must come out right.
"""

from __future__ import annotations

from typing import Any

import pytest

from telephony.sip.errors import ParseError, RemoteProtocolError, VersionNotSupported
from telephony.sip.message import (
    CSeq,
    SipMessage,
    SipRequest,
    SipResponse,
    parse_message,
    response_to_unparsable,
)
from telephony.sip.uri import AbsoluteUri, SipUri
from telephony.sip.validate import check_request
from tests.telephony.sip.conformance_data import (
    ALLOWED_METHODS,
    RFC4475_DIR,
    RFC4475_EXPECTED,
    SUPPORTED,
    file_sha256,
    read_index,
    rfc4475_cases,
    sha256sums,
)


def load(name: str) -> bytes:
    return (RFC4475_DIR / name).read_bytes()


def outcome(data: bytes) -> int | str | None:
    """What a UAS does with one datagram: a status, a method to process, or None (silent)."""
    try:
        msg = parse_message(data)
    except RemoteProtocolError as exc:
        response = response_to_unparsable(exc)
        return None if response is None else response.status
    if isinstance(msg, SipResponse):
        return None
    try:
        check_request(msg, allowed_methods=ALLOWED_METHODS, supported=SUPPORTED)
    except RemoteProtocolError as exc:
        response = response_to_unparsable(exc)
        return None if response is None else response.status
    return msg.method


def request(name: str) -> SipRequest:
    msg = parse_message(load(name))
    assert isinstance(msg, SipRequest)
    return msg


def sip(uri: Any) -> SipUri:
    assert isinstance(uri, SipUri)
    return uri


def test_data_integrity() -> None:
    sums = sha256sums()
    assert len(sums) >= 51
    for name, digest in sums.items():
        assert file_sha256(RFC4475_DIR / name) == digest, name
    index = read_index()
    assert len(index) == 50
    for row in index:
        assert file_sha256(RFC4475_DIR / row["file"]) == row["sha256"]
        assert len(load(row["file"])) == int(row["bytes"])


def test_table_covers_every_file() -> None:
    assert {row["file"] for row in read_index()} == set(RFC4475_EXPECTED)
    assert len(rfc4475_cases()) == 50


@pytest.mark.parametrize(
    ("name", "data", "expected"), rfc4475_cases(), ids=[c[0] for c in rfc4475_cases()]
)
def test_uas_outcome(name: str, data: bytes, expected: int | str | None) -> None:
    assert outcome(data) == expected


PARSE_ERRORS = {
    "badinv01.dat": ParseError,
    "clerr.dat": ParseError,
    "ncl.dat": ParseError,
    "scalar02.dat": ParseError,
    "scalarlg.dat": ParseError,
    "quotbal.dat": ParseError,
    "ltgtruri.dat": ParseError,
    "lwsruri.dat": ParseError,
    "lwsstart.dat": ParseError,
    "trws.dat": ParseError,
    "regbadct.dat": ParseError,
    "badaspec.dat": ParseError,
    "baddn.dat": ParseError,
    "variants/baddn.terminated.dat": ParseError,
    "badvers.dat": VersionNotSupported,
    "bigcode.dat": ParseError,
    "mcl01.dat": ParseError,
    "test.dat": ParseError,
}


@pytest.mark.parametrize("name", sorted(set(RFC4475_EXPECTED) - set(PARSE_ERRORS)))
def test_golden_round_trip(name: str) -> None:
    first = parse_message(load(name))
    again = parse_message(bytes(first))
    assert again == first
    assert bytes(again) == bytes(first)
    assert type(again) is type(first)


# -- invalid messages: typed error and status ----------------------------------------


@pytest.mark.parametrize(("name", "error"), sorted(PARSE_ERRORS.items()))
def test_parse_error_type(name: str, error: type[RemoteProtocolError]) -> None:
    with pytest.raises(error) as info:
        parse_message(load(name))
    assert type(info.value) is error
    assert info.value.status_code == (505 if error is VersionNotSupported else 400)


def test_badinv01_answer_copies_raw_via() -> None:
    with pytest.raises(ParseError) as info:
        parse_message(load("badinv01.dat"))
    resp = response_to_unparsable(info.value)
    assert resp is not None
    assert resp.headers.get_lines("Via") == ["SIP/2.0/UDP 192.0.2.15;;,;,,"]
    assert resp.headers.get("Call-ID") == "badinv01.0ha0isndaksdjasdf3234nas"


def test_clerr_partial_keeps_headers() -> None:
    with pytest.raises(ParseError) as info:
        parse_message(load("clerr.dat"))
    partial = info.value.partial
    assert isinstance(partial, SipMessage)
    assert partial.headers.get("Call-ID") is not None


def test_baddn_variant_rejects_unquoted_display_name() -> None:
    with pytest.raises(ParseError, match="display name"):
        parse_message(load("variants/baddn.terminated.dat"))


def refusal(name: str) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        check_request(request(name), allowed_methods=ALLOWED_METHODS, supported=SUPPORTED)
    return info.value


def test_application_layer_refusals() -> None:
    assert refusal("insuf.dat").status_code == 400
    assert refusal("multi01.dat").status_code == 400
    assert refusal("mismatch01.dat").status_code == 400
    assert refusal("escruri.dat").status_code == 400
    assert refusal("unkscm.dat").status_code == 416
    assert refusal("novelsc.dat").status_code == 416
    assert refusal("sdp01.dat").status_code == 406
    ext = refusal("bext01.dat")
    assert ext.status_code == 420
    assert ext.headers == [("Unsupported", "nothingSupportsThis, nothingSupportsThisEither")]
    media = refusal("invut.dat")
    assert media.status_code == 415
    assert media.headers == [("Accept", "application/sdp")]
    for name in ("intmeth.dat", "esc02.dat", "mismatch02.dat", "mpart01.dat"):
        err = refusal(name)
        assert err.status_code == 501
        assert err.headers[0][0] == "Allow"
        assert "INVITE" in err.headers[0][1]


def test_insuf_400_carries_what_exists() -> None:
    resp = response_to_unparsable(refusal("insuf.dat"))
    assert resp is not None
    assert resp.status == 400
    assert resp.cseq == CSeq(193942, "INVITE")
    assert resp.headers.get("Call-ID") is None


# -- valid messages: the fields RFC 4475 describes -----------------------------------


def test_wsinv() -> None:
    m = request("wsinv.dat")
    assert m.method == "INVITE"
    assert sip(m.uri).user == "vivekg"
    assert sip(m.uri).host == "chair-dnrc.example.com"
    assert sip(m.uri).params == {"unknownparam": None}
    assert m.to.tag == "1918181833n"
    assert m.from_.display_name == 'J Rosenberg \\"'
    assert m.from_.tag == "98asjd8"
    assert m.max_forwards == 68
    assert m.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert m.cseq == CSeq(9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in m.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.headers.get("Subject") == ""
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert [sip(r.uri).lr for r in m.routes] == [True]
    assert sip(m.routes[0].uri).params == {
        "lr": None,
        "unknownwith": "value",
        "unknown-no-value": None,
    }
    (contact,) = m.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert m.content_type == "application/sdp"
    assert len(m.body) == 150


def test_intmeth() -> None:
    m = request("intmeth.dat")
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.cseq.method == m.method
    uri = sip(m.uri)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert sip(m.to.uri).user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert m.from_.tag == "_token~1'+`*%!-."
    assert m.from_.params["fromparam''~+*_!.-%"] == '"работающий"'
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert m.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
    assert m.max_forwards == 255


def test_esc01_unescapes_once() -> None:
    m = request("esc01.dat")
    assert sip(m.uri).user == "sips:user@example.com"
    assert sip(m.uri).host == "example.net"
    assert sip(m.to.uri).user == "user"
    assert sip(m.from_.uri).user == "I have spaces"
    (contact,) = m.contacts
    assert sip(contact.uri).user == "caller"
    assert sip(contact.uri).params == {"lr": None, "name": "value%41"}
    assert m.call_id == "esc01.239409asdfakjkn23onasd0-3234"
    assert m.content_type == "application/sdp"


def test_escnull_two_contacts() -> None:
    m = request("escnull.dat")
    assert [sip(c.uri).user for c in m.contacts] == ["\x00", "\x00\x00"]
    assert sip(m.to.uri).user == "null-\x00-null"


def test_esc02_percent_is_not_an_escape_in_methods() -> None:
    m = request("esc02.dat")
    assert m.method == "RE%47IST%45R"
    assert m.to.display_name == "%Z%45"
    assert [sip(c.uri).host for c in m.contacts] == ["host1.example.com", "host3.example.com"]
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert m.top_via.branch == "z9hG4bK209%fzsnel234"


def test_lwsdisp() -> None:
    assert request("lwsdisp.dat").from_.display_name == "caller"


def test_longreq() -> None:
    m = request("longreq.dat")
    assert len(load("longreq.dat")) == 3515
    assert m.to.display_name is not None and len(m.to.display_name) > 90
    assert len(m.vias) == 34
    assert len(m.from_.tag or "") > 100
    assert len(m.call_id) > 100


def test_dblreq_ignores_trailing_octets() -> None:
    m = request("dblreq.dat")
    assert m.method == "REGISTER"
    assert m.body == b""
    assert m.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    assert b"INVITE" not in bytes(m)


def test_semiuri() -> None:
    m = request("semiuri.dat")
    assert sip(m.uri).user == "user;par=u@example.net"
    assert sip(m.uri).host == "example.com"
    assert sip(m.uri).params == {}
    assert len(m.headers.get_all("Accept")) == 6


def test_transports() -> None:
    m = request("transports.dat")
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_mpart01_binary_body() -> None:
    m = request("mpart01.dat")
    assert m.method == "MESSAGE"
    assert m.content_type == "multipart/mixed"
    assert len(m.body) == m.content_length
    assert b"\x00" in m.body


def test_unusual_and_empty_reason_phrases() -> None:
    r = parse_message(load("unreason.dat"))
    assert isinstance(r, SipResponse)
    assert r.status == 200
    assert r.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    n = parse_message(load("noreason.dat"))
    assert isinstance(n, SipResponse)
    assert (n.status, n.reason) == (100, "")


def test_bcast_parses_as_response() -> None:
    r = parse_message(load("bcast.dat"))
    assert isinstance(r, SipResponse)
    assert r.vias[1].host == "255.255.255.255"


def test_unknown_schemes() -> None:
    assert request("unkscm.dat").uri == AbsoluteUri("nobodyknowsthisscheme", "totallyopaquecontent")
    novel = request("novelsc.dat").uri
    assert isinstance(novel, AbsoluteUri)
    assert novel.scheme == "soap.beep"
    m = request("unksm2.dat")
    assert m.to.uri == AbsoluteUri("isbn", "2983792873")
    assert m.from_.uri == AbsoluteUri("http", "//www.example.com")
    assert [c.uri for c in m.contacts] == [AbsoluteUri("name", "John_Smith")]


def test_register_contacts() -> None:
    (c1,) = request("cparam01.dat").contacts
    assert sip(c1.uri).params == {}
    assert c1.params == {"unknownparam": None}
    (c2,) = request("cparam02.dat").contacts
    assert sip(c2.uri).params == {"unknownparam": None}
    assert c2.params == {}
    (c3,) = request("regescrt.dat").contacts
    assert sip(c3.uri).headers == {"Route": "<sip:sip.example.com>"}
    assert "Route=%3Csip:sip.example.com%3E" in str(c3)


def test_regaut01_keeps_unknown_authorization() -> None:
    m = request("regaut01.dat")
    assert m.headers.get("Authorization") == "NoOneKnowsThisScheme opaque-data=here"


def test_zeromf() -> None:
    assert request("zeromf.dat").max_forwards == 0


def test_badbranch_and_baddate() -> None:
    assert request("badbranch.dat").top_via.branch == "z9hG4bK"
    assert request("baddate.dat").headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


def test_inv2543() -> None:
    m = request("inv2543.dat")
    assert "Content-Length" not in m.headers
    assert m.max_forwards is None
    assert m.top_via.branch is None
    assert m.to.tag is None
    assert m.from_.tag is None
    assert sip(m.to.uri).params == {}
    assert m.to.params == {"user": "phone"}
    assert (
        m.body.startswith(b"v=0")
        and len(m.body) == len(load("inv2543.dat")) - load("inv2543.dat").index(b"\r\n\r\n") - 4
    )
    assert m.record_routes[0].uri == SipUri(
        user="UserB", host="example.com", params={"maddr": "ss1.example.com"}
    )
