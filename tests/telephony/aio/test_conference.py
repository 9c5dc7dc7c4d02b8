"""The conference mix on a virtual media clock: each party's frames reach exactly the parties
the matrix says, one frame per tick, and closing stops the mix and detaches the listeners."""

from __future__ import annotations

import asyncio
import itertools
import struct
from typing import cast

import numpy as np
import pytest

from telephony.aio import Conference, MediaBridge, MediaClock, MediaSession
from telephony.aio.rtp import RtpEndpoint
from telephony.media import CODECS, MixMatrix, tone_power_db, tone_samples

from .test_clock import VirtualLoop

FREQS = (600.0, 1000.0, 1500.0)


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

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def set_remote(self, address: tuple[str, int]) -> None:
        pass


def _ignore(digit: str, method: str) -> None:
    pass


def _sessions(clock: MediaClock) -> tuple[list[MediaSession], list[FakeRtp]]:
    rtps = [FakeRtp() for _ in FREQS]
    sessions = [
        MediaSession(cast(RtpEndpoint, rtp), local_host="127.0.0.1", on_dtmf=_ignore, clock=clock)
        for rtp in rtps
    ]
    return sessions, rtps


def _packet(seq: int, samples: np.ndarray) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 1234) + CODECS["PCMU"].encode(samples)


def _heard(rtp: FakeRtp) -> np.ndarray:
    if not rtp.sent:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate([CODECS["PCMU"].decode(p[12:]) for p in rtp.sent])


def _run(loop: VirtualLoop, sessions: list[MediaSession], frames: int) -> None:
    tones = [tone_samples([f], frames * 0.02, level_dbfs=-12.0) for f in FREQS]
    for n in range(frames):
        for session, tone in zip(sessions, tones, strict=True):
            session._on_packet(_packet(n, tone[n * 160 : (n + 1) * 160]))
        loop.advance(loop.now + 0.02)


def _whisper() -> MixMatrix:
    matrix = MixMatrix(3, conference=False)
    for speaker, listener in ((0, 1), (1, 0), (0, 2), (1, 2), (2, 1)):
        matrix.connect(speaker, listener)
    return matrix


@pytest.fixture
def setup() -> tuple[VirtualLoop, MediaClock]:
    loop = VirtualLoop()
    return loop, MediaClock(cast(asyncio.AbstractEventLoop, loop))


def test_whisper_routes_and_one_frame_per_tick(setup: tuple[VirtualLoop, MediaClock]) -> None:
    loop, clock = setup
    sessions, rtps = _sessions(clock)
    sessions[0].peer, sessions[1].peer = sessions[1], sessions[0]  # a plain bridge first
    conference = Conference(clock, sessions, _whisper())
    conference.start()
    assert sessions[0].peer is None and sessions[1].peer is None  # off the packet relay
    _run(loop, sessions, 50)
    assert conference.ticks >= 49  # the virtual clock's float deadlines may round one away
    assert [len(r.sent) for r in rtps] == [conference.ticks] * 3
    customer, agent, supervisor = (_heard(r)[160:] for r in rtps)
    # The customer hears the agent and no trace of the supervisor (-40 dB criterion).
    assert tone_power_db(customer, 1500.0) - tone_power_db(customer, 1000.0) < -40
    assert tone_power_db(customer, 600.0) - tone_power_db(customer, 1000.0) < -40
    assert tone_power_db(agent, 600.0) > -20 and tone_power_db(agent, 1500.0) > -20
    assert tone_power_db(supervisor, 600.0) > -20 and tone_power_db(supervisor, 1000.0) > -20
    assert tone_power_db(supervisor, 1500.0) - tone_power_db(supervisor, 600.0) < -40
    # Every party's stream is continuous: consecutive sequence numbers and timestamps.
    seqs = [struct.unpack("!H", p[2:4])[0] for p in rtps[0].sent]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))

    conference.close()
    sent = [len(r.sent) for r in rtps]
    _run(loop, sessions, 5)
    assert [len(r.sent) for r in rtps] == sent
    assert not any(s._listeners for s in sessions)


def test_a_matrix_switch_applies_from_the_next_tick(
    setup: tuple[VirtualLoop, MediaClock],
) -> None:
    loop, clock = setup
    sessions, rtps = _sessions(clock)
    conference = Conference(clock, sessions, _whisper())
    conference.start()
    _run(loop, sessions, 10)
    conference.set_matrix(MixMatrix(3))  # barge: everyone hears everyone
    before = len(rtps[0].sent)
    _run(loop, sessions, 20)
    customer = np.concatenate([CODECS["PCMU"].decode(p[12:]) for p in rtps[0].sent[before + 1 :]])
    assert tone_power_db(customer, 1500.0) > -20
    with pytest.raises(ValueError):
        conference.set_matrix(MixMatrix(2))
    conference.close()


def test_a_burst_is_bounded_and_a_gap_is_silence(setup: tuple[VirtualLoop, MediaClock]) -> None:
    loop, clock = setup
    sessions, rtps = _sessions(clock)
    conference = Conference(clock, sessions, MixMatrix(3))
    conference.start()
    tone = tone_samples([1000.0], 0.2, level_dbfs=-12.0)
    for n in range(10):  # ten frames at once from the agent: only the newest two are kept
        sessions[1]._on_packet(_packet(n, tone[n * 160 : (n + 1) * 160]))
    loop.advance(loop.now + 0.1)  # five ticks
    heard = [CODECS["PCMU"].decode(p[12:]) for p in rtps[0].sent]
    loud = [float(np.abs(f.astype(np.int32)).max()) > 1000 for f in heard]
    assert loud == [True, True, False, False, False]
    conference.close()


def test_the_mix_continues_the_relayed_stream(setup: tuple[VirtualLoop, MediaClock]) -> None:
    """Phones that ignore an SSRC change would drop a new stream numbered behind the old one."""
    loop, clock = setup
    sessions, rtps = _sessions(clock)
    sessions[0].peer, sessions[1].peer = sessions[1], sessions[0]
    relayed = struct.pack("!BBHII", 0x80, 0, 65535, 4000, 0xABCD) + bytes(160)
    sessions[1]._on_packet(relayed)  # relayed to party 0's phone as is
    assert rtps[0].sent == [relayed]
    conference = Conference(clock, sessions, MixMatrix(3))
    conference.start()
    loop.advance(loop.now + 0.045)
    conference.close()
    headers = [struct.unpack("!BBHII", p[:12]) for p in rtps[0].sent[1:]]
    assert [(h[2], h[3], h[4]) for h in headers] == [(0, 4160, 0xABCD), (1, 4320, 0xABCD)]
    # A phone that never had a relayed stream gets the session's own.
    assert {struct.unpack("!I", p[8:12])[0] for p in rtps[2].sent} != {0xABCD}


def test_a_relay_after_our_own_audio_continues_our_numbering(
    setup: tuple[VirtualLoop, MediaClock],
) -> None:
    """Music on hold: party 0 hears our stream; when the relay resumes, the other phone's
    packets are renumbered to follow it (whatever numbers that phone uses meanwhile)."""
    _, clock = setup
    sessions, rtps = _sessions(clock)
    sessions[0].send_frame(np.zeros(160, dtype=np.int16))
    sessions[0].send_frame(np.zeros(160, dtype=np.int16))
    _, _, seq, ts, ssrc = struct.unpack("!BBHII", rtps[0].sent[-1][:12])
    sessions[0].splice_relay()
    sessions[1].peer = sessions[0]
    for n in (9000, 9001, 9003):  # the phone's own numbers, a packet lost on the way
        sessions[1]._on_packet(struct.pack("!BBHII", 0x80, 0, n, n * 160, 0x5EED) + bytes(160))
    headers = [struct.unpack("!BBHII", p[:12]) for p in rtps[0].sent[2:]]
    assert [(h[2], h[3], h[4]) for h in headers] == [
        (seq + 1, ts + 160, ssrc), (seq + 2, ts + 320, ssrc), (seq + 4, ts + 640, ssrc)
    ]  # fmt: skip


def test_a_bridge_continues_the_stream_a_leg_heard_before(
    setup: tuple[VirtualLoop, MediaClock],
) -> None:
    """An IVR played to party 0, then bridges it to party 1: party 1's packets reach party 0
    numbered after the prompt; a leg that heard nothing of ours is relayed untouched."""
    _, clock = setup
    sessions, rtps = _sessions(clock)
    sessions[0].send_frame(np.zeros(160, dtype=np.int16))
    _, _, seq, ts, ssrc = struct.unpack("!BBHII", rtps[0].sent[-1][:12])
    MediaBridge(sessions[0], sessions[1])
    from_phone = struct.pack("!BBHII", 0x80, 0, 500, 80000, 0x5EED) + bytes(160)
    sessions[1]._on_packet(from_phone)
    assert struct.unpack("!BBHII", rtps[0].sent[-1][:12])[2:] == (seq + 1, ts + 160, ssrc)
    sessions[0]._on_packet(from_phone)
    assert rtps[1].sent[-1] == from_phone
    # Our audio again (a supervisor's mix), then the relay again: it follows the new frames.
    sessions[0].unbridge()
    sessions[0].send_frame(np.zeros(160, dtype=np.int16))
    _, _, seq, ts, _ = struct.unpack("!BBHII", rtps[0].sent[-1][:12])
    MediaBridge(sessions[0], sessions[1])
    later = struct.pack("!BBHII", 0x80, 0, 501, 80160, 0x5EED) + bytes(160)
    sessions[1]._on_packet(later)
    assert struct.unpack("!BBHII", rtps[0].sent[-1][:12])[2:] == (seq + 1, ts + 160, ssrc)
