"""Call setups per second through the engine: SIPp UAC (digest auth) -> engine -> SIPp UAS.

Prints, per offered rate: the calls that succeeded and failed, setups per second of the whole
run and goodput (the same without the last call's hold: successful setups per second while
SIPp offered them, which it may do slower than asked when the box is loaded; offered 2x or 3x
the clean rate, compare it with the clean rate's; runs of 15 s or more say it best), the mean
setup time of the successful ones (SIPp's response time: first INVITE to 200, the 401 round
trip included), the engine's CPU (% of one core over the level's wall time, and CPU
milliseconds per attempted call, then how many of those the cyclic garbage collector took), the
whole host's CPU (every process, so contention from elsewhere shows) and the engine's RSS.
The last two columns: new INVITEs the engine's overload control answered 503 (Retry-After) or
dropped unread at that level; offered rates above what it sustains (e.g. --rates 150,300,450)
show the goodput it keeps under overload. When calls fail, one line tallies SIPp's reasons
(e.g. a 401 retransmitted because the engine read the ACK later than Timer G, which SIPp's
scenario takes as unexpected).

The engine runs in this process with recording on, as `callcenter serve` does (--no-record to
leave it out); the SIPp UAS answers at once and sends no RTP. Levels run one after the other on
the same engine.

Run: .venv/bin/python bench/bench_call_setup.py [--rates 50,100,150] [--calls 1000[,...]] [--smoke]
Figures only; nothing here passes or fails on time. It exits 1 when no call at all succeeded
(the engine did not set up calls, so there is nothing to measure). --smoke: two short levels
(20 calls at 10/s and at 20/s), a few seconds through the same path, for CI.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import re
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _proc import host_busy_percent, host_busy_seconds, proc_rss_mb

from callcenter.config import parse_config
from callcenter.runtime import settle_heap, start_engine
from sip_test_env.ports import free_port, free_port_range
from sip_test_env.sipp import SippResult, extension_csv, run_sipp, start_sipp_uas

HEADER = (
    "rate/s    ok failed  wall_s  setups/s  goodput/s  setup_ms  engine_cpu%  cpu_ms/call"
    "  gc_ms/call  host%  rss_MB  shed503  dropped"
)
# Each event of SIPp's -trace_err log starts with its date, time and epoch time (right after
# the quote that closes the previous event's message, so not always at the start of a line).
_EVENT = re.compile(r"\d{4}-\d\d-\d\d\t[\d:.]+\t[\d.]+: ")
_UNEXPECTED = re.compile(
    r"while expecting '([^']*)' \(index \d+\), received '([^\r\n]*)(?:[\s\S]*?^CSeq: *([^\r\n]*))?",
    re.MULTILINE,
)
_CALL_ID = re.compile(r"Call-Id '[^']*'", re.IGNORECASE)


def setup_ms(result: SippResult) -> float:
    """SIPp's mean response time (ResponseTime1, cumulative) in ms; NaN when it has none."""
    value = result.stats.get("ResponseTime1(C)", "")
    try:
        hours, minutes, seconds, micros = (int(part) for part in value.split(":"))
    except ValueError:
        return float("nan")
    return ((hours * 60 + minutes) * 60 + seconds) * 1000 + micros / 1000


def failure_reasons(errors: str, top: int = 4) -> str:
    """The commonest reasons in SIPp's error log, e.g. "340 x 'SIP/2.0 401 Unauthorized'
    (CSeq 1 INVITE) while expecting 100"."""
    reasons: Counter[str] = Counter()
    for event in _EVENT.split(errors)[1:]:
        if event.startswith("Dead call"):
            continue  # a message for a call SIPp had already given up: not another failure
        unexpected = _UNEXPECTED.search(event)
        if unexpected is not None:
            expecting, received, cseq = unexpected.groups()
            where = f" (CSeq {cseq})" if cseq else ""
            reasons[f"'{received}'{where} while expecting {expecting}"] += 1
        else:
            reasons[_CALL_ID.sub("Call-Id ...", event.splitlines()[0])[:100]] += 1
    if not reasons:
        return "none logged"
    return "; ".join(f"{n} x {reason}" for reason, n in reasons.most_common(top))


class GcClock:
    """CPU seconds the cyclic garbage collector took in this process (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.thread_time()
        else:
            self.seconds += time.thread_time() - self._start


async def main(rates: list[int], counts: list[int], hold_ms: int, record: bool, keep: bool) -> int:
    from callcenter import embedded_pg

    work = Path(tempfile.mkdtemp(prefix="cc-bench-"))
    pg = embedded_pg.start(work / "pg")
    sip_port, uas_port = free_port("both"), free_port("both")
    low, high = free_port_range(2000, "udp")
    config = parse_config(
        f'[sip]\nlisten = "127.0.0.1:{sip_port}"\nrtp_ports = "{low}-{high}"\n'
        '[[accounts]]\nextension = "101"\npassword = "pass101"\n'
        f'[[accounts]]\nextension = "150"\npassword = "pass150"\nmax_calls = 100000\n'
        f'static_contact = "sip:150@127.0.0.1:{uas_port}"\n'
        f"[recordings]\nenabled = {'true' if record else 'false'}\n"
    )
    engine = await start_engine(config, database_url=pg.get_uri(), data_dir=work, with_http=False)
    settle_heap()  # as callcenter serve does
    machine = f"{platform.platform()}, {os.cpu_count()} cpus, python {platform.python_version()}"
    print(f"machine: {machine}")
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(
        f"calls per rate: {','.join(map(str, counts))}, call hold: {hold_ms} ms, "
        f"SIP over UDP on loopback, loop: {loop}"
    )
    print(
        "each call: digest challenge, INVITE to the callee, RTP ports, calls row + outbox events, "
        f"recording {'ON (stereo WAV + analytics)' if record else 'off'}"
    )
    print(HEADER)
    collector = GcClock()
    succeeded = 0
    try:
        csv = extension_csv(work / "calls.csv", [("101", "150", "pass101")])
        async with start_sipp_uas("uas.xml", port=uas_port, workdir=work / "uas"):
            for rate, calls in zip(rates, counts, strict=True):
                overload = engine.ua.endpoint.overload
                shed0, dropped0 = overload.shed, overload.dropped
                usage0 = resource.getrusage(resource.RUSAGE_SELF)
                gc0 = collector.seconds
                host0 = host_busy_seconds()
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
                host = host_busy_percent(host0, host_busy_seconds())
                usage1 = resource.getrusage(resource.RUSAGE_SELF)
                cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
                succeeded += max(result.successful, 0)
                print(
                    f"{rate:6d} {result.successful:5d} {result.failed:6d}  {wall:6.1f}  "
                    f"{result.successful / wall:8.1f}  "
                    f"{result.successful / max(wall - hold_ms / 1000, 1e-3):9.1f}  "
                    f"{setup_ms(result):8.1f}  "
                    f"{100 * cpu / wall:11.1f}  {1000 * cpu / calls:11.2f}  "
                    f"{1000 * (collector.seconds - gc0) / calls:10.2f}  {host:5.0f}  "
                    f"{proc_rss_mb(os.getpid()):6.1f}  {overload.shed - shed0:7d}  "
                    f"{overload.dropped - dropped0:7d}",
                    flush=True,
                )
                if result.failed:
                    print(f"  failures by SIPp's reason: {failure_reasons(result.errors)}")
    finally:
        await engine.stop()
        embedded_pg.stop(pg)
        if keep:
            print(f"kept {work} (SIPp logs, recordings, database)")
        else:
            shutil.rmtree(work, ignore_errors=True)  # recordings: ~100 kB per call
    if not succeeded:
        print("no call succeeded at any rate: nothing measured", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="50,100,150,200")
    parser.add_argument(
        "--calls",
        default="1000",
        help="calls per rate, or one count per rate (e.g. --rates 100,400 --calls 1000,12000: "
        "an engine in service for 10 s, then 30 s of twice what it sustains)",
    )
    parser.add_argument("--hold-ms", type=int, default=1000)
    parser.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="event loop of the engine (callcenter serve uses uvloop)",
    )
    parser.add_argument(
        "--no-record",
        dest="record",
        action="store_false",
        help="recording off (the engine records every answered call by default)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (SIPp logs, recordings)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a few seconds: rates 10,20, 20 calls, 200 ms hold"
    )
    args = parser.parse_args()
    if args.smoke:
        args.rates, args.calls, args.hold_ms = "10,20", "20", 200
    rates = [int(r) for r in args.rates.split(",")]
    counts = [int(c) for c in args.calls.split(",")]
    if len(counts) == 1:
        counts *= len(rates)
    if len(counts) != len(rates):
        parser.error("--calls takes one count, or one per rate")
    work = main(rates, counts, args.hold_ms, args.record, args.keep)
    if args.loop == "uvloop":
        import uvloop

        sys.exit(uvloop.run(work))
    else:
        sys.exit(asyncio.run(work))
