"""Answering-machine detection on a labelled set of generated calls: accuracy and decision time.

Run: .venv/bin/python bench/amd_eval.py [--count 600] [--seed 1] [--unsure-on-timeout] [--verbose]
     [--smoke]

espeak-ng (several voices, variants and speeds) speaks person-like greetings of 1-4 words
followed by silence, and voicemail greetings of 8-25 words with or without a beep; each call
gets random leading silence, level and line noise (several SNRs), then passes G.711 u-law. The
speech is cached under the temp directory, so a second run only detects. Prints accuracy, the
humans called machines (the costly error), machines called humans, the unsure share, decision
times in audio seconds, the beep detector's hit rate, and the machine. Never pass/fail.
--smoke: 8 calls (a few seconds with a cold cache), for CI; its accuracy means nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dialer import AmdConfig, AnsweringMachineDetector, BeepDetector, Verdict
from telephony.media import FRAME_SAMPLES, SAMPLE_RATE, pcm_to_ulaw, ulaw_to_pcm

VOICES = ("en-us", "en-gb", "en-gb-x-rp", "en-029")
VARIANTS = ("", "+m1", "+m2", "+m3", "+m4", "+f1", "+f2", "+f3", "+f4")
SNRS_DB = (None, 30.0, 20.0, 10.0)
NAMES = ("John", "Mary Jones", "Alex", "Doctor Patel", "Sarah", "Mike Brown", "Olga", "Tom")
COMPANIES = ("Acme Plumbing", "the dental office", "Green Valley Insurance", "City Motors")

HUMAN_PHRASES = (
    "Hello?",
    "Hello",
    "Yes?",
    "Hi.",
    "Speaking.",
    "Yeah?",
    "Hello, hello?",
    "Yeah, hello?",
    "Hi there.",
    "Good morning.",
    "Yes, speaking.",
    "Who's calling?",
    "Hello, who's this?",
    "Hi, this is {first}.",
    "{first} speaking.",
    "This is {first}.",
    "Hello, {first} here.",
    "Hello, {first} speaking.",
    "Yes, hello?",
    "Good afternoon.",
    "Hey, what's up?",
    "Hello, who is it?",
)

MACHINE_GREETINGS = (
    "Hi, you have reached {name}. Please leave a message after the tone.",
    "Hello, this is {name}. I can't take your call right now. Leave a message and I will call "
    "you back.",
    "You have reached the voicemail of {name}. I am not available right now. Please leave a "
    "message after the beep.",
    "The person you are calling is not available. Please leave a message after the tone.",
    "Hey, it's {first}, sorry I missed you. Leave a message and I'll get back to you soon.",
    "Thank you for calling {company}. Our office is currently closed. Please leave a message "
    "and we will return your call.",
    "Hi, {first} here. I'm away from the phone, so leave your name and number.",
    "Your call has been forwarded to an automatic voice message system. {name} is not "
    "available. At the tone, please record your message.",
    "Hello, you've reached {first}. Leave a message.",
    "We're sorry, nobody can take your call. Please leave your number after the beep.",
    "Hi, this is {first}'s phone. You know what to do.",
    "Thanks for calling {company}. Please leave your name, number and a short message, and "
    "someone will call you back today.",
)


@dataclass(frozen=True)
class Sample:
    """One generated call: its audio after answer and the truth."""

    label: Verdict
    samples: np.ndarray
    description: str
    beep_end_s: float | None
    snr: str


def _say(cache: Path, text: str, voice: str, speed: int) -> np.ndarray:
    """espeak-ng speech at 8 kHz mono int16, cached by voice, speed and text."""
    key = hashlib.sha1(f"{voice}|{speed}|{text}".encode()).hexdigest()[:16]
    out = cache / f"{key}.wav"
    if not out.exists():
        raw = cache / f"{key}.raw.wav"
        part = cache / f"{key}.part.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True
        )
        subprocess.run(
            ["sox", "-V1", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(part)], check=True
        )
        raw.unlink()
        part.replace(out)
    with wave.open(str(out), "rb") as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
    loud = np.flatnonzero(np.abs(samples) > 200)
    return samples[loud[0] : loud[-1] + 1] if loud.size else samples


def _fill(template: str, rng: np.random.Generator) -> str:
    name = str(rng.choice(NAMES))
    return template.format(
        name=name,
        first=name.split()[-1] if "Doctor" in name else name.split()[0],
        company=str(rng.choice(COMPANIES)),
    )


@dataclass(frozen=True)
class CallPlan:
    """What one call says, how, and what surrounds it."""

    human: bool
    text: str
    voice: str
    speed: int
    lead_s: float
    level_dbfs: float
    snr_db: float | None
    beep: bool
    beep_hz: float
    beep_s: float
    beep_gap_s: float
    again_s: float | None  # a person saying the greeting again after this much silence
    noise_seed: int


def _plan(count: int, seed: int) -> list[CallPlan]:
    """The calls of the set, half of them people (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    plans: list[CallPlan] = []
    for i in range(count):
        human = i % 2 == 0
        while True:
            text = _fill(str(rng.choice(HUMAN_PHRASES if human else MACHINE_GREETINGS)), rng)
            words = len(text.split())
            if (1 <= words <= 4) if human else (8 <= words <= 25):
                break
        plans.append(
            CallPlan(
                human=human,
                text=text,
                voice=str(rng.choice(VOICES)) + str(rng.choice(VARIANTS)),
                speed=int(rng.integers(120, 191)),
                lead_s=float(rng.uniform(0.1, 1.2)),
                level_dbfs=float(rng.uniform(-26.0, -14.0)),
                snr_db=SNRS_DB[int(rng.integers(len(SNRS_DB)))],
                beep=(not human) and bool(rng.random() < 0.6),
                beep_hz=float(rng.choice([440.0, 850.0, 1000.0, 1400.0, 1800.0])),
                beep_s=float(rng.uniform(0.15, 0.6)),
                beep_gap_s=float(rng.uniform(0.2, 0.7)),
                again_s=float(rng.uniform(1.8, 3.0)) if human and rng.random() < 0.3 else None,
                noise_seed=int(rng.integers(2**31)),
            )
        )
    return plans


def _rms_dbfs(x: np.ndarray) -> float:
    voiced = x[np.abs(x) > 0.01 * np.max(np.abs(x))]
    rms = float(np.sqrt(np.mean(voiced.astype(np.float64) ** 2)))
    return float(20 * np.log10(rms / 32768.0))


def _seconds(s: float) -> np.ndarray:
    return np.zeros(int(s * SAMPLE_RATE))


def _build(plan: CallPlan, speech: np.ndarray) -> Sample:
    voice = speech.astype(np.float64) * 10 ** ((plan.level_dbfs - _rms_dbfs(speech)) / 20)
    parts = [_seconds(plan.lead_s), voice]
    beep_end = None
    if plan.beep:
        parts.append(_seconds(plan.beep_gap_s))
        t = np.arange(int(plan.beep_s * SAMPLE_RATE)) / SAMPLE_RATE
        amplitude = 32768 * 10 ** (plan.level_dbfs / 20) * np.sqrt(2)
        parts.append(amplitude * np.sin(2 * np.pi * plan.beep_hz * t))
        beep_end = sum(p.size for p in parts) / SAMPLE_RATE
    if plan.again_s is not None:
        parts += [_seconds(plan.again_s), voice]
    audio = np.concatenate(parts)
    audio = np.concatenate([audio, _seconds(max(0.0, 6.0 - audio.size / SAMPLE_RATE) + 1.0)])
    if plan.snr_db is not None:
        noise_rms = 32768 * 10 ** ((plan.level_dbfs - plan.snr_db) / 20)
        audio = audio + np.random.default_rng(plan.noise_seed).normal(0.0, noise_rms, audio.size)
    pcm = np.clip(np.round(audio), -32768, 32767).astype(np.int16)
    line = ulaw_to_pcm(pcm_to_ulaw(pcm))  # the call crossed a G.711 trunk
    snr = "clean" if plan.snr_db is None else f"snr {plan.snr_db:.0f} dB"
    desc = (
        f"{plan.voice} s{plan.speed} {snr} lead {plan.lead_s:.1f}s"
        f"{' +beep' if plan.beep else ''}: {plan.text!r}"
    )
    return Sample(Verdict.HUMAN if plan.human else Verdict.MACHINE, line, desc, beep_end, snr)


def generate(count: int, seed: int, cache: Path, jobs: int) -> list[Sample]:
    cache.mkdir(parents=True, exist_ok=True)
    plans = _plan(count, seed)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        speech = list(pool.map(lambda p: _say(cache, p.text, p.voice, p.speed), plans))
    return [_build(p, s) for p, s in zip(plans, speech, strict=True)]


def _frames(samples: np.ndarray) -> list[np.ndarray]:
    n = samples.size // FRAME_SAMPLES
    return list(samples[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES))


def evaluate(samples: list[Sample], config: AmdConfig, verbose: bool) -> None:
    outcomes: Counter[tuple[Verdict, Verdict]] = Counter()
    reasons: Counter[tuple[Verdict, str]] = Counter()
    times: dict[Verdict, list[float]] = {Verdict.HUMAN: [], Verdict.MACHINE: [], Verdict.UNSURE: []}
    started = time.process_time()
    frames_fed = 0
    by_snr: dict[str, list[int]] = {}
    for sample in samples:
        detector = AnsweringMachineDetector(config)
        decision = None
        for frame in _frames(sample.samples):
            frames_fed += 1
            decision = detector.feed(frame)
            if decision is not None:
                break
        assert decision is not None, "the detector always decides within max_analysis_ms"
        outcomes[(sample.label, decision.verdict)] += 1
        tally = by_snr.setdefault(sample.snr, [0, 0, 0])
        tally[0] += 1
        tally[1] += decision.verdict is sample.label
        tally[2] += sample.label is Verdict.HUMAN and decision.verdict is Verdict.MACHINE
        reasons[(decision.verdict, decision.reason.value)] += 1
        times[decision.verdict].append(decision.seconds)
        if verbose and decision.verdict is not sample.label:
            print(
                f"  {sample.label.value:>7} -> {decision.verdict.value:<7} "
                f"{decision.reason.value:<15} {decision.seconds:.2f}s w{decision.words} "
                f"gr{decision.greeting_ms} | {sample.description}"
            )
    cpu = time.process_time() - started
    humans = sum(1 for s in samples if s.label is Verdict.HUMAN)
    machines = len(samples) - humans
    right = outcomes[(Verdict.HUMAN, Verdict.HUMAN)] + outcomes[(Verdict.MACHINE, Verdict.MACHINE)]
    unsure = outcomes[(Verdict.HUMAN, Verdict.UNSURE)] + outcomes[(Verdict.MACHINE, Verdict.UNSURE)]
    print(f"calls: {len(samples)} ({humans} human, {machines} machine)")
    print(f"accuracy:               {100 * right / len(samples):5.1f} %")
    h_as_m = outcomes[(Verdict.HUMAN, Verdict.MACHINE)]
    m_as_h = outcomes[(Verdict.MACHINE, Verdict.HUMAN)]
    print(f"humans called machines: {100 * h_as_m / humans:5.1f} % ({h_as_m})")
    print(f"machines called humans: {100 * m_as_h / machines:5.1f} % ({m_as_h})")
    print(f"unsure:                 {100 * unsure / len(samples):5.1f} % ({unsure})")
    every = [t for ts in times.values() for t in ts]
    for name, values in (("all", every), *((v.value, times[v]) for v in Verdict)):
        if values:
            print(
                f"decision time {name:>7}: median {np.median(values):.2f} s, "
                f"p90 {np.percentile(values, 90):.2f} s (audio seconds, from answer)"
            )
    print(
        "by line noise: "
        + ", ".join(
            f"{snr} {100 * ok / n:.0f} % right ({bad} humans as machines)"
            for snr, (n, ok, bad) in sorted(by_snr.items())
        )
    )
    print(
        "reasons: "
        + ", ".join(f"{v.value}/{r}={n}" for (v, r), n in sorted(reasons.items(), key=str))
    )
    print(f"detector CPU: {1e6 * cpu / max(1, frames_fed):.0f} us per frame")


def evaluate_beeps(samples: list[Sample], config: AmdConfig) -> None:
    found = late = false = 0
    with_beep = [s for s in samples if s.beep_end_s is not None]
    for sample in samples:
        detector = BeepDetector(config.beep)
        ended_at = None
        for frame in _frames(sample.samples):
            if detector.feed(frame):
                ended_at = detector.frames * FRAME_SAMPLES / SAMPLE_RATE
                break
        if sample.beep_end_s is None:
            false += ended_at is not None
        elif ended_at is not None:
            found += 1
            late += ended_at - sample.beep_end_s > 0.1
    no_beep = len(samples) - len(with_beep)
    print(
        f"beep detector: {found}/{len(with_beep)} beeps found ({late} more than 0.1 s late), "
        f"{false}/{no_beep} false beeps in calls without one"
    )


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
    parser.add_argument("--count", type=int, default=600, help="calls, half human (default 600)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2, help="espeak-ng processes at once")
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "callcenter-amd-eval"
    )
    parser.add_argument(
        "--unsure-on-timeout", action="store_true", help="UNSURE instead of a best guess at 3.5 s"
    )
    parser.add_argument("--verbose", action="store_true", help="list every wrong verdict")
    parser.add_argument("--smoke", action="store_true", help="8 calls (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.count = 8
    missing = [p for p in ("espeak-ng", "sox") if shutil.which(p) is None]
    if missing:
        sys.exit(f"needs {' and '.join(missing)} to make the speech")
    print(
        f"machine: {_cpu_model()}, {os.cpu_count()} cpus, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}"
    )
    started = time.perf_counter()
    samples = generate(args.count, args.seed, args.cache, args.jobs)
    print(f"generated {len(samples)} calls in {time.perf_counter() - started:.1f} s ({args.cache})")
    config = AmdConfig(guess_on_timeout=not args.unsure_on_timeout)
    print(f"config: {config}")
    evaluate(samples, config, args.verbose)
    evaluate_beeps(samples, config)


if __name__ == "__main__":
    main()
