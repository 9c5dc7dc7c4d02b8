"""check_offer: the verdict on an incoming INVITE's SDP offer, given before any routing, with
the 488 Warning (RFC 3261 20.43) that says why without echoing the peer's bytes."""

from __future__ import annotations

import pytest

from telephony.aio.media_session import MediaError, check_offer

HEAD = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"


def test_an_offer_we_can_answer_passes() -> None:
    check_offer(
        (HEAD + "m=audio 5000 RTP/AVP 18 8 101\r\na=rtpmap:101 telephone-event/8000\r\n").encode()
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("m=audio 5000 RTP/AVP 18\r\n", 305),  # no codec of ours
        ("m=audio 0 RTP/AVP 0\r\n", 304),  # the only audio stream disabled
        ("m=video 5000 RTP/AVP 31\r\n", 305),  # no audio at all
        ("m=audio 5000 RTP/AVP 0 300\r\n", 399),  # payload type out of range
        ("m=audio 99999 RTP/AVP 0\r\n", 399),  # port out of range
        ("m=audio 5000 RTP/AVP 0\r\nc=IN IP4 \t\x08\x08\r\n", 399),  # PROTOS-like junk
    ],
)
def test_unacceptable_offers_say_why(body: str, code: int) -> None:
    with pytest.raises(MediaError) as info:
        check_offer((HEAD + body).encode())
    assert info.value.status_code == 488
    name, value = info.value.warning_header("127.0.0.1")
    assert name == "Warning" and value.startswith(f'{code} 127.0.0.1 "')
    assert "\x08" not in value and "300" not in value.split('"')[1]


def test_garbage_is_malformed_not_a_crash() -> None:
    for body in (b"=0\r\n", b"v=0", "v=0\r\nö=\r\n".encode(), b"\xff\xfe\x00", b"v=1\r\n"):
        with pytest.raises(MediaError) as info:
            check_offer(body)
        assert info.value.warning[0] == 399


def test_codecs_restrict_what_is_acceptable() -> None:
    offer = (HEAD + "m=audio 5000 RTP/AVP 8\r\n").encode()
    check_offer(offer, codecs=["PCMA"])
    with pytest.raises(MediaError):
        check_offer(offer, codecs=["PCMU"])
