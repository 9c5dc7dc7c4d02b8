"""Registrar (RFC 3261 section 10) on parsed REGISTER requests, with a virtual clock."""

from __future__ import annotations

import pytest

from pbx.registrar import Binding, Registrar, RegistrationError
from telephony.sip import SipRequest, SipUri, parse_message

PEER = ("udp", "127.0.0.1", 5070)


def register(
    *contacts: str,
    expires: int | None = None,
    call_id: str = "reg-1",
    cseq: int = 1,
    extra: tuple[str, ...] = (),
) -> SipRequest:
    lines = [
        "REGISTER sip:127.0.0.1 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1",
        "From: <sip:101@127.0.0.1>;tag=a",
        "To: <sip:101@127.0.0.1>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        *(f"Contact: {c}" for c in contacts),
        *extra,
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


PROXY = ("udp", "127.0.0.1", 5060)
PATH = "<sip:127.0.0.1:5060;lr;received=sip:127.0.0.2:5070>"


def test_a_register_through_a_proxy_keeps_its_path_for_the_route_of_later_requests() -> None:
    registrar = Registrar()
    request = register(
        "<sip:101@10.0.0.7:5070>", extra=(f"Path: {PATH}", "Supported: path, outbound")
    )
    [binding] = registrar.register("101", request, PROXY, now=0)
    assert binding.path == (PATH,) and binding.peer == PROXY
    assert binding.route_headers() == [("Route", PATH)]
    # Echoed to a phone that supports Path (RFC 3327 5.3), not to one that does not.
    assert registrar.path_headers(request) == [("Path", PATH)]
    plain = register("<sip:101@10.0.0.7:5070>", cseq=2, extra=(f"Path: {PATH}",))
    assert registrar.path_headers(plain) == []
    direct = registrar.register("102", register("<sip:102@127.0.0.1:5072>"), PEER, now=0)
    assert direct[0].path == () and direct[0].route_headers() == []


def test_bindings_of_other_nodes_are_found_after_our_own_and_never_twice() -> None:
    registrar = Registrar()
    registrar.register("101", register("<sip:101@127.0.0.1:5070>", expires=300), PEER, now=0)
    contact = register("<sip:101@127.0.0.1:5070>").contacts[0]
    desk = register("<sip:101@127.0.0.1:5072>").contacts[0]
    remote = [
        Binding("101", contact, PROXY, 200, "b", 1, path=(PATH,), node="node-b"),
        Binding("101", desk, PROXY, 100, "c", 1, path=(PATH,), node="node-b"),
    ]
    registrar.set_remote("101", remote)
    registrar.set_remote("103", [Binding("103", desk, PROXY, 100, "d", 1, node="node-b")])
    found = registrar.lookup("101", now=10)
    # 5070 is ours (the local binding wins), 5072 only node-b's.
    assert [(str(b.contact.uri), b.node) for b in found] == [
        ("sip:101@127.0.0.1:5070", None),
        ("sip:101@127.0.0.1:5072", "node-b"),
    ]
    assert [b.extension for b in registrar.lookup("103", now=10)] == ["103"]
    # Pinged and persisted by the node that holds them, not here.
    assert {b.extension for b in registrar.registered(now=10)} == {"101"}
    registrar.prune(150)
    assert registrar.lookup("103", now=150) == []
    assert [b.node for b in registrar.lookup("101", now=150)] == [None]
    registrar.set_remote("101", [])
    assert len(registrar.lookup("101", now=150)) == 1
