"""One music source heard by many legs: each frame encoded once per codec, the same payload
under each leg's own RTP header, a marker on each leg's first packet, nothing sent after."""

from __future__ import annotations

import asyncio
import itertools
import struct
from typing import cast

import numpy as np

from telephony.aio import MediaClock, MediaSession, Playout
from telephony.aio.rtp import RtpEndpoint
from telephony.media import CODECS, SampleSource, tone_power_db, tone_samples

from .test_clock import VirtualLoop


class FakeRtp:
    """What MediaSession uses of an RtpEndpoint; keeps what was sent."""

    def __init__(self) -> None:
        self.port = 40000
        self.sent: list[bytes] = []
        self.on_packet = None
        self.native_from = None  # never relays natively: no socket

    def stop_native(self) -> None:
        pass

    def stop_all_native(self) -> None:
        pass
        self.srtp_required = False

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def set_remote(self, address: tuple[str, int]) -> None:
        pass

    def set_srtp(self, keys: object) -> None:
        pass


def _leg(clock: MediaClock, codec_pt: int) -> tuple[MediaSession, FakeRtp]:
    rtp = FakeRtp()
    session = MediaSession(cast(RtpEndpoint, rtp), local_host="127.0.0.1",
                           on_dtmf=lambda d, m: None, clock=clock)  # fmt: skip
    offer = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
        f"m=audio 30000 RTP/AVP {codec_pt}\r\n"
    )
    session.accept_offer(offer.encode())
    return session, rtp


def test_one_encode_per_codec_per_frame_for_every_leg() -> None:
    loop = VirtualLoop()
    clock = MediaClock(cast(asyncio.AbstractEventLoop, loop))
    legs = [_leg(clock, 0) for _ in range(3)] + [_leg(clock, 8)]
    music = SampleSource(tone_samples([440.0], 1.0, level_dbfs=-12.0), loop=True)
    playout = Playout(music, clock)
    for session, _ in legs[:3]:
        playout.add(session)
    for _ in range(20):
        loop.advance(loop.now + 0.02)
    playout.add(legs[3][0])  # joins later: hears the music from where it is
    for _ in range(30):
        loop.advance(loop.now + 0.02)
    frames = playout.frames
    assert frames >= 49
    late = len(legs[3][1].sent)
    assert 28 <= late <= 31  # the frames since it joined
    assert playout.encodes == frames + late  # PCMU every frame, PCMA since it joined
    pcmu = [rtp for _, rtp in legs[:3]]
    assert [len(rtp.sent) for rtp in pcmu] == [frames] * 3
    # The same payload to every PCMU leg, under each leg's own sequence numbers and SSRC.
    assert len({p[12:] for p in (rtp.sent[5] for rtp in pcmu)}) == 1
    for _, rtp in legs:
        marker = [bool(p[1] & 0x80) for p in rtp.sent]
        assert marker[0] and not any(marker[1:])
        seqs = [struct.unpack("!H", p[2:4])[0] for p in rtp.sent]
        assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs))
    heard = np.concatenate([CODECS["PCMA"].decode(p[12:]) for p in legs[3][1].sent])
    assert tone_power_db(heard, 440.0) > -20
    # Leaving stops the sends; the last one to leave frees the clock.
    for session, _ in legs:
        playout.remove(session)
    sent = sum(len(rtp.sent) for _, rtp in legs)
    loop.advance(loop.now + 0.2)
    assert sum(len(rtp.sent) for _, rtp in legs) == sent
    assert len(clock) == 0
