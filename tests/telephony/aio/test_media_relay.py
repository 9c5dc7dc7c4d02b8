"""The relay's packet helpers: payload bounds with CSRCs, extensions and padding; G.711
transcoding between legs that negotiated different codecs; what the listeners of a leg hear."""

from __future__ import annotations

import asyncio

import numpy as np

from telephony.aio import MediaClock, MediaSession
from telephony.aio.media_session import _payload_bounds, _transcode
from telephony.aio.rtp import RtpEndpoint
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


def _packet(first: int, payload: bytes, *, csrcs: int = 0, tail: bytes = b"") -> bytes:
    """An RTP packet of PCMU with `first` as its first octet (CC, X, P bits) around `payload`."""
    header = bytes([first, 0]) + b"\x00\x07" + b"\x00\x00\x04\xd2" + b"\x00\x00\x00\x63"
    extension = b"\xbe\xde\x00\x01\x11\x22\x33\x44" if first & 0x10 else b""
    return header + b"\x00" * 4 * csrcs + extension + payload + tail


async def test_pcm_listeners_hear_the_same_samples_as_frame_listeners() -> None:
    """listen_pcm (the recorder's bytes, decoded without numpy) and listen (frames) hear the
    same audio, sample for sample, whatever the header carries; either stops on its undo."""
    loop = asyncio.get_running_loop()
    rtp = RtpEndpoint(40000, loop, "test@127.0.0.1")
    session = MediaSession(rtp, local_host="127.0.0.1", on_dtmf=lambda d, m: None,
                           clock=MediaClock(loop))  # fmt: skip
    session.accept_offer(
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
        b"m=audio 30000 RTP/AVP 0\r\n"
    )
    frames: list[np.ndarray] = []
    pcm: list[bytes] = []
    stop_frames = session.listen(frames.append)
    stop_pcm = session.listen_pcm(pcm.append)
    payload = bytes(range(256))[:160]  # every mu-law code the test can fit, twice over
    packets = [
        _packet(0x80, payload),  # the usual: no CSRC, extension or padding
        _packet(0x80 | 2, payload, csrcs=2),
        _packet(0x80 | 0x10, payload),
        _packet(0x80 | 0x20, payload, tail=b"\x00\x02"),
        _packet(0x80, bytes(range(160, 256)) + bytes(64)),
    ]
    for packet in packets:
        rtp.datagram_received(packet, ("127.0.0.2", 30000))
    assert len(frames) == len(pcm) == len(packets)
    assert [f.tobytes() for f in frames] == pcm
    assert pcm[0] == CODECS["PCMU"].decode(payload).tobytes()
    stop_pcm()
    rtp.datagram_received(packets[0], ("127.0.0.2", 30000))
    assert (len(frames), len(pcm)) == (len(packets) + 1, len(packets))
    stop_frames()
