"""Authentication failures behind a proxy (deploy/kamailio): every request comes from the
proxy, so failures count against the phone's own address from the Via the proxy kept below
its own, a ban refuses that source with 403, and the proxy and its other phones go on."""

from __future__ import annotations

from pbx import Authenticator, AuthFailureBan, BanPolicy
from telephony.sip import Challenge, DigestConfig, DigestServer, SipRequest, parse_message

PROXY = ("udp", "10.0.0.1", 5060)
REALM = "callcenter"


def authenticator() -> Authenticator:
    return Authenticator(
        {"101": "pass101"},
        realm=REALM,
        digest=DigestServer(b"k" * 32, DigestConfig()),
        ban=AuthFailureBan(BanPolicy(max_failures=3, window=60, ban_seconds=600)),
        trusted_proxies={"10.0.0.1"},
    )


def register(phone_via: str | None, authorization: str | None = None) -> SipRequest:
    lines = [
        "REGISTER sip:10.0.0.1 SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKproxy",
        *([f"Via: {phone_via}"] if phone_via else []),
        "From: <sip:101@10.0.0.1>;tag=a",
        "To: <sip:101@10.0.0.1>",
        "Call-ID: reg-1",
        "CSeq: 1 REGISTER",
        "Contact: <sip:101@192.0.2.7:5070>",
        *([f"Authorization: {authorization}"] if authorization else []),
    ]
    message = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(message, SipRequest)
    return message


def wrong_password(auth: Authenticator) -> str:
    """An answer to a fresh challenge with a wrong response."""
    decision = auth.check(register(None), PROXY, now=0)
    challenge = Challenge.parse(dict(decision.headers)["WWW-Authenticate"])
    return (
        f'Digest username="101", realm="{REALM}", nonce="{challenge.nonce}", '
        'uri="sip:10.0.0.1", response="00000000000000000000000000000000"'
    )


def test_failures_ban_the_phone_behind_the_proxy_not_the_proxy() -> None:
    auth = authenticator()
    guesser = "SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK1;received=203.0.113.5;rport=40000"
    assert auth.source(register(guesser), PROXY) == ("203.0.113.5", 40000)
    for _ in range(3):
        assert auth.check(register(guesser, wrong_password(auth)), PROXY, now=1).status == 401
    assert auth.ban.is_banned("203.0.113.5", now=2)
    assert not auth.ban.is_banned("10.0.0.1", now=2) and auth.allows(PROXY, now=2)
    # The banned source is refused through the proxy; another phone behind it is challenged.
    assert auth.check(register(guesser), PROXY, now=3).status == 403
    other = "SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bK2"
    assert auth.source(register(other), PROXY) == ("198.51.100.9", 5060)
    assert auth.check(register(other), PROXY, now=3).status == 401


def test_without_a_trusted_proxy_the_peer_is_the_source() -> None:
    auth = authenticator()
    direct = ("udp", "192.0.2.8", 5070)
    # A Via below does not move the blame away from an untrusted sender.
    forged = "SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bK3"
    assert auth.source(register(forged), direct) == ("192.0.2.8", 5070)
    for _ in range(3):
        auth.check(register(forged, wrong_password(auth)), direct, now=1)
    assert not auth.allows(direct, now=2) and not auth.ban.is_banned("198.51.100.9", now=2)
