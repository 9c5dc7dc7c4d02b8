"""CRM bridge throughput: call rows + outbox events written per second through the real path
(CrmStore.call_started + call_ended, one transaction each, events and delivery rows included),
and outbox delivery throughput to a local aiohttp webhook receiver (in its own process).

Run: .venv/bin/python bench/bench_crm.py [--calls 2000] [--events 4000] [--quick | --smoke]
Figures only; nothing here passes or fails on time. PostgreSQL is the embedded one
(callcenter/embedded_pg.py),
in a temporary directory, sharing the machine's cores with this process. --quick: a tenth of the
work; --smoke: 50 calls and 100 events (a few seconds, mostly starting PostgreSQL), for CI.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crm_bridge import (
    CallbackRequest,
    CallEnded,
    CallStarted,
    CrmEndpoint,
    CrmStore,
    OutboxWorker,
    RetryPolicy,
    apply_migrations,
)

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]


def machine(pg_version: str) -> None:
    print("machine:")
    print(f"  platform   {platform.platform()}")
    print(f"  processor  {platform.processor() or platform.machine()}")
    print(f"  cpus       {os.cpu_count()} (affinity {len(os.sched_getaffinity(0))})")
    print(f"  python     {sys.version.split()[0]}, loop {'uvloop' if uvloop else 'asyncio'}")
    print(f"  postgres   {pg_version} (embedded, unix socket, default settings)")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def write_calls(store: CrmStore, calls: int, concurrency: int, missed_every: int) -> None:
    t0 = datetime.now(UTC)
    queue = iter(range(calls))

    async def writer() -> None:
        for i in queue:
            phone = f"+4477009{i % 100000:05d}"
            at = t0 + timedelta(milliseconds=i)
            row = await store.call_started(
                CallStarted(f"bench-{i}", "inbound", phone, "15550100", at, customer_phone=phone)
            )
            if missed_every and i % missed_every == 0:
                await store.call_ended(
                    row,
                    CallEnded(at + timedelta(seconds=20), "missed", 487, "caller-cancel"),
                    callback=CallbackRequest("101", at + timedelta(minutes=30), "call back"),
                )
            else:
                await store.call_ended(
                    row,
                    CallEnded(
                        at + timedelta(seconds=60),
                        "answered",
                        200,
                        "caller-bye",
                        answered_at=at + timedelta(seconds=5),
                        agent="101",
                        recording_path=f"2024/05/06/bench-{i}.wav",
                        analytics={"talk": {"customer": 20.0, "agent": 25.0}, "overtalk": 1.0},
                    ),
                )

    await asyncio.gather(*(writer() for _ in range(concurrency)))


async def bench_writes(pool: asyncpg.Pool, endpoint: CrmEndpoint, calls: int) -> None:
    print(f"\nwrite path: {calls} calls per run, call_started + call_ended (2 transactions)")
    print("  concurrency  calls/s  events/s  delivery_rows/s  ms/call  cpu%(python)")
    store = CrmStore(pool, endpoints=[endpoint], default_country_code="44")
    for concurrency in (1, 4, 16):
        await pool.execute("TRUNCATE outbox, tasks, calls, contacts RESTART IDENTITY CASCADE")
        cpu0, t0 = _cpu(), time.perf_counter()
        await write_calls(store, calls, concurrency, missed_every=5)
        wall = time.perf_counter() - t0
        cpu = _cpu() - cpu0
        events = await pool.fetchval("SELECT count(*) FROM outbox")
        rows = await pool.fetchval("SELECT count(*) FROM outbox_deliveries")
        print(
            f"  {concurrency:>11}  {calls / wall:7.0f}  {events / wall:8.0f}  {rows / wall:15.0f}"
            f"  {wall / calls * 1e3 * concurrency:7.2f}  {cpu / wall * 100:11.0f}"
        )


def _receiver(port: int, ready: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", handle)

    async def run() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    if uvloop is not None:
        uvloop.run(run())
    else:
        asyncio.run(run())


async def bench_delivery(pool: asyncpg.Pool, endpoint: CrmEndpoint, events: int) -> None:
    print(f"\ndelivery: ~{events} events to a local webhook receiver (separate process)")
    print("  lanes  batch  events/s  cpu%(python)  wall_s")
    store = CrmStore(pool, endpoints=[endpoint], default_country_code="44")
    for lanes, batch in ((1, 50), (2, 50), (4, 100)):
        await pool.execute("TRUNCATE outbox, tasks, calls, contacts RESTART IDENTITY CASCADE")
        await write_calls(store, events // 2, 8, missed_every=0)
        total = await pool.fetchval("SELECT count(*) FROM outbox_deliveries")
        policy = RetryPolicy(lanes=lanes, batch_size=batch, poll_interval=0.05)
        worker = OutboxWorker(pool, [endpoint], policy=policy)
        cpu0, t0 = _cpu(), time.perf_counter()
        await worker.start()
        while await pool.fetchval(
            "SELECT count(*) FROM outbox_deliveries WHERE delivered_at IS NULL"
        ):
            await asyncio.sleep(0.05)
        wall = time.perf_counter() - t0
        cpu = _cpu() - cpu0
        await worker.stop()
        failed = worker.stats.retried + worker.stats.dead
        note = f"  ({failed} failed attempts)" if failed else ""
        print(
            f"  {lanes:>5}  {batch:>5}  {total / wall:8.0f}  {cpu / wall * 100:12.0f}"
            f"  {wall:6.2f}{note}"
        )


async def main(calls: int, events: int) -> None:
    from callcenter import embedded_pg

    root = Path(tempfile.mkdtemp(prefix="cc-bench-crm-"))
    server = embedded_pg.start(root)
    sock_port = _free_port()
    ready = multiprocessing.get_context("spawn").Event()
    receiver = multiprocessing.get_context("spawn").Process(
        target=_receiver, args=(sock_port, ready), daemon=True
    )
    receiver.start()
    try:
        pool = await asyncpg.create_pool(server.get_uri(), min_size=2, max_size=24)
        async with pool.acquire() as conn:
            await apply_migrations(conn)
            version = await conn.fetchval("SHOW server_version")
        machine(version)
        endpoint = CrmEndpoint(
            "bench", "webhook", f"http://127.0.0.1:{sock_port}/hook", secret="bench-secret"
        )
        await bench_writes(pool, endpoint, calls)
        if not ready.wait(10):
            raise RuntimeError("receiver did not start")
        await bench_delivery(pool, endpoint, events)
        await pool.close()
    finally:
        receiver.terminate()
        receiver.join()
        embedded_pg.stop(server)
        shutil.rmtree(root, ignore_errors=True)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per write run")
    parser.add_argument("--events", type=int, default=4000, help="events per delivery run")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--quick", action="store_true", help="a tenth of the work")
    how.add_argument("--smoke", action="store_true", help="50 calls, 100 events (CI)")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.events = args.calls // 10, args.events // 10
    if args.smoke:
        args.calls, args.events = 50, 100
    if uvloop is not None:
        uvloop.run(main(args.calls, args.events))
    else:
        asyncio.run(main(args.calls, args.events))
