"""What a screen pop costs the database: CrmStore.contact_card (the contact, its last 5 calls,
its open tasks: three reads on one connection), the part of every pop that grows with the
floor's history, on tables the size of a few years of a busy floor.

Run: .venv/bin/python bench/bench_screen_pop.py [--contacts 20000] [--calls-each 10]
     [--lookups 2000] [--smoke]
Figures only; nothing here passes or fails on time. PostgreSQL is the embedded one, in a
temporary directory, sharing the machine's cores with this process. The tables are filled by
SQL (generate_series), one task per contact (half of them open). --smoke: 500 contacts, 200
lookups (a few seconds, mostly starting PostgreSQL), for CI.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crm_bridge import CrmStore, apply_migrations

CONTACTS = """
INSERT INTO contacts (phone, name, responsible)
  SELECT '+4477' || lpad(g::text, 8, '0'), 'Customer ' || g, (100 + g % 5)::text
  FROM generate_series(1, $1) AS g
"""
CALLS = """
INSERT INTO calls (call_id, direction, from_number, to_number, started_at, answered_at,
                   ended_at, outcome, agent, contact_id, recording_path)
  SELECT 'bench-' || c.id || '-' || k, 'inbound', c.phone, '+442070000000',
         now() - (k || ' days')::interval, now() - (k || ' days')::interval,
         now() - (k || ' days')::interval + interval '3 minutes', 'answered',
         (100 + k % 5)::text, c.id, 'bench/' || c.id || '-' || k || '.wav'
  FROM contacts c, generate_series(1, $1) AS k
"""
TASKS = """
INSERT INTO tasks (type, contact_id, assignee, due_at, status, text, closed_at)
  SELECT 'callback', c.id, c.responsible, now() + interval '1 hour',
         CASE WHEN c.id % 2 = 0 THEN 'open' ELSE 'done' END, 'call back',
         CASE WHEN c.id % 2 = 0 THEN NULL ELSE now() END
  FROM contacts c
"""


async def seed(pool: asyncpg.Pool, contacts: int, calls_each: int) -> None:
    t0 = time.perf_counter()
    async with pool.acquire() as conn:
        await conn.execute(CONTACTS, contacts)
        await conn.execute(CALLS, calls_each)
        await conn.execute(TASKS)
        await conn.execute("ANALYZE contacts; ANALYZE calls; ANALYZE tasks")
        sizes = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM contacts) AS contacts, (SELECT count(*) FROM calls)"
            " AS calls, (SELECT count(*) FROM tasks) AS tasks"
        )
    print(f"tables: {sizes['contacts']} contacts, {sizes['calls']} calls, {sizes['tasks']} tasks"
          f" (filled in {time.perf_counter() - t0:.1f} s)")  # fmt: skip


async def plans(pool: asyncpg.Pool) -> None:
    """How PostgreSQL reads each of the three (an index each, or a scan)."""
    async with pool.acquire() as conn:
        cid = await conn.fetchval("SELECT id FROM contacts ORDER BY id LIMIT 1 OFFSET 10")
        for name, sql in (
            ("contact", "SELECT * FROM contacts WHERE phone = '+447700000011'"),
            ("last calls", f"SELECT * FROM calls c WHERE c.contact_id = {cid}"
                           " ORDER BY c.started_at DESC, c.id DESC LIMIT 5"),
            ("open tasks", f"SELECT * FROM tasks t WHERE t.contact_id = {cid}"
                           " AND t.status = 'open'"),
        ):  # fmt: skip
            plan = await conn.fetch("EXPLAIN " + sql)
            top = next(r[0] for r in plan if "Scan" in r[0]).strip().lstrip("-> ")
            print(f"  plan {name:<11} {top.split('  ')[0]}")


async def lookups(store: CrmStore, contacts: int, count: int, concurrency: int) -> None:
    rng = random.Random(7)
    phones = [f"+4477{rng.randint(1, contacts):08d}" for _ in range(count)]
    times: list[float] = []
    shown = 0

    async def worker(mine: list[str]) -> None:
        nonlocal shown
        for phone in mine:
            t0 = time.perf_counter()
            contact, calls, tasks = await store.contact_card(phone)
            times.append(time.perf_counter() - t0)
            assert contact is not None and len(calls) == min(5, len(calls))
            shown += len(calls) + len(tasks)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(phones[i::concurrency]) for i in range(concurrency)))
    wall = time.perf_counter() - t0
    times.sort()
    p90 = times[int(len(times) * 0.9)]
    print(f"  {concurrency:>11}  {count / wall:8.0f}  {statistics.median(times) * 1e3:9.2f}"
          f"  {p90 * 1e3:6.2f}")  # fmt: skip


async def main(contacts: int, calls_each: int, count: int) -> None:
    from callcenter import embedded_pg

    root = Path(tempfile.mkdtemp(prefix="cc-bench-pop-"))
    server = embedded_pg.start(root)
    try:
        pool = await asyncpg.create_pool(server.get_uri(), min_size=2, max_size=10)
        async with pool.acquire() as conn:
            await apply_migrations(conn)
            version = await conn.fetchval("SHOW server_version")
        print(f"postgres {version} (embedded, unix socket, default settings)")
        await seed(pool, contacts, calls_each)
        await plans(pool)
        store = CrmStore(pool, default_country_code="44")
        print(f"\ncontact_card: {count} lookups of random contacts")
        print("  concurrency  pops/s  median_ms  p90_ms")
        for concurrency in (1, 8):
            await lookups(store, contacts, count, concurrency)
        await pool.close()
    finally:
        embedded_pg.stop(server)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, default=20000)
    parser.add_argument("--calls-each", type=int, default=10)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--smoke", action="store_true", help="500 contacts, 200 lookups (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.contacts, args.lookups = 500, 200
    asyncio.run(main(args.contacts, args.calls_each, args.lookups))
