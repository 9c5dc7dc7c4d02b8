"""PostgreSQL statements per call: what the engine sends the database for one call, counted.

Two kinds of call, each answered at once by a SIPp UAS standing in for agent 150's phone:
an inbound call from the carrier to a DID routed to 150 (calls row, contact, outbox events,
recording path, the answered leg's dialog rows), and an internal call from 101 (digest auth)
to 150. Each kind runs `--calls` times after one warm-up call; every statement the engine's
pool sends is logged (asyncpg's query logger on each pooled connection) and the figure is
statements per call: a count, not a time. Calls go one a second, one at a time (the agent
takes one call at a time); the answered legs' sip_dialogs rows are written in batches, so on a
busy engine several calls share a batch and the count comes out a little lower. One statement
is one round trip once asyncpg has it prepared (its statement cache); BEGIN and COMMIT count.

With `--endpoint` a webhook endpoint subscribing to every event is configured (its URL points
at a closed port): the outbox then writes a delivery row per event; the worker's own
statements (claims, retries) are counted apart, as `delivery`.

Run: .venv/bin/python bench/bench_call_writes.py [--calls 20] [--endpoint] [--by-statement]
(--smoke: 3 calls of each kind.)
Figures only; exits 1 when a call failed (nothing to count).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg

from callcenter.config import parse_config
from callcenter.runtime import start_engine
from sip_test_env.ports import free_port, free_port_range
from sip_test_env.sipp import extension_csv, run_sipp, start_sipp_uas, write_inf_csv

DID = "+12025550100"
_WORKER = re.compile(r"outbox_deliveries d\b|UPDATE outbox_deliveries|crm_rate")
"""The outbox worker's statements (claims, results): delivery, not the call's own writes."""
_BACKGROUND = re.compile(r"^SELECT \* FROM campaigns|typeinfo_tree|'jit'")
"""Not per call: the campaign supervisor's poll, asyncpg's type introspection on a new
connection."""


class Statements:
    """Every statement sent on the pool's connections, by text (asyncpg query loggers), and
    by whom: a transaction counts with its statements (the outbox worker's apart)."""

    def __init__(self) -> None:
        self.seen: dict[str, Counter[str]] = {}
        self._open: dict[int, list[str]] = {}
        """Statements of each connection's transaction in progress."""

    async def init(self, conn: asyncpg.Connection) -> None:
        conn.add_query_logger(lambda record: self._logged(id(conn), record.query))

    def _logged(self, conn: int, query: str) -> None:
        statement = " ".join(query.split())
        if statement.startswith("BEGIN") or conn in self._open:
            self._open.setdefault(conn, []).append(statement)
            if statement.startswith(("COMMIT", "ROLLBACK")):
                self._count(self._open.pop(conn))
        else:
            self._count([statement])

    def _count(self, statements: list[str]) -> None:
        if any(_WORKER.search(s) for s in statements):
            who = "delivery"
        elif all(_BACKGROUND.search(s) for s in statements):
            who = "background"
        else:
            who = "call"
        self.seen.setdefault(who, Counter()).update(statements)

    def take(self) -> dict[str, Counter[str]]:
        seen, self.seen = self.seen, {}
        return seen


def counting_pools(statements: Statements) -> None:
    """Make every pool the engine opens log its statements into `statements`."""
    create_pool = asyncpg.create_pool

    def create(*args: Any, **kwargs: Any) -> Any:
        chained: Callable[[asyncpg.Connection], Awaitable[None]] | None = kwargs.pop("init", None)

        async def init(conn: asyncpg.Connection) -> None:
            await statements.init(conn)
            if chained is not None:
                await chained(conn)

        return create_pool(*args, init=init, **kwargs)

    asyncpg.create_pool = create


async def closed(url: str, calls: int) -> None:
    """Wait (on a connection of its own, not counted) until `calls` calls rows are closed."""
    conn = await asyncpg.connect(url)
    try:
        query = "SELECT count(*) FROM calls WHERE ended_at IS NOT NULL"
        for _ in range(600):
            if await conn.fetchval(query) >= calls:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError("calls rows not closed")
    finally:
        await conn.close()


def short(statement: str, width: int = 110) -> str:
    return statement if len(statement) <= width else statement[: width - 3] + "..."


async def main(calls: int, endpoint: bool, by_statement: bool) -> int:
    from callcenter import embedded_pg

    statements = Statements()
    counting_pools(statements)
    work = Path(tempfile.mkdtemp(prefix="cc-bench-writes-"))
    pg = embedded_pg.start(work / "pg")
    url = pg.get_uri()
    sip_port, uas_port = free_port("both"), free_port("both")
    low, high = free_port_range(200, "udp")
    crm = ""
    if endpoint:
        crm = (
            f'[[crm.endpoints]]\nname = "bench"\nkind = "webhook"\n'
            f'url = "http://127.0.0.1:{free_port("tcp")}/hook"\nsecret = "bench-secret"\n'
        )
    config = parse_config(
        f'[sip]\nlisten = "127.0.0.1:{sip_port}"\nrtp_ports = "{low}-{high}"\n'
        '[[accounts]]\nextension = "101"\npassword = "pass101"\n'
        '[[accounts]]\nextension = "150"\npassword = "pass150"\nmax_calls = 100000\n'
        f'static_contact = "sip:150@127.0.0.1:{uas_port}"\n'
        '[[trunks]]\nname = "carrier"\nallow_from = ["127.0.0.1"]\n'
        f'[[dids]]\nnumber = "{DID}"\ntrunk = "carrier"\nroute = "agent:150"\n'
        "[presence]\nwrap_up_seconds = 0\n"
        f"[recordings]\nenabled = true\n{crm}"
    )
    engine = await start_engine(config, database_url=url, data_dir=work, with_http=False)
    failed = 0
    done = 0
    try:
        print(f"statements per call (after one warm-up call each), {calls} calls of each kind,")
        print(
            "recording on, "
            + ("a webhook endpoint taking every event" if endpoint else "no CRM endpoint")
        )

        def callers(first: int, n: int) -> Path:  # each call from a new customer
            rows = [(f"+1212555{i:04d}", DID.lstrip("+"), "-") for i in range(first, first + n)]
            return write_inf_csv(work / f"inbound-{first}.csv", rows)

        internal = extension_csv(work / "internal.csv", [("101", "150", "pass101")])
        kinds = [
            ("inbound DID call", "uac_noauth.xml", (callers(0, 1), callers(1, calls))),
            ("internal call", "uac_auth.xml", (internal, internal)),
        ]
        async with start_sipp_uas("uas.xml", port=uas_port, workdir=work / "uas"):
            for name, scenario, csvs in kinds:
                for round_calls, counted, csv in ((1, False, csvs[0]), (calls, True, csvs[1])):
                    statements.take()
                    result = await run_sipp(
                        scenario,
                        f"127.0.0.1:{sip_port}",
                        calls=round_calls,
                        rate=1,
                        inf_csv=csv,
                        duration_ms=100,
                        timeout=round_calls + 60,
                        workdir=work / f"{scenario}-{counted}",
                    )
                    if result.successful != round_calls:
                        print(f"  {name}: {result.successful} of {round_calls} succeeded:"
                              f" {result.errors[-600:]}")  # fmt: skip
                        failed += round_calls - max(result.successful, 0)
                    done += round_calls
                    await closed(url, done)
                    await engine.switchboard.events.drain()
                    await asyncio.sleep(0.2)  # the query loggers run by call_soon
                    seen = statements.take()
                    if not counted:
                        continue
                    call = seen.get("call", Counter())
                    line = f"{name:18s} {call.total() / calls:6.2f} statements per call"
                    if endpoint:
                        delivery = seen.get("delivery", Counter()).total()
                        line += f"   (the outbox worker's delivery: {delivery / calls:.2f}, apart)"
                    print(line, flush=True)
                    if by_statement:
                        for statement, n in call.most_common():
                            print(f"    {n / calls:5.2f}  {short(statement)}")
    finally:
        await engine.stop()
        embedded_pg.stop(pg)
        shutil.rmtree(work, ignore_errors=True)
    if failed:
        print(f"{failed} call(s) failed: the counts above are not per answered call",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument(
        "--endpoint", action="store_true", help="a webhook endpoint taking every event"
    )
    parser.add_argument(
        "--by-statement", action="store_true", help="each statement's count per call"
    )
    parser.add_argument("--smoke", action="store_true", help="3 calls of each kind, for CI")
    args = parser.parse_args()
    if args.smoke:
        args.calls = 3
    sys.exit(asyncio.run(main(args.calls, args.endpoint, args.by_statement)))
