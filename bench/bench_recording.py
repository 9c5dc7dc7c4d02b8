"""What recording costs: CPU per 100 concurrent recorded calls, and what fsync would add.

Run: .venv/bin/python bench/bench_recording.py [--calls 100] [--seconds 30] [--dir PATH] [--smoke]

N CallRecorders are fed as the engine feeds them: every 20 ms tick each call gets one pushed
frame per side (customer and agent talk in turns, with pauses and some overtalk) and one tick;
every 50 ticks each recorder flushes (write + header rewrite). Figures: CPU time of this process
as % of one core per 100 calls, and microseconds per call per 20 ms frame, with and without
speech analytics, with bytes or int16 pushes, and with fsync on every flush. Prints figures
only, never pass/fail. Use --dir to measure the disk the recordings will really live on.
--smoke: 5 calls x 3 s and 20 fsyncs, under a second, for CI.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recordings import CallRecorder

RATE = 8000
FRAME = 160


def machine(folder: Path) -> None:
    print("machine:")
    print(f"  platform   {platform.platform()}")
    print(f"  processor  {platform.processor() or platform.machine()}")
    print(f"  cpus       {os.cpu_count()} (affinity {len(os.sched_getaffinity(0))})")
    print(f"  python     {sys.version.split()[0]} ({platform.python_implementation()})")
    print(f"  numpy      {np.__version__}")
    print(f"  files in   {folder}")


def voice(seconds: float, f0: float) -> np.ndarray:
    n = round(seconds * RATE)
    t = np.arange(n) / RATE
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / RATE
    x = sum(np.sin(k * phase) / k for k in range(1, int(3500 / f0)))
    x = np.asarray(x)
    return (x / np.abs(x).max() * 6000).astype(np.int16)


def conversation(seconds: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Customer talks 3 s, pause 1 s, agent talks 3 s (the last 0.5 s over the customer's next
    turn), and so on: both VAD branches (speech, noise-floor silence) get exercised."""
    rng = np.random.default_rng(7)
    n = seconds * RATE
    left = (rng.normal(0, 30, n)).astype(np.int16)  # line noise, not digital silence
    right = (rng.normal(0, 30, n)).astype(np.int16)
    turn = 7 * RATE
    for start in range(0, n, turn):
        c = voice(3.0, 120)[: n - start]
        left[start : start + c.size] += c
        a_start = start + 4 * RATE
        if a_start < n:
            a = voice(3.5, 210)[: n - a_start]
            right[a_start : a_start + a.size] += a
    return [left[i : i + FRAME] for i in range(0, n, FRAME)], [
        right[i : i + FRAME] for i in range(0, n, FRAME)
    ]


def run(
    label: str,
    folder: Path,
    calls: int,
    customer: list[np.ndarray] | list[bytes],
    agent: list[np.ndarray] | list[bytes],
    **options: object,
) -> None:
    recorders = [
        CallRecorder(folder / f"{label.replace(' ', '_')}-{i}.wav", **options)  # type: ignore[arg-type]
        for i in range(calls)
    ]
    ticks = len(customer)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for c, a in zip(customer, agent, strict=True):
        for rec in recorders:
            rec.push("customer", c)
            rec.push("agent", a)
            rec.tick()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    for rec in recorders:
        rec.close()
    audio_seconds = ticks * FRAME / RATE
    per_100 = cpu / audio_seconds * 100 * (100 / calls)
    per_frame = cpu / (calls * ticks) * 1e6
    blocked = wall / audio_seconds * 100 * (100 / calls)
    print(
        f"  {label:<34} {per_100:6.2f} % CPU  {per_frame:6.2f} us/frame  "
        f"(wall {blocked:6.2f} % of the clock)"
    )
    for rec in recorders:
        os.unlink(rec.path)


def fsync_latency(folder: Path, samples: int) -> None:
    """One second of stereo audio appended, header rewritten, fsync: how long the caller waits."""
    path = folder / "fsync-probe.wav"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    second = bytes(4 * RATE)
    times = []
    try:
        for i in range(samples):
            os.write(fd, second)
            os.pwrite(fd, (i + 1).to_bytes(4, "little"), 40)
            t0 = time.perf_counter()
            os.fsync(fd)
            times.append((time.perf_counter() - t0) * 1e3)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
    print(
        f"  fsync after a 1 s append: median {statistics.median(times):.2f} ms, "
        f"p99 {p99:.2f} ms, max {times[-1]:.2f} ms ({samples} runs)"
    )
    print(
        f"  => fsync per second for 100 calls blocks the caller "
        f"~{statistics.median(times) * 100 / 10:.1f} % of each second (median)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100, help="concurrent recorded calls")
    parser.add_argument("--seconds", type=int, default=30, help="seconds of audio per call")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: tmp)")
    parser.add_argument("--fsyncs", type=int, default=200, help="fsync latency samples")
    parser.add_argument("--smoke", action="store_true", help="5 calls x 3 s, 20 fsyncs (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.calls, args.seconds, args.fsyncs = 5, 3, 20
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        machine(folder)
        customer, agent = conversation(args.seconds)
        customer_bytes = [f.tobytes() for f in customer]
        agent_bytes = [f.tobytes() for f in agent]
        print(
            f"\n{args.calls} calls x {args.seconds} s of audio "
            f"(CPU % of one core per 100 calls; us per call per 20 ms frame):"
        )
        n = args.calls
        run("bytes, no analytics", folder, n, customer_bytes, agent_bytes, analytics=False)
        run("bytes + analytics (default)", folder, n, customer_bytes, agent_bytes)
        run("int16 arrays + analytics", folder, n, customer, agent)
        run("bytes + analytics + fsync", folder, n, customer_bytes, agent_bytes, fsync=True)
        print("\nfsync cost on this disk:")
        fsync_latency(folder, args.fsyncs)


if __name__ == "__main__":
    main()
