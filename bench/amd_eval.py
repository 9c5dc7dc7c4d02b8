"""Answering-machine detection on the held-out test split of bench/amd_corpus.py.

Run: nice .venv/bin/python bench/amd_eval.py [--split test] [--seed 17] [--calls 2000] [--verbose]
     [--smoke] [--set NAME=VALUE ...]

Builds the corpus first if it is not in the cache yet (espeak-ng, flite, festival, sox). Feeds
every call of the split, 20 ms frame by frame, to a fresh detector with its default settings and
prints: accuracy over all calls and per class, language, speech engine, noise kind, level, SNR
and packet loss, each with its people called machines (h->m, the costly error: the dialer hangs
up on them or plays them a voicemail message), machines called people (m->h, an agent hears a
greeting) and median decision time; the unsure share; decision times in audio seconds from answer
(median, p90, max); for machines whose greeting ends in a beep, how long after the beep's end
the voicemail message would start; CPU per frame. Never pass/fail. Tune on --split val, never
on test. --smoke: a corpus of 60 calls (a few seconds to build), for CI; its figures mean
nothing. --set: another value of one AmdConfig threshold (e.g. --set beep_wait_ms=1400), to
measure what a faster or stricter setting costs on validation.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import amd_corpus

from dialer import AmdConfig, AnsweringMachineDetector, BeepDetector
from telephony.media import FRAME_MS, FRAME_SAMPLES


def _level(row: dict) -> str:
    return "quiet (< -30 dBFS)" if row["level_dbfs"] < -30 else "normal"


def _snr(row: dict) -> str:
    snr = row["snr_db"]
    return "< 15 dB" if snr < 15 else "15-25 dB" if snr < 25 else ">= 25 dB"


# Where the errors are: accuracy, people called machines (h->m) and machines called people
# (m->h) per class, language, speech engine, noise kind, level, signal-to-noise ratio, loss.
GROUPS: tuple[tuple[str, Callable[[dict], str]], ...] = (
    ("class", lambda row: row["cls"]),
    ("language", lambda row: row["lang"]),
    ("engine", lambda row: row["speaker"].split(":")[0] or "(no speech)"),
    ("noise", lambda row: row["noise"]),
    ("level", _level),
    ("SNR", _snr),
    ("packet loss", lambda row: f"{100 * row['loss']:.0f} %"),
)


def _frames(samples: np.ndarray) -> np.ndarray:
    n = samples.size // FRAME_SAMPLES
    return samples[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES)


def detect(
    pcm: np.ndarray, config: AmdConfig | None = None
) -> tuple[str, str, float, float | None]:
    """(verdict, reason, decision time s, message start s or None) for one call."""
    detector = AnsweringMachineDetector(config)
    frames = _frames(pcm)
    decision = None
    n = 0
    while decision is None and n < len(frames):
        decision = detector.feed(frames[n])
        n += 1
    if decision is None:
        return "none", "none", n * FRAME_MS / 1000, None
    verdict = decision.verdict.value
    if verdict != "machine":
        return verdict, decision.reason.value, decision.seconds, None
    # The dialer's next step (as dialer.runner does it): wait out the greeting or the beep.
    reason = decision.reason.value
    heard = reason in ("machine-greeting", "no-beep", "initial-silence", "timeout")
    waiter = BeepDetector(greeting_heard=heard, beep_heard=reason == "beep")
    for m, frame in enumerate(frames[n:], n + 1):
        waiter.feed(frame)
        if waiter.ready:
            return verdict, decision.reason.value, decision.seconds, m * FRAME_MS / 1000
    return verdict, decision.reason.value, decision.seconds, None


def run(calls: list[tuple[dict, np.ndarray]], config: AmdConfig | None) -> list[tuple]:
    """(truth, verdict, reason, decision s, message start s) per call."""
    return [(row, *detect(pcm, config)) for row, pcm in calls]


def summary(results: list[tuple]) -> dict[str, float]:
    """Accuracy, people called machines, machines called people (shares) and median time."""
    humans = [r for r in results if r[0]["label"] == "human"]
    machines = [r for r in results if r[0]["label"] == "machine"]
    return {
        "accuracy": sum(r[1] == r[0]["label"] for r in results) / max(1, len(results)),
        "people_as_machines": sum(r[1] == "machine" for r in humans) / max(1, len(humans)),
        "machines_as_people": sum(r[1] == "human" for r in machines) / max(1, len(machines)),
        "median_s": float(np.median([r[3] for r in results])) if results else 0.0,
    }


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:5.1f} %" if whole else "  n/a"


def evaluate(calls: list[tuple[dict, np.ndarray]], config: AmdConfig | None, verbose: bool) -> None:
    started = time.process_time()
    frames_fed = 0
    results = []
    for row, pcm in calls:
        verdict, reason, seconds, message_at = detect(pcm, config)
        frames_fed += round(seconds * 1000 / FRAME_MS)
        results.append((row, verdict, reason, seconds, message_at))
        if verbose and verdict != row["label"]:
            print(
                f"  {row['label']:>7} -> {verdict:<7} {reason:<16} {seconds:4.2f}s "
                f"{row['id']} {row['speaker']} {row['noise']}@{row['snr_db']:.0f}dB "
                f"{row['level_dbfs']:.0f}dBFS loss {row['loss']:.2f} | {row['text']!r}"
            )
    cpu = time.process_time() - started
    total = len(results)
    right = sum(r[1] == r[0]["label"] for r in results)
    print(f"calls: {total}")
    print(f"accuracy:                {_pct(right, total)}")
    humans = [r for r in results if r[0]["label"] == "human"]
    machines = [r for r in results if r[0]["label"] == "machine"]
    h_as_m = sum(r[1] == "machine" for r in humans)
    m_as_h = sum(r[1] == "human" for r in machines)
    print(f"people called machines:  {_pct(h_as_m, len(humans))} ({h_as_m} of {len(humans)})")
    print(f"machines called people:  {_pct(m_as_h, len(machines))} ({m_as_h} of {len(machines)})")
    unsure = sum(r[1] == "unsure" for r in results if r[0]["label"] != "unsure")
    print(f"unsure (not silence):    {_pct(unsure, total)} ({unsure})")
    for title, group in GROUPS:
        groups: dict[str, list] = defaultdict(list)
        for r in results:
            groups[group(r[0])].append(r)
        print(f"by {title}:")
        for name, rs in sorted(groups.items()):
            verdicts = Counter(r[1] for r in rs)
            ok = sum(r[1] == r[0]["label"] for r in rs)
            spread = ", ".join(f"{v} {n}" for v, n in verdicts.most_common())
            hs = [r for r in rs if r[0]["label"] == "human"]
            ms = [r for r in rs if r[0]["label"] == "machine"]
            hm = sum(r[1] == "machine" for r in hs)
            mh = sum(r[1] == "human" for r in ms)
            errors = f"h->m {hm}/{len(hs)}, m->h {mh}/{len(ms)}" if hs or ms else ""
            median = float(np.median([r[3] for r in rs]))
            print(
                f"  {name:<18} {_pct(ok, len(rs))} of {len(rs):4d}  {errors:<23} "
                f"median {median:.2f} s  ({spread})"
            )
    print("errors by language:")
    for lang in sorted({r[0]["lang"] for r in results}):
        hs = [r for r in humans if r[0]["lang"] == lang]
        ms = [r for r in machines if r[0]["lang"] == lang]
        hm = sum(r[1] == "machine" for r in hs)
        mh = sum(r[1] == "human" for r in ms)
        print(
            f"  {lang}: people called machines {_pct(hm, len(hs))} ({hm} of {len(hs)}), "
            f"machines called people {_pct(mh, len(ms))} ({mh} of {len(ms)})"
        )
    for name, rs in (("all", results), ("people", humans), ("machines", machines)):
        times = [r[3] for r in rs]
        if times:
            print(
                f"decision time {name:>8}: median {np.median(times):.2f} s, "
                f"p90 {np.percentile(times, 90):.2f} s, max {max(times):.2f} s"
            )
    length = amd_corpus.CALL_SECONDS - 0.1  # beeps cut off by the end of the recording aside
    beeped = [
        r
        for r in machines
        if r[0]["beep_end_s"] is not None and r[0]["beep_end_s"] <= length and r[1] == "machine"
    ]
    if beeped:
        early = sum(r[4] is not None and r[4] < r[0]["beep_end_s"] - 0.05 for r in beeped)
        never = sum(r[4] is None for r in beeped)
        lags = [r[4] - r[0]["beep_end_s"] for r in beeped if r[4] is not None]
        lag = f"median {np.median(lags):.2f} s" if lags else "n/a"
        print(
            f"message after the beep ({len(beeped)} machines with a beep, called machines): "
            f"{early} would start before the beep ended, {never} never, lag after beep {lag}"
        )
    heard = sum(r[2] == "beep" or r[4] is not None for r in beeped)
    print(f"beep detector: {heard}/{len(beeped)} beeps found or waited out")
    reasons = Counter((r[1], r[2]) for r in results)
    print("reasons: " + ", ".join(f"{v}/{why}={n}" for (v, why), n in sorted(reasons.items())))
    print(f"detector CPU: {1e6 * cpu / max(1, frames_fed):.0f} us per frame fed")


def config_with(settings: list[str]) -> AmdConfig | None:
    """The default AmdConfig with NAME=VALUE settings (numbers) replaced; None without any."""
    if not settings:
        return None
    values: dict[str, float] = {}
    names = {f.name: f.type for f in dataclasses.fields(AmdConfig)}
    for setting in settings:
        name, sep, value = setting.partition("=")
        if not sep or names.get(name) not in ("int", "float"):
            raise SystemExit(f"--set {setting}: expected NAME=NUMBER for a number of AmdConfig")
        try:
            values[name] = int(value) if names[name] == "int" else float(value)
        except ValueError:
            raise SystemExit(f"--set {setting}: {value!r} is not a number") from None
    try:
        return dataclasses.replace(AmdConfig(), **values)
    except ValueError as error:
        raise SystemExit(f"--set: {error}") from None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--split", choices=("train", "val", "test"), default="test")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--calls", type=int, default=2000, help="corpus size (all splits)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=amd_corpus.default_cache())
    parser.add_argument("--verbose", action="store_true", help="list every wrong verdict")
    parser.add_argument("--smoke", action="store_true", help="a 60-call corpus (CI)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another value of an AmdConfig number (repeatable)",
    )
    args = parser.parse_args()
    config = config_with(args.set)
    if args.smoke:
        args.calls = 60
    print(
        f"machine: {_cpu_model()}, {os.cpu_count()} cpus, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}"
    )
    missing = amd_corpus.missing_tools()
    folder = args.cache / f"v{amd_corpus.VERSION}-seed{args.seed}-n{args.calls}"
    if missing and not (folder / "manifest.jsonl").exists():
        sys.exit(f"needs {', '.join(missing)} to build the corpus")
    folder = amd_corpus.build(args.seed, args.calls, args.cache, args.jobs)
    calls = amd_corpus.load(folder, args.split)
    print(f"corpus {folder.name}, split {args.split}: {len(calls)} calls")
    if config is not None:
        print("settings: " + ", ".join(args.set))
    evaluate(calls, config, args.verbose)


if __name__ == "__main__":
    main()
