"""Concurrent calls with RTP relayed both ways: SIPp UAC (rtp_stream) -> engine -> SIPp UAS echo.

Each call streams 20 ms PCMU packets (50 pps) from the UAC into the engine's caller leg; the
engine relays them out of the callee leg to a SIPp UAS that echoes every packet back, and the
engine relays the echo back to the UAC: 100 packets/s into the engine and 100 out per call.
For each level N the bench holds N calls up at once, waits until all are bridged, then measures
for --window seconds:
  loss     packets that reached the engine's RTP sockets (its per-leg packets_in plus the
           kernel's per-socket drops in /proc/net/udp) but were not sent out the other leg
  CPU      the engine process's utime+stime from /proc/PID/stat (100% = one core)
  RSS      VmRSS of the engine process; per 100 calls above the idle engine
The engine runs in its own process (this file with --child) so SIPp does not share its CPU
time; PostgreSQL is the embedded one. SIPp 3.6.1 sends every call's rtp_stream from its one
-mp socket and never reads it: the audio relayed back to the UAC is dropped there by the kernel
(not engine loss). Figures only; nothing here passes or fails on time. It exits 1 when no level
got a call up relaying packets (nothing was measured). --smoke: one level of 10 calls and a 1 s
window, a few seconds through the same path, for CI.

Run: .venv/bin/python bench/bench_rtp_relay.py [--levels 50,100,200] [--window 15]
     [--rate 100] [--loop uvloop|asyncio] [--record] [--profile engine.prof] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _child import LineChild
from _proc import host_busy_percent, host_busy_seconds, proc_cpu_seconds, proc_rss_mb

if TYPE_CHECKING:
    from callcenter.runtime import Engine
    from sip_test_env.sipp import SippUas

logger = logging.getLogger(__name__)

SCENARIOS = Path(__file__).with_name("scenarios")
UAC_SCENARIO = SCENARIOS / "uac_rtp_stream.xml"
UAS_SCENARIO = SCENARIOS / "uas_rtp_echo.xml"
LOSS_LIMIT = 0.1  # percent
PACKETS_PER_CALL = 100  # into the engine per second: 50 from the caller, 50 echoed back


# -- the engine process ---------------------------------------------------------------------


def _snapshot(engine: Engine) -> dict[str, object]:
    """Relay counters over every leg the engine ever opened: the RTP port pool's own totals
    (live endpoints plus released ones)."""
    totals = engine.ua.ports.totals()
    bridged = sum(
        1
        for c in engine.switchboard.active.values()
        if c.b is not None and c.summary.answered_at is not None
    )
    return {
        "bridged": bridged,
        "legs": len(engine.ua.calls),
        "in": totals.packets_in,
        "out": totals.packets_out,
        "ports_in_use": engine.ua.ports.in_use,
    }


async def _child(args: argparse.Namespace) -> None:
    from callcenter.config import load_config
    from callcenter.runtime import settle_heap, start_engine

    loop = asyncio.get_running_loop()
    config = load_config(args.config)
    engine = await start_engine(
        config, database_url=args.database_url, data_dir=args.data_dir, with_http=False
    )
    # As `callcenter serve` does: the start-up heap frozen, young collections a tenth as often.
    # Without it the collector walks the whole heap again and again and the CPU per call of
    # one run differs from the next by half (measured with --record at 300 calls).
    settle_heap()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def reply(message: dict[str, object]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    reply({"ready": True, "loop": f"{type(loop).__module__}.{type(loop).__name__}"})
    try:
        while line := (await reader.readline()).decode().strip():
            if line == "stats":
                reply(_snapshot(engine))
            elif line == "quit":
                break
    finally:
        await engine.stop()
    reply({"stopped": True})


def _child_main(args: argparse.Namespace) -> None:
    log_format = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=logging.WARNING, format=log_format)
    profiler = None
    if args.profile:
        import cProfile

        # CPU time, not wall time: the idle waits of the loop would swamp everything else.
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
    try:
        if args.loop == "uvloop":
            import uvloop

            uvloop.run(_child(args))
        else:
            asyncio.run(_child(args))
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)


class Relay(Protocol):
    """What a level measures: a media relay in its own process. stats() gives "bridged" (calls
    up), "legs" (calls or legs still held), "in" and "out" (packets received and relayed)."""

    @property
    def pid(self) -> int: ...

    async def stats(self) -> dict[str, int]: ...


class EngineProcess(LineChild):
    """The engine child: a line protocol on its stdin/stdout ("stats", "quit")."""

    @property
    def pid(self) -> int:
        return self.proc.pid

    exited = "engine process exited; see engine.log in the work directory"

    def __init__(self, proc: asyncio.subprocess.Process, loop_name: str) -> None:
        super().__init__(proc)
        self.loop_name = loop_name

    @classmethod
    async def start(
        cls, config: Path, database_url: str, data_dir: Path, loop: str, profile: Path | None
    ) -> EngineProcess:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--config", str(config)]
        cmd += ["--database-url", database_url, "--data-dir", str(data_dir), "--loop", loop]
        if profile is not None:
            cmd += ["--profile", str(profile.resolve())]
        log = (data_dir / "engine.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log
        )
        log.close()
        engine = cls(proc, "?")
        hello = await asyncio.wait_for(engine._read(), 60)
        engine.loop_name = str(hello.get("loop"))
        return engine


# -- what the kernel says -------------------------------------------------------------------


def _socket_drops(low: int, high: int) -> int:
    """Datagrams the kernel dropped on UDP sockets bound to ports low..high (full buffers)."""
    drops = 0
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            fields = line.split()
            port = int(fields[1].rsplit(":", 1)[1], 16)
            if low <= port <= high:
                drops += int(fields[12])
    return drops


@dataclass
class Sample:
    at: float
    engine: dict[str, int]
    cpu: float
    rss: float
    drops: int
    echo_drops: int
    host: tuple[float, float]


async def _sample(relay: Relay, rtp: tuple[int, int], echo_port: int) -> Sample:
    stats = await relay.stats()
    pid = relay.pid
    return Sample(
        at=time.monotonic(),
        engine=stats,
        cpu=proc_cpu_seconds(pid),
        rss=proc_rss_mb(pid),
        drops=_socket_drops(*rtp),
        echo_drops=_socket_drops(echo_port, echo_port + 2),
        host=host_busy_seconds(),
    )


# -- the load -------------------------------------------------------------------------------


def write_ulaw(path: Path, seconds: float = 2.0) -> Path:
    """A looping 440 Hz tone, raw mu-law 8 kHz (what <exec rtp_stream> plays)."""
    import numpy as np

    from telephony.media import CODECS

    t = np.arange(int(8000 * seconds)) / 8000
    samples = (8000 * np.sin(2 * math.pi * 440 * t)).astype(np.int16)
    path.write_bytes(CODECS["PCMU"].encode(samples))
    return path


def config_toml(sip_port: int, uas_port: int, rtp: tuple[int, int], record: bool) -> str:
    # rtp_inactivity_timeout: a long ramp must not hang up quiet legs before the media starts;
    # ring_timeout: a callee leg the overloaded UAS lost fails within the level.
    return (
        f'[sip]\nlisten = "127.0.0.1:{sip_port}"\nrtp_ports = "{rtp[0]}-{rtp[1]}"\n'
        "rtp_inactivity_timeout = 120\nring_timeout = 10\n"
        '[[accounts]]\nextension = "101"\npassword = "pass101"\nmax_calls = 100000\n'
        '[[accounts]]\nextension = "150"\npassword = "pass150"\nmax_calls = 100000\n'
        f'static_contact = "sip:150@127.0.0.1:{uas_port}"\n'
        f"[recordings]\nenabled = {'true' if record else 'false'}\n"
    )


@dataclass
class Row:
    level: int
    up: int
    failed: int
    pps_in: float
    pps_out: float
    loss: float
    drops: int
    echo_drops: int
    cpu: float
    rss: float
    rss_per_100: float
    host: float

    def line(self) -> str:
        cpu_per_100 = 100 * self.cpu / self.level
        return (
            f"{self.level:5d} {self.up:5d} {self.failed:6d} {self.pps_in:8.0f} {self.pps_out:8.0f} "
            f"{self.loss:7.3f} {self.drops:6d} {self.echo_drops:7d} {self.cpu:7.1f} "
            f"{cpu_per_100:8.1f} {self.rss:7.1f} {self.rss_per_100:8.2f} {self.host:6.0f}"
        )


HEADER = (
    "level    up failed   pps_in  pps_out  loss_% kdrops echodrp engine%  cpu%/100"
    "  rss_MB MB/100  host%"
)


async def _level(
    n: int,
    args: argparse.Namespace,
    engine: Relay,
    work: Path,
    sip_port: int,
    rtp: tuple[int, int],
    echo_port: int,
    ulaw: Path,
    idle_rss: float,
) -> Row:
    from sip_test_env.sipp import extension_csv, run_sipp

    ramp = n / args.rate
    # Each call holds long enough that the first one is still up when the window closes, even
    # when the setups fall behind by up to --grace seconds.
    hold = ramp + args.grace + args.settle + args.window + 3
    csv = extension_csv(work / f"calls-{n}.csv", [("101", "150", "pass101")] * n)
    uac = asyncio.create_task(
        run_sipp(
            UAC_SCENARIO,
            f"127.0.0.1:{sip_port}",
            calls=n,
            rate=args.rate,
            inf_csv=csv,
            duration_ms=int(hold * 1000),
            timeout=hold + ramp + 15,  # calls still stuck then are not worth waiting for
            workdir=work / f"uac-{n}",
            files={"relay.ulaw": ulaw},
            extra_args=["-l", str(n)],
        )
    )
    deadline = time.monotonic() + ramp + args.grace
    while time.monotonic() < deadline and not uac.done():
        if (await engine.stats())["bridged"] >= n:
            break
        await asyncio.sleep(0.25)
    await asyncio.sleep(args.settle)
    first = await _sample(engine, rtp, echo_port)
    await asyncio.sleep(args.window)
    last = await _sample(engine, rtp, echo_port)
    result = await uac
    if not result.ok:
        print(f"  level {n}: {result.summary().splitlines()[0]}", file=sys.stderr)

    wall = last.at - first.at
    got = last.engine["in"] - first.engine["in"]
    sent = last.engine["out"] - first.engine["out"]
    drops = last.drops - first.drops
    arrived = got + drops
    up = min(first.engine["bridged"], last.engine["bridged"])
    return Row(
        level=n,
        up=up,
        failed=max(result.failed, 0),
        pps_in=got / wall,
        pps_out=sent / wall,
        loss=100 * (arrived - sent) / arrived if arrived else math.nan,
        drops=drops,
        echo_drops=last.echo_drops - first.echo_drops,
        cpu=100 * (last.cpu - first.cpu) / wall,
        rss=last.rss,
        rss_per_100=100 * (last.rss - idle_rss) / max(up, 1),
        host=host_busy_percent(first.host, last.host),
    )


async def run_levels(
    relay: Relay,
    levels: list[int],
    args: argparse.Namespace,
    work: Path,
    sip_port: int,
    rtp: tuple[int, int],
    echo_port: int,
    ulaw: Path,
    idle_rss: float,
    prefix: str = "",
) -> list[Row]:
    """Every level in turn against one relay (SIPp UAC -> sip_port -> ... -> the echo UAS),
    each row printed as it comes, the calls drained between levels."""
    rows: list[Row] = []
    for n in levels:
        row = await _level(n, args, relay, work, sip_port, rtp, echo_port, ulaw, idle_rss)
        rows.append(row)
        print(prefix + row.line(), flush=True)
        # Let the BYEs and the UAS timewait drain before the next level.
        for _ in range(40):
            if (await relay.stats())["legs"] == 0:
                break
            await asyncio.sleep(0.25)
    return rows


def free_rtp_range(count: int) -> tuple[int, int]:
    """`count` UDP ports in a row, free now."""
    from sip_test_env.ports import free_port_range

    try:
        return free_port_range(count, "udp")
    except RuntimeError:
        # The test pool is fragmented; the ephemeral range works too (busy ports are skipped).
        return (40000, 40000 + count)


def _print_profile(path: Path, top: int = 18) -> None:
    import pstats

    print(f"\nengine profile (cProfile, CPU seconds; it inflates Python costs), top {top}:")
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(top)


def echo_uas(port: int, work: Path) -> SippUas:
    """The far end: SIPp answering as extension 150, echoing every RTP packet it gets."""
    from sip_test_env.sipp import start_sipp_uas

    return start_sipp_uas(
        UAS_SCENARIO, port=port, service="150", extra_args=["-rtp_echo"], workdir=work / "uas"
    )


async def main(args: argparse.Namespace) -> int:
    from callcenter import embedded_pg
    from sip_test_env.ports import free_port

    if shutil.which("sipp") is None:
        raise SystemExit("sipp not found: run sip_test_env/install-peers.sh (Debian sip-tester)")
    levels = [int(x) for x in args.levels.split(",")]
    top = max(levels)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 4 sockets per call
    work = Path(tempfile.mkdtemp(prefix="cc-rtp-bench-"))
    pg = embedded_pg.start(work / "pg")
    sip_port, uas_port = free_port("both"), free_port("both")
    if args.rtp_ports:
        low, high = args.rtp_ports.split("-")
        rtp = (int(low), int(high))
    else:
        rtp = free_rtp_range(4 * top + 200)  # RTP+RTCP for both legs of every call
    config = work / "engine.toml"
    config.write_text(config_toml(sip_port, uas_port, rtp, args.record))
    ulaw = write_ulaw(work / "relay.ulaw")
    engine = await EngineProcess.start(config, pg.get_uri(), work, args.loop, args.profile)
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cpus, "
        f"python {platform.python_version()}, engine loop: {engine.loop_name}, "
        f"recording + analytics {'ON' if args.record else 'off'}"
        f"{', cProfile ON' if args.profile else ''}"
    )
    print(
        f"per level: ramp at {args.rate:g} calls/s, {args.settle:g} s settle, "
        f"{args.window:g} s window; PCMU 20 ms, {PACKETS_PER_CALL} pps into the engine per call"
    )
    print(f"engine RTP ports {rtp[0]}-{rtp[1]}, work dir {work} (kept with --keep or on failures)")
    rows: list[Row] = []
    try:
        await asyncio.sleep(0.5)
        idle_rss = proc_rss_mb(engine.pid)
        print(f"idle engine RSS: {idle_rss:.1f} MB")
        print(HEADER)
        async with echo_uas(uas_port, work) as uas:
            rows = await run_levels(
                engine, levels, args, work, sip_port, rtp, uas.media_port, ulaw, idle_rss
            )
    finally:
        await engine.stop()
        embedded_pg.stop(pg)
        if args.keep or any(r.failed or r.up < r.level for r in rows) or len(rows) < len(levels):
            print(f"kept {work} (engine.log, SIPp error logs)")
        else:
            shutil.rmtree(work, ignore_errors=True)
    ok = [r.level for r in rows if r.up >= r.level and r.loss <= LOSS_LIMIT]
    print(
        f"highest level with every call up and loss <= {LOSS_LIMIT}%: "
        f"{max(ok) if ok else 'none'} calls"
    )
    print(
        "columns: kdrops = kernel drops on the engine's RTP sockets (counted in loss), "
        "echodrp = kernel drops on the SIPp echo socket (not counted), engine% of one core, "
        "host% = all processes, of all cores"
    )
    if args.profile:
        _print_profile(args.profile)
    if not any(r.up and r.pps_out for r in rows):
        print("no level had a call up relaying packets: nothing measured", file=sys.stderr)
        return 1
    return 0


def load_arguments(
    parser: argparse.ArgumentParser, *, levels: str, window: float
) -> argparse.ArgumentParser:
    """The options of the load and of the windows (shared with bench_rtpengine)."""
    parser.add_argument("--levels", default=levels, help="concurrent calls")
    parser.add_argument("--window", type=float, default=window, help="seconds measured per level")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds after all are up")
    parser.add_argument("--rate", type=float, default=100.0, help="call setups per second")
    parser.add_argument(
        "--grace",
        type=float,
        default=5.0,
        help="seconds the setups may lag behind the offered rate before the window starts anyway",
    )
    try:
        import uvloop  # noqa: F401

        default_loop = "uvloop"
    except ImportError:
        default_loop = "asyncio"
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default=default_loop)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a few seconds (CI): level 10 at 50 calls/s, 0.5 s settle, 1 s window, 1 s grace",
    )
    return parser


def smoke_arguments(args: argparse.Namespace) -> argparse.Namespace:
    if args.smoke:
        args.levels, args.rate, args.settle = "10", 50.0, 0.5
        args.window, args.grace = 1.0, 1.0
    return args


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    load_arguments(parser, levels="100,200,400,600,800,1000", window=15.0)
    parser.add_argument("--profile", type=Path, help="cProfile the engine into this file")
    parser.add_argument(
        "--record",
        action="store_true",
        help="record every call (the engine's default; stereo WAV + speech analytics, ~32 kB/s "
        "of disk per call); without it the bench measures the bare relay",
    )
    parser.add_argument(
        "--rtp-ports",
        metavar="LOW-HIGH",
        help="engine RTP range (default: 4 ports per call, free now); for levels too big for "
        "the test port pool, e.g. 40000-47999 (ports in use are skipped)",
    )
    # The engine process (internal).
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    return parser


if __name__ == "__main__":
    arguments = smoke_arguments(_parser().parse_args())
    if arguments.child:
        _child_main(arguments)
    else:
        sys.exit(asyncio.run(main(arguments)))
