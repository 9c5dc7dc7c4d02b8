"""The engine's media relay against rtpengine's, under the same load (bench_rtp_relay's):
SIPp UAC (rtp_stream, PCMU 20 ms) -> relay -> SIPp UAS echoing every packet -> relay -> UAC,
100 packets/s into the relay per call, N calls held up at once per level.

Three relays, one after the other, each over every level:
  rtpengine  Debian rtpengine-daemon, kernel forwarding off (--table=-1: every packet through
             its userspace threads, one per core), driven by Kamailio's rtpengine module (ng
             protocol): Kamailio proxies the INVITE to the UAS with the SDP rewritten to
             rtpengine's ports. CPU is the rtpengine process (all threads); Kamailio only
             signals and is idle in the window.
  engine     the engine with recording off: the bare relay (B2BUA legs, latching, SSRC
             rewriting, RTCP).
  recorded   the engine recording every call (stereo WAV + speech analytics), its default.
CPU is utime+stime of the relay's process over the window (100% = one core); the summary gives
it per 100 calls' worth of packets (a loaded box may not send every stream in full);
loss counts packets that reached the relay's sockets (its own counters plus the kernel's drops
on its ports) but were not relayed. The summary puts the three side by side per level with the
engine's ratios to rtpengine. Figures only; nothing passes or fails on time. Exits 1 when a
relay measured nothing. rtpengine or Kamailio missing: its column says so and the engine is
measured alone (under CI=true the smoke test fails instead: install-peers.sh installs them).

Run: .venv/bin/python bench/bench_rtpengine.py [--levels 100,200,400] [--window 10]
     [--rate 100] [--only rtpengine,engine,recorded] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import resource
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _proc import proc_rss_mb
from bench_rtp_relay import (
    HEADER,
    LOSS_LIMIT,
    PACKETS_PER_CALL,
    EngineProcess,
    Row,
    config_toml,
    echo_uas,
    free_rtp_range,
    load_arguments,
    run_levels,
    smoke_arguments,
    write_ulaw,
)

from sip_test_env.rtpengine import RtpengineRelay, rtpengine_missing

RELAYS = ("rtpengine", "engine", "recorded")


class RtpengineStats:
    """rtpengine as a bench_rtp_relay Relay: its /metrics as "bridged", "in", "out"."""

    def __init__(self, relay: RtpengineRelay) -> None:
        self.relay = relay

    @property
    def pid(self) -> int:
        return self.relay.pid

    async def stats(self) -> dict[str, int]:
        m = await self.relay.metrics()
        return {
            "bridged": m.sessions,
            "legs": m.sessions,
            "in": m.packets + m.errors,
            "out": m.packets,
        }


async def _rtpengine(
    args: argparse.Namespace, levels: list[int], work: Path, ulaw: Path
) -> list[Row]:
    from sip_test_env.ports import free_port

    uas_port = free_port("both")
    # rtpengine takes an RTP/RTCP pair per side of a call, on even ports.
    rtp = free_rtp_range(4 * max(levels) + 200)
    async with (
        echo_uas(uas_port, work / "rtpengine") as uas,
        RtpengineRelay(work, uas=("127.0.0.1", uas_port), ports=rtp) as relay,
    ):
        print(
            f"rtpengine {rtp[0]}-{rtp[1]}, {relay.threads} threads, userspace only; "
            f"Kamailio on {relay.proxy.port}"
        )
        stats = RtpengineStats(relay)
        await asyncio.sleep(0.5)
        idle = proc_rss_mb(relay.pid)
        return await run_levels(
            stats, levels, args, work, relay.proxy.port, rtp, uas.media_port, ulaw, idle,
            prefix="rtpengine ",
        )  # fmt: skip


async def _engine(
    args: argparse.Namespace,
    levels: list[int],
    work: Path,
    ulaw: Path,
    database_url: str,
    record: bool,
) -> list[Row]:
    from sip_test_env.ports import free_port

    name = "recorded" if record else "engine"
    run = work / name
    run.mkdir()
    sip_port, uas_port = free_port("both"), free_port("both")
    rtp = free_rtp_range(4 * max(levels) + 200)
    config = run / "engine.toml"
    config.write_text(config_toml(sip_port, uas_port, rtp, record))
    engine = await EngineProcess.start(config, database_url, run, args.loop, None)
    try:
        async with echo_uas(uas_port, run) as uas:
            await asyncio.sleep(0.5)
            idle = proc_rss_mb(engine.pid)
            return await run_levels(
                engine, levels, args, run, sip_port, rtp, uas.media_port, ulaw, idle,
                prefix=f"{name:9s} ",
            )  # fmt: skip
    finally:
        await engine.stop()


def _per_100(row: Row | None) -> float:
    """CPU % per 100 calls' worth of packets relayed (100 x PACKETS_PER_CALL a second): on a
    loaded box SIPp may not send every call's full stream, and the relay's work is per packet."""
    if row is None or not row.pps_in:
        return math.nan
    return 100 * row.cpu / (row.pps_in / PACKETS_PER_CALL)


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def _at(rows: list[Row], level: int) -> Row | None:
    return next((r for r in rows if r.level == level), None)


def _summary(levels: list[int], results: dict[str, list[Row]]) -> None:
    print(
        f"\nCPU % of one core per 100 calls, from the packets relayed ({PACKETS_PER_CALL} pps in "
        "per call), with loss %, side by side; ratio = engine / rtpengine"
    )
    print(
        "level  rtpengine  loss%     engine  loss%   recorded  loss%  engine/rtpe  "
        "recorded/rtpe  host%"
    )
    for n in levels:
        row = {name: _at(results.get(name, []), n) for name in RELAYS}
        rtpe, plain, rec = (_per_100(row[name]) for name in RELAYS)
        lost = [row[name].loss if row[name] is not None else math.nan for name in RELAYS]
        hosts = [r.host for r in row.values() if r is not None]
        print(
            f"{n:5d} {rtpe:10.1f} {lost[0]:6.3f} {plain:10.1f} {lost[1]:6.3f} "
            f"{rec:10.1f} {lost[2]:6.3f} {_ratio(plain, rtpe):12.2f} {_ratio(rec, rtpe):14.2f} "
            f"{max(hosts) if hosts else math.nan:6.0f}"
        )


async def main(args: argparse.Namespace) -> int:
    from callcenter import embedded_pg

    if shutil.which("sipp") is None:
        raise SystemExit("sipp not found: run sip_test_env/install-peers.sh (Debian sip-tester)")
    levels = [int(x) for x in args.levels.split(",")]
    only = [name.strip() for name in args.only.split(",")]
    if unknown := [name for name in only if name not in RELAYS]:
        raise SystemExit(f"--only: unknown relay {', '.join(unknown)} (of {', '.join(RELAYS)})")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = Path(tempfile.mkdtemp(prefix="cc-rtpengine-bench-"))
    ulaw = write_ulaw(work / "relay.ulaw")
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cpus, python "
        f"{platform.python_version()}, engine loop: {args.loop}"
    )
    print(
        f"per level: ramp at {args.rate:g} calls/s, {args.settle:g} s settle, {args.window:g} s "
        f"window; PCMU 20 ms, {PACKETS_PER_CALL} pps into the relay per call"
    )
    print(f"work dir {work} (kept with --keep or when a call failed)")
    print("relay     " + HEADER)
    results: dict[str, list[Row]] = {}
    missing = rtpengine_missing() if "rtpengine" in only else None
    pg = None
    try:
        for name in only:
            if name == "rtpengine":
                if missing is not None:
                    print(f"rtpengine  not measured: {missing}")
                    continue
                results[name] = await _rtpengine(args, levels, work, ulaw)
                continue
            if pg is None:
                pg = embedded_pg.start(work / "pg")
            results[name] = await _engine(
                args, levels, work, ulaw, pg.get_uri(), record=name == "recorded"
            )
    finally:
        if pg is not None:
            embedded_pg.stop(pg)
        failed = any(r.failed or r.up < r.level for rows in results.values() for r in rows)
        if args.keep or failed or len(results) < len(only) - (missing is not None):
            print(f"kept {work} (engine, rtpengine, Kamailio and SIPp logs)")
        else:
            shutil.rmtree(work, ignore_errors=True)
    _summary(levels, results)
    if missing is not None:
        print(f"rtpengine not measured: {missing}")
    for name, rows in results.items():
        ok = [r.level for r in rows if r.up >= r.level and r.loss <= LOSS_LIMIT]
        print(
            f"{name}: highest level with every call up and loss <= {LOSS_LIMIT}%: "
            f"{max(ok) if ok else 'none'} calls"
        )
    if not results or any(not any(r.up and r.pps_out for r in rows) for rows in results.values()):
        print("a relay had no call up relaying packets: nothing measured", file=sys.stderr)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    load_arguments(parser, levels="100,200,400", window=10.0)
    parser.add_argument(
        "--only", default=",".join(RELAYS), help=f"relays to measure, of {','.join(RELAYS)}"
    )
    return parser


if __name__ == "__main__":
    sys.exit(asyncio.run(main(smoke_arguments(_parser().parse_args()))))
