"""The SDP data model (RFC 4566): parse text into dataclasses and serialise them back.

Structured fields cover what offer/answer needs (origin, connection, media ports, formats,
rtpmap, fmtp, ptime, direction); every other line and attribute is kept verbatim and in order, so
what a peer sent comes back byte for byte. Where a parsed description had its ptime or direction
among the other attributes, serialisation puts them back there (baresip writes ``a=sendrecv``
before ``a=label``, pyVoIP writes it last); fields created in code go in a fixed order.
"""

from __future__ import annotations

import copy
import enum
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from .errors import SdpParseError

logger = logging.getLogger(__name__)

__all__ = [
    "STATIC_PAYLOAD_TYPES",
    "Attribute",
    "Connection",
    "Direction",
    "MediaDescription",
    "Origin",
    "RtpMap",
    "SessionDescription",
    "Timing",
]

# --- grammar (RFC 4566 section 9) --------------------------------------------------------------
# Peers separate fields with one SP; runs of spaces are tolerated on input.

# origin-field = %x6f "=" username SP sess-id SP sess-version SP nettype SP addrtype SP
#                unicast-address CRLF
# sess-id = 1*DIGIT ; sess-version = 1*DIGIT
ORIGIN: Final = re.compile(
    r"(?P<username>\S+) +(?P<sess_id>[0-9]+) +(?P<sess_version>[0-9]+)"
    r" +(?P<nettype>\S+) +(?P<addrtype>\S+) +(?P<address>\S+) *"
)

# connection-field = [%x63 "=" nettype SP addrtype SP connection-address CRLF]
CONNECTION: Final = re.compile(r"(?P<nettype>\S+) +(?P<addrtype>\S+) +(?P<address>\S+) *")

# time-fields = 1*( %x74 "=" start-time SP stop-time ...)
TIMING: Final = re.compile(r"(?P<start>[0-9]+) +(?P<stop>[0-9]+) *")

# media-field = %x6d "=" media SP port ["/" integer] SP proto 1*(SP fmt) CRLF
MEDIA: Final = re.compile(
    r"(?P<kind>\S+) +(?P<port>[0-9]{1,5})(?:/(?P<count>[0-9]+))? +(?P<proto>\S+)"
    r"(?P<formats>(?: +\S+)*) *"
)

# a=rtpmap:<payload type> <encoding name>/<clock rate> [/<encoding parameters>]  (RFC 4566 6)
RTPMAP: Final = re.compile(
    r"(?P<pt>[0-9]{1,3}) +(?P<encoding>[^/\s]+)/(?P<rate>[0-9]+)(?:/(?P<channels>[0-9]+))? *"
)

# a=fmtp:<format> <format specific parameters>  (RFC 4566 6)
FMTP: Final = re.compile(r"(?P<pt>[0-9]{1,3}) +(?P<params>.*)")

# a=ptime:<packet time>  (milliseconds; fractional values are kept as a plain attribute)
PTIME: Final = re.compile(r"[0-9]{1,4}")

# type = %x61-7A ; every line is <type>=<value>
_SESSION_ORDER: Final = "iuepcbtrzk"  # after v= o= s=, before a= (RFC 4566 5)
_MEDIA_ORDER: Final = "icbk"  # after m=, before a=


class Direction(enum.StrEnum):
    """Media direction attribute (RFC 3264 5.1), from the point of view of the SDP's author."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        """The author of the description sends media."""
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        """The author of the description wants to receive media."""
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def from_flags(cls, *, sends: bool, receives: bool) -> Direction:
        if sends:
            return cls.SENDRECV if receives else cls.SENDONLY
        return cls.RECVONLY if receives else cls.INACTIVE

    def reversed(self) -> Direction:
        """The same stream seen from the other end (sendonly <-> recvonly)."""
        return Direction.from_flags(sends=self.receives, receives=self.sends)


_DIRECTIONS: Final = frozenset(d.value for d in Direction)


@dataclass(frozen=True, slots=True)
class Origin:
    """o= line: who made the description and which version of it this is."""

    username: str = "-"
    #: Numeric session id, stable for the whole session.
    sess_id: int = 0
    #: Incremented on every change of the description (RFC 3264 8).
    sess_version: int = 0
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "127.0.0.1"

    def __str__(self) -> str:
        return (
            f"{self.username} {self.sess_id} {self.sess_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """c= line: where media goes."""

    address: str
    addrtype: str = "IP4"
    nettype: str = "IN"

    @property
    def is_null(self) -> bool:
        """RFC 2543-style hold: the address 0.0.0.0 (or ::) means "do not send to me"."""
        return self.address in ("0.0.0.0", "::")

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True)
class Timing:
    """t= line; 0 0 means an unbounded session, which is what every VoIP peer sends."""

    start: int = 0
    stop: int = 0

    def __str__(self) -> str:
        return f"{self.start} {self.stop}"


@dataclass(frozen=True, slots=True)
class RtpMap:
    """a=rtpmap value: an encoding name and its RTP clock rate."""

    encoding: str
    clock_rate: int
    #: Audio channels; None when the rtpmap leaves it out (meaning 1).
    channels: int | None = None

    def __str__(self) -> str:
        tail = "" if self.channels is None else f"/{self.channels}"
        return f"{self.encoding}/{self.clock_rate}{tail}"


@dataclass(frozen=True, slots=True)
class Attribute:
    """An a= line kept as text: ``a=name`` (property) or ``a=name:value``."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return f"a={self.name}" if self.value is None else f"a={self.name}:{self.value}"


#: Audio payload types with fixed meaning (RFC 3551 table 4); offers may omit their rtpmap.
STATIC_PAYLOAD_TYPES: Final[Mapping[int, RtpMap]] = {
    0: RtpMap("PCMU", 8000),
    3: RtpMap("GSM", 8000),
    4: RtpMap("G723", 8000),
    5: RtpMap("DVI4", 8000),
    6: RtpMap("DVI4", 16000),
    7: RtpMap("LPC", 8000),
    8: RtpMap("PCMA", 8000),
    9: RtpMap("G722", 8000),
    10: RtpMap("L16", 44100, 2),
    11: RtpMap("L16", 44100),
    12: RtpMap("QCELP", 8000),
    13: RtpMap("CN", 8000),
    14: RtpMap("MPA", 90000),
    15: RtpMap("G728", 8000),
    16: RtpMap("DVI4", 11025),
    17: RtpMap("DVI4", 22050),
    18: RtpMap("G729", 8000),
}

# Where parsed structured attributes stood: key -> (number of plain attributes before it, order).
_Layout = dict[str, tuple[int, int]]


def _arrange(
    structured: Sequence[tuple[str, str, bool]], layout: _Layout, others: Sequence[Attribute]
) -> list[str]:
    """Interleave structured a= lines (key, text, goes_last_if_new) with the plain ones."""
    n = len(others)
    slots: list[list[tuple[tuple[int, int], str]]] = [[] for _ in range(n + 1)]
    for order, (key, text, last) in enumerate(structured):
        placed = layout.get(key)
        if placed is not None:
            anchor, seq = placed
            slots[min(anchor, n)].append(((0, seq), text))
        else:
            slots[n if last else 0].append(((1, order), text))
    lines: list[str] = []
    for k, slot in enumerate(slots):
        lines.extend(text for _, text in sorted(slot))
        if k < n:
            lines.append(str(others[k]))
    return lines


def _ordered(
    lines: Sequence[tuple[str, str]], order: str, structured: Mapping[str, str]
) -> list[str]:
    """Lines in the RFC 4566 order of their type letters; unknown letters keep their place last."""
    out: list[str] = []
    for letter in order:
        if letter in structured:
            out.append(f"{letter}={structured[letter]}")
        out.extend(f"{t}={v}" for t, v in lines if t == letter)
    out.extend(f"{t}={v}" for t, v in lines if t not in order)
    return out


@dataclass(slots=True)
class MediaDescription:
    """One m= section (RFC 4566 5.14)."""

    #: Media type: "audio", "video", "image" (T.38 fax)...
    kind: str = "audio"
    #: Transport port; 0 rejects or disables the stream (RFC 3264 5.1, 6).
    port: int = 0
    #: Transport protocol, "RTP/AVP" for plain RTP.
    proto: str = "RTP/AVP"
    #: RTP payload types in the author's order of preference.
    formats: list[int] = field(default_factory=list)
    #: a=rtpmap by payload type (static types may be absent: see :meth:`encoding`).
    rtpmap: dict[int, RtpMap] = field(default_factory=dict)
    #: a=fmtp parameters by payload type, as text.
    fmtp: dict[int, str] = field(default_factory=dict)
    #: Direction attribute of this section; None when absent (then the session's applies).
    direction: Direction | None = None
    #: Media-level c= overriding the session's.
    connection: Connection | None = None
    #: a=ptime in milliseconds.
    ptime: int | None = None
    #: Every other a= line, in order.
    attributes: list[Attribute] = field(default_factory=list)
    #: The "/<number of ports>" of the m= line, when given.
    port_count: int | None = None
    #: Formats of a non-RTP protocol (``udptl t38``, ``TCP/MSRP *``), kept as text.
    format_tokens: list[str] = field(default_factory=list)
    #: Other lines of the section (i=, b=, k=, repeated c=...) as (type, value), in order.
    other_lines: list[tuple[str, str]] = field(default_factory=list)
    _layout: _Layout = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def is_rtp(self) -> bool:
        """The formats are RTP payload types (RTP/AVP, RTP/SAVP, UDP/TLS/RTP/SAVPF...)."""
        return "RTP" in self.proto.upper()

    def encoding(self, payload_type: int) -> RtpMap | None:
        """The rtpmap of a payload type, falling back to the static table for 0-95."""
        found = self.rtpmap.get(payload_type)
        if found is None and payload_type < 96:
            found = STATIC_PAYLOAD_TYPES.get(payload_type)
        return found

    def find_format(self, encoding: str, clock_rate: int) -> int | None:
        """First listed payload type carrying ``encoding``/``clock_rate`` (case-insensitive)."""
        wanted = encoding.lower()
        for pt in self.formats:
            enc = self.encoding(pt)
            if enc is not None and enc.encoding.lower() == wanted and enc.clock_rate == clock_rate:
                return pt
        return None

    def attribute(self, name: str) -> str | None:
        """Value of the first plain attribute called ``name`` ("" for a property attribute)."""
        for attr in self.attributes:
            if attr.name == name:
                return "" if attr.value is None else attr.value
        return None

    def _lines(self) -> list[str]:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        fmts = [str(pt) for pt in self.formats] if self.is_rtp else self.format_tokens
        lines = [" ".join(["m=" + self.kind, port, self.proto, *fmts])]
        structured = {} if self.connection is None else {"c": str(self.connection)}
        lines.extend(_ordered(self.other_lines, _MEDIA_ORDER, structured))
        items: list[tuple[str, str, bool]] = []
        listed = [pt for pt in self.formats if pt in self.rtpmap or pt in self.fmtp]
        unlisted = sorted((set(self.rtpmap) | set(self.fmtp)) - set(self.formats))
        for pt in [*listed, *unlisted]:
            if pt in self.rtpmap:
                items.append((f"rtpmap:{pt}", f"a=rtpmap:{pt} {self.rtpmap[pt]}", False))
            if pt in self.fmtp:
                items.append((f"fmtp:{pt}", f"a=fmtp:{pt} {self.fmtp[pt]}", False))
        if self.ptime is not None:
            items.append(("ptime", f"a=ptime:{self.ptime}", True))
        if self.direction is not None:
            items.append(("direction", f"a={self.direction}", True))
        lines.extend(_arrange(items, self._layout, self.attributes))
        return lines


@dataclass(slots=True)
class SessionDescription:
    """A whole session description: session-level lines and the media sections."""

    #: v= (always 0).
    version: int = 0
    origin: Origin = field(default_factory=Origin)
    #: s= ("-" when there is nothing to say).
    session_name: str = "-"
    #: Session-level c=; media sections may override it.
    connection: Connection | None = None
    timing: Timing = Timing()
    media: list[MediaDescription] = field(default_factory=list)
    #: Session-level direction attribute; None when absent (meaning sendrecv).
    direction: Direction | None = None
    #: Every other session-level a= line, in order.
    attributes: list[Attribute] = field(default_factory=list)
    #: Other session-level lines (i= u= e= p= b= r= z= k=, extra t=...) as (type, value).
    other_lines: list[tuple[str, str]] = field(default_factory=list)
    _layout: _Layout = field(default_factory=dict, init=False, repr=False, compare=False)

    # -- queries -------------------------------------------------------------------------------

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """The c= that applies to a media section (its own, else the session's)."""
        return media.connection if media.connection is not None else self.connection

    def direction_for(self, media: MediaDescription) -> Direction:
        """The direction that applies to a media section (RFC 3264 5.1 default sendrecv)."""
        if media.direction is not None:
            return media.direction
        return self.direction if self.direction is not None else Direction.SENDRECV

    def first_audio(self) -> MediaDescription | None:
        """The first audio section with a non-zero port, if any."""
        for m in self.media:
            if m.kind == "audio" and m.port != 0:
                return m
        return None

    def copy(self) -> SessionDescription:
        """A deep copy, layout included."""
        return copy.deepcopy(self)

    def with_next_version(self) -> SessionDescription:
        """A copy with o= sess-version + 1: what a re-offer with changes must carry (RFC 3264 8)."""
        new = self.copy()
        new.origin = replace(self.origin, sess_version=self.origin.sess_version + 1)
        return new

    # -- wire format ---------------------------------------------------------------------------

    def __str__(self) -> str:
        lines = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name}"]
        structured = {"t": str(self.timing)}
        if self.connection is not None:
            structured["c"] = str(self.connection)
        lines.extend(_ordered(self.other_lines, _SESSION_ORDER, structured))
        items = [] if self.direction is None else [("direction", f"a={self.direction}", True)]
        lines.extend(_arrange(items, self._layout, self.attributes))
        for m in self.media:
            lines.extend(m._lines())
        return "\r\n".join(lines) + "\r\n"

    def __bytes__(self) -> bytes:
        return str(self).encode("utf-8", "surrogateescape")

    @classmethod
    def parse(cls, data: str | bytes) -> SessionDescription:
        """Parse a session description; raise :class:`SdpParseError` when it is malformed.

        Lenient where peers are sloppy (LF line ends, blank lines, missing s= or t=, unknown
        attributes, malformed rtpmap kept as a plain attribute); strict where a wrong guess would
        send media to the wrong place (v=, o=, c=, m= grammar).
        """
        if isinstance(data, str):
            return _Parser().run(data)
        # surrogateescape: stray non-UTF-8 bytes survive a round trip unchanged.
        return _Parser().run(bytes(data).decode("utf-8", "surrogateescape"))


class _Parser:
    def __init__(self) -> None:
        self.sd = SessionDescription()
        self.media: MediaDescription | None = None
        self.seen: set[str] = set()
        self.seq = 0

    def run(self, text: str) -> SessionDescription:
        lines: list[tuple[int, str, str]] = []
        for n, raw in enumerate(text.split("\n"), 1):
            line = raw[:-1] if raw.endswith("\r") else raw
            if not line.strip():
                continue
            if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
                raise SdpParseError(f"SDP line {n} is not <type>=<value>: {line[:60]!r}")
            lines.append((n, line[0], line[2:]))
        if not lines or lines[0][1] != "v":
            raise SdpParseError("SDP must start with v=")
        if lines[0][2].strip() != "0":
            raise SdpParseError(f"unsupported SDP version {lines[0][2]!r}")
        for n, kind, value in lines[1:]:
            try:
                if self.media is None:
                    self._session_line(kind, value)
                else:
                    self._media_line(self.media, kind, value)
            except SdpParseError as exc:
                raise SdpParseError(f"SDP line {n}: {exc}") from None
        if "o" not in self.seen:
            raise SdpParseError("SDP has no o= line")
        return self.sd

    def _session_line(self, kind: str, value: str) -> None:
        sd = self.sd
        first = kind not in self.seen
        self.seen.add(kind)
        if kind == "o":
            if not first:
                raise SdpParseError("more than one o= line")
            sd.origin = _origin(value)
        elif kind == "s" and first:
            sd.session_name = value
        elif kind == "c" and first:
            sd.connection = _connection(value)
        elif kind == "t" and first:
            mt = TIMING.fullmatch(value)
            if mt is None:
                raise SdpParseError(f"malformed t= {value!r}")
            sd.timing = Timing(int(mt["start"]), int(mt["stop"]))
        elif kind == "m":
            self.media = _media(value)
            sd.media.append(self.media)
        elif kind == "a":
            name, sep, attr_value = value.partition(":")
            if not sep and name in _DIRECTIONS and sd.direction is None:
                sd.direction = Direction(name)
                self._place(sd._layout, "direction", len(sd.attributes))
            else:
                sd.attributes.append(Attribute(name, attr_value if sep else None))
        else:
            sd.other_lines.append((kind, value))

    def _media_line(self, m: MediaDescription, kind: str, value: str) -> None:
        if kind == "m":
            self.media = _media(value)
            self.sd.media.append(self.media)
        elif kind == "c" and m.connection is None:
            m.connection = _connection(value)
        elif kind == "a":
            self._media_attribute(m, value)
        else:
            m.other_lines.append((kind, value))

    def _media_attribute(self, m: MediaDescription, value: str) -> None:
        name, sep, attr_value = value.partition(":")
        where = len(m.attributes)
        if sep and name == "rtpmap" and (mt := RTPMAP.fullmatch(attr_value)) is not None:
            pt = int(mt["pt"])
            if pt not in m.rtpmap:
                channels = None if mt["channels"] is None else int(mt["channels"])
                m.rtpmap[pt] = RtpMap(mt["encoding"], int(mt["rate"]), channels)
                self._place(m._layout, f"rtpmap:{pt}", where)
                return
        elif sep and name == "fmtp" and (mf := FMTP.fullmatch(attr_value)) is not None:
            pt = int(mf["pt"])
            if pt not in m.fmtp:
                m.fmtp[pt] = mf["params"]
                self._place(m._layout, f"fmtp:{pt}", where)
                return
        elif sep and name == "ptime" and PTIME.fullmatch(attr_value) and m.ptime is None:
            m.ptime = int(attr_value)
            self._place(m._layout, "ptime", where)
            return
        elif not sep and name in _DIRECTIONS and m.direction is None:
            m.direction = Direction(name)
            self._place(m._layout, "direction", where)
            return
        m.attributes.append(Attribute(name, attr_value if sep else None))

    def _place(self, layout: _Layout, key: str, anchor: int) -> None:
        layout[key] = (anchor, self.seq)
        self.seq += 1


def _origin(value: str) -> Origin:
    mo = ORIGIN.fullmatch(value)
    if mo is None:
        raise SdpParseError(f"malformed o= {value!r}")
    return Origin(
        mo["username"],
        int(mo["sess_id"]),
        int(mo["sess_version"]),
        mo["nettype"],
        mo["addrtype"],
        mo["address"],
    )


def _connection(value: str) -> Connection:
    mc = CONNECTION.fullmatch(value)
    if mc is None:
        raise SdpParseError(f"malformed c= {value!r}")
    return Connection(mc["address"], mc["addrtype"], mc["nettype"])


def _media(value: str) -> MediaDescription:
    mm = MEDIA.fullmatch(value)
    if mm is None:
        raise SdpParseError(f"malformed m= {value!r}")
    port = int(mm["port"])
    if port > 65535:
        raise SdpParseError(f"m= port out of range: {port}")
    m = MediaDescription(
        kind=mm["kind"],
        port=port,
        proto=mm["proto"],
        port_count=None if mm["count"] is None else int(mm["count"]),
    )
    tokens = mm["formats"].split()
    if m.is_rtp:
        for tok in tokens:
            if not (tok.isascii() and tok.isdigit()) or int(tok) > 127:
                raise SdpParseError(f"RTP payload type must be 0-127, got {tok!r}")
            m.formats.append(int(tok))
    else:
        m.format_tokens = tokens
    return m
