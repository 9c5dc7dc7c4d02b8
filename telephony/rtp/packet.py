"""RTP data packets (RFC 3550 5.1).

```
 0                   1                   2                   3
 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
|V=2|P|X|  CC   |M|     PT      |       sequence number         |
|                           timestamp                           |
|           synchronization source (SSRC) identifier            |
|            contributing source (CSRC) identifiers             |  CC x 32 bits
|  defined by profile           |           length              |  if X
|                        header extension                       |  length x 32 bits
|                            payload  ...   padding | pad count |  if P
```

Parsing runs per packet (50 per second per leg, hundreds of legs), so it is one struct unpack
and slices; see bench/bench_media.py for what it costs.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import Final

from .errors import RtpError

logger = logging.getLogger(__name__)

__all__ = ["RTP_HEADER_SIZE", "RtpPacket", "is_rtcp"]

RTP_HEADER_SIZE: Final = 12
_HEADER: Final = struct.Struct("!BBHII")
_EXT_HEADER: Final = struct.Struct("!HH")


def is_rtcp(data: bytes) -> bool:
    """RTP/RTCP demultiplexing on one port (RFC 5761 4): RTCP packet types 192-223."""
    return len(data) >= 2 and 192 <= data[1] <= 223


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet; :meth:`parse` and ``bytes()`` are inverse."""

    payload_type: int = 0
    sequence_number: int = 0
    timestamp: int = 0
    ssrc: int = 0
    payload: bytes = b""
    marker: bool = False
    #: Contributing sources (a mixer's inputs).
    csrc: tuple[int, ...] = ()
    #: The 16-bit "defined by profile" field of a header extension, None without extension.
    extension_profile: int | None = None
    #: Header extension data (a multiple of 4 bytes), kept verbatim.
    extension: bytes = b""
    #: Number of padding bytes after the payload (0: no padding), including the count byte.
    padding: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one datagram; raise :class:`RtpError` if it is not a valid RTP packet."""
        if len(data) < 12:
            raise RtpError(f"RTP packet too short ({len(data)} bytes)")
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
        if b0 >> 6 != 2:
            raise RtpError(f"RTP version {b0 >> 6} is not 2")
        pos = 12
        csrc: tuple[int, ...] = ()
        cc = b0 & 0x0F
        if cc:
            pos += 4 * cc
            if len(data) < pos:
                raise RtpError("RTP packet truncated in CSRC list")
            csrc = struct.unpack_from(f"!{cc}I", data, 12)
        profile: int | None = None
        ext = b""
        if b0 & 0x10:
            if len(data) < pos + 4:
                raise RtpError("RTP packet truncated in extension header")
            profile, words = _EXT_HEADER.unpack_from(data, pos)
            pos += 4
            ext = data[pos : pos + 4 * words]
            pos += 4 * words
            if len(data) < pos:
                raise RtpError("RTP packet truncated in header extension")
        end = len(data)
        padding = 0
        if b0 & 0x20:
            padding = data[-1]
            if padding == 0 or padding > end - pos:
                raise RtpError(f"bad RTP padding count {padding}")
            end -= padding
        return cls(
            b1 & 0x7F,
            seq,
            ts,
            ssrc,
            data[pos:end],
            bool(b1 & 0x80),
            csrc,
            profile,
            ext,
            padding,
        )

    def __bytes__(self) -> bytes:
        cc = len(self.csrc)
        if cc > 15:
            raise RtpError("at most 15 CSRC")
        b0 = 0x80 | cc
        if self.padding:
            b0 |= 0x20
        if self.extension_profile is not None:
            b0 |= 0x10
        b1 = (0x80 if self.marker else 0) | self.payload_type
        head = _HEADER.pack(b0, b1, self.sequence_number, self.timestamp, self.ssrc)
        if not cc and self.extension_profile is None and not self.padding:
            return head + self.payload
        parts = [head]
        if cc:
            parts.append(struct.pack(f"!{cc}I", *self.csrc))
        if self.extension_profile is not None:
            if len(self.extension) % 4:
                raise RtpError("RTP header extension must be a multiple of 4 bytes")
            parts.append(_EXT_HEADER.pack(self.extension_profile, len(self.extension) // 4))
            parts.append(self.extension)
        parts.append(self.payload)
        if self.padding:
            if not 0 < self.padding < 256:
                raise RtpError(f"bad RTP padding count {self.padding}")
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)
