"""A trunk's calls-per-second cap across nodes: N nodes (each its own connection pool, as N
engine processes) dial through one trunk as fast as their dialers may, taking from the
trunk's bucket each pacing round. `shared` is dialer.PgTokenBucket (the cluster's: one row
per trunk in PostgreSQL, refilled and spent under its lock); `per-node` is the TokenBucket
each node keeps alone (one engine's), given for comparison: its cap multiplies by N.

Run: .venv/bin/python bench/bench_cps_bucket.py [--cps 20] [--seconds 10] [--tick 0.05]
     [--smoke]
Figures only; nothing here passes or fails on time. Printed per mode and node count: the
calls started per second after the first second (the first also spends the saved burst, one
second's worth), the most started in any 1 s window after it, and the median and 99th
percentile of one take (a round trip to PostgreSQL for `shared`). The embedded PostgreSQL
shares the machine's cores with this process. --smoke: 2 s per row (CI).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crm_bridge import apply_migrations
from dialer import Bucket, PgTokenBucket, TokenBucket


async def node(
    bucket: Bucket, *, until: float, tick: float, want: int
) -> tuple[list[float], list[float]]:
    """One node's dialer: each round, take up to `want` calls, then wait a tick."""
    started: list[float] = []
    takes: list[float] = []
    while (now := time.monotonic()) < until:
        t0 = time.perf_counter()
        granted = await bucket.acquire(want, now=now)
        takes.append(time.perf_counter() - t0)
        started.extend([time.monotonic()] * granted)
        await asyncio.sleep(tick)
    return started, takes


def busiest_second(times: list[float]) -> int:
    times = sorted(times)
    return max((bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times)), default=0)


async def row(url: str, mode: str, nodes: int, cps: float, seconds: float, tick: float) -> None:
    pools = [await asyncpg.create_pool(url, min_size=1, max_size=1) for _ in range(nodes)]
    try:
        trunk = f"bench-{mode}-{nodes}"
        start = time.monotonic()
        buckets: list[Bucket] = [
            PgTokenBucket(p, trunk, cps) if mode == "shared" else TokenBucket(cps, now=start)
            for p in pools
        ]
        until = start + seconds
        results = await asyncio.gather(
            *(node(b, until=until, tick=tick, want=int(cps)) for b in buckets)
        )
    finally:
        for p in pools:
            await p.close()
    started = [t for s, _ in results for t in s]
    takes = sorted(t for _, ts in results for t in ts)
    after = [t for t in started if t >= start + 1.0]
    steady = len(after) / (seconds - 1.0)
    p99 = takes[min(len(takes) - 1, int(len(takes) * 0.99))]
    print(f"  {mode:<8} {nodes:>5}  {cps:5.0f}  {steady:9.1f}  {busiest_second(after):7d}"
          f"  {statistics.median(takes) * 1e3:8.3f}  {p99 * 1e3:7.3f}")  # fmt: skip


async def main(cps: float, seconds: float, tick: float) -> None:
    from callcenter import embedded_pg

    root = Path(tempfile.mkdtemp(prefix="cc-bench-cps-"))
    server = embedded_pg.start(root)
    try:
        url = server.get_uri()
        conn = await asyncpg.connect(url)
        try:
            await apply_migrations(conn)
            version = await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()
        print(f"postgres {version} (embedded); {seconds:.0f} s per row, a take every {tick} s")
        print("  mode     nodes    cps  started/s  max_1s  take_ms  p99_ms")
        for mode in ("shared", "per-node"):
            for nodes in (1, 2, 4):
                await row(url, mode, nodes, cps, seconds, tick)
    finally:
        embedded_pg.stop(server)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cps", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--tick", type=float, default=0.05, help="seconds between takes")
    parser.add_argument("--smoke", action="store_true", help="2 s per row (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.seconds = 2.0
    asyncio.run(main(args.cps, args.seconds, args.tick))
