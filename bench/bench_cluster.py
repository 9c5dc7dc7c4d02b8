"""Call setups per second through Kamailio and N engine nodes (deploy/kamailio, scripts/cluster):
SIPp UAC (digest auth) -> Kamailio -> a node (the dispatcher's hash of the Call-ID) -> SIPp UAS.

The nodes are `callcenter serve` processes (uvloop, recording on unless --no-record) on one
embedded PostgreSQL, started by callcenter.cluster as scripts/cluster starts them. For each
node count and offered rate it prints: calls that succeeded and failed, setups per second, the
mean setup time (SIPp's response time: first INVITE to 200, the 407 round trip included), the
CPU of every node together and of Kamailio (% of one core over the level's wall time), CPU
milliseconds per call of the nodes, the whole host's CPU, and how the calls spread over the
nodes. One box: the nodes, Kamailio, SIPp and PostgreSQL share its cores.

Run: .venv/bin/python bench/bench_cluster.py [--nodes 1,2] [--rates 100,200] [--calls 1000]
Figures only; nothing here passes or fails on time. It exits 1 when no call at all succeeded.
--smoke: one node and two, 20 calls at 10/s, for CI.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _proc import host_busy_percent, host_busy_seconds, proc_cpu_seconds
from bench_call_setup import failure_reasons, setup_ms

from callcenter import embedded_pg
from callcenter.cluster import Cluster, NodeSpec
from sip_test_env.ports import free_port, free_port_range
from sip_test_env.sipp import SippResult, extension_csv, run_sipp, start_sipp_uas

TRACE: list[str] = []
HEADER = (
    "nodes  rate/s    ok failed  wall_s  setups/s  setup_ms  nodes_cpu%  kamailio_cpu%"
    "  cpu_ms/call  host%  calls_per_node"
)


def group_cpu_seconds(leader: int) -> float:
    """CPU seconds of every process in `leader`'s process group (Kamailio forks workers)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == leader:  # pgrp
            total += proc_cpu_seconds(int(entry))
    return total


def config_text(uas_port: int, record: bool) -> str:
    return (
        '[[accounts]]\nextension = "101"\npassword = "pass101"\n'
        '[[accounts]]\nextension = "150"\npassword = "pass150"\nmax_calls = 100000\n'
        f'static_contact = "sip:150@127.0.0.1:{uas_port}"\n'
        f"[recordings]\nenabled = {'true' if record else 'false'}\n"
    )


async def level(
    cluster: Cluster, work: Path, csv: Path, rate: int, calls: int, hold_ms: int
) -> tuple[SippResult, str]:
    nodes = [n.proc.pid for n in cluster.nodes if n.proc is not None]
    kamailio = cluster.kamailio.proc.pid if cluster.kamailio.proc is not None else 0
    before = [proc_cpu_seconds(pid) for pid in nodes]
    kamailio0 = group_cpu_seconds(kamailio)
    calls0 = await calls_per_node(cluster)
    host0 = host_busy_seconds()
    start = time.monotonic()
    result = await run_sipp(
        "uac_auth.xml",
        cluster.address,
        calls=calls,
        rate=rate,
        inf_csv=csv,
        duration_ms=hold_ms,
        timeout=calls / rate + 60,
        workdir=work / f"uac-{len(nodes)}-{rate}",
        extra_args=TRACE,
    )
    wall = time.monotonic() - start
    host = host_busy_percent(host0, host_busy_seconds())
    cpu = sum(proc_cpu_seconds(pid) for pid in nodes) - sum(before)
    kamailio_cpu = group_cpu_seconds(kamailio) - kamailio0
    calls1 = await calls_per_node(cluster)
    names = [n.spec.name for n in cluster.nodes]
    spread = "/".join(str(calls1.get(n, 0) - calls0.get(n, 0)) for n in names)
    row = (
        f"{len(nodes):5d}  {rate:6d} {result.successful:5d} {result.failed:6d}  {wall:6.1f}  "
        f"{result.successful / wall:8.1f}  {setup_ms(result):8.1f}  {100 * cpu / wall:10.1f}  "
        f"{100 * kamailio_cpu / wall:13.1f}  {1000 * cpu / calls:11.2f}  {host:5.0f}  {spread}"
    )
    return result, row


async def calls_per_node(cluster: Cluster) -> dict[str, int]:
    import asyncpg

    conn = await asyncpg.connect(cluster.database_url)
    try:
        rows = await conn.fetch("SELECT node, count(*) AS n FROM calls GROUP BY node")
    finally:
        await conn.close()
    return {r["node"]: r["n"] for r in rows}


async def main(
    node_counts: list[int], rates: list[int], calls: int, hold_ms: int, record: bool, keep: bool
) -> int:
    work = Path(tempfile.mkdtemp(prefix="cc-bench-cluster-"))
    pg = embedded_pg.start(work / "pg")
    uas_port = free_port("both")
    config = work / "node.toml"
    config.write_text(config_text(uas_port, record))
    csv = extension_csv(work / "calls.csv", [("101", "150", "pass101")])
    machine = f"{platform.platform()}, {os.cpu_count()} cpus, python {platform.python_version()}"
    print(f"machine: {machine}")
    print(
        f"calls per level: {calls}, call hold: {hold_ms} ms, SIP over UDP on loopback, "
        f"recording {'on' if record else 'off'}; Kamailio 1 process group, nodes uvloop"
    )
    print(HEADER)
    succeeded = 0
    try:
        async with start_sipp_uas("uas.xml", port=uas_port, workdir=work / "uas"):
            for count in node_counts:
                # Two ports a call, up to 1000 calls up at once on a node (a test run's share
                # of the port pool is smaller: --smoke asks for less).
                span = min(2000, max(100, 2 * calls))
                ranges = [free_port_range(span, "udp") for _ in range(count)]
                specs = [
                    NodeSpec(f"bench{count}-{i + 1}", "127.0.0.1", free_port("both"),
                             free_port("tcp"), (low, high))
                    for i, (low, high) in enumerate(ranges)
                ]  # fmt: skip
                async with Cluster(
                    config,
                    specs,
                    workdir=work / f"cluster-{count}",
                    port=free_port("udp"),
                    database_url=pg.get_uri(),
                ) as cluster:
                    for rate in rates:
                        result, row = await level(cluster, work, csv, rate, calls, hold_ms)
                        succeeded += max(result.successful, 0)
                        print(row, flush=True)
                        if result.failed:
                            print(f"  failures by SIPp's reason: {failure_reasons(result.errors)}")
    finally:
        embedded_pg.stop(pg)
        if keep:
            print(f"kept {work} (SIPp, Kamailio and node logs, database)")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if not succeeded:
        print("no call succeeded at any level: nothing measured", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", default="1,2", help="node counts, one cluster each")
    parser.add_argument("--rates", default="100,200")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--hold-ms", type=int, default=1000)
    parser.add_argument(
        "--no-record", dest="record", action="store_false", help="recording off on the nodes"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (SIPp, Kamailio, node logs)"
    )
    parser.add_argument("--smoke", action="store_true", help="1 and 2 nodes, 20 calls at 10/s")
    parser.add_argument("--trace", action="store_true", help="SIPp -trace_msg (with --keep)")
    args = parser.parse_args()
    if args.trace:
        TRACE.append("-trace_msg")
    if args.smoke:
        args.nodes, args.rates, args.calls, args.hold_ms = "1,2", "10", 20, 200
    sys.exit(
        asyncio.run(
            main(
                [int(n) for n in args.nodes.split(",")],
                [int(r) for r in args.rates.split(",")],
                args.calls,
                args.hold_ms,
                args.record,
                args.keep,
            )
        )
    )
