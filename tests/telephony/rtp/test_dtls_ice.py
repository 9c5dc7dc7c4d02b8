"""DTLS-SRTP (telephony.rtp.dtls) and ICE-lite (telephony.rtp.ice) on their own, sans-IO: two
real OpenSSL DTLS endpoints shake hands in memory and export matching SRTP keys that protect a
packet libsrtp then opens; checks built with aioice's STUN codec are answered or refused."""

from __future__ import annotations

import datetime
import time

import pytest
from aioice import stun

from telephony.rtp.dtls import DtlsCertificate, DtlsSrtp
from telephony.rtp.ice import IceLite, is_stun
from telephony.rtp.srtp import SrtpContext

NOW = datetime.datetime(2026, 12, 7, tzinfo=datetime.UTC)


def _fingerprint(cert: DtlsCertificate) -> tuple[str, bytes]:
    alg, value = cert.fingerprint.split(" ")
    return alg, bytes.fromhex(value.replace(":", ""))


def _shake(client: DtlsSrtp, server: DtlsSrtp) -> int:
    """Pass datagrams both ways until neither has anything to say; returns the rounds."""
    client.start()
    rounds = 0
    while True:
        to_server, to_client = client.datagrams_to_send(), server.datagrams_to_send()
        if not to_server and not to_client:
            return rounds
        for datagram in to_server:
            server.receive(datagram)
        for datagram in to_client:
            client.receive(datagram)
        rounds += 1
        assert rounds < 20


def test_handshake_exports_crossed_keys_that_libsrtp_takes() -> None:
    a, b = DtlsCertificate.generate(NOW), DtlsCertificate.generate(NOW)
    assert a.fingerprint.startswith("sha-256 ") and a.fingerprint != b.fingerprint
    client = DtlsSrtp(a, server=False, remote_fingerprint=_fingerprint(b))
    server = DtlsSrtp(b, server=True, remote_fingerprint=_fingerprint(a))
    _shake(client, server)
    assert client.failed is None and server.failed is None
    assert client.keys is not None and server.keys is not None
    assert client.keys.suite == server.keys.suite == "AES_CM_128_HMAC_SHA1_80"
    assert client.keys.local == server.keys.remote and client.keys.remote == server.keys.local
    assert len(client.keys.local) == 30 and client.keys.local != client.keys.remote
    assert "local" not in repr(client.keys)
    sender = SrtpContext(client.keys.suite, client.keys.local, client.keys.remote)
    receiver = SrtpContext(server.keys.suite, server.keys.local, server.keys.remote)
    rtp = bytes([0x80, 0, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4]) + b"\xff" * 160
    protected = sender.protect(rtp)
    assert protected is not None and protected != rtp
    assert receiver.unprotect(protected) == rtp


def test_a_certificate_other_than_the_fingerprint_fails_the_association() -> None:
    a, b, mallory = (DtlsCertificate.generate(NOW) for _ in range(3))
    client = DtlsSrtp(a, server=False, remote_fingerprint=_fingerprint(b))
    server = DtlsSrtp(b, server=True, remote_fingerprint=_fingerprint(mallory))
    _shake(client, server)
    assert server.keys is None
    assert server.failed is not None and "fingerprint" in server.failed


def test_a_lost_flight_is_sent_again_on_timeout() -> None:
    a, b = DtlsCertificate.generate(NOW), DtlsCertificate.generate(NOW)
    client = DtlsSrtp(a, server=False, remote_fingerprint=_fingerprint(b))
    server = DtlsSrtp(b, server=True, remote_fingerprint=_fingerprint(a))
    client.start()
    lost = client.datagrams_to_send()
    wait = client.timeout()
    assert lost and wait is not None and 0 < wait <= 1.0  # RFC 6347 4.2.4.1: 1 s at first
    time.sleep(wait + 0.02)  # OpenSSL keeps this timer on the wall clock
    client.handle_timeout()
    again = client.datagrams_to_send()
    assert again, "the ClientHello was not sent again"
    for datagram in again:
        server.receive(datagram)
    _shake(client, server)
    assert client.keys is not None and server.keys is not None


def _check(username: str, pwd: str, *, nominate: bool = False, tid: bytes | None = None) -> bytes:
    request = stun.Message(
        message_method=stun.Method.BINDING,
        message_class=stun.Class.REQUEST,
        transaction_id=tid,
    )
    request.attributes["USERNAME"] = username
    request.attributes["PRIORITY"] = 1853817087
    request.attributes["ICE-CONTROLLING"] = 5
    if nominate:
        request.attributes["USE-CANDIDATE"] = None
    request.add_message_integrity(pwd.encode())
    return bytes(request)


def test_ice_lite_answers_checks_for_its_credentials_and_follows_the_nomination() -> None:
    ice = IceLite("srv1", "s" * 24, remote_ufrag="brws")
    source = ("192.0.2.7", 50000)
    data = _check("srv1:brws", "s" * 24)
    assert is_stun(data)
    response, nominated = ice.receive(data, source)
    assert response is not None and not nominated and ice.selected is None
    parsed = stun.parse_message(response)
    assert parsed.message_class == stun.Class.RESPONSE
    assert parsed.transaction_id == stun.parse_message(data).transaction_id
    assert parsed.attributes["XOR-MAPPED-ADDRESS"] == source
    assert parsed.check_message_integrity(b"s" * 24)
    response, nominated = ice.receive(_check("srv1:brws", "s" * 24, nominate=True), source)
    assert response is not None and nominated and ice.selected == source
    assert ice.checks == 2


@pytest.mark.parametrize(
    ("username", "pwd"),
    [("srv1:brws", "wrong-password-22chars"), ("other:brws", "s" * 24), ("srv1:evil", "s" * 24)],
)
def test_ice_lite_drops_checks_that_are_not_for_this_leg(username: str, pwd: str) -> None:
    ice = IceLite("srv1", "s" * 24, remote_ufrag="brws")
    response, nominated = ice.receive(_check(username, pwd, nominate=True), ("192.0.2.7", 1))
    assert response is None and not nominated and ice.selected is None
    assert ice.refused == 1
    assert ice.receive(b"\x00\x01" + b"\x00" * 30, ("192.0.2.7", 1)) == (None, False)


def test_a_lite_agent_nominates_another_lite_agent() -> None:
    engine = IceLite("srv1", "s" * 24, remote_ufrag="brws")
    standin = IceLite("brws", "b" * 24, remote_ufrag="srv1")
    check = standin.check("s" * 24, tie_breaker=7)
    response, nominated = engine.receive(check, ("127.0.0.1", 40000))
    assert response is not None and nominated and engine.selected == ("127.0.0.1", 40000)
    assert standin.receive(response, ("127.0.0.1", 16000)) == (None, False)  # a response
    with pytest.raises(ValueError):
        IceLite("x" * 4, "y" * 22).check("z" * 22, tie_breaker=1)
