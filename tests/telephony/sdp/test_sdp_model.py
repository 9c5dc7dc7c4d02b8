from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.sdp import (
    Attribute,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    RtpMap,
    SdpError,
    SdpParseError,
    SessionDescription,
    Timing,
)

from ._sdp_samples import ALL, BARESIP, CISCO_HOLD, FREESWITCH, IPV6_AUDIO_VIDEO, PYVOIP, T38

RFC4475 = Path(__file__).resolve().parents[2] / "data" / "rfc4475"


@pytest.mark.parametrize("name", sorted(ALL))
def test_golden_round_trip_is_byte_exact(name: str) -> None:
    raw = ALL[name]
    sd = SessionDescription.parse(raw)
    assert bytes(sd) == raw
    assert str(sd) == raw.decode()
    # And a second pass is stable.
    assert SessionDescription.parse(bytes(sd)) == sd


def test_baresip_fields() -> None:
    sd = SessionDescription.parse(BARESIP)
    assert sd.version == 0
    assert sd.origin == Origin("-", 1829422210, 1313813251, "IN", "IP4", "127.0.0.1")
    assert sd.session_name == "-"
    assert sd.connection == Connection("127.0.0.1")
    assert sd.timing == Timing(0, 0)
    assert sd.attributes == [Attribute("tool", "baresip 1.0.0")]
    (m,) = sd.media
    assert (m.kind, m.port, m.proto, m.formats) == ("audio", 35508, "RTP/AVP", [0, 8, 101])
    assert m.rtpmap == {
        0: RtpMap("PCMU", 8000),
        8: RtpMap("PCMA", 8000),
        101: RtpMap("telephone-event", 8000),
    }
    assert m.fmtp == {101: "0-15"}
    assert m.direction is Direction.SENDRECV
    assert m.ptime == 20
    assert [a.name for a in m.attributes] == ["label", "rtcp-rsize", "ssrc", "minptime"]
    assert m.attribute("rtcp-rsize") == ""
    assert m.attribute("ssrc") == "3930439739 cname:sip:15550001@127.0.0.1:35461"
    assert m.attribute("nothing") is None
    assert sd.first_audio() is m
    assert sd.direction_for(m) is Direction.SENDRECV


def test_changed_fields_stay_where_the_peer_put_them() -> None:
    sd = SessionDescription.parse(BARESIP)
    sd.media[0].direction = Direction.SENDONLY
    sd.media[0].ptime = 30
    text = str(sd)
    assert "a=fmtp:101 0-15\r\na=sendonly\r\na=label:1\r\n" in text
    assert text.endswith("a=minptime:20\r\na=ptime:30\r\n")

    sd = SessionDescription.parse(PYVOIP)
    sd.media[0].direction = Direction.INACTIVE
    assert str(sd).endswith("a=ptime:20\r\na=maxptime:150\r\na=inactive\r\n")


def test_new_fields_go_in_canonical_places() -> None:
    m = MediaDescription(
        kind="audio",
        port=4000,
        formats=[8, 101],
        rtpmap={101: RtpMap("telephone-event", 8000), 8: RtpMap("PCMA", 8000)},
        fmtp={101: "0-15"},
        direction=Direction.RECVONLY,
        ptime=20,
        attributes=[Attribute("rtcp-mux")],
    )
    sd = SessionDescription(
        origin=Origin("-", 7, 8, "IN", "IP4", "10.0.0.1"),
        connection=Connection("10.0.0.1"),
        media=[m],
    )
    assert str(sd) == (
        "v=0\r\no=- 7 8 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=rtcp-mux\r\n"
        "a=ptime:20\r\na=recvonly\r\n"
    )
    assert SessionDescription.parse(str(sd)) == sd


def test_static_payload_types_need_no_rtpmap() -> None:
    sd = SessionDescription.parse(
        "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nt=0 0\nm=audio 5000 RTP/AVP 8 0 18\n"
    )
    m = sd.media[0]
    assert m.rtpmap == {}
    assert m.encoding(0) == RtpMap("PCMU", 8000)
    assert m.encoding(8) == RtpMap("PCMA", 8000)
    assert m.encoding(18) == RtpMap("G729", 8000)
    assert m.encoding(101) is None
    assert m.find_format("pcmu", 8000) == 0
    assert m.find_format("PCMU", 16000) is None


def test_lf_line_ends_and_blank_lines_are_tolerated() -> None:
    text = BARESIP.decode().replace("\r\n", "\n") + "\n\n"
    sd = SessionDescription.parse(text)
    assert bytes(sd) == BARESIP


def test_other_lines_keep_their_order_and_letters() -> None:
    sd = SessionDescription.parse(IPV6_AUDIO_VIDEO)
    assert sd.other_lines == [("i", "A session with video"), ("b", "AS:380")]
    audio, video = sd.media
    assert audio.connection == Connection("2001:db8::2", "IP6")
    assert sd.connection_for(audio) == Connection("2001:db8::2", "IP6")
    assert sd.connection_for(video) == Connection("2001:db8::1", "IP6")
    assert audio.rtpmap[96] == RtpMap("opus", 48000, 2)
    assert audio.encoding(0) == RtpMap("PCMU", 8000)
    assert sd.direction_for(video) is Direction.RECVONLY
    assert sd.direction_for(audio) is Direction.SENDRECV
    fs = SessionDescription.parse(FREESWITCH).media[0]
    assert fs.other_lines == [("b", "AS:64")]
    assert fs.fmtp[96] == "useinbandfec=1; minptime=10"
    assert fs.attribute("rtcp") == "16385 IN IP4 198.51.100.7"


def test_non_rtp_media_keeps_format_tokens() -> None:
    sd = SessionDescription.parse(T38)
    m = sd.media[0]
    assert not m.is_rtp
    assert m.formats == []
    assert m.format_tokens == ["t38"]
    assert m.attribute("T38MaxBitRate") == "14400"


def test_null_connection_address() -> None:
    sd = SessionDescription.parse(CISCO_HOLD)
    assert sd.connection is not None and sd.connection.is_null
    assert not Connection("192.0.2.1").is_null
    assert Connection("::", "IP6").is_null


def test_session_level_direction_applies_to_media() -> None:
    sd = SessionDescription.parse(
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\na=sendonly\r\n"
        "m=audio 5000 RTP/AVP 0\r\nm=audio 5002 RTP/AVP 0\r\na=inactive\r\n"
    )
    assert sd.direction is Direction.SENDONLY
    assert sd.direction_for(sd.media[0]) is Direction.SENDONLY
    assert sd.direction_for(sd.media[1]) is Direction.INACTIVE


def test_port_count_and_duplicate_attributes_survive() -> None:
    raw = (
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
        b"m=audio 5000/2 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:0 PCMU/8000/1\r\n"
        b"a=sendrecv\r\na=recvonly\r\na=ptime:20.5\r\n"
    )
    sd = SessionDescription.parse(raw)
    m = sd.media[0]
    assert m.port_count == 2
    assert m.rtpmap[0] == RtpMap("PCMU", 8000)
    assert m.direction is Direction.SENDRECV
    assert m.ptime is None
    assert m.attributes == [
        Attribute("rtpmap", "0 PCMU/8000/1"),
        Attribute("recvonly"),
        Attribute("ptime", "20.5"),
    ]
    assert bytes(sd) == raw


def test_with_next_version_copies() -> None:
    sd = SessionDescription.parse(BARESIP)
    nxt = sd.with_next_version()
    assert nxt.origin.sess_version == sd.origin.sess_version + 1
    assert nxt.origin.sess_id == sd.origin.sess_id
    # Only the o= line changes; the copy keeps the peer's layout.
    assert str(nxt).split("\r\n")[2:] == str(sd).split("\r\n")[2:]
    nxt.media[0].port = 1
    nxt.media[0].attributes.clear()
    assert sd.media[0].port == 35508
    assert len(sd.media[0].attributes) == 4


def test_missing_optional_lines_get_defaults() -> None:
    sd = SessionDescription.parse("v=0\r\no=- 1 2 IN IP4 1.2.3.4\r\nm=audio 0 RTP/AVP\r\n")
    assert sd.session_name == "-"
    assert sd.timing == Timing()
    assert sd.connection is None
    assert sd.media[0].formats == []
    assert sd.first_audio() is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "o=- 1 1 IN IP4 1.2.3.4\r\n",
        "v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
        "v=0\r\ns=-\r\n",
        "v=0\r\no=- x 1 IN IP4 1.2.3.4\r\n",
        "v=0\r\no=- 1 1 IN IP4\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nt=now\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 5000 RTP/AVP PCMU\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 5000 RTP/AVP 128\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 5000 RTP/AVP 0\r\nc=IN\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nnot a line\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nX=upper case type\r\n",
    ],
)
def test_malformed_descriptions_raise_parse_error(text: str) -> None:
    with pytest.raises(SdpParseError) as info:
        SessionDescription.parse(text)
    assert info.value.status_code == 400
    assert isinstance(info.value, SdpError)


def test_non_utf8_bytes_round_trip() -> None:
    raw = b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=\xe9t\xe9\r\nt=0 0\r\n"
    sd = SessionDescription.parse(raw)
    assert bytes(sd) == raw


def test_rfc4475_bodies_parse_or_fail_cleanly() -> None:
    seen = 0
    for path in sorted(RFC4475.glob("*.dat")):
        raw = path.read_bytes()
        _, sep, body = raw.partition(b"\r\n\r\n")
        if not sep or not body.startswith(b"v=0"):
            continue
        seen += 1
        try:
            sd = SessionDescription.parse(body)
        except SdpParseError:
            continue
        assert SessionDescription.parse(bytes(sd)) == sd
    assert seen >= 10


# -- property tests ------------------------------------------------------------------------------

_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._", min_size=1, max_size=12)
_value = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20
)
_plain_attr = st.builds(
    Attribute,
    _token.filter(lambda t: t not in {"sendrecv", "sendonly", "recvonly", "inactive"}),
    st.none() | _value,
).filter(lambda a: a.name not in {"rtpmap", "fmtp", "ptime"})


@st.composite
def _media(draw: st.DrawFn) -> MediaDescription:
    formats = draw(st.lists(st.integers(0, 127), unique=True, max_size=5))
    mapped = draw(st.lists(st.sampled_from(formats), unique=True)) if formats else []
    return MediaDescription(
        kind=draw(st.sampled_from(["audio", "video"])),
        port=draw(st.integers(0, 65535)),
        formats=formats,
        rtpmap={
            pt: RtpMap(draw(_token.filter(lambda t: "/" not in t)), draw(st.integers(1, 96000)))
            for pt in mapped
        },
        fmtp={pt: draw(_value) for pt in draw(st.lists(st.sampled_from(formats or [0])))}
        if formats
        else {},
        direction=draw(st.none() | st.sampled_from(list(Direction))),
        connection=draw(st.none() | st.builds(Connection, st.ip_addresses(v=4).map(str))),
        ptime=draw(st.none() | st.integers(1, 9999)),
        attributes=draw(st.lists(_plain_attr, max_size=4)),
    )


@given(
    origin=st.builds(
        Origin,
        _token,
        st.integers(0, 2**64),
        st.integers(0, 2**64),
        st.just("IN"),
        st.just("IP4"),
        st.ip_addresses(v=4).map(str),
    ),
    media=st.lists(_media(), max_size=3),
    direction=st.none() | st.sampled_from(list(Direction)),
    attributes=st.lists(_plain_attr, max_size=3),
)
@settings(max_examples=150, deadline=None)
def test_model_round_trips(
    origin: Origin,
    media: list[MediaDescription],
    direction: Direction | None,
    attributes: list[Attribute],
) -> None:
    sd = SessionDescription(
        origin=origin,
        connection=Connection("192.0.2.1"),
        media=media,
        direction=direction,
        attributes=attributes,
    )
    parsed = SessionDescription.parse(bytes(sd))
    assert parsed == sd
    assert bytes(parsed) == bytes(sd)


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_arbitrary_text_parses_or_raises_parse_error(text: str) -> None:
    try:
        sd = SessionDescription.parse("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n" + text)
    except SdpParseError:
        return
    assert SessionDescription.parse(bytes(sd)) == sd
