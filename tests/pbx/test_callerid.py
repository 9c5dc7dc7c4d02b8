"""Caller ID in and out (pbx.callerid): P-Asserted-Identity, Remote-Party-ID and Privacy on
INVITEs from a trunk; what the engine sends a carrier."""

from __future__ import annotations

import logging

import pytest

from pbx.callerid import OutboundIdentity, inbound_caller
from telephony.numbers import NumberPlan
from telephony.sip import NameAddr, SipRequest, SipUri, parse_message

RU = NumberPlan(country="RU")
CUSTOMER = "+79151234567"


def invite(*headers: str, from_: str = "<sip:84951234567@192.0.2.1>") -> SipRequest:
    lines = [
        "INVITE sip:84957654321@127.0.0.1 SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1",
        "Max-Forwards: 70",
        f"From: {from_};tag=a1",
        "To: <sip:84957654321@127.0.0.1>",
        "Call-ID: cid-1@192.0.2.1",
        "CSeq: 1 INVITE",
        *headers,
        "Content-Length: 0",
        "",
        "",
    ]
    message = parse_message("\r\n".join(lines).encode())
    assert isinstance(message, SipRequest)
    return message


ANON = '"Anonymous" <sip:anonymous@anonymous.invalid>'


@pytest.mark.parametrize(
    ("headers", "from_", "number", "source"),
    [
        ((), "<sip:84951234567@192.0.2.1>", "+74951234567", "from"),
        ((), "<tel:+74951234567>", "+74951234567", "from"),
        (("P-Asserted-Identity: <sip:+79151234567@carrier.example>",), ANON, "+79151234567", "pai"),
        (("P-Asserted-Identity: <tel:89151234567>",), ANON, "+79151234567", "pai"),
        # Two PAIs (RFC 3325 9.1: a sip and a tel URI): the first usable one.
        (
            ('P-Asserted-Identity: "Ivan" <sip:anonymous@anonymous.invalid>, <tel:+79151234567>',),
            ANON,
            "+79151234567",
            "pai",
        ),
        (
            ("Remote-Party-ID: <sip:89151234567@carrier.example>;party=calling;screen=yes",),
            ANON,
            "+79151234567",
            "rpid",
        ),
        # PAI before RPID before From.
        (
            (
                "Remote-Party-ID: <sip:89150000000@c.example>;party=calling",
                "P-Asserted-Identity: <sip:89151234567@c.example>",
            ),
            "<sip:84950000000@c.example>",
            "+79151234567",
            "pai",
        ),
        # The called party's RPID is not the caller.
        (("Remote-Party-ID: <sip:89151234567@c.example>;party=called",), ANON, None, "none"),
        # Privacy: none or session hides nothing.
        (("Privacy: none", "P-Asserted-Identity: <sip:+79151234567@c>"), ANON, CUSTOMER, "pai"),
        (("Privacy: session",), "<sip:84951234567@c>", "+74951234567", "from"),
    ],
)
def test_the_caller_of_a_trunk_call(
    headers: tuple[str, ...], from_: str, number: str | None, source: str
) -> None:
    found = inbound_caller(invite(*headers, from_=from_), RU, trusted=True)
    assert (found.number, found.source) == (number, source)
    assert found.caller == (number or "anonymous")


@pytest.mark.parametrize(
    "headers",
    [
        ("Privacy: id", "P-Asserted-Identity: <sip:+79151234567@c.example>"),
        ("Privacy: id;critical", "P-Asserted-Identity: <sip:+79151234567@c.example>"),
        ("Privacy: user",),
        ("Privacy: header; id",),
        ("Remote-Party-ID: <sip:89151234567@c.example>;party=calling;privacy=full",),
        ("Remote-Party-ID: <sip:89151234567@c.example>;privacy=uri",),
    ],
)
def test_privacy_withholds_the_caller(headers: tuple[str, ...]) -> None:
    found = inbound_caller(invite(*headers), RU, trusted=True)
    assert found.withheld and found.caller == "anonymous" and found.source == "privacy"


@pytest.mark.parametrize(
    "from_",
    [
        ANON,
        "<sip:anonymous@carrier.example>",
        "<sip:Unavailable@carrier.example>",
        "<sip:carrier.example>",
        "<sip:ivan@carrier.example>",
        "<sip:123@carrier.example>",
        "<http://example.com/>",
    ],
)
def test_no_usable_number_is_withheld(from_: str) -> None:
    found = inbound_caller(invite(from_=from_), RU, trusted=True)
    assert found.withheld and found.caller == "anonymous" and found.source == "none"


def test_a_phones_identity_headers_are_not_believed() -> None:
    request = invite(
        "P-Asserted-Identity: <sip:+79151234567@evil.example>",
        "Remote-Party-ID: <sip:+79151234567@evil.example>;party=calling",
        from_="<sip:84951234567@192.0.2.1>",
    )
    found = inbound_caller(request, RU, trusted=False)
    assert (found.number, found.source) == ("+74951234567", "from")


@pytest.mark.parametrize(
    "bad",
    [
        "P-Asserted-Identity: <sip:+79151234567@c.example",
        "P-Asserted-Identity: not a uri at all",
        'P-Asserted-Identity: "unterminated <sip:1@c>',
        "Remote-Party-ID: <sip:89151234567@[::zz]>;party=calling",
        "P-Asserted-Identity: ",
    ],
)
def test_a_malformed_identity_header_is_skipped_with_a_log(
    bad: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pbx.callerid")
    found = inbound_caller(invite(bad), RU, trusted=True)
    assert (found.number, found.source) == ("+74951234567", "from")  # the From still counts
    if bad.strip().endswith(":"):
        return  # an empty header names nothing to complain about
    assert any("ignored" in r.getMessage() for r in caplog.records), caplog.text


HOST = "198.51.100.7"


def test_outbound_from_carries_the_caller_id_in_the_carriers_format() -> None:
    plan = NumberPlan("RU", "national")
    from_, headers = OutboundIdentity().outgoing("+74951234567", plan, HOST)
    assert str(from_) == f"<sip:84951234567@{HOST}>"
    assert headers == []


def test_outbound_identity_headers_assert_the_configured_number() -> None:
    plan = NumberPlan("RU", "national")
    identity = OutboundIdentity(headers=("pai", "rpid"), asserted="+74957654321")
    from_, headers = identity.outgoing("+74951234567", plan, HOST)
    assert str(from_) == f"<sip:84951234567@{HOST}>"
    assert headers == [
        ("P-Asserted-Identity", f"<sip:84957654321@{HOST}>"),
        ("Remote-Party-ID", f"<sip:84957654321@{HOST}>;party=calling;screen=yes;privacy=off"),
    ]


@pytest.mark.parametrize("caller_id", ["", "anonymous"])
def test_a_withheld_caller_id_goes_anonymous_with_privacy_id(caller_id: str) -> None:
    plan = NumberPlan("US", "e164")
    identity = OutboundIdentity(headers=("pai",), asserted="+12025550100")
    from_, headers = identity.outgoing(caller_id, plan, HOST)
    assert str(from_) == ANON
    assert headers == [
        ("P-Asserted-Identity", f"<sip:+12025550100@{HOST}>"),
        ("Privacy", "id"),
    ]


def test_a_trunk_that_withholds_keeps_the_number_for_the_carrier_only() -> None:
    plan = NumberPlan("US", "e164_no_plus")
    identity = OutboundIdentity(headers=("rpid",), withhold=True)
    from_, headers = identity.outgoing("+12025550100", plan, HOST)
    assert str(from_) == ANON
    assert headers == [
        ("Remote-Party-ID", f"<sip:12025550100@{HOST}>;party=calling;screen=yes;privacy=full"),
        ("Privacy", "id"),
    ]
    # What we send, read back as a carrier would send it to us: withheld.
    parsed = NameAddr.parse(headers[0][1])
    assert isinstance(parsed.uri, SipUri) and parsed.params["privacy"] == "full"


def test_unknown_identity_headers_are_refused() -> None:
    with pytest.raises(ValueError, match="identity_headers"):
        OutboundIdentity(headers=("p-preferred",))
