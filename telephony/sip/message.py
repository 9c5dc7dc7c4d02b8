"""SIP messages: parse one datagram, serialise, build responses (RFC 3261 sections 7, 8.2.6, 18.3).

Wire objects own both directions: :func:`parse_message` and ``bytes(message)``.
Header values are kept as received (unfolded, stripped); typed accessors parse on access.
A message returned by :func:`parse_message` has well-formed Via, CSeq, Call-ID, From, To,
Contact, Route, Record-Route and Max-Forwards whenever those headers are present, so the
accessors only raise :class:`ParseError` for a missing mandatory header (or after a local
edit put a malformed value in).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import grammar
from .errors import ParseError, RemoteProtocolError, VersionNotSupported
from .headers import Headers
from .uri import AbsoluteUri, NameAddr, SipUri, Via, parse_uri

logger = logging.getLogger(__name__)

__all__ = [
    "REASON_PHRASES",
    "CSeq",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "make_response",
    "parse_message",
    "response_to_unparsable",
]

SIP_2_0 = "SIP/2.0"
MAX_CSEQ = 2**32 - 1
# RFC 4475 3.1.2.4: an overlarge Expires may be taken as the default.
DEFAULT_EXPIRES = 3600
MAX_MAX_FORWARDS = 255

#: Default reason phrases (RFC 3261 section 21 and common extensions).
REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    430: "Flow Failed",
    433: "Anonymity Disallowed",
    436: "Bad Identity-Info",
    437: "Unsupported Certificate",
    438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded",
    469: "Bad Info Package",
    470: "Consent Needed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
}

_CLASS_PHRASES = {1: "Trying", 2: "OK", 3: "Redirect", 4: "Client Error", 5: "Server Error"}

_FOLD = re.compile(r"\r\n[ \t]+")
_MISSING: Any = object()


def reason_phrase(status: int) -> str:
    return REASON_PHRASES.get(status) or _CLASS_PHRASES.get(status // 100, "Global Failure")


@dataclass(frozen=True)
class CSeq:
    """The CSeq header: sequence number and method."""

    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def _small_int(digits: str, limit: int) -> int | None:
    """int(digits) if <= limit, else None (without converting huge digit strings)."""
    stripped = digits.lstrip("0") or "0"
    if len(stripped) > len(str(limit)):
        return None
    value = int(stripped)
    return value if value <= limit else None


class SipMessage:
    """Common part of requests and responses: headers, body and typed header accessors."""

    headers: Headers
    body: bytes

    # -- typed accessors ------------------------------------------------------------
    #
    # The transaction, dialog and call layers read the same few headers of a message many
    # times. Each accessor keeps what it parsed with the text it parsed it from and parses
    # again only when that text changed (a local edit of the headers): the value is the
    # same object each time while the header is unchanged, so callers must not change it.

    def _first(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise ParseError(f"missing {name} header")
        return value

    def _cached(self, key: str, text: object) -> Any:
        """What `key` parsed from `text` before, else _MISSING."""
        cache: dict[str, tuple[object, Any]] | None = self.__dict__.get("_parsed")
        if cache is None:
            return _MISSING
        hit = cache.get(key)
        if hit is None or not (hit[0] is text or hit[0] == text):
            return _MISSING
        return hit[1]

    def _keep(self, key: str, text: object, parsed: Any) -> Any:
        cache = self.__dict__.setdefault("_parsed", {})
        cache[key] = (text, parsed)
        return parsed

    @property
    def call_id(self) -> str:
        value = self._first("Call-ID")
        if self._cached("Call-ID", value) is not _MISSING:
            return value
        if not grammar.CALL_ID.fullmatch(value):
            raise ParseError(f"malformed Call-ID: {value[:80]!r}")
        return self._keep("Call-ID", value, value)  # type: ignore[no-any-return]

    @property
    def cseq(self) -> CSeq:
        value = self._first("CSeq")
        cached = self._cached("CSeq", value)
        if cached is not _MISSING:
            return cached  # type: ignore[no-any-return]
        m = grammar.CSEQ.fullmatch(value)
        if m is None:
            raise ParseError(f"malformed CSeq: {value[:80]!r}")
        seq = _small_int(m.group("seq"), MAX_CSEQ)
        if seq is None:
            raise ParseError(f"CSeq number larger than 2**32-1: {value[:40]!r}")
        return self._keep("CSeq", value, CSeq(seq, m.group("method")))  # type: ignore[no-any-return]

    def _name_addr(self, name: str) -> NameAddr:
        value = self._first(name)
        cached = self._cached(name, value)
        if cached is not _MISSING:
            return cached  # type: ignore[no-any-return]
        return self._keep(name, value, NameAddr.parse(value))  # type: ignore[no-any-return]

    @property
    def from_(self) -> NameAddr:
        return self._name_addr("From")

    @property
    def to(self) -> NameAddr:
        return self._name_addr("To")

    @property
    def vias(self) -> list[Via]:
        values = self.headers.get_all("Via")
        if not values:
            raise ParseError("missing Via header")
        cached = self._cached("Via", values)
        if cached is _MISSING:
            cached = self._keep("Via", values, [Via.parse(v) for v in values])
        return list(cached)

    @property
    def top_via(self) -> Via:
        values = self.headers.get_all("Via")
        if not values:
            raise ParseError("missing Via header")
        cached = self._cached("Via", values)
        if cached is not _MISSING:
            return cached[0]  # type: ignore[no-any-return]
        top = self._cached("top Via", values[0])
        if top is _MISSING:
            top = self._keep("top Via", values[0], Via.parse(values[0]))
        return top  # type: ignore[no-any-return]

    @property
    def contact_star(self) -> bool:
        """True for ``Contact: *`` (REGISTER removing every binding)."""
        return "*" in self.headers.get_all("Contact")

    @property
    def contacts(self) -> list[NameAddr]:
        values = self.headers.get_all("Contact")
        if "*" in values:
            if len(values) > 1:
                raise ParseError("Contact: * mixed with other contacts")
            return []
        return self._name_addrs("Contact", values)

    @property
    def routes(self) -> list[NameAddr]:
        return self._name_addrs("Route", self.headers.get_all("Route"))

    @property
    def record_routes(self) -> list[NameAddr]:
        return self._name_addrs("Record-Route", self.headers.get_all("Record-Route"))

    def _name_addrs(self, name: str, values: list[str]) -> list[NameAddr]:
        if not values:
            return []
        cached = self._cached(name, values)
        if cached is _MISSING:
            cached = self._keep(name, values, [NameAddr.parse(v) for v in values])
        return list(cached)

    @property
    def max_forwards(self) -> int | None:
        """None when absent, or above 255 (RFC 4475 3.1.2.4 allows treating it as absent)."""
        value = self.headers.get("Max-Forwards")
        if value is None:
            return None
        if not grammar.DIGITS.fullmatch(value):
            raise ParseError(f"malformed Max-Forwards: {value[:40]!r}")
        return _small_int(value, MAX_MAX_FORWARDS)

    @property
    def expires(self) -> int | None:
        """None when absent; an overlarge value counts as 3600 (RFC 4475 3.1.2.4)."""
        value = self.headers.get("Expires")
        if value is None:
            return None
        if not grammar.DIGITS.fullmatch(value):
            raise ParseError(f"malformed Expires: {value[:40]!r}")
        seconds = _small_int(value, MAX_CSEQ)
        return DEFAULT_EXPIRES if seconds is None else seconds

    @property
    def content_type(self) -> str | None:
        """Media type, lower-cased, without parameters; None when absent."""
        value = self.headers.get("Content-Type")
        if value is None:
            return None
        return value.split(";", 1)[0].strip(" \t").lower()

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        if value is None:
            return None
        if not grammar.DIGITS.fullmatch(value):
            raise ParseError(f"malformed Content-Length: {value[:40]!r}")
        return int(value)

    # -- serialisation --------------------------------------------------------------

    def start_line(self) -> str:
        raise NotImplementedError

    def _identity(self) -> tuple[object, ...]:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        # Content-Length is derived from the body (and rewritten by __bytes__), so two
        # messages that differ only in that header are the same message.
        if type(other) is not type(self) or not isinstance(other, SipMessage):
            return NotImplemented
        return (
            self._identity() == other._identity()
            and self.body == other.body
            and self.headers.items_except("Content-Length")
            == other.headers.items_except("Content-Length")
        )

    __hash__ = None  # type: ignore[assignment]

    def __bytes__(self) -> bytes:
        lines = [self.start_line()]
        length = str(len(self.body))
        placed = False
        for name, value in self.headers:
            if name == "Content-Length":
                if placed:
                    continue
                value = length
                placed = True
            lines.append(f"{name}: {value}")
        if not placed:
            lines.append(f"Content-Length: {length}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body


@dataclass(eq=False)
class SipRequest(SipMessage):
    method: str
    uri: SipUri | AbsoluteUri
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_2_0

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def _identity(self) -> tuple[object, ...]:
        return (self.method, self.uri, self.version)


@dataclass(eq=False)
class SipResponse(SipMessage):
    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_2_0

    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def _identity(self) -> tuple[object, ...]:
        return (self.status, self.reason, self.version)


def _fail(error: RemoteProtocolError, partial: SipMessage | None) -> RemoteProtocolError:
    error.partial = partial
    return error


def _content_length(values: list[str]) -> int | None:
    """The one Content-Length, or ParseError (malformed, negative, conflicting)."""
    lengths: set[int] = set()
    for value in values:
        if not grammar.DIGITS.fullmatch(value):
            raise ParseError(f"malformed Content-Length: {value[:40]!r}")
        # Anything over 2**31 cannot fit any datagram or sane stream message.
        length = _small_int(value, 2**31)
        lengths.add(2**31 + 1 if length is None else length)
    if len(lengths) > 1:
        raise ParseError("conflicting Content-Length values")
    return lengths.pop() if lengths else None


def _validate_present(message: SipMessage) -> None:
    # Parse every header the transaction and dialog layers rely on, once, so that the
    # accessors cannot fail later on a received message.
    present = message.headers.keys()
    if "via" in present:
        message.vias  # noqa: B018
    if "cseq" in present:
        message.cseq  # noqa: B018
    if "call-id" in present:
        message.call_id  # noqa: B018
    if "from" in present:
        message.from_  # noqa: B018
    if "to" in present:
        message.to  # noqa: B018
    if "contact" in present:
        message.contacts  # noqa: B018
    if "route" in present:
        message.routes  # noqa: B018
    if "record-route" in present:
        message.record_routes  # noqa: B018
    if "max-forwards" in present:
        message.max_forwards  # noqa: B018


def parse_message(data: bytes) -> SipRequest | SipResponse:
    """Parse one SIP message from a datagram (or one message cut out by StreamFramer).

    Raises ParseError (400), VersionNotSupported (505) or another RemoteProtocolError whose
    ``partial`` holds what could be read. Octets after Content-Length are ignored
    (RFC 3261 18.3); without Content-Length the body is the rest of the datagram.
    """
    start = 0
    while data.startswith(b"\r\n", start):  # RFC 3261 7.5: ignore CRLFs before start-line
        start += 2
    end = data.find(b"\r\n\r\n", start)
    terminated = end >= 0
    if terminated:
        head_bytes = data[start:end]
        body_start = end + 4
    else:
        head_bytes = data[start:].rstrip(b"\r\n")
        body_start = len(data)
    if not head_bytes:
        raise ParseError("empty message")
    head = head_bytes.decode("utf-8", "surrogateescape")
    if "\r\n " in head or "\r\n\t" in head:
        head = _FOLD.sub(" ", head)
    errors: list[RemoteProtocolError] = []
    crlfs = head.count("\r\n")
    if head.count("\r") != crlfs or head.count("\n") != crlfs:
        errors.append(ParseError("bare CR or LF in the header section"))
    lines = head.split("\r\n")

    items: list[tuple[str, str]] = []
    match_header = grammar.HEADER_LINE.fullmatch
    for line in lines[1:]:
        m = match_header(line)
        if m is None:
            errors.append(ParseError(f"malformed header line: {line[:60]!r}"))
            continue
        items.append((m.group("name"), m.group("value").rstrip(" \t")))
    headers = Headers(items)

    message: SipRequest | SipResponse | None = None
    first = lines[0]
    if first[:4].upper() == "SIP/":
        m = grammar.STATUS_LINE.fullmatch(first)
        if m is None:
            raise _fail(ParseError(f"malformed Status-Line: {first[:80]!r}"), None)
        status = int(m.group("status"))
        message = SipResponse(status, m.group("reason") or "", headers, b"", m.group("version"))
        if not 100 <= status <= 699:
            errors.insert(0, ParseError(f"status code out of range: {status}"))
    else:
        m = grammar.REQUEST_LINE.fullmatch(first)
        if m is None:
            errors.insert(0, ParseError(f"malformed Request-Line: {first[:80]!r}"))
            m = grammar.LOOSE_REQUEST_LINE.fullmatch(first)
        if m is None:
            raise _fail(errors[0], None)
        uri_text = m.group("uri")
        uri: SipUri | AbsoluteUri
        try:
            uri = parse_uri(uri_text)
        except ParseError as exc:
            errors.insert(0, exc)
            uri = AbsoluteUri("", uri_text)  # placeholder: partial only serves error replies
        message = SipRequest(m.group("method"), uri, headers, b"", m.group("version"))
    if message.version.upper() != SIP_2_0:
        errors.insert(0, VersionNotSupported(f"unsupported version {message.version[:20]!r}"))
    else:
        message.version = SIP_2_0

    if not terminated:
        errors.append(ParseError("header section not terminated by an empty line"))
    try:
        length = _content_length(headers.get_lines("Content-Length"))
    except ParseError as exc:
        errors.append(exc)
        length = None
    available = len(data) - body_start
    if length is None:
        message.body = data[body_start:]
    elif length > available:
        errors.append(ParseError(f"Content-Length {length} larger than the {available} octets"))
        message.body = data[body_start:]
    else:
        message.body = data[body_start : body_start + length]

    if errors:
        raise _fail(errors[0], message)
    try:
        _validate_present(message)
    except RemoteProtocolError as exc:
        raise _fail(exc, message) from None
    return message


def _has_tag(value: str) -> bool:
    try:
        return NameAddr.parse(value).tag is not None
    except ParseError:
        return True  # never append to a value we cannot read


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> SipResponse:
    """Build a response per RFC 3261 8.2.6: Via (all, in order), From, To, Call-ID, CSeq copied.

    ``to_tag`` is added to To when To has no tag and status > 100. Headers missing from
    the request are skipped, so this also answers a request that failed validation.
    """
    headers = Headers()
    src = request.headers
    for value in src.get_lines("Via"):
        headers.add("Via", value)
    from_value = src.get("From")
    if from_value is not None:
        headers.add("From", from_value)
    to_value = src.get("To")
    if to_value is not None:
        if to_tag is not None and status > 100 and not _has_tag(to_value):
            to_value = f"{to_value};tag={to_tag}"
        headers.add("To", to_value)
    for name in ("Call-ID", "CSeq"):
        copied = src.get(name)
        if copied is not None:
            headers.add(name, copied)
    for name, value in extra:
        headers.add(name, value)
    return SipResponse(
        status, reason if reason is not None else reason_phrase(status), headers, body
    )


def response_to_unparsable(error: RemoteProtocolError) -> SipResponse | None:
    """The error response for a rejected request, or None when we must stay silent.

    Silent for responses, ACKs, and requests whose Via or CSeq could not be read (the
    peer could not match the answer). Works both for parse_message's errors and for
    check_request's (which set ``partial`` to the request).
    """
    partial = error.partial
    if not isinstance(partial, SipRequest) or partial.method == "ACK":
        return None
    h = partial.headers
    if not h.get_lines("Via") or h.get("CSeq") is None:
        return None
    return make_response(
        partial, error.status_code, to_tag=secrets.token_hex(6), extra=error.headers
    )
