"""The relay's packet helpers: payload bounds with CSRCs, extensions and padding; G.711
transcoding between legs that negotiated different codecs."""

from __future__ import annotations

import numpy as np

from telephony.aio.media_session import _payload_bounds, _transcode
from telephony.media import CODECS, tone_samples
from telephony.rtp import RtpPacket


def test_payload_bounds_skip_csrcs_extension_and_padding() -> None:
    header = bytes([0x80 | 0x20 | 0x10 | 2, 0]) + b"\x00\x01" + b"\x00" * 8  # P, X, CC=2
    csrcs = b"\x00" * 8
    extension = b"\xbe\xde\x00\x01" + b"\x11\x22\x33\x44"
    payload = b"\x55" * 160
    padding = b"\x00\x00\x03"
    packet = header + csrcs + extension + payload + padding
    start, end = _payload_bounds(packet)
    assert packet[start:end] == payload


def test_transcode_ulaw_to_alaw_keeps_the_audio() -> None:
    pcm = tone_samples([1000.0], 0.02, level_dbfs=-12.0)
    packet = RtpPacket(payload_type=0, sequence_number=7, timestamp=160, ssrc=99,
                       payload=CODECS["PCMU"].encode(pcm))  # fmt: skip
    out = RtpPacket.parse(_transcode(bytes(packet), "PCMU", "PCMA", 8))
    assert (out.payload_type, out.sequence_number, out.timestamp, out.ssrc) == (8, 7, 160, 99)
    back = CODECS["PCMA"].decode(out.payload).astype(np.float64)
    error = back - pcm.astype(np.float64)
    assert np.sqrt(np.mean(error**2)) < 0.05 * np.sqrt(np.mean(pcm.astype(np.float64) ** 2))
