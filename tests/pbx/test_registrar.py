"""Registrar (RFC 3261 section 10) on parsed REGISTER requests, with a virtual clock."""

from __future__ import annotations

import pytest

from pbx.registrar import Registrar, RegistrationError
from telephony.sip import SipRequest, SipUri, parse_message

PEER = ("udp", "127.0.0.1", 5070)


def register(
    *contacts: str, expires: int | None = None, call_id: str = "reg-1", cseq: int = 1
) -> SipRequest:
    lines = [
        "REGISTER sip:127.0.0.1 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1",
        "From: <sip:101@127.0.0.1>;tag=a",
        "To: <sip:101@127.0.0.1>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        *(f"Contact: {c}" for c in contacts),
    ]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    message = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(message, SipRequest)
    return message


def test_bindings_expire_and_multiple_contacts_coexist() -> None:
    registrar = Registrar(min_expires=60, max_expires=3600)
    registrar.register("101", register("<sip:101@127.0.0.1:5070>", expires=120), PEER, now=0)
    desk = register("<sip:101@127.0.0.1:5072>;expires=600", call_id="reg-2")
    bindings = registrar.register("101", desk, ("udp", "127.0.0.1", 5072), now=10)
    assert len(bindings) == 2
    headers = registrar.contact_headers(bindings, now=10)
    assert [h for _, h in headers] == [
        "<sip:101@127.0.0.1:5070>;expires=110",
        "<sip:101@127.0.0.1:5072>;expires=600",
    ]
    assert len(registrar.lookup("101", now=119)) == 2
    assert [str(b.contact.uri) for b in registrar.lookup("101", now=121)] == [
        "sip:101@127.0.0.1:5072"
    ]
    assert registrar.lookup("101", now=611) == []


def test_refresh_unregister_and_star() -> None:
    registrar = Registrar()
    registrar.register("101", register("<sip:101@127.0.0.1:5070>", expires=300), PEER, now=0)
    registrar.register(
        "101", register("<sip:101@127.0.0.1:5070>", expires=300, cseq=2), PEER, now=200
    )
    assert registrar.lookup("101", now=450)[0].expires_in(450) == 50
    registrar.register(
        "101", register("<sip:101@127.0.0.1:5070>", expires=0, cseq=3), PEER, now=210
    )
    assert registrar.lookup("101", now=211) == []
    registrar.register(
        "101", register("<sip:101@127.0.0.1:5070>", expires=300, cseq=4), PEER, now=220
    )
    registrar.register("101", register("<sip:101@127.0.0.1:5074>", call_id="other"), PEER, now=220)
    assert len(registrar.lookup("101", now=221)) == 2
    registrar.register("101", register("*", expires=0, cseq=5), PEER, now=230)
    assert registrar.lookup("101", now=231) == []


def test_refusals() -> None:
    registrar = Registrar(min_expires=60)
    with pytest.raises(RegistrationError) as brief:
        registrar.register("101", register("<sip:101@127.0.0.1:5070>", expires=30), PEER, now=0)
    assert brief.value.status == 423 and ("Min-Expires", "60") in brief.value.headers
    with pytest.raises(RegistrationError) as star:
        registrar.register("101", register("*", expires=300), PEER, now=0)
    assert star.value.status == 400
    registrar.register("101", register("<sip:101@127.0.0.1:5070>", cseq=7), PEER, now=0)
    with pytest.raises(RegistrationError) as stale:
        registrar.register("101", register("<sip:101@127.0.0.1:5070>", cseq=6), PEER, now=1)
    assert stale.value.status == 500


def test_expires_capped_and_static_contacts_never_expire() -> None:
    registrar = Registrar(max_expires=3600)
    bindings = registrar.register(
        "101", register("<sip:101@127.0.0.1:5070>", expires=99999), PEER, now=0
    )
    assert bindings[0].expires_in(0) == 3600
    registrar.add_static("150", SipUri.parse("sip:150@127.0.0.1:5090;transport=tcp"))
    (static,) = registrar.lookup("150", now=10**9)
    assert static.peer == ("tcp", "127.0.0.1", 5090) and static.static


def test_an_unreachable_binding_is_kept_but_not_rung_until_the_phone_is_back() -> None:
    registrar = Registrar()
    registrar.register("101", register("<sip:101@127.0.0.1:5070>", expires=300), PEER, now=0)
    registrar.add_static("102", SipUri.parse("sip:102@[::1]:5080"))
    (binding,) = registrar.registered(now=1)  # registered ones only: not the static 102
    assert registrar.lookup("102", now=1)[0].peer == ("udp", "::1", 5080)  # unbracketed
    binding.reachable = False  # a keepalive went unanswered
    assert registrar.lookup("101", now=1) == []
    assert registrar.lookup("101", now=1, include_unreachable=True) == [binding]
    assert registrar.registered(now=1) == [binding]  # still pinged
    registrar.register(
        "101", register("<sip:101@127.0.0.1:5070>", expires=300, cseq=2), PEER, now=2
    )
    assert registrar.lookup("101", now=3)[0].reachable  # a REGISTER revives it


def test_a_closed_websocket_takes_only_its_own_bindings() -> None:
    registrar = Registrar(min_expires=60, max_expires=3600)
    changes: list[tuple[str, int]] = []
    registrar.on_change = lambda ext, bindings: changes.append((ext, len(bindings)))
    browser = ("ws", "127.0.0.1", 40001)
    registrar.register(
        "101", register("<sip:a1@x.invalid;transport=ws>", expires=600), browser, now=0
    )
    registrar.register("101", register("<sip:101@127.0.0.1:5070>", call_id="r2"), PEER, now=0)
    registrar.register("102", register("<sip:b2@y.invalid;transport=ws>", call_id="r3"),
                       ("ws", "127.0.0.1", 40002), now=0)  # fmt: skip
    registrar.add_static("103", SipUri.parse("sip:103@127.0.0.1:5090"))
    changes.clear()
    assert registrar.drop_flow(browser) == ["101"]
    assert [b.peer for b in registrar.lookup("101", now=1)] == [PEER]
    assert len(registrar.lookup("102", now=1)) == 1
    assert changes == [("101", 1)]
    assert registrar.drop_flow(browser) == []
