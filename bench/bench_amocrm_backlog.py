"""amoCRM backlog drain: an hour of calls piled up while amoCRM was unreachable, then delivered
to an amoCRM-shaped account (sip_test_env.amocrm, on its own event loop in a thread) that
allows 7 requests per second and answers 429 above that.

Prints events delivered per second, requests per second (mean and the busiest second), 429s,
and checks that nothing was lost or sent twice (every call in amoCRM once by `uniq`, every
task once). Each call needs a contact lookup (one request) and then the call or the unsorted
entry, which share requests with others' while the rate limiter holds them (batching); a task
needs one (its entity comes from its call), batched the same way.

Run: .venv/bin/python bench/bench_amocrm_backlog.py [--calls-per-hour 300] [--quick | --smoke]
Figures only; nothing here passes or fails on time. PostgreSQL is the embedded one.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import threading
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
from sip_test_env.amocrm import AmoAccount


class AccountThread:
    """The fake amoCRM on its own loop, so the engine's loop is not its scheduler."""

    def __init__(self) -> None:
        self.account = AmoAccount()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> AmoAccount:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.account.start(), self._loop).result(10)
        return self.account

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.account.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


async def backlog(store: CrmStore, account: AmoAccount, calls: int) -> int:
    """An hour of inbound calls: two in three answered by known customers, one in three missed
    (half of those from new numbers) with a callback task. Returns the deliveries queued."""
    start = datetime.now(UTC) - timedelta(hours=1)
    tasks = 0
    for i in range(calls):
        at = start + timedelta(seconds=i * 3600 / calls)
        phone = f"+7915{i:07d}"
        missed = i % 3 == 0
        if not missed or i % 2:
            account.add_contact(phone, responsible_user_id=5001 + i % 3)
        row = await store.call_started(
            CallStarted(f"bench-{i}", "inbound", phone, "15550100", at, customer_phone=phone)
        )
        if missed:
            await store.call_ended(
                row,
                CallEnded(at + timedelta(seconds=20), "missed", 487),
                callback=CallbackRequest(None, at + timedelta(minutes=15), f"Call back {phone}"),
            )
            tasks += 1
        else:
            await store.call_answered(row, at + timedelta(seconds=3), agent="101")
            await store.call_ended(row, CallEnded(at + timedelta(seconds=95), "answered", 200))
    return calls + tasks


async def main(calls: int) -> None:
    from callcenter import embedded_pg

    root = Path(tempfile.mkdtemp(prefix="cc-bench-amo-"))
    server = embedded_pg.start(root)
    runner = AccountThread()
    account = runner.start()
    try:
        pool = await asyncpg.create_pool(server.get_uri(), min_size=2, max_size=12)
        async with pool.acquire() as conn:
            await apply_migrations(conn)
        endpoint = CrmEndpoint(
            "amo", "amocrm", account.url, secret=account.access_token,
            user_map={"101": 5001}, timeout=10.0,
        )  # fmt: skip
        store = CrmStore(pool, endpoints=[endpoint], default_country_code="7")
        queued = await backlog(store, account, calls)
        print(f"backlog: {calls} calls in one hour -> {queued} amoCRM deliveries queued")
        worker = OutboxWorker(
            pool, [endpoint], policy=RetryPolicy(base_delay=0.5, max_delay=5.0, batch_size=50)
        )
        began = time.perf_counter()
        await worker.start()
        try:
            while await pool.fetchval(
                "SELECT count(*) FROM outbox_deliveries"
                " WHERE delivered_at IS NULL AND dead_at IS NULL"
            ):
                await asyncio.sleep(0.2)
        finally:
            await worker.stop()
        elapsed = time.perf_counter() - began
        dead = await pool.fetchval(
            "SELECT count(*) FROM outbox_deliveries WHERE dead_at IS NOT NULL"
        )
        await pool.close()
    finally:
        runner.stop()
        embedded_pg.stop(server)
        shutil.rmtree(root, ignore_errors=True)
    requests = len(account.requests)
    uniq = {c["uniq"] for c in account.calls} | {u["metadata"]["uniq"] for u in account.unsorted}
    delivered = len(account.calls) + len(account.unsorted)
    print(f"drained in {elapsed:.1f} s: {queued / elapsed:.2f} events/s delivered")
    print(
        f"requests: {requests} ({requests / elapsed:.2f}/s mean, busiest second"
        f" {account.peak_rate()}), 429 answers: {account.throttled}"
    )
    print(
        f"amoCRM has {len(account.calls)} calls + {len(account.unsorted)} unsorted"
        f" (= {calls}: {'ok' if delivered == len(uniq) == calls else 'MISMATCH'}),"
        f" {len(account.tasks)} tasks, {dead} dead letters"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls-per-hour", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="a fifth of the calls")
    parser.add_argument("--smoke", action="store_true", help="10 calls: a few seconds, for CI")
    args = parser.parse_args()
    calls = 10 if args.smoke else args.calls_per_hour // 5 if args.quick else args.calls_per_hour
    asyncio.run(main(calls))
