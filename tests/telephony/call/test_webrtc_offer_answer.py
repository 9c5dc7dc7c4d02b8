"""Offer/answer of WebRTC streams (telephony.sdp.webrtc through telephony.call.OfferAnswer): a
browser's offer as Chromium writes it gets an ICE-lite DTLS-SRTP answer in G.711; our own
WebRTC offer is answered by a browser-shaped answer."""

from __future__ import annotations

import pytest

from telephony.call.offer_answer import OfferAnswer, check_offer
from telephony.call.session import OfferRejected
from telephony.sdp import SessionDescription
from telephony.sdp.webrtc import LocalIce

FP = ":".join(["AB"] * 32)
CHROME_OFFER = (
    "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "a=group:BUNDLE 0\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS stream\r\n"
    "m=audio 49203 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n"
    "c=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=candidate:1467250027 1 udp 2122260223 192.0.2.2 49203 typ host generation 0\r\n"
    "a=ice-ufrag:EsAw\r\na=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y\r\na=ice-options:trickle\r\n"
    f"a=fingerprint:sha-256 {FP}\r\na=setup:actpass\r\na=mid:0\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=sendrecv\r\n"
    "a=msid:stream track\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
    "a=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n"
    "a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\na=rtpmap:9 G722/8000\r\n"
    "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\n"
    "a=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\n"
    "a=ssrc:1001 cname:abc\r\n"
)
ICE = LocalIce("srv1", "p" * 32, "sha-256 " + ":".join(["CD"] * 32))


def test_a_browser_offer_gets_an_ice_lite_dtls_answer_in_g711() -> None:
    check_offer(CHROME_OFFER.encode(), srtp="off")  # any policy takes a WebRTC offer
    leg = OfferAnswer(local_host="127.0.0.1", local_port=16000, srtp="off", ice=ICE)
    leg.accept_offer(CHROME_OFFER.encode())
    assert leg.codec_name == "PCMU" and leg.remote_dte_pt == 126
    assert leg.keys is None and leg.dtls is not None
    assert leg.dtls.ufrag == "EsAw" and leg.dtls.setup == "actpass" and leg.dtls.rtcp_mux
    assert leg.dtls.fingerprint == bytes([0xAB] * 32) and leg.dtls.we_are_server()
    assert not leg.held and leg.remote is None  # c=0.0.0.0 is no hold: ICE finds the address
    answer = SessionDescription.parse(leg.local_sdp())
    (m,) = answer.media
    assert m.proto == "UDP/TLS/RTP/SAVPF" and m.port == 16000 and m.formats == [0, 126]
    for name, value in [
        ("mid", "0"),
        ("ice-ufrag", "srv1"),
        ("ice-pwd", "p" * 32),
        ("fingerprint", ICE.fingerprint),
        ("setup", "passive"),
        ("rtcp-mux", ""),
        ("candidate", "1 1 udp 2130706431 127.0.0.1 16000 typ host"),
    ]:
        assert m.attribute(name) == value, name
    session = {(a.name, a.value) for a in answer.attributes}
    assert ("group", "BUNDLE 0") in session and ("ice-lite", None) in session


def test_hold_from_the_browser_is_its_direction() -> None:
    leg = OfferAnswer(local_host="127.0.0.1", local_port=16000, ice=ICE)
    leg.accept_offer(CHROME_OFFER.encode())
    leg.accept_offer(CHROME_OFFER.replace("a=sendrecv", "a=sendonly").encode())
    assert leg.held and leg.dtls is not None


@pytest.mark.parametrize(
    ("broken", "instead"),
    [
        ("a=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y\r\n", ""),
        (f"a=fingerprint:sha-256 {FP}\r\n", ""),
        (f"a=fingerprint:sha-256 {FP}\r\n", f"a=fingerprint:md5 {FP}\r\n"),
        ("a=setup:actpass", "a=setup:holdconn"),
    ],
)
def test_a_webrtc_offer_without_usable_ice_or_dtls_is_refused(broken: str, instead: str) -> None:
    offer = CHROME_OFFER.replace(broken, instead).encode()
    with pytest.raises(OfferRejected):
        check_offer(offer)
    leg = OfferAnswer(local_host="127.0.0.1", local_port=16000, ice=ICE)
    with pytest.raises(OfferRejected):
        leg.accept_offer(offer)


def test_a_leg_without_ice_credentials_cannot_answer_webrtc() -> None:
    leg = OfferAnswer(local_host="127.0.0.1", local_port=16000, srtp="optional")
    with pytest.raises(OfferRejected):
        leg.accept_offer(CHROME_OFFER.encode())


def test_our_webrtc_offer_and_a_browser_answer() -> None:
    leg = OfferAnswer(local_host="127.0.0.1", local_port=16002, srtp="dtls", ice=ICE)
    offer = SessionDescription.parse(leg.make_offer())
    (m,) = offer.media
    assert m.proto == "UDP/TLS/RTP/SAVPF" and m.attribute("setup") == "actpass"
    assert m.attribute("crypto") is None and m.attribute("mid") == "0"
    answer = (
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 0 101\r\nc=IN IP4 0.0.0.0\r\n"
        "a=ice-ufrag:brws\r\na=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y\r\n"
        f"a=fingerprint:sha-256 {FP}\r\na=setup:active\r\na=mid:0\r\na=sendrecv\r\n"
        "a=rtcp-mux\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    leg.accept_answer(answer.encode())
    assert leg.dtls is not None and leg.dtls.setup == "active" and leg.dtls.we_are_server()
    assert leg.codec_name == "PCMU" and not leg.held
    with pytest.raises(OfferRejected):
        plain = answer.replace("UDP/TLS/RTP/SAVPF", "RTP/AVP")
        other = OfferAnswer(local_host="127.0.0.1", local_port=16004, srtp="dtls", ice=ICE)
        other.make_offer()
        other.accept_answer(plain.encode())


def test_the_first_fingerprint_with_a_hash_we_check_is_taken() -> None:
    offer = CHROME_OFFER.replace(
        f"a=fingerprint:sha-256 {FP}", f"a=fingerprint:md5 {FP}\r\na=fingerprint:sha-1 {FP[:59]}"
    )
    leg = OfferAnswer(local_host="127.0.0.1", local_port=16000, ice=ICE)
    leg.accept_offer(offer.encode())
    assert leg.dtls is not None and leg.dtls.fingerprint_alg == "sha-1"
    assert leg.dtls.fingerprint == bytes([0xAB] * 20)
