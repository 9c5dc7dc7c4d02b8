"""SipUri, AbsoluteUri, NameAddr and Via: parsing, escaping, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telephony.sip.errors import ParseError
from telephony.sip.uri import AbsoluteUri, NameAddr, SipUri, Via, parse_uri


def test_full_sip_uri() -> None:
    uri = SipUri.parse("SIP:alice:secret@Atlanta.Example.COM:5061;transport=TCP;lr;X=1?Subject=hi")
    assert uri.scheme == "sip"
    assert (uri.user, uri.password) == ("alice", "secret")
    assert uri.host == "atlanta.example.com"
    assert uri.port == 5061
    assert uri.params == {"transport": "TCP", "lr": None, "x": "1"}
    assert uri.headers == {"Subject": "hi"}
    assert uri.transport == "tcp"
    assert uri.lr
    assert uri.maddr is None
    assert uri.host_port == ("atlanta.example.com", 5061)
    assert str(uri) == "sip:alice:secret@atlanta.example.com:5061;transport=TCP;lr;x=1?Subject=hi"


def test_ipv6_host_kept_in_brackets() -> None:
    uri = SipUri.parse("sips:[2001:DB8::10]:5070;maddr=192.0.2.1")
    assert uri.scheme == "sips"
    assert uri.host == "[2001:db8::10]"
    assert uri.port == 5070
    assert uri.maddr == "192.0.2.1"
    assert uri.user is None
    assert str(uri) == "sips:[2001:db8::10]:5070;maddr=192.0.2.1"


def test_unescapes_exactly_once() -> None:
    # RFC 4475 3.1.1.3: value%25%34%31 means 'value%41', never 'valueA'.
    uri = SipUri.parse("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31")
    assert uri.user == "caller"
    assert uri.params == {"lr": None, "name": "value%41"}
    assert uri.lr
    again = SipUri.parse(str(uri))
    assert again == uri
    assert "%2541" in str(uri)


def test_user_with_escaped_at_and_semicolon() -> None:
    uri = SipUri.parse("sip:user;par=u%40example.net@example.com")
    assert uri.user == "user;par=u@example.net"
    assert uri.host == "example.com"
    assert SipUri.parse(str(uri)) == uri


def test_escaped_null_kept() -> None:
    uri = SipUri.parse("sip:null-%00-null@example.com")
    assert uri.user == "null-\x00-null"
    assert str(uri) == "sip:null-%00-null@example.com"


def test_weird_but_valid_userinfo() -> None:
    text = (
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
        ":&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com"
    )
    uri = SipUri.parse(text)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert SipUri.parse(str(uri)) == uri


@pytest.mark.parametrize(
    "text",
    [
        "sip:",
        "sip:user@",
        "sip:user@example.com; lr",
        "sip:user@exa mple.com",
        "sip:user@example.com:99999",
        "sip:user@example.com:",
        "sip:[2001:db8::zz]",
        "sip:user@..example.com",
        "sip:user@example.com;=x",
        "sip:us%zzer@example.com",
        "<sip:user@example.com>",
        "user@example.com",
        "sip:user@example.com:" + "9" * 5000,
    ],
)
def test_malformed_sip_uris(text: str) -> None:
    with pytest.raises(ParseError):
        parse_uri(text)


def test_absolute_uris() -> None:
    tel = parse_uri("tel:+1-201-555-0123")
    assert tel == AbsoluteUri("tel", "+1-201-555-0123")
    soap = parse_uri("soap.beep://192.0.2.103:3002")
    assert isinstance(soap, AbsoluteUri)
    assert soap.scheme == "soap.beep"
    assert str(soap) == "soap.beep://192.0.2.103:3002"
    assert parse_uri("nobodyKnowsThisScheme:totallyopaquecontent") == AbsoluteUri(
        "nobodyknowsthisscheme", "totallyopaquecontent"
    )
    with pytest.raises(ParseError):
        parse_uri("tel:has space")


def test_name_addr_forms() -> None:
    a = NameAddr.parse('"J Rosenberg \\\\\\""  <sip:jdrosen@example.com> ; tag = 98asjd8')
    assert a.display_name == 'J Rosenberg \\"'
    assert a.tag == "98asjd8"
    assert NameAddr.parse(str(a)) == a

    b = NameAddr.parse("caller<sip:caller@example.com>;tag=323")  # RFC 4475 3.1.1.6
    assert b.display_name == "caller"
    assert b.tag == "323"

    # addr-spec form: ';tag' belongs to the header, not to the URI (RFC 3261 20.10)
    c = NameAddr.parse("sip:caller@example.net;tag=134161461246")
    assert c.display_name is None
    assert isinstance(c.uri, SipUri)
    assert c.uri.params == {}
    assert c.tag == "134161461246"
    assert str(c) == "<sip:caller@example.net>;tag=134161461246"

    d = NameAddr.parse("<sip:alice@atlanta.example.com;transport=tcp>;expires=60;q=0.5")
    assert isinstance(d.uri, SipUri)
    assert d.uri.params == {"transport": "tcp"}
    assert d.params == {"expires": "60", "q": "0.5"}

    e = NameAddr.parse('<sip:a@b>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"')
    assert e.params["+sip.instance"] == '"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'
    assert NameAddr.parse(str(e)) == e

    f = NameAddr.parse("isbn:2983792873")
    assert f.uri == AbsoluteUri("isbn", "2983792873")


def test_with_tag_returns_new_value() -> None:
    a = NameAddr.parse("Bob <sip:bob@biloxi.example.com>")
    b = a.with_tag("a6c85cf")
    assert a.tag is None
    assert b.tag == "a6c85cf"
    assert str(b) == '"Bob" <sip:bob@biloxi.example.com>;tag=a6c85cf'


@pytest.mark.parametrize(
    "text",
    [
        '"Mr. J. User <sip:j.user@example.com>',  # unterminated quote
        "Bell, Alexander <sip:a.g.bell@example.com>",  # non-token display name
        "< sip:t.watson@example.org >",
        "<sip:a@b",
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",  # must be in <>
        '"Joe" <sip:joe@example.org>;;;;',
        "",
        "<>",
        '"x" sip:a@b',
    ],
)
def test_malformed_name_addr(text: str) -> None:
    with pytest.raises(ParseError):
        NameAddr.parse(text)


def test_via() -> None:
    via = Via.parse(
        "SIP  /   2.0 /UDP     192.0.2.2:5060;branch=z9hG4bK74bf9;received=10.0.0.1;rport"
    )
    assert via.protocol == "SIP/2.0"
    assert via.transport == "UDP"
    assert via.sent_by == ("192.0.2.2", 5060)
    assert via.branch == "z9hG4bK74bf9"
    assert via.received == "10.0.0.1"
    assert via.rport == ""
    assert str(via) == "SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bK74bf9;received=10.0.0.1;rport"
    assert Via.parse(str(via)) == via

    v6 = Via.parse("SIP/2.0/TCP [2001:db8::9]:5070;rport=5071;received=2001:db8::1")
    assert v6.host == "[2001:db8::9]"
    assert v6.rport == "5071"
    assert v6.received == "2001:db8::1"
    assert Via.parse("SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en").transport == "UNKNOWN"
    assert Via.parse("SIP/2.0/UDP host").rport is None


@pytest.mark.parametrize(
    "text",
    [
        "SIP/2.0/UDP 192.0.2.15;;",
        "SIP/2.0 192.0.2.15",
        "/2.0/UDP 127.0.0.1:5099",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP host:70000",
        "SIP/2.0/UDP host;=token",
        "",
    ],
)
def test_malformed_via(text: str) -> None:
    with pytest.raises(ParseError):
        Via.parse(text)


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_hosts = st.one_of(
    st.lists(_label, min_size=1, max_size=4).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
)
_text = st.text(
    st.characters(blacklist_categories=["Cs"], min_codepoint=0, max_codepoint=0x2FF),
    min_size=1,
    max_size=12,
)
_pname = st.from_regex(r"[a-z0-9\-_.!~*'()]{1,8}", fullmatch=True)


@st.composite
def sip_uris(draw: st.DrawFn) -> SipUri:
    user = draw(st.none() | _text)
    return SipUri(
        scheme=draw(st.sampled_from(["sip", "sips"])),
        user=user,
        password=draw(st.none() | _text) if user is not None else None,
        host=draw(_hosts),
        port=draw(st.none() | st.integers(0, 65535)),
        params=draw(st.dictionaries(_pname, st.none() | _text, max_size=3)),
        headers=draw(st.dictionaries(_text, st.text(max_size=5), max_size=2)),
    )


@given(sip_uris())
def test_sip_uri_round_trip(uri: SipUri) -> None:
    assert SipUri.parse(str(uri)) == uri


@given(
    sip_uris(),
    st.none() | st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=20),
    st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9\-.!%*_+`'~]{0,6}", fullmatch=True),
        st.none() | st.from_regex(r"[A-Za-z0-9\-.!%*_+`'~]{1,8}", fullmatch=True),
        max_size=3,
    ),
)
def test_name_addr_round_trip(
    uri: SipUri, display: str | None, params: dict[str, str | None]
) -> None:
    addr = NameAddr(display, uri, params)
    assert NameAddr.parse(str(addr)) == addr
