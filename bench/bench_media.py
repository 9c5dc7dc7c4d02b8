"""What the per-packet and per-frame media operations cost on this machine.

Run: .venv/bin/python bench/bench_media.py [--quick | --smoke]

Prints figures only (never pass/fail). Per packet: RTP parse/serialise/rewrite, RFC 4733 and
RFC 3550 bookkeeping. Per 20 ms frame: G.711 decode/encode and mixing with numpy tables versus
stdlib audioop, numpy over a batch of calls, Goertzel and in-band DTMF detection, WAV append.
--quick: fewer repetitions; --smoke: every operation a fixed few times (a second or two, for CI;
the figures are rough).
"""

from __future__ import annotations

import argparse
import os
import platform
import struct
import sys
import tempfile
import timeit
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from telephony.media import (
    DtmfDetector,
    MixMatrix,
    WavSink,
    goertzel_power,
    mix,
    mix_bytes,
    pcm_to_ulaw,
    tone_samples,
    ulaw_bytes_to_linear,
    ulaw_to_pcm,
)
from telephony.rtp import (
    DtmfReceiver,
    RtpPacket,
    RtpSource,
    StreamRewriter,
    TelephoneEvent,
    is_rtcp,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop
    except ImportError:
        audioop = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Effort:
    """How long each figure is measured: timeit's autorange (at least 0.2 s) divided by
    ``divisor``, or a fixed ``number`` of calls; best of ``repeat`` runs."""

    divisor: int = 1
    repeat: int = 3
    number: int | None = None


FULL = Effort()
QUICK = Effort(divisor=4, repeat=2)
SMOKE = Effort(repeat=1, number=100)


def measure(label: str, fn: Callable[[], object], *, per: int = 1, effort: Effort = FULL) -> float:
    """Best of several runs, in microseconds per call (divided by ``per`` items per call)."""
    timer = timeit.Timer(fn)
    if effort.number is not None:
        number = effort.number
    else:
        number = max(1, timer.autorange()[0] // effort.divisor)
    best = min(timer.repeat(repeat=effort.repeat, number=number)) / number / per
    print(f"  {label:<58} {best * 1e6:9.3f} us")
    return best


def machine() -> None:
    print("machine:")
    print(f"  platform   {platform.platform()}")
    print(f"  processor  {platform.processor() or platform.machine()}")
    print(f"  cpus       {os.cpu_count()} (affinity {len(os.sched_getaffinity(0))})")
    print(f"  python     {sys.version.split()[0]} ({platform.python_implementation()})")
    print(f"  numpy      {np.__version__}; audioop {'yes' if audioop else 'no'}")


def bench_packets(effort: Effort) -> None:
    print("per RTP packet (160-byte G.711 payload):")
    payload = bytes(range(160))
    wire = bytes(RtpPacket(0, 1234, 160_000, 0xCAFEBABE, payload))
    packet = RtpPacket.parse(wire)
    header = struct.Struct("!BBHII")
    measure(
        "struct.unpack_from of the header alone (floor)",
        lambda: header.unpack_from(wire),
        effort=effort,
    )
    measure("RtpPacket.parse", lambda: RtpPacket.parse(wire), effort=effort)
    measure("bytes(RtpPacket)", lambda: bytes(packet), effort=effort)
    measure("is_rtcp", lambda: is_rtcp(wire), effort=effort)
    rewriter = StreamRewriter(ssrc=1)
    measure("StreamRewriter.rewrite", lambda: rewriter.rewrite(wire), effort=effort)
    source = RtpSource(0xCAFEBABE)
    state = {"seq": 0}

    def receive() -> None:
        state["seq"] = (state["seq"] + 1) & 0xFFFF
        source.receive(state["seq"], state["seq"] * 160, now=state["seq"] * 0.02)

    measure("RtpSource.receive (RFC 3550 A.1 + A.8)", receive, effort=effort)
    event = RtpPacket(101, 1, 8000, 7, bytes(TelephoneEvent(5, duration=320)))
    receiver = DtmfReceiver()
    receiver.feed(event)
    measure(
        "DtmfReceiver.feed (repeat of a seen event)", lambda: receiver.feed(event), effort=effort
    )


def bench_frames(effort: Effort) -> None:
    print("per 20 ms frame (160 samples):")
    frame = tone_samples([440.0, 1000.0], 0.02, level_dbfs=-12)
    other = tone_samples([700.0], 0.02, level_dbfs=-12)
    ulaw = pcm_to_ulaw(frame)
    pcm_bytes = frame.tobytes()
    measure("G.711 decode, numpy table (ulaw_to_pcm)", lambda: ulaw_to_pcm(ulaw), effort=effort)
    measure("G.711 encode, numpy table (pcm_to_ulaw)", lambda: pcm_to_ulaw(frame), effort=effort)
    if audioop is not None:
        measure("G.711 decode, audioop.ulaw2lin", lambda: audioop.ulaw2lin(ulaw, 2), effort=effort)
        measure(
            "G.711 encode, audioop.lin2ulaw", lambda: audioop.lin2ulaw(pcm_bytes, 2), effort=effort
        )
    measure(
        "G.711 decode, ulaw_bytes_to_linear (fast path)",
        lambda: ulaw_bytes_to_linear(ulaw),
        effort=effort,
    )
    for calls in (100, 500):
        batch = np.tile(frame, (calls, 1))
        batch_ulaw = pcm_to_ulaw(batch)
        measure(
            f"G.711 decode, numpy batch of {calls} frames (per frame)",
            lambda b=batch_ulaw: ulaw_to_pcm(b),  # type: ignore[misc]
            per=calls,
            effort=effort,
        )
        measure(
            f"G.711 encode, numpy batch of {calls} frames (per frame)",
            lambda b=batch: pcm_to_ulaw(b),  # type: ignore[misc]
            per=calls,
            effort=effort,
        )
    measure("mix 2 frames, numpy (mix)", lambda: mix([frame, other]), effort=effort)
    if audioop is not None:
        other_bytes = other.tobytes()
        measure(
            "mix 2 frames, audioop.add",
            lambda: audioop.add(pcm_bytes, other_bytes, 2),
            effort=effort,
        )
    measure(
        "mix 2 frames, mix_bytes (fast path)",
        lambda: mix_bytes(pcm_bytes, other.tobytes()),
        effort=effort,
    )
    matrix = MixMatrix(3)
    parties = np.stack([frame, other, frame])
    measure(
        "MixMatrix(3).mix one call (3 output frames)", lambda: matrix.mix(parties), effort=effort
    )
    for calls in (100, 500):
        batch3 = np.tile(parties, (calls, 1, 1))
        measure(
            f"MixMatrix(3).mix batch of {calls} calls (per call)",
            lambda b=batch3: matrix.mix(b),  # type: ignore[misc]
            per=calls,
            effort=effort,
        )
    measure("goertzel_power, one frequency", lambda: goertzel_power(frame, 1000.0), effort=effort)
    for label, audio in (
        ("silence", np.zeros(160, dtype=np.int16)),
        ("speech-like noise", np.random.default_rng(1).normal(0, 3000, 160).astype(np.int16)),
        ("DTMF tone", tone_samples([770.0, 1336.0], 0.02)),
    ):
        detector = DtmfDetector()
        measure(f"DtmfDetector.feed, {label}", lambda d=detector, a=audio: d.feed(a), effort=effort)  # type: ignore[misc]
    with tempfile.TemporaryDirectory() as tmp:
        sink = WavSink(Path(tmp) / "bench.wav")
        measure("WavSink.write (mono, no flush)", lambda: sink.write(frame), effort=effort)
        stereo = WavSink(Path(tmp) / "bench2.wav", channels=2)
        measure("WavSink.write_stereo", lambda: stereo.write_stereo(frame, other), effort=effort)
        measure("WavSink.flush (size unchanged since the last one)", sink.flush, effort=effort)
        sink.close()
        stereo.close()


def bench_recorded_call(effort: Effort) -> None:
    """One recorded, relayed call in process: both legs' packets in through RtpEndpoint, the
    relay to the other leg (no transport: the send stops before the syscall), the recorder
    fed as the engine feeds it, and a media-clock tick of the recorder every second packet."""
    import asyncio

    from callcenter.recording import feed_recorder
    from recordings import CallRecorder
    from telephony.aio import MediaClock, MediaSession
    from telephony.aio.rtp import RtpEndpoint

    print("per RTP packet into a recorded call (two legs, stereo WAV + analytics):")
    offer = (
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
        b"m=audio 30000 RTP/AVP 0\r\n"
    )
    loop = asyncio.new_event_loop()
    clock = MediaClock(loop)
    tmp = tempfile.TemporaryDirectory()
    recorder = CallRecorder(Path(tmp.name) / "recorded-call.wav")
    legs = []
    for port, side in ((40000, "customer"), (40002, "agent")):
        rtp = RtpEndpoint(port, loop, "bench@127.0.0.1")
        session = MediaSession(rtp, local_host="127.0.0.1", on_dtmf=lambda d, m: None, clock=clock)
        session.accept_offer(offer)
        feed_recorder(session, recorder, side)  # type: ignore[arg-type]
        legs.append((rtp, session))
    legs[0][1].peer, legs[1][1].peer = legs[1][1], legs[0][1]
    payload = pcm_to_ulaw(tone_samples([440.0], 0.02, level_dbfs=-12))
    # Built beforehand: one packet per sequence number, in order across the wrap.
    wires = [bytes(RtpPacket(0, seq, seq * 160, 0x63, payload)) for seq in range(65536)]
    state = {"seq": 0}
    addr = ("127.0.0.2", 30000)
    a, b = legs[0][0], legs[1][0]

    def two_packets_and_a_tick() -> None:
        seq = state["seq"] = (state["seq"] + 1) & 0xFFFF
        wire = wires[seq]
        a.datagram_received(wire, addr)
        b.datagram_received(wire, addr)
        recorder.tick()

    measure("relayed + recorded (a tick every 2nd packet)", two_packets_and_a_tick, per=2,
            effort=effort)  # fmt: skip
    recorder.close()
    loop.close()
    tmp.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--quick", action="store_true", help="fewer repetitions")
    how.add_argument("--smoke", action="store_true", help="each operation 100 times (CI)")
    args = parser.parse_args()
    effort = SMOKE if args.smoke else QUICK if args.quick else FULL
    machine()
    bench_packets(effort)
    bench_frames(effort)
    bench_recorded_call(effort)


if __name__ == "__main__":
    main()
