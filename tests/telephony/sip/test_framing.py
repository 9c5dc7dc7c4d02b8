"""StreamFramer: Content-Length framing on TCP, keep-alives, limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telephony.sip.errors import ParseError
from telephony.sip.framing import StreamFramer
from telephony.sip.message import parse_message

MSG = (
    b"MESSAGE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP h;branch=z9hG4bK1\r\n"
    b"Content-Length: 5\r\n"
    b"\r\n"
    b"hello"
)
EMPTY = b"OPTIONS sip:a@b SIP/2.0\r\nl:0\r\n\r\n"


def test_two_messages_in_one_segment() -> None:
    framer = StreamFramer()
    assert framer.feed(MSG + EMPTY) == [MSG, EMPTY]
    assert framer.buffered == 0


@given(st.lists(st.integers(1, 40), min_size=1, max_size=40))
def test_any_segmentation_gives_the_same_messages(sizes: list[int]) -> None:
    stream = b"\r\n\r\n" + MSG + b"\r\n\r\n" + EMPTY + MSG
    framer = StreamFramer()
    out: list[bytes] = []
    pos = 0
    for size in sizes * 20:
        out += framer.feed(stream[pos : pos + size])
        pos += size
        if pos >= len(stream):
            break
    out += framer.feed(stream[pos:])
    assert out == [MSG, EMPTY, MSG]
    assert framer.keepalives == 2
    assert framer.buffered == 0
    assert [parse_message(m).body for m in out] == [b"hello", b"", b"hello"]


def test_folded_content_length_and_compact_form() -> None:
    msg = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length   :\r\n  3\r\n\r\nabc"
    assert StreamFramer().feed(msg) == [msg]


def test_single_crlf_pong_is_skipped() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == []
    assert framer.feed(EMPTY) == [EMPTY]
    assert framer.keepalives == 0


def test_incomplete_body_waits() -> None:
    framer = StreamFramer()
    assert framer.feed(MSG[:-2]) == []
    assert framer.buffered == len(MSG) - 2
    assert framer.feed(MSG[-2:]) == [MSG]


@pytest.mark.parametrize(
    "head",
    [
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n",  # missing
        b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -999\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: five\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 13\r\nl: 5\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    ],
)
def test_unrecoverable_framing_errors(head: bytes) -> None:
    framer = StreamFramer()
    with pytest.raises(ParseError):
        framer.feed(head)
    with pytest.raises(ParseError):  # the connection must be closed; stays broken
        framer.feed(EMPTY)


def test_limits() -> None:
    framer = StreamFramer(max_header_size=100)
    with pytest.raises(ParseError):
        framer.feed(b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b"a" * 200)
    framer = StreamFramer(max_body_size=4)
    with pytest.raises(ParseError):
        framer.feed(MSG)


def test_default_header_limit_is_64k() -> None:
    framer = StreamFramer()
    assert framer.feed(b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b"a" * 60000) == []
    with pytest.raises(ParseError):
        framer.feed(b"a" * 10000)
