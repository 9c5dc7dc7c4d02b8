"""Call setups per second through the engine: SIPp UAC (digest auth) -> engine -> SIPp UAS.

Prints, per offered rate, the calls that succeeded and failed, the engine's CPU% and RSS.
Run: .venv/bin/python bench/bench_call_setup.py [--rates 50,100,150] [--calls 1000] [--smoke]
Figures only; nothing here passes or fails on time. It exits 1 when no call at all succeeded
(the engine did not set up calls, so there is nothing to measure). --smoke: two short levels
(20 calls at 10/s and at 20/s), a few seconds through the same path, for CI.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callcenter.config import parse_config
from callcenter.runtime import start_engine
from sip_test_env.ports import free_port, free_port_range
from sip_test_env.sipp import extension_csv, run_sipp, start_sipp_uas


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def main(rates: list[int], calls: int, hold_ms: int) -> int:
    import pgserver

    work = Path(tempfile.mkdtemp(prefix="cc-bench-"))
    pg = pgserver.get_server(work / "pg", cleanup_mode="stop")
    sip_port, uas_port = free_port("both"), free_port("both")
    low, high = free_port_range(2000, "udp")
    config = parse_config(
        f'[sip]\nlisten = "127.0.0.1:{sip_port}"\nrtp_ports = "{low}-{high}"\n'
        '[[accounts]]\nextension = "101"\npassword = "pass101"\n'
        f'[[accounts]]\nextension = "150"\npassword = "pass150"\nmax_calls = 100000\n'
        f'static_contact = "sip:150@127.0.0.1:{uas_port}"\n'
    )
    engine = await start_engine(config, database_url=pg.get_uri(), data_dir=work)
    machine = f"{platform.platform()}, {os.cpu_count()} cpus, python {platform.python_version()}"
    print(f"machine: {machine}")
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(
        f"calls per rate: {calls}, call hold: {hold_ms} ms, SIP over UDP on loopback, loop: {loop}"
    )
    print("each call: digest challenge, INVITE to the callee, RTP ports, calls row + outbox events")
    print("rate/s  ok    failed  wall_s  setups/s  engine_cpu%  rss_MB")
    try:
        csv = extension_csv(work / "calls.csv", [("101", "150", "pass101")])
        succeeded = 0
        async with start_sipp_uas("uas.xml", port=uas_port, workdir=work / "uas"):
            for rate in rates:
                usage0 = resource.getrusage(resource.RUSAGE_SELF)
                start = time.monotonic()
                result = await run_sipp(
                    "uac_auth.xml",
                    f"127.0.0.1:{sip_port}",
                    calls=calls,
                    rate=rate,
                    inf_csv=csv,
                    duration_ms=hold_ms,
                    timeout=calls / rate + 60,
                    workdir=work / f"uac-{rate}",
                )
                wall = time.monotonic() - start
                usage1 = resource.getrusage(resource.RUSAGE_SELF)
                cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
                succeeded += result.successful
                print(
                    f"{rate:6d}  {result.successful:5d} {result.failed:6d}  {wall:6.1f}  "
                    f"{result.successful / wall:8.1f}  {100 * cpu / wall:11.1f}  {_rss_mb():6.1f}"
                )
    finally:
        await engine.stop()
        pg.cleanup()
    if not succeeded:
        print("no call succeeded at any rate: nothing measured", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", default="50,100,150,200")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--hold-ms", type=int, default=1000)
    parser.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="event loop of the engine (callcenter serve uses uvloop)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a few seconds: rates 10,20, 20 calls, 200 ms hold"
    )
    args = parser.parse_args()
    if args.smoke:
        args.rates, args.calls, args.hold_ms = "10,20", 20, 200
    work = main([int(r) for r in args.rates.split(",")], args.calls, args.hold_ms)
    if args.loop == "uvloop":
        import uvloop

        sys.exit(uvloop.run(work))
    else:
        sys.exit(asyncio.run(work))
