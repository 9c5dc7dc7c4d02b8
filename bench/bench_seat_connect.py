"""How soon a person the dialer reached hears an agent on a seat (a nailed-up line, *55) after
the AMD verdict: issue 15's goal is 300 ms.

Run: .venv/bin/python bench/bench_seat_connect.py [--people 20] [--smoke]

The e2e scenario of tests/e2e/test_seats.py, longer: two baresip agents on seats, a scripted
carrier whose customers answer a third of a second apart and say "Hello?", a power campaign
with AMD, an embedded PostgreSQL. Each delay is measured on the customer's side: the answer
time plus the verdict's audio seconds (stored with the attempt), against the first 20 ms frame
of the agent's tone the customer heard (so figures carry +-20 ms of frame clock). Figures only;
run it on a quiet machine. --smoke: 2 people, for CI.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.test_seats import seated_campaign


async def main(people: int) -> int:
    from callcenter import embedded_pg

    work = Path(tempfile.mkdtemp(prefix="cc-bench-seat-"))
    pg = embedded_pg.start(work / "pg")
    try:
        run = await seated_campaign(pg.get_uri(), work, people)
    finally:
        embedded_pg.stop(pg)
        shutil.rmtree(work, ignore_errors=True)
    delays = sorted(run.delays.values())
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus,",
          f"python {platform.python_version()}")  # fmt: skip
    rung = sum(map(len, run.incoming.values()))
    progress = run.progress
    print(f"people: {people}, connected {progress.connected}, abandoned {progress.abandoned},",
          f"per seat {run.served}, phones rung: {rung}")  # fmt: skip
    if not delays:
        print("no delay measured")
        return 1
    ms = [d * 1000 for d in delays]
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    print(f"verdict -> agent heard, ms: median {statistics.median(ms):.0f}, p95 {p95:.0f}, "
          f"max {ms[-1]:.0f} (goal: 300)")  # fmt: skip
    print("each, ms:", " ".join(f"{m:.0f}" for m in ms))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="2 people")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(2 if args.smoke else args.people)))
