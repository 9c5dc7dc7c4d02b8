"""RTCP packets (RFC 3550 6.4-6.6): SR, RR, SDES, BYE, and compound packets.

Every RTCP packet starts with the same header; ``length`` counts 32-bit words minus one:

```
|V=2|P|  RC/SC  |      PT       |             length            |
```

Packet types we do not model (APP, RTPFB, PSFB, XR...) parse into :class:`RtcpUnknown` and
serialise back unchanged, so a compound packet can be relayed or inspected without loss.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import Final

from .errors import RtcpError

logger = logging.getLogger(__name__)

__all__ = [
    "RTCP_APP",
    "RTCP_BYE",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_SR",
    "SDES_CNAME",
    "Bye",
    "ReceiverReport",
    "ReportBlock",
    "RtcpPacket",
    "RtcpUnknown",
    "SdesChunk",
    "SenderReport",
    "SourceDescription",
    "dlsr_from_seconds",
    "ntp_from_unix",
    "ntp_middle",
    "parse_rtcp",
    "serialize_rtcp",
]

RTCP_SR: Final = 200
RTCP_RR: Final = 201
RTCP_SDES: Final = 202
RTCP_BYE: Final = 203
RTCP_APP: Final = 204

#: SDES item type of the canonical name (RFC 3550 6.5.1).
SDES_CNAME: Final = 1

_COMMON: Final = struct.Struct("!BBH")
_SR_INFO: Final = struct.Struct("!IQIII")  # ssrc, ntp, rtp ts, packet count, octet count
_REPORT: Final = struct.Struct("!IB3sIIII")  # ssrc, fraction, cumulative lost (24 bit), ...

# Seconds between the NTP epoch (1900) and the Unix epoch (1970).
_NTP_UNIX_OFFSET: Final = 2_208_988_800


def ntp_from_unix(seconds: float) -> int:
    """64-bit NTP timestamp (32.32 fixed point since 1900) for a Unix time."""
    whole = int(seconds // 1)
    fraction = round((seconds - whole) * (1 << 32))
    return (((whole + _NTP_UNIX_OFFSET) << 32) + fraction) & 0xFFFF_FFFF_FFFF_FFFF


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: the LSR field of a report block."""
    return (ntp >> 16) & 0xFFFF_FFFF


def dlsr_from_seconds(seconds: float) -> int:
    """A delay in units of 1/65536 s: the DLSR field of a report block."""
    return max(0, min(0xFFFF_FFFF, int(seconds * 65536)))


def _header(count: int, packet_type: int, body_len: int) -> bytes:
    if body_len % 4:
        raise RtcpError("RTCP packet body must be a multiple of 4 bytes")
    return _COMMON.pack(0x80 | count, packet_type, (body_len + 4) // 4 - 1)


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """Reception report about one source (RFC 3550 6.4.1)."""

    #: The source this block reports on.
    ssrc: int
    #: Fraction of packets lost since the previous report, as n/256.
    fraction_lost: int = 0
    #: Cumulative packets lost (signed 24 bits: duplicates can make it negative).
    packets_lost: int = 0
    #: Extended highest sequence number received (cycles << 16 | max_seq).
    highest_sequence: int = 0
    #: Interarrival jitter in timestamp units.
    jitter: int = 0
    #: Middle 32 bits of the last SR's NTP timestamp from that source (0: none yet).
    lsr: int = 0
    #: Delay since that SR, in 1/65536 s.
    dlsr: int = 0

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> ReportBlock:
        ssrc, fraction, lost, highest, jitter, lsr, dlsr = _REPORT.unpack_from(data, offset)
        return cls(
            ssrc,
            fraction,
            int.from_bytes(lost, "big", signed=True),
            highest,
            jitter,
            lsr,
            dlsr,
        )

    def __bytes__(self) -> bytes:
        lost = max(-0x800000, min(0x7FFFFF, self.packets_lost))
        return _REPORT.pack(
            self.ssrc,
            self.fraction_lost,
            lost.to_bytes(3, "big", signed=True),
            self.highest_sequence,
            self.jitter,
            self.lsr,
            self.dlsr,
        )


def _reports(data: bytes, offset: int, count: int, end: int) -> tuple[ReportBlock, ...]:
    if offset + 24 * count > end:
        raise RtcpError("RTCP report blocks overrun the packet")
    return tuple(ReportBlock.parse(data, offset + 24 * i) for i in range(count))


@dataclass(frozen=True, slots=True)
class SenderReport:
    """SR (PT 200): a sender's clock mapping and counts, plus reception report blocks."""

    ssrc: int
    #: 64-bit NTP wallclock when the report was sent.
    ntp_timestamp: int
    #: The same instant on the RTP timestamp clock.
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    #: Profile-specific extension after the report blocks.
    extension: bytes = b""

    def __bytes__(self) -> bytes:
        body = _SR_INFO.pack(
            self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count
        )
        body += b"".join(bytes(r) for r in self.reports) + self.extension
        return _header(len(self.reports), RTCP_SR, len(body)) + body


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """RR (PT 201): reception report blocks from a participant that does not send."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    def __bytes__(self) -> bytes:
        body = struct.pack("!I", self.ssrc) + b"".join(bytes(r) for r in self.reports)
        body += self.extension
        return _header(len(self.reports), RTCP_RR, len(body)) + body


@dataclass(frozen=True, slots=True)
class SdesChunk:
    """The SDES items of one source: (item type, value) pairs."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    @property
    def cname(self) -> str | None:
        for kind, value in self.items:
            if kind == SDES_CNAME:
                return value.decode("utf-8", "replace")
        return None

    def __bytes__(self) -> bytes:
        out = bytearray(struct.pack("!I", self.ssrc))
        for kind, value in self.items:
            if len(value) > 255:
                raise RtcpError("SDES item longer than 255 bytes")
            out += bytes((kind, len(value))) + value
        # A null item ends the list, then zero padding to the next 32-bit boundary.
        out += bytes(4 - len(out) % 4)
        return bytes(out)


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """SDES (PT 202): CNAME and friends, one chunk per source."""

    chunks: tuple[SdesChunk, ...] = ()

    def __bytes__(self) -> bytes:
        body = b"".join(bytes(c) for c in self.chunks)
        return _header(len(self.chunks), RTCP_SDES, len(body)) + body

    @staticmethod
    def _parse_chunks(data: bytes, offset: int, count: int, end: int) -> tuple[SdesChunk, ...]:
        chunks = []
        pos = offset
        for _ in range(count):
            if pos + 4 > end:
                raise RtcpError("SDES chunk overruns the packet")
            (ssrc,) = struct.unpack_from("!I", data, pos)
            pos += 4
            items = []
            while True:
                if pos >= end:
                    raise RtcpError("SDES items not terminated")
                kind = data[pos]
                if kind == 0:
                    pos += 1
                    break
                if pos + 2 > end or pos + 2 + data[pos + 1] > end:
                    raise RtcpError("SDES item overruns the packet")
                length = data[pos + 1]
                items.append((kind, data[pos + 2 : pos + 2 + length]))
                pos += 2 + length
            pos = (pos + 3) & ~3
            chunks.append(SdesChunk(ssrc, tuple(items)))
        return tuple(chunks)


@dataclass(frozen=True, slots=True)
class Bye:
    """BYE (PT 203): sources leaving, with an optional reason."""

    sources: tuple[int, ...] = ()
    reason: str | None = None

    def __bytes__(self) -> bytes:
        body = b"".join(struct.pack("!I", s) for s in self.sources)
        if self.reason is not None:
            text = self.reason.encode("utf-8")[:255]
            reason = bytes((len(text),)) + text
            body += reason + bytes(-len(reason) % 4)
        return _header(len(self.sources), RTCP_BYE, len(body)) + body


@dataclass(frozen=True, slots=True)
class RtcpUnknown:
    """Any other RTCP packet (APP, feedback, XR...), kept as its header fields and body."""

    packet_type: int
    #: The 5-bit count/subtype field of the header.
    count: int
    body: bytes

    def __bytes__(self) -> bytes:
        pad = -len(self.body) % 4
        if not pad:
            return _header(self.count, self.packet_type, len(self.body)) + self.body
        # The body lost its padding in parsing; put it back (P bit, count in the last byte).
        tail = bytes(pad - 1) + bytes((pad,))
        head = _COMMON.pack(0xA0 | self.count, self.packet_type, (len(self.body) + pad) // 4)
        return head + self.body + tail


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | RtcpUnknown


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP packet into its parts; raise :class:`RtcpError` if malformed.

    Only the last part may carry padding (RFC 3550 6.4.1); its padding is dropped.
    """
    packets: list[RtcpPacket] = []
    pos = 0
    total = len(data)
    if total < 4:
        raise RtcpError(f"RTCP packet too short ({total} bytes)")
    while pos < total:
        if pos + 4 > total:
            raise RtcpError("trailing bytes after the last RTCP packet")
        b0, ptype, words = _COMMON.unpack_from(data, pos)
        if b0 >> 6 != 2:
            raise RtcpError(f"RTCP version {b0 >> 6} is not 2")
        end = pos + 4 * (words + 1)
        if end > total:
            raise RtcpError("RTCP length field overruns the datagram")
        count = b0 & 0x1F
        body_end = end
        if b0 & 0x20:
            if end != total:
                raise RtcpError("padding is allowed only in the last RTCP packet")
            pad = data[end - 1]
            if pad == 0 or pad > end - pos - 4:
                raise RtcpError(f"bad RTCP padding count {pad}")
            body_end -= pad
        packets.append(_parse_one(data, pos + 4, body_end, ptype, count))
        pos = end
    return packets


def _parse_one(data: bytes, start: int, end: int, ptype: int, count: int) -> RtcpPacket:
    if ptype == RTCP_SR:
        if end - start < 24:
            raise RtcpError("SR too short")
        ssrc, ntp, rtp_ts, packets, octets = _SR_INFO.unpack_from(data, start)
        reports = _reports(data, start + 24, count, end)
        ext = data[start + 24 + 24 * count : end]
        return SenderReport(ssrc, ntp, rtp_ts, packets, octets, reports, ext)
    if ptype == RTCP_RR:
        if end - start < 4:
            raise RtcpError("RR too short")
        (ssrc,) = struct.unpack_from("!I", data, start)
        reports = _reports(data, start + 4, count, end)
        return ReceiverReport(ssrc, reports, data[start + 4 + 24 * count : end])
    if ptype == RTCP_SDES:
        return SourceDescription(SourceDescription._parse_chunks(data, start, count, end))
    if ptype == RTCP_BYE:
        if start + 4 * count > end:
            raise RtcpError("BYE source list overruns the packet")
        sources = struct.unpack_from(f"!{count}I", data, start)
        reason = None
        pos = start + 4 * count
        if pos < end:
            length = data[pos]
            if pos + 1 + length > end:
                raise RtcpError("BYE reason overruns the packet")
            reason = data[pos + 1 : pos + 1 + length].decode("utf-8", "replace")
        return Bye(sources, reason)
    return RtcpUnknown(ptype, count, data[start:end])


def serialize_rtcp(packets: list[RtcpPacket] | tuple[RtcpPacket, ...]) -> bytes:
    """A compound RTCP packet (RFC 3550 6.1: start it with an SR or RR)."""
    return b"".join(bytes(p) for p in packets)
