from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telephony.sdp import (
    PCMA,
    PCMU,
    Codec,
    Connection,
    Direction,
    NegotiatedMedia,
    NoCommonCodec,
    RtpMap,
    SdpError,
    SdpParseError,
    SessionDescription,
    accept_answer,
    answer_direction,
    create_offer,
    is_hold,
    negotiate,
    with_direction,
)

from ._sdp_samples import (
    ASTERISK,
    BARESIP,
    CISCO_HOLD,
    FREESWITCH,
    IPV6_AUDIO_VIDEO,
    PYVOIP,
    SIPP_UAC_PCAP,
    SIPP_UAS,
    T38,
)

LOCAL = {"local_addr": "127.0.0.1", "local_port": 40000, "session_id": 555}


def offer_with(media: str, session: str = "") -> SessionDescription:
    return SessionDescription.parse(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        + session
        + media
    )


def test_baresip_offer_answer() -> None:
    answer = negotiate(SessionDescription.parse(BARESIP), [PCMU, PCMA], **LOCAL)
    assert answer.media == NegotiatedMedia(
        remote_addr="127.0.0.1",
        remote_port=35508,
        payload_type=0,
        codec_name="PCMU",
        clock_rate=8000,
        dtmf_payload_type=101,
        direction=Direction.SENDRECV,
        remote_direction=Direction.SENDRECV,
        ptime=20,
        media_index=0,
    )
    assert bytes(answer.sdp) == (
        b"v=0\r\no=- 555 555 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    )
    assert answer.media.sends and answer.media.receives and not answer.media.on_hold


def test_offerer_preference_wins_over_ours() -> None:
    answer = negotiate(SessionDescription.parse(SIPP_UAC_PCAP), [PCMU, PCMA], **LOCAL)
    assert answer.media is not None
    assert (answer.media.payload_type, answer.media.codec_name) == (8, "PCMA")
    # SIPp offers events 0-11,16: kept as offered, on its payload type.
    assert answer.media.dtmf_payload_type == 101
    assert answer.sdp.media[0].fmtp == {101: "0-11,16"}

    answer = negotiate(SessionDescription.parse(ASTERISK), [PCMA, PCMU], **LOCAL)
    assert answer.media is not None and answer.media.codec_name == "PCMU"
    assert answer.sdp.media[0].fmtp == {101: "0-16"}


def test_skips_unsupported_codecs_in_offer_order() -> None:
    answer = negotiate(SessionDescription.parse(FREESWITCH), [PCMA], **LOCAL)
    assert answer.media is not None
    assert answer.media.payload_type == 8
    assert answer.sdp.media[0].formats == [8, 101]


def test_static_payload_type_without_rtpmap() -> None:
    offer = offer_with("m=audio 5000 RTP/AVP 18 8\r\n")
    answer = negotiate(offer, [PCMU, PCMA], **LOCAL)
    assert answer.media is not None
    assert answer.media.codec_name == "PCMA"
    assert answer.media.dtmf_payload_type is None
    assert answer.sdp.media[0].formats == [8]
    assert answer.sdp.media[0].rtpmap == {8: RtpMap("PCMA", 8000)}


def test_dynamic_payload_type_for_a_g711_codec_is_kept() -> None:
    offer = offer_with(
        "m=audio 5000 RTP/AVP 96 97\r\na=rtpmap:96 pcmu/8000\r\n"
        "a=rtpmap:97 telephone-event/8000\r\na=fmtp:97 0-16\r\n"
    )
    answer = negotiate(offer, [PCMU], **LOCAL)
    assert answer.media is not None
    assert (answer.media.payload_type, answer.media.dtmf_payload_type) == (96, 97)
    assert answer.sdp.media[0].rtpmap[96] == RtpMap("pcmu", 8000)
    assert answer.sdp.media[0].fmtp == {97: "0-16"}


def test_telephone_event_must_match_the_codec_clock() -> None:
    offer = offer_with(
        "m=audio 5000 RTP/AVP 0 100 101\r\na=rtpmap:100 telephone-event/16000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
    )
    answer = negotiate(offer, [PCMU], **LOCAL)
    assert answer.media is not None and answer.media.dtmf_payload_type == 101
    # No fmtp offered: we answer with the 16 DTMF events.
    assert answer.sdp.media[0].fmtp == {101: "0-15"}


def test_dtmf_can_be_declined() -> None:
    answer = negotiate(SessionDescription.parse(BARESIP), [PCMU], dtmf=False, **LOCAL)
    assert answer.media is not None and answer.media.dtmf_payload_type is None
    assert answer.sdp.media[0].formats == [0]


@pytest.mark.parametrize(
    ("offered", "local", "expected"),
    [
        ("sendrecv", Direction.SENDRECV, Direction.SENDRECV),
        ("sendonly", Direction.SENDRECV, Direction.RECVONLY),
        ("recvonly", Direction.SENDRECV, Direction.SENDONLY),
        ("inactive", Direction.SENDRECV, Direction.INACTIVE),
        ("sendrecv", Direction.SENDONLY, Direction.SENDONLY),
        ("sendonly", Direction.SENDONLY, Direction.INACTIVE),
        ("recvonly", Direction.RECVONLY, Direction.INACTIVE),
        ("sendrecv", Direction.INACTIVE, Direction.INACTIVE),
    ],
)
def test_answer_direction_rfc3264_6_1(offered: str, local: Direction, expected: Direction) -> None:
    offer = offer_with(f"m=audio 5000 RTP/AVP 0\r\na={offered}\r\n")
    answer = negotiate(offer, [PCMU], direction=local, **LOCAL)
    assert answer.media is not None
    assert answer.media.direction is expected
    assert answer.media.remote_direction is Direction(offered)
    assert answer.sdp.media[0].direction is expected


@given(st.sampled_from(list(Direction)), st.sampled_from(list(Direction)))
def test_answer_direction_never_exceeds_the_offer(offered: Direction, local: Direction) -> None:
    got = answer_direction(offered, local)
    assert not got.sends or (offered.receives and local.sends)
    assert not got.receives or (offered.sends and local.receives)
    assert got.sends == (offered.receives and local.sends)


def test_session_level_direction_is_honoured() -> None:
    offer = offer_with("m=audio 5000 RTP/AVP 0\r\n", session="a=sendonly\r\n")
    answer = negotiate(offer, [PCMU], **LOCAL)
    assert answer.media is not None and answer.media.direction is Direction.RECVONLY
    assert answer.media.on_hold


def test_hold_detection() -> None:
    assert not is_hold(SessionDescription.parse(BARESIP))
    assert is_hold(SessionDescription.parse(CISCO_HOLD))
    assert is_hold(offer_with("m=audio 5000 RTP/AVP 0\r\na=sendonly\r\n"))
    assert is_hold(offer_with("m=audio 5000 RTP/AVP 0\r\na=inactive\r\n"))
    assert not is_hold(offer_with("m=audio 5000 RTP/AVP 0\r\na=recvonly\r\n"))
    assert not is_hold(SessionDescription.parse(T38))

    answer = negotiate(SessionDescription.parse(CISCO_HOLD), [PCMU], **LOCAL)
    assert answer.media is not None
    assert answer.media.remote_addr == "0.0.0.0"
    assert answer.media.on_hold
    assert not answer.media.sends
    assert answer.media.receives


def test_resume_after_hold_uses_with_direction() -> None:
    offer = create_offer([PCMU], local_addr="10.0.0.1", port=4000, session_id=9, version=3)
    held = with_direction(offer, Direction.SENDONLY)
    assert held.origin.sess_version == 4 and held.origin.sess_id == 9
    assert is_hold(held)
    resumed = with_direction(held, Direction.SENDRECV)
    assert resumed.origin.sess_version == 5
    assert not is_hold(resumed)
    assert offer.media[0].direction is Direction.SENDRECV


def test_no_common_codec_is_488() -> None:
    offer = offer_with("m=audio 5000 RTP/AVP 18 3\r\na=rtpmap:18 G729/8000\r\n")
    with pytest.raises(NoCommonCodec) as info:
        negotiate(offer, [PCMU, PCMA], **LOCAL)
    assert info.value.status_code == 488
    assert isinstance(info.value, SdpError)
    assert "G729" in str(info.value)


def test_pcmu_at_another_rate_is_not_pcmu() -> None:
    offer = offer_with("m=audio 5000 RTP/AVP 96\r\na=rtpmap:96 PCMU/16000\r\n")
    with pytest.raises(NoCommonCodec):
        negotiate(offer, [PCMU], **LOCAL)


def test_srtp_only_offer_is_refused() -> None:
    offer = offer_with("m=audio 5000 RTP/SAVP 0\r\n")
    with pytest.raises(NoCommonCodec):
        negotiate(offer, [PCMU], **LOCAL)


def test_video_only_offer_is_refused() -> None:
    offer = offer_with("m=video 5000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n")
    with pytest.raises(NoCommonCodec):
        negotiate(offer, [PCMU], **LOCAL)


def test_other_streams_are_rejected_with_port_zero() -> None:
    offer = SessionDescription.parse(IPV6_AUDIO_VIDEO)
    answer = negotiate(offer, [PCMU, PCMA], **LOCAL)
    assert answer.media is not None
    assert answer.media.remote_addr == "2001:db8::2"
    assert answer.media.codec_name == "PCMU"
    assert answer.media.dtmf_payload_type == 101
    audio, video = answer.sdp.media
    assert (audio.port, video.port) == (40000, 0)
    assert (video.kind, video.formats) == ("video", [103])
    reparsed = SessionDescription.parse(bytes(answer.sdp))
    assert len(reparsed.media) == len(offer.media)


def test_only_the_first_usable_audio_stream_is_taken() -> None:
    offer = offer_with(
        "m=audio 5000 RTP/AVP 18\r\nm=audio 5002 RTP/AVP 8\r\nm=audio 5004 RTP/AVP 0\r\n"
    )
    answer = negotiate(offer, [PCMU, PCMA], **LOCAL)
    assert answer.media is not None
    assert answer.media.media_index == 1
    assert [m.port for m in answer.sdp.media] == [0, 40000, 0]


def test_t38_only_offer_is_488_and_t38_beside_audio_is_rejected() -> None:
    with pytest.raises(NoCommonCodec, match="t38"):
        negotiate(SessionDescription.parse(T38), [PCMU], **LOCAL)
    offer = SessionDescription.parse(T38 + b"m=audio 4002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    answer = negotiate(offer, [PCMU], **LOCAL)
    assert answer.media is not None and answer.media.media_index == 1
    image, audio = answer.sdp.media
    assert (image.kind, image.port, image.proto, image.format_tokens) == (
        "image",
        0,
        "udptl",
        ["t38"],
    )
    assert b"m=image 0 udptl t38\r\n" in bytes(answer.sdp)
    assert audio.port == 40000


def test_disabled_audio_is_answered_disabled() -> None:
    offer = offer_with("m=audio 0 RTP/AVP 0\r\n")
    answer = negotiate(offer, [PCMU], **LOCAL)
    assert answer.media is None
    assert answer.sdp.media[0].port == 0


def test_missing_connection_is_400() -> None:
    offer = SessionDescription.parse("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 5000 RTP/AVP 0\r\n")
    with pytest.raises(SdpParseError) as info:
        negotiate(offer, [PCMU], **LOCAL)
    assert info.value.status_code == 400


@pytest.mark.parametrize(
    "connection",
    [
        "IN IP4 media.example.com",  # a host name: never resolved for media
        "IN IP4 " + "a" * 300,  # PROTOS c07-sip sdp-connection-ip
        "IN IP4 2001:db8::1",  # the address is not of its type
        "IN IP6 192.0.2.1",
        "ATM IP4 192.0.2.1",
    ],
)
def test_media_address_must_be_an_ip_literal_of_its_type(connection: str) -> None:
    for session, media in ((f"c={connection}\r\n", ""), ("", f"c={connection}\r\n")):
        offer = SessionDescription.parse(
            f"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n{session}t=0 0\r\n"
            f"m=audio 5000 RTP/AVP 0\r\n{media}"
        )
        with pytest.raises(SdpParseError, match="c= "):
            negotiate(offer, [PCMU], **LOCAL)
    ours = create_offer([PCMU], local_addr="127.0.0.1", port=20000, session_id=1)
    answer = SessionDescription.parse(
        f"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc={connection}\r\nt=0 0\r\n"
        "m=audio 5000 RTP/AVP 0\r\n"
    )
    with pytest.raises(SdpParseError, match="c= "):
        accept_answer(ours, answer)


def test_versions_and_ipv6_origin() -> None:
    offer = SessionDescription.parse(PYVOIP)
    first = negotiate(offer, [PCMU], **LOCAL)
    assert (first.sdp.origin.sess_id, first.sdp.origin.sess_version) == (555, 555)
    again = negotiate(offer, [PCMU], session_version=556, **LOCAL)
    assert again.sdp.origin.sess_version == 556
    v6 = negotiate(offer, [PCMU], local_addr="2001:db8::9", local_port=1, session_id=1)
    assert v6.sdp.connection == Connection("2001:db8::9", "IP6")
    assert v6.sdp.origin.addrtype == "IP6"


def test_ptime_from_the_offer() -> None:
    offer = offer_with("m=audio 5000 RTP/AVP 0\r\na=ptime:30\r\n")
    answer = negotiate(offer, [PCMU], ptime=20, **LOCAL)
    assert answer.media is not None and answer.media.ptime == 30
    assert answer.sdp.media[0].ptime == 20


# -- our offers ----------------------------------------------------------------------------------


def test_create_offer() -> None:
    offer = create_offer([PCMA, PCMU], local_addr="10.1.2.3", port=20000, session_id=42)
    assert bytes(offer) == (
        b"v=0\r\no=- 42 0 IN IP4 10.1.2.3\r\ns=-\r\nc=IN IP4 10.1.2.3\r\nt=0 0\r\n"
        b"m=audio 20000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    )
    no_dtmf = create_offer(
        [PCMU],
        local_addr="10.1.2.3",
        port=20000,
        session_id=42,
        version=7,
        direction=Direction.SENDONLY,
        dtmf_payload_type=None,
    )
    assert no_dtmf.media[0].formats == [0]
    assert no_dtmf.origin.sess_version == 7
    assert is_hold(no_dtmf)
    with pytest.raises(ValueError):
        create_offer([], local_addr="10.1.2.3", port=1, session_id=1)


def test_accept_answer_from_baresip_like_peer() -> None:
    offer = create_offer([PCMU, PCMA], local_addr="127.0.0.1", port=20000, session_id=1)
    answer = SessionDescription.parse(
        "v=0\r\no=- 9 9 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 35600 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=recvonly\r\n"
    )
    got = accept_answer(offer, answer)
    assert got == NegotiatedMedia(
        remote_addr="127.0.0.1",
        remote_port=35600,
        payload_type=8,
        codec_name="PCMA",
        clock_rate=8000,
        dtmf_payload_type=101,
        direction=Direction.SENDONLY,
        remote_direction=Direction.RECVONLY,
        ptime=20,
        media_index=0,
    )


def test_accept_answer_without_rtpmap_for_dynamic_type() -> None:
    offer = create_offer([PCMU], local_addr="127.0.0.1", port=20000, session_id=1)
    answer = SessionDescription.parse(
        "v=0\r\no=- 9 9 IN IP4 10.0.0.2\r\ns=-\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0 101\r\nc=IN IP4 10.0.0.3\r\n"
    )
    got = accept_answer(offer, answer)
    assert got is not None
    assert (got.remote_addr, got.payload_type, got.dtmf_payload_type) == ("10.0.0.3", 0, 101)


def test_accept_answer_rejected_or_foreign() -> None:
    offer = create_offer([PCMU], local_addr="127.0.0.1", port=20000, session_id=1)
    rejected = offer_with("m=audio 0 RTP/AVP 0\r\n")
    assert accept_answer(offer, rejected) is None
    foreign = offer_with("m=audio 4000 RTP/AVP 18\r\n")
    with pytest.raises(NoCommonCodec):
        accept_answer(offer, foreign)
    no_conn = SessionDescription.parse("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 4 RTP/AVP 0\r\n")
    with pytest.raises(SdpParseError):
        accept_answer(offer, no_conn)


_codecs = st.permutations([PCMU, PCMA, Codec("G722", 9), Codec("opus", 111, 48000)])


@given(ours=_codecs, theirs=_codecs, n_ours=st.integers(1, 4), n_theirs=st.integers(1, 4))
def test_offer_answer_agree_both_ways(
    ours: list[Codec], theirs: list[Codec], n_ours: int, n_theirs: int
) -> None:
    offer = create_offer(ours[:n_ours], local_addr="10.0.0.1", port=2000, session_id=1)
    supported = theirs[:n_theirs]
    common = [c for c in ours[:n_ours] if c in supported]
    if not common:
        with pytest.raises(NoCommonCodec):
            negotiate(offer, supported, local_addr="10.0.0.2", local_port=3000, session_id=2)
        return
    answer = negotiate(offer, supported, local_addr="10.0.0.2", local_port=3000, session_id=2)
    assert answer.media is not None
    assert answer.media.codec_name == common[0].name
    assert (answer.media.remote_addr, answer.media.remote_port) == ("10.0.0.1", 2000)
    wire = SessionDescription.parse(bytes(answer.sdp))
    back = accept_answer(offer, wire)
    assert back is not None
    assert (back.codec_name, back.payload_type) == (common[0].name, common[0].payload_type)
    assert (back.remote_addr, back.remote_port) == ("10.0.0.2", 3000)
    expected_dte = 101 if common[0].clock_rate == ours[0].clock_rate else None
    assert back.dtmf_payload_type == answer.media.dtmf_payload_type == expected_dte
    assert back.direction is Direction.SENDRECV


@pytest.mark.parametrize("sample", [BARESIP, PYVOIP, SIPP_UAC_PCAP, SIPP_UAS, ASTERISK])
def test_every_real_offer_is_answered_with_g711(sample: bytes) -> None:
    answer = negotiate(SessionDescription.parse(sample), [PCMU, PCMA], **LOCAL)
    assert answer.media is not None
    assert answer.media.codec_name in ("PCMU", "PCMA")
    assert SessionDescription.parse(bytes(answer.sdp)) == answer.sdp
