"""SDES offer/answer per SRTP policy (telephony.call.offer_answer): what each policy offers,
which offers it takes, the keys both sides agree, and the 488 a plain offer gets under
`required`."""

from __future__ import annotations

import pytest

from telephony.call.offer_answer import OfferAnswer, check_offer
from telephony.call.session import OfferRejected
from telephony.sdp import SessionDescription


def _leg(srtp: str, port: int = 4000) -> OfferAnswer:
    return OfferAnswer(local_host="127.0.0.1", local_port=port, srtp=srtp)


def _crypto_lines(body: bytes) -> list[str]:
    audio = SessionDescription.parse(body).media[0]
    return [a.value or "" for a in audio.attributes if a.name == "crypto"]


@pytest.mark.parametrize(
    ("policy", "proto", "suites"),
    [
        ("off", "RTP/AVP", []),
        ("optional", "RTP/AVP", ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"]),
        ("required", "RTP/SAVP", ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"]),
    ],
)
def test_what_each_policy_offers(policy: str, proto: str, suites: list[str]) -> None:
    body = _leg(policy).make_offer()
    assert SessionDescription.parse(body).media[0].proto == proto
    lines = _crypto_lines(body)
    assert [line.split()[1] for line in lines] == suites
    assert len({line.split()[2] for line in lines}) == len(lines)  # one key per line


@pytest.mark.parametrize(
    ("offerer", "answerer", "secure"),
    [
        ("required", "required", True),
        ("required", "optional", True),
        ("optional", "required", True),
        ("optional", "optional", True),
        ("optional", "off", False),
        ("off", "optional", False),
        ("off", "off", False),
    ],
)
def test_offerer_and_answerer_agree_mirrored_keys(
    offerer: str, answerer: str, secure: bool
) -> None:
    a, b = _leg(offerer), _leg(answerer, 5000)
    b.accept_offer(a.make_offer())
    a.accept_answer(b.local_sdp())
    if not secure:
        assert a.keys is None and b.keys is None
        assert _crypto_lines(b.local_sdp()) == []
        return
    assert a.keys is not None and b.keys is not None
    assert a.keys.suite == b.keys.suite == "AES_CM_128_HMAC_SHA1_80"
    assert (a.keys.local, a.keys.remote) == (b.keys.remote, b.keys.local)
    # The answer keeps the offered profile and answers the chosen tag.
    answer = SessionDescription.parse(b.local_sdp()).media[0]
    assert answer.proto == ("RTP/SAVP" if offerer == "required" else "RTP/AVP")
    assert _crypto_lines(b.local_sdp())[0].startswith("1 AES_CM_128_HMAC_SHA1_80 inline:")


def test_a_plain_offer_to_a_required_leg_gets_488_with_a_reason() -> None:
    plain = _leg("off").make_offer()
    with pytest.raises(OfferRejected, match="SRTP required") as caught:
        _leg("required").accept_offer(plain)
    assert caught.value.status_code == 488 and caught.value.warning[0] == 302
    with pytest.raises(OfferRejected, match="SRTP required"):
        check_offer(plain, srtp="required")
    check_offer(plain)  # the default judges any protection acceptable


def test_an_srtp_only_offer_to_an_off_leg_gets_488() -> None:
    with pytest.raises(OfferRejected, match="SRTP not enabled"):
        _leg("off").accept_offer(_leg("required").make_offer())


def test_the_first_usable_crypto_line_is_taken_and_unusable_ones_skipped() -> None:
    offer = _leg("required").make_offer().decode()
    # A peer that prefers a suite we lack, then offers the 32-bit tag only.
    lines = offer.splitlines()
    ours = [line for line in lines if line.startswith("a=crypto:")]
    key32 = ours[1].split("inline:")[1]
    rest = [line for line in lines if not line.startswith("a=crypto:")]
    rest += [
        "a=crypto:7 AEAD_AES_256_GCM inline:" + key32,
        "a=crypto:9 AES_CM_128_HMAC_SHA1_32 inline:" + key32,
    ]
    answerer = _leg("required", 5000)
    answerer.accept_offer(("\r\n".join(rest) + "\r\n").encode())
    assert answerer.keys is not None and answerer.keys.suite == "AES_CM_128_HMAC_SHA1_32"
    assert _crypto_lines(answerer.local_sdp())[0].startswith("9 AES_CM_128_HMAC_SHA1_32 ")


def test_a_required_offerer_fails_an_answer_without_keys() -> None:
    a = _leg("required")
    offer = a.make_offer()
    plain_answerer = _leg("optional", 5000)
    plain_answerer.accept_offer(offer)
    answer = plain_answerer.local_sdp().decode()
    stripped = "".join(line + "\r\n" for line in answer.splitlines() if "crypto" not in line)
    with pytest.raises(OfferRejected, match="no key"):
        a.accept_answer(stripped.encode())


def test_a_re_offer_keeps_the_agreed_suite_and_key() -> None:
    a, b = _leg("optional"), _leg("optional", 5000)
    b.accept_offer(a.make_offer())
    a.accept_answer(b.local_sdp())
    assert a.keys is not None
    again = a.make_offer()  # hold, or a session refresh
    lines = _crypto_lines(again)
    assert len(lines) == 1 and lines[0].startswith("1 AES_CM_128_HMAC_SHA1_80 ")
    b.accept_offer(again)
    a.accept_answer(b.local_sdp())
    assert b.keys is not None and (a.keys.local, a.keys.remote) == (b.keys.remote, b.keys.local)


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="srtp must be one of"):
        _leg("maybe")


@pytest.mark.parametrize("policy", ["off", "required"])
def test_no_common_codec_is_said_as_such_whatever_the_policy(policy: str) -> None:
    offer = (
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 9876 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"
    )
    with pytest.raises(OfferRejected) as caught:
        _leg(policy).accept_offer(offer)
    assert caught.value.warning[0] == 305
