"""Every script in bench/ still runs: each in its --smoke mode (a few seconds of real work through
the same code path as a full run), as a subprocess, exactly as a person would start it.

Only that it exits 0 and printed its figure lines is checked: the figures themselves are never
asserted (a loaded CI machine is not a benchmark machine). The full runs are in the scripts'
docstrings.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from sip_test_env import tools

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
TIMEOUT = 180  # seconds; a smoke run takes a few, this is only for a hung one

NUM = r"-?(?:\d+(?:\.\d+)?|nan)"


def _row(first: str, numbers: int) -> str:
    """A table row: `first` then that many numbers, nothing else."""
    return rf"^\s*{first}(?:\s+{NUM}){{{numbers}}}\s*$"


@dataclass(frozen=True)
class Script:
    name: str
    figures: tuple[str, ...]
    """Regular expressions (multiline) that must each match a line of its standard output."""
    needs: tuple[str, ...] = ()
    """Programs it drives (Debian packages installed by sip_test_env/install-peers.sh)."""
    sip: bool = False
    """Needs the SIP peers (the `peers` marker, as the other tests with real peers)."""


SCRIPTS = (
    Script(
        "bench_call_setup",
        # rate: ok failed wall_s setups/s goodput/s setup_ms engine_cpu% cpu_ms/call
        # gc_ms/call host% rss_MB shed503 dropped
        (_row("10", 13), _row("20", 13)),
        needs=("sipp",),
        sip=True,
    ),
    Script(
        "bench_call_writes",
        tuple(
            rf"^{kind}\s+{NUM} statements per call"
            for kind in ("inbound DID call", "internal call")
        ),
        needs=("sipp",),
        sip=True,
    ),
    Script(
        "bench_cluster",
        # nodes rate/s ok failed wall_s setups/s setup_ms nodes_cpu% kamailio_cpu% cpu_ms/call
        # host% calls_per_node (one count per node: 20, 10/10)
        tuple(rf"^\s*{n}\s+10(?:\s+{NUM}){{9}}\s+\d+(?:/\d+){{{n - 1}}}\s*$" for n in (1, 2)),
        needs=("sipp", "kamailio"),
        sip=True,
    ),
    Script(
        "bench_rtp_relay",
        (_row("10", 12), rf"^highest level with every call up and loss <= {NUM}%: "),
        needs=("sipp",),
        sip=True,
    ),
    Script(
        "bench_rtpengine",
        # relay level up failed pps_in pps_out loss kdrops echodrp cpu% cpu%/100 rss MB/100 host%,
        # then the side-by-side summary: level, three CPU%/100 with loss, two ratios, host%
        (
            _row(r"rtpengine\s+10", 12),
            _row(r"engine\s+10", 12),
            _row(r"recorded\s+10", 12),
            _row("10", 9),
        ),
        needs=("sipp", "kamailio", "rtpengine"),
        sip=True,
    ),
    Script(
        "bench_media",
        (
            rf"^\s+RtpPacket\.parse\s+{NUM} us$",
            rf"^\s+G\.711 decode, numpy table \(ulaw_to_pcm\)\s+{NUM} us$",
            rf"^\s+MixMatrix\(3\)\.mix one call \(3 output frames\)\s+{NUM} us$",
            rf"^\s+WavSink\.write_stereo\s+{NUM} us$",
            rf"^\s+relayed \+ recorded \(a tick every 2nd packet\)\s+{NUM} us$",
        ),
    ),
    Script(
        "bench_recording",
        (
            rf"^\s+bytes \+ analytics \(default\)\s+{NUM} % CPU\s+{NUM} us/frame",
            rf"^\s+fsync after a 1 s append: median {NUM} ms",
        ),
    ),
    Script(
        "bench_crm",
        (_row("16", 5), _row(r"4\s+100", 3)),  # writes at concurrency 16; delivery on 4 lanes
    ),
    Script("bench_monitor", (_row("1", 3), _row("10", 3))),
    Script("bench_screen_pop", (_row("1", 3), _row("8", 3))),  # pops/s, median, p90
    # mode nodes: cps started/s max_1s take_ms p99_ms
    Script("bench_cps_bucket", (_row(r"shared\s+2", 5), _row(r"per-node\s+2", 5))),
    Script("bench_queue", (_row(r"shared\s+20", 4), _row(r"per-leg\s+20", 4))),
    Script(
        "bench_srtp",
        (
            r"^\s*plain RTP" + rf"(?:\s+{NUM}){{8}}\s*$",
            r"^\s*SRTP" + rf"(?:\s+{NUM}){{8}}\s*$",
            rf"^SRTP adds {NUM} % of a core per 100 calls \({NUM} us per relayed packet\)$",
            rf"^libsrtp AES_CM_128_HMAC_SHA1_80: {NUM} us per packet",
        ),
    ),
    Script(
        "bench_webrtc",
        (
            r"^\s*plain RTP" + rf"(?:\s+{NUM}){{8}}\s*$",
            r"^\s*WebRTC" + rf"(?:\s+{NUM}){{8}}\s*$",
            rf"^a browser leg adds {NUM} us per relayed packet \({NUM} % of a core per 100 calls "
            rf"in talk\) and {NUM} ms of CPU at setup",
            rf"^DTLS-SRTP handshake alone \(OpenSSL, both ends in this process\): {NUM} ms$",
        ),
    ),
    Script(
        "bench_seat_connect",
        (rf"^verdict -> agent heard, ms: median {NUM}, p95 {NUM}, max {NUM} \(goal: 300\)$",),
        needs=("baresip", "espeak-ng", "sox"),
        sip=True,
    ),
    Script(
        "bench_blf",
        (
            rf"^\s+NOTIFY built \(fan-out\)\s+{NUM} us$",
            rf"^\s+one line change, all keys\s+{NUM} ms$",
        ),
    ),
    Script(
        "bench_numbers",
        (
            rf"^\s+inbound caller \(PAI, Privacy, From\)\s+{NUM} us$",
            rf"^\s+From \+ PAI \+ RPID of a call out\s+{NUM} us$",
        ),
    ),
    Script(
        "bench_provider",
        (
            rf"^\s+MD5\s+{NUM} us$",
            rf"^\s+SHA-256\s+{NUM} us$",
            rf"^CPU to answer a 407 to an INVITE: {NUM} us$",
            rf"^\s+{NUM} registrations/s, one exchange: median {NUM} ms, p90 {NUM} ms$",
        ),
        needs=("kamailio",),
    ),
    Script(
        "bench_amocrm_backlog",
        (
            rf"^drained in {NUM} s: {NUM} events/s delivered$",
            r"^amoCRM has \d+ calls \+ \d+ unsorted \(= \d+: ok\)",
        ),
    ),
    Script(
        "bench_recovery",
        (rf"^\s+recover \+ analyse:\s+{NUM} s CPU,\s+{NUM} s wall per hour$",),
    ),
    Script(
        "amd_eval",
        (
            rf"^accuracy:\s+{NUM} %$",
            rf"^decision time +all: median {NUM} s, p90 {NUM} s",
            r"^beep detector: \d+/\d+ beeps found",
        ),
        needs=("espeak-ng", "sox", "flite", "text2wave"),
    ),
    Script(
        "amd_corpus",
        (r"^test: \d+ calls, \d+ speakers$",),
        needs=("espeak-ng", "sox", "flite", "text2wave"),
    ),
    Script(
        "amd_prosody",
        (
            r"^  espeak:\S+ +'Hello\?' +" + NUM,
            rf"^  held out espeak +\d+ calls: base {NUM} {NUM} \| \+syllable_rate {NUM} {NUM}",
        ),
        needs=("espeak-ng", "sox", "flite", "text2wave"),
    ),
    Script(
        "amd_train",
        (rf"^val: accuracy {NUM}, people_as_machines {NUM}, machines_as_people {NUM}",),
        needs=("espeak-ng", "sox", "flite", "text2wave"),
    ),
    Script(
        "dialer_sim",
        tuple(
            rf"^\s+10\s+25%\s+{mode}\s+{NUM}%(?:\s+{NUM}){{2}}\s+{NUM}%\s+\d+$"
            for mode in ("power 1", "power 2", "predictive")
        ),
    ),
)


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    # Its own session, so a hung run is stopped with everything it started (engine, SIPp).
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(argv)} still running after {TIMEOUT} s\n{out}\n{err[-4000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@pytest.mark.parametrize(
    "script",
    [pytest.param(s, id=s.name, marks=[pytest.mark.peers] if s.sip else []) for s in SCRIPTS],
)
def test_bench_smoke(script: Script, tmp_path: Path) -> None:
    tools.require(*script.needs)
    argv = [sys.executable, str(BENCH / f"{script.name}.py"), "--smoke"]
    if script.name.startswith("amd_"):
        argv += ["--cache", str(tmp_path / "speech")]  # really make the speech, not a warm cache
    result = _run(argv)
    report = f"{' '.join(argv)}: exit {result.returncode}\n{result.stdout}\n{result.stderr[-4000:]}"
    assert result.returncode == 0, report
    missing = [f for f in script.figures if not re.search(f, result.stdout, re.MULTILINE)]
    assert not missing, f"no line matches {missing}\n{report}"


def test_every_bench_script_has_a_smoke_test() -> None:
    scripts = {p.stem for p in BENCH.glob("*.py") if not p.name.startswith("_")}
    assert scripts == {s.name for s in SCRIPTS}


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ("beep_wait_ms=soon", "'soon' is not a number"),
        ("no_such_threshold=1", "expected NAME=NUMBER"),
        ("beep_wait_ms=100", "beep_wait_ms must be at least after_greeting_silence_ms"),
    ],
)
def test_amd_eval_refuses_a_bad_setting_before_building_anything(
    setting: str, said: str, tmp_path: Path
) -> None:
    cache = tmp_path / "speech"
    argv = [sys.executable, str(BENCH / "amd_eval.py"), "--smoke", "--cache", str(cache)]
    result = _run([*argv, "--set", setting])
    assert result.returncode != 0
    assert said in result.stderr
    assert not cache.exists()  # refused before any corpus was made
