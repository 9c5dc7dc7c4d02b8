"""Read UDP payloads from the classic pcap files SIPp ships (Ethernet, IPv4, UDP)."""

from __future__ import annotations

import struct
from pathlib import Path

SIPP_PCAPS = Path("/usr/share/sip-tester")


def udp_payloads(path: Path) -> list[bytes]:
    data = path.read_bytes()
    magic, _, _, _, _, _, link = struct.unpack_from("<IHHiIII", data)
    assert magic == 0xA1B2C3D4 and link == 1, "little-endian Ethernet pcap expected"
    out = []
    pos = 24
    while pos < len(data):
        _, _, incl, _ = struct.unpack_from("<IIII", data, pos)
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        ihl = (frame[14] & 0x0F) * 4
        udp = frame[14 + ihl :]
        (length,) = struct.unpack_from("!H", udp, 4)
        out.append(udp[8:length])
    return out
