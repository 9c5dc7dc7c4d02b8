"""Cutting SIP messages out of a byte stream (TCP/TLS), RFC 3261 18.3 and RFC 5626 4.4.1."""

from __future__ import annotations

import logging
import re

from .errors import ParseError

logger = logging.getLogger(__name__)

__all__ = ["MAX_BODY_SIZE", "MAX_HEADER_SIZE", "StreamFramer"]

MAX_HEADER_SIZE = 64 * 1024
MAX_BODY_SIZE = 1024 * 1024

_CRLF = b"\r\n"
_END_OF_HEADERS = b"\r\n\r\n"
# Content-Length (compact form "l") at the start of a header line; the value is checked
# after unfolding, so folded values are seen whole.
_CONTENT_LENGTH = re.compile(
    rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE
)
_FOLD = re.compile(rb"\r\n[ \t]+")
_DIGITS = re.compile(rb"[0-9]+")


class StreamFramer:
    """Feed stream bytes, get complete messages (each still to be parsed by parse_message).

    Stream framing depends on Content-Length: it must be present, numeric and unique, or
    the stream cannot be resynchronised and :class:`ParseError` tells the caller to close
    the connection. CRLF keep-alives between messages are skipped and counted.
    """

    def __init__(
        self, *, max_header_size: int = MAX_HEADER_SIZE, max_body_size: int = MAX_BODY_SIZE
    ) -> None:
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size
        #: Number of double-CRLF keep-alive pings seen (RFC 5626 4.4.1).
        self.keepalives = 0
        #: Number of single CRLFs seen since the last message (a ping is two).
        self._crlfs = 0
        self._buffer = bytearray()
        self._broken = False
        # Where to resume looking for the end of the header section, so that a message
        # arriving in many small segments is scanned once, not once per segment.
        self._scan_from = 0

    @property
    def buffered(self) -> int:
        """Octets received but not yet returned as a message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        if self._broken:
            raise ParseError("stream framing already failed; close the connection")
        self._buffer += data
        messages: list[bytes] = []
        buf = self._buffer
        while True:
            skipped = 0
            while buf.startswith(_CRLF, skipped):
                skipped += 2
                self._crlfs += 1
                if self._crlfs == 2:
                    self.keepalives += 1
                    self._crlfs = 0
            if skipped:
                del buf[:skipped]
                self._scan_from = 0
            if not buf or buf == b"\r":
                break
            end = buf.find(_END_OF_HEADERS, self._scan_from)
            if end < 0:
                if len(buf) > self.max_header_size:
                    self._broken = True
                    raise ParseError("header section larger than the limit")
                self._scan_from = max(0, len(buf) - 3)
                break
            if end > self.max_header_size:
                self._broken = True
                raise ParseError("header section larger than the limit")
            self._crlfs = 0
            head = _FOLD.sub(b" ", bytes(buf[:end]))
            length = self._content_length(head)
            total = end + 4 + length
            if len(buf) < total:
                break
            messages.append(bytes(buf[:total]))
            del buf[:total]
            self._scan_from = 0
        return messages

    def _content_length(self, head: bytes) -> int:
        values = set(_CONTENT_LENGTH.findall(head.split(b"\r\n", 1)[-1]))
        if not values:
            self._broken = True
            raise ParseError("missing Content-Length on a stream transport")
        if len(values) > 1:
            self._broken = True
            raise ParseError("conflicting Content-Length values")
        (value,) = values
        if not _DIGITS.fullmatch(value):
            self._broken = True
            raise ParseError(f"malformed Content-Length: {value[:20]!r}")
        stripped = value.lstrip(b"0") or b"0"
        if len(stripped) > 12 or int(stripped) > self.max_body_size:
            self._broken = True
            raise ParseError("body larger than the limit")
        return int(stripped)
