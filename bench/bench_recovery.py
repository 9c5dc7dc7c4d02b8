"""What a restart after a crash costs per interrupted recorded call: recovering its WAV (header
brought up to the audio on disk) and computing its talk analytics, which the engine does before
it takes calls again.

Run: .venv/bin/python bench/bench_recovery.py [--calls 4] [--minutes 15] [--dir PATH]
     .venv/bin/python bench/bench_recovery.py --smoke   (1 call x 1 minute, a few seconds)

Writes the recordings as the engine would (CallRecorder, customer and agent taking turns over
line noise), cuts the last second off each header (the crash came between the audio write and
the header rewrite), then times recover_recording on each. Figures: seconds of CPU and wall per
hour of audio, and what a restart with that many calls waits. Prints figures only.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recordings import CallRecorder, recover_recording
from recordings.recorder import _wav_header

RATE = 8000
FRAME = 160


def voice(seconds: float, f0: float) -> np.ndarray:
    n = round(seconds * RATE)
    t = np.arange(n) / RATE
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / RATE
    x = np.asarray(sum(np.sin(k * phase) / k for k in range(1, int(3500 / f0))))
    return (x / np.abs(x).max() * 6000).astype(np.int16)


def write_call(path: Path, seconds: int, rng: np.random.Generator) -> None:
    """A recording left by a crash: turns of speech over noise, header one second behind."""
    n = seconds * RATE
    left = rng.normal(0, 30, n).astype(np.int16)
    right = rng.normal(0, 30, n).astype(np.int16)
    customer, agent = voice(3.0, 120), voice(3.5, 210)
    for start in range(0, n, 7 * RATE):
        c = customer[: n - start]
        left[start : start + c.size] += c
        if (a_start := start + 4 * RATE) < n:
            a = agent[: n - a_start]
            right[a_start : a_start + a.size] += a
    with CallRecorder(path, analytics=False) as rec:
        for i in range(0, n, FRAME):
            rec.push("customer", left[i : i + FRAME])
            rec.push("agent", right[i : i + FRAME])
            rec.tick()
    with open(path, "r+b") as f:
        f.write(_wav_header((seconds - 1) * RATE * 4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4, help="interrupted recorded calls")
    parser.add_argument("--minutes", type=float, default=15.0, help="audio per call")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: tmp)")
    parser.add_argument("--smoke", action="store_true", help="1 call x 1 minute")
    args = parser.parse_args()
    calls, seconds = (1, 60) if args.smoke else (args.calls, round(args.minutes * 60))
    print(f"machine: {platform.platform()}, python {sys.version.split()[0]}, cpus {os.cpu_count()}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        rng = np.random.default_rng(7)
        paths = [Path(tmp) / f"call-{i}.wav" for i in range(calls)]
        for path in paths:
            write_call(path, seconds, rng)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        results = [recover_recording(path) for path in paths]
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    hours = calls * seconds / 3600
    recovered = sum(r.recovered_seconds for r in results)
    talk = results[0].analytics
    assert talk is not None
    print(f"{calls} interrupted call(s) x {seconds} s of stereo audio ({hours:.2f} h in all):")
    print(f"  recover + analyse: {cpu / hours:6.1f} s CPU, {wall / hours:6.1f} s wall per hour")
    print(f"  this restart waited {wall:.2f} s; header catch-up {recovered:.1f} s of audio")
    print(
        f"  first call: customer {talk.customer_talk_seconds:.1f} s, agent "
        f"{talk.agent_talk_seconds:.1f} s, silence {talk.silence_seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
