"""What supervisor monitoring costs: the per-tick mix of a monitored call (customer, agent,
supervisor) and the per-packet work while a call is mixed instead of relayed.

Run: .venv/bin/python bench/bench_monitor.py [--calls 1 10 100] [--ticks 500] [--smoke]

Sessions are real MediaSessions on a fake RTP endpoint (sends are counted, not made), so the
figures are the engine's own Python work: decode and queue per incoming packet, and per 20 ms
tick the matrix mix, G.711 encode and three sends per monitored call. Figures only.
--smoke: 1 and 10 calls, 50 ticks, under a second, for CI.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbx.monitor import MonitorMode, mode_matrix
from telephony.aio.clock import MediaClock
from telephony.aio.conference import Conference
from telephony.aio.media_session import MediaSession
from telephony.media import pcm_to_ulaw, tone_samples


class FakeRtp:
    """What MediaSession needs of an RTP endpoint, without a socket."""

    def __init__(self) -> None:
        self.on_packet = None
        self.sent = 0
        self.port = 40000
        self.native_from = None  # no socket: never relays natively

    def stop_native(self) -> None:
        pass

    def stop_all_native(self) -> None:
        pass

    def send(self, data: bytes) -> None:
        self.sent += 1


def packet(seq: int, payload: bytes) -> bytes:
    header = bytes([0x80, 0]) + seq.to_bytes(2, "big") + (seq * 160).to_bytes(4, "big")
    return header + b"\x00\x00\x00\x01" + payload


async def measure(calls: int, ticks: int) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    clock = MediaClock(loop)
    payload = bytes(pcm_to_ulaw(tone_samples([600.0], 0.02)))
    conferences, sessions = [], []
    for _ in range(calls):
        parties = [
            MediaSession(FakeRtp(), local_host="127.0.0.1", on_dtmf=lambda d, m: None, clock=clock)  # type: ignore[arg-type]
            for _ in range(3)
        ]
        conference = Conference(clock, parties, mode_matrix(MonitorMode.WHISPER))
        conference.start()
        conferences.append(conference)
        sessions.extend(parties)
    started = time.perf_counter()
    for seq in range(ticks):
        data = packet(seq, payload)
        for session in sessions:
            session._on_packet(data)
    per_packet = (time.perf_counter() - started) / (ticks * len(sessions))
    for seq in range(ticks):  # refill the queues, then time the ticks alone
        data = packet(seq, payload)
        for session in sessions:
            session._on_packet(data)
        if seq % 2:
            for conference in conferences:
                conference._tick(seq)
    started = time.perf_counter()
    for seq in range(ticks):
        for conference in conferences:
            conference._tick(seq)
    per_tick = (time.perf_counter() - started) / (ticks * calls)
    for conference in conferences:
        conference.close()
    return per_packet, per_tick


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--ticks", type=int, default=500)
    parser.add_argument("--smoke", action="store_true", help="1 and 10 calls, 50 ticks (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.calls, args.ticks = [1, 10], 50
    print(f"# bench_monitor: {platform.python_implementation()} {platform.python_version()}, "
          f"{platform.machine()}, numpy {np.__version__}")  # fmt: skip
    print("# calls  us/packet(decode+queue)  us/tick/call(mix+encode+3 sends)  core% at 50 ticks/s")
    for calls in args.calls:
        per_packet, per_tick = asyncio.run(measure(calls, args.ticks))
        # Each monitored call: 3 packets in and 1 tick per 20 ms.
        load = calls * 50 * (3 * per_packet + per_tick) * 100
        print(f"{calls:7d}  {per_packet * 1e6:23.2f}  {per_tick * 1e6:33.2f}  {load:17.1f}")


if __name__ == "__main__":
    main()
