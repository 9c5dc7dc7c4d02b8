"""PROTOS c07-sip sample and fuzzing: the parser only ever raises RemoteProtocolError."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from telephony.sip.errors import ParseError, RemoteProtocolError
from telephony.sip.framing import StreamFramer
from telephony.sip.headers import Headers
from telephony.sip.message import (
    CSeq,
    SipRequest,
    SipResponse,
    parse_message,
    response_to_unparsable,
)
from telephony.sip.uri import NameAddr, Via
from telephony.sip.validate import check_request
from tests.telephony.sip.conformance_data import (
    ALLOWED_METHODS,
    RFC4475_DIR,
    SUPPORTED,
    protos_cases,
    protos_groups,
    protos_teardowns,
)
from tests.telephony.sip.test_uri import sip_uris

ACCESSORS: tuple[Callable[[SipRequest | SipResponse], object], ...] = (
    lambda m: m.call_id,
    lambda m: m.cseq,
    lambda m: m.from_,
    lambda m: m.to,
    lambda m: m.vias,
    lambda m: m.top_via,
    lambda m: m.contacts,
    lambda m: m.contact_star,
    lambda m: m.routes,
    lambda m: m.record_routes,
    lambda m: m.max_forwards,
    lambda m: m.expires,
    lambda m: m.content_type,
    lambda m: m.content_length,
)


def check_error_response(response: SipResponse) -> None:
    # Via, From, To... are copied verbatim from the request, so they may be as broken as
    # the peer sent them; the response still serialises and the start line is ours.
    data = bytes(response)
    assert data.startswith(f"SIP/2.0 {response.status} ".encode())
    try:
        assert isinstance(parse_message(data), SipResponse)
    except RemoteProtocolError:
        pass


def exercise(data: bytes) -> SipRequest | SipResponse | None:
    """Everything a UAS does with a datagram; only RemoteProtocolError may escape."""
    try:
        msg = parse_message(data)
    except RemoteProtocolError as exc:
        response = response_to_unparsable(exc)
        if response is not None:
            check_error_response(response)
        return None
    for accessor in ACCESSORS:
        try:
            accessor(msg)
        except RemoteProtocolError:
            pass
    again = parse_message(bytes(msg))
    assert again == msg
    if isinstance(msg, SipRequest):
        try:
            check_request(msg, allowed_methods=ALLOWED_METHODS, supported=SUPPORTED)
        except RemoteProtocolError as exc:
            response = response_to_unparsable(exc)
            if response is not None:
                check_error_response(response)
    return msg


CASES = protos_cases()


def test_sample_is_complete() -> None:
    assert len(CASES) == 158
    assert len(set(protos_groups().values())) == 54
    for _, data in CASES:
        assert b"<To>" not in data and b"<Content-Length>" not in data


def test_valid_case_parses_and_passes() -> None:
    name, data = CASES[0]
    assert name == "0000000"
    msg = parse_message(data)
    assert isinstance(msg, SipRequest)
    assert msg.method == "INVITE"
    assert str(msg.uri) == "sip:101@127.0.0.1"
    assert msg.from_.tag == "0"
    assert msg.cseq == CSeq(1, "INVITE")
    assert msg.content_type == "application/sdp"
    assert msg.body.startswith(b"v=0")
    check_request(msg, allowed_methods=ALLOWED_METHODS, supported=SUPPORTED)


@pytest.mark.parametrize(("name", "data"), CASES, ids=[name for name, _ in CASES])
def test_protos_case_never_crashes(name: str, data: bytes) -> None:
    exercise(data)
    # PROTOS' -validcase: the target still answers the valid INVITE afterwards
    assert isinstance(parse_message(CASES[0][1]), SipRequest)


def test_teardowns_parse() -> None:
    teardowns = protos_teardowns()
    assert len(teardowns) == 158
    for _, data in teardowns:
        exercise(data)
    msg = parse_message(teardowns[0][1])
    assert isinstance(msg, SipRequest)
    assert msg.method == "CANCEL"
    assert msg.cseq == CSeq(1, "CANCEL")


def test_selected_protos_outcomes() -> None:
    by_name = dict(CASES)
    with pytest.raises(ParseError):  # empty method
        parse_message(by_name["0000001"])
    with pytest.raises(ParseError):  # Via port 2**256+1
        parse_message(by_name["0000497"])
    with pytest.raises(ParseError):  # missing CRLF after the request line
        parse_message(by_name["0002407"])


# -- Hypothesis -----------------------------------------------------------------------

SEEDS = [
    CASES[0][1],
    *(
        (RFC4475_DIR / name).read_bytes()
        for name in ("wsinv.dat", "esc01.dat", "longreq.dat", "unreason.dat", "intmeth.dat")
    ),
]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
@example(b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP [::1\r\n\r\n")
@example(b"SIP/2.0 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n")
@example(b"INVITE sip:a@b SIP/2.0\r\nCSeq: " + b"1" * 5000 + b" INVITE\r\n\r\n")
@example(b"\xff\xfe\r\n\r\n")
def test_arbitrary_bytes(data: bytes) -> None:
    exercise(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup", "splice"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            token = draw(
                st.sampled_from(
                    [
                        b";",
                        b",",
                        b"\r\n",
                        b" ",
                        b"<",
                        b">",
                        b'"',
                        b"\\",
                        b":",
                        b"@",
                        b"%",
                        b"\x00",
                        b"=",
                        b"[",
                        b"]",
                        b"\t",
                        b"\r\n ",
                        b"SIP/2.0",
                        b"9" * 30,
                    ]
                )
            )
            data[pos:pos] = token
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 20))]
        elif op == "dup":
            end = data.find(b"\r\n", pos)
            start = data.rfind(b"\r\n", 0, pos)
            if 0 <= start < end:
                data[end:end] = data[start:end]
        elif op == "splice":
            other = draw(st.sampled_from(SEEDS))
            cut = draw(st.integers(0, len(other)))
            data[pos:] = other[cut:]
    return bytes(data)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_valid_messages(data: bytes) -> None:
    exercise(data)


@settings(max_examples=100)
@given(mutated(), st.lists(st.integers(1, 300), min_size=1, max_size=10))
def test_stream_framer_only_raises_parse_error(data: bytes, sizes: list[int]) -> None:
    framer = StreamFramer()
    pos = 0
    try:
        for size in sizes:
            for message in framer.feed(data[pos : pos + size]):
                exercise(message)
            pos += size
        for message in framer.feed(data[pos:]):
            exercise(message)
    except ParseError:
        pass


_token = st.from_regex(r"[A-Za-z0-9\-.!%*_+`'~]{1,12}", fullmatch=True)
_value = st.text(
    st.characters(blacklist_categories=["Cs", "Cc"], max_codepoint=0x3000), max_size=30
).map(lambda s: s.strip(" \t"))
_tag = st.from_regex(r"[A-Za-z0-9\-.!%*_+`'~]{1,10}", fullmatch=True)


@st.composite
def requests(draw: st.DrawFn) -> SipRequest:
    method = draw(st.sampled_from(["INVITE", "OPTIONS", "REGISTER", "BYE"]) | _token)
    headers = Headers()
    for _ in range(draw(st.integers(1, 3))):
        via = Via(
            transport=draw(st.sampled_from(["UDP", "TCP", "TLS"])),
            host=draw(st.sampled_from(["192.0.2.1", "example.com", "[2001:db8::1]"])),
            port=draw(st.none() | st.integers(1, 65535)),
            params={
                "branch": "z9hG4bK" + draw(_tag),
                **draw(st.sampled_from([{}, {"rport": None}])),
            },
        )
        headers.add(draw(st.sampled_from(["Via", "v"])), str(via))
    from_ = NameAddr(draw(st.none() | _value), draw(sip_uris()), {"tag": draw(_tag)})
    headers.add("From", str(from_))
    headers.add("To", str(NameAddr(draw(st.none() | _value), draw(sip_uris()), {})))
    headers.add("Call-ID", draw(_tag) + "@" + draw(_tag))
    headers.add("CSeq", f"{draw(st.integers(0, 2**32 - 1))} {method}")
    headers.add("Max-Forwards", str(draw(st.integers(0, 255))))
    for _ in range(draw(st.integers(0, 3))):
        headers.add("X-" + draw(_token), draw(_value))
    body = draw(st.binary(max_size=200))
    if body:
        headers.add("Content-Type", "application/octet-stream")
    return SipRequest(method, draw(sip_uris()), headers, body)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_generated_requests_round_trip(req: SipRequest) -> None:
    data = bytes(req)
    again = parse_message(data)
    assert again == req
    assert bytes(again) == data
    assert again.cseq.method == req.method
    assert [str(v) for v in again.vias] == req.headers.get_all("Via")


@settings(max_examples=100)
@given(requests(), st.integers(100, 699), _value)
def test_generated_responses_round_trip(req: SipRequest, status: int, reason: str) -> None:
    from telephony.sip.message import make_response

    resp = make_response(req, status, reason, to_tag="t1")
    again = parse_message(bytes(resp))
    assert again == resp
    assert isinstance(again, SipResponse)
    assert (again.status, again.reason) == (status, reason)
