"""CPU per 100 queued callers hearing music on hold: one shared Playout (each frame encoded
once per codec, the same payload sent to every caller) against a player per caller (the frame
encoded for each caller, as `Call.play` does).

Run: .venv/bin/python bench/bench_queue.py [--callers 100 300] [--seconds 10] [--smoke]

Real legs: MediaSessions on real RTP ports of the engine's port pool on 127.0.0.1, each
sending to a UDP socket on loopback that never reads (the kernel drops what overflows its
buffer, as a far-away phone costs us nothing more), driven by the real 20 ms media clock.
Figures are the process's CPU time (user + system) over the run, as a share of one core and
per 100 callers, plus the packets sent per second and the clock's worst lateness. Figures only.
--smoke: 20 callers for 1 s each way, for CI.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from telephony.aio.clock import MediaClock
from telephony.aio.media_session import MediaSession
from telephony.aio.playout import Playout
from telephony.aio.rtp import RtpPortPool
from telephony.media import SampleSource, tone_samples

PORTS = (40000, 49999)
OFFER = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio %d RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
)


def music() -> SampleSource:
    """Two seconds of a chord, looped: the shape of music on hold (the content costs the same)."""
    return SampleSource(tone_samples([440.0, 554.0, 659.0], 2.0, level_dbfs=-18), loop=True)


async def legs(pool: RtpPortPool, clock: MediaClock, sink_port: int, n: int) -> list[MediaSession]:
    sessions = []
    for _ in range(n):
        rtp = await pool.open()
        session = MediaSession(rtp, local_host="127.0.0.1", on_dtmf=lambda d, m: None, clock=clock)
        session.accept_offer(OFFER % sink_port)
        sessions.append(session)
    return sessions


async def run(
    pool: RtpPortPool, callers: int, seconds: float, shared: bool
) -> tuple[float, float, float]:
    """(CPU % of one core, packets sent per second, worst clock lag in ms)."""
    loop = asyncio.get_running_loop()
    clock = MediaClock(loop)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sessions = await legs(pool, clock, sink.getsockname()[1], callers)
    playout = Playout(music(), clock) if shared else None
    playing = []
    sent_before = pool.totals().packets_out
    cpu, wall = time.process_time(), time.perf_counter()
    for session in sessions:
        if playout is not None:
            playout.add(session)
        else:
            playing.append(session.play(music()))
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    sent = pool.totals().packets_out - sent_before
    if playout is not None:
        playout.close()
    for session in sessions:
        session.stop_playing()
        pool.release(session.rtp)
    sink.close()
    await asyncio.sleep(0.1)  # the sockets close
    return 100 * cpu / wall, sent / wall, clock.max_lag * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.callers, args.seconds = [20], 1.0
    print(f"python {platform.python_version()} on {platform.machine()}, {args.seconds:g} s a run")
    print("mode     callers  cpu%_core  cpu%_per_100  packets/s  max_lag_ms")
    pool = RtpPortPool("127.0.0.1", *PORTS)
    for callers in args.callers:
        for shared in (True, False):
            cpu, rate, lag = await run(pool, callers, args.seconds, shared)
            mode = "shared" if shared else "per-leg"
            print(
                f"{mode:<8} {callers:7d}  {cpu:9.1f}  {100 * cpu / callers:12.2f}"
                f"  {rate:9.0f}  {lag:10.1f}"
            )


if __name__ == "__main__":
    asyncio.run(main())
