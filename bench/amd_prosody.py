"""Does the AMD corpus carry the prosody that tells a person's answer from a read greeting?

Run: nice -n 19 .venv/bin/python bench/amd_prosody.py [--seed 23] [--calls 4000] [--smoke]

A person answers with one short phrase, often a question's rising pitch ("Hello?"), then waits;
a recorded greeting is read: more syllables a second, a pitch that declines over the phrase and
falls at its end. Before such cues go into the model of dialer/amd.py, this measures whether the
corpus's voices (espeak-ng, flite, festival) carry them, on the train and validation splits only
(the test split is never read):

1. how each train/validation voice renders '?': the end pitch of "Hello?" against "Hello." (the
   pitch of the last 200 ms of pitched frames against the utterance's median, semitones);
2. per class, the prosody of the greeting at the detector's first look at it (600 ms of
   silence after it, or 1 s of it still going on): syllable nuclei per second of speech (the
   model's syllable_rate), end pitch, pitch slope over the greeting (semitones a second), share
   of its loud frames that are pitched;
3. how well each feature alone tells machines from people among short greetings (< 2.5 s, the
   confusable ones), as an AUC per engine and language (0.5: no information; under 0.5: machines
   lower);
4. leave one engine (or language) out: a logistic model over the detector's features, with and
   without each prosody feature, trained on the other engines' calls, its AUC on the held-out
   engine's at 0.6 s and 1.8 s of silence after the greeting: what a cue is worth on voices the
   model never heard.

Pitch is the detector's own (``dialer.amd``: autocorrelation over two frames, 60-400 Hz), and
the syllable rate is its model's feature (``dialer.amd.syllable_nuclei`` over the greeting's
speech frames): the question is what the detector can hear. For the pitch features the
greeting's speech is its frames within 20 dB of its loudest. --smoke: a 60-call corpus, for
CI; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import amd_corpus
import amd_train

from dialer import AnsweringMachineDetector
from dialer.amd import _PITCHED, _pitch
from telephony.media import FRAME_MS, FRAME_SAMPLES, dbfs

PROSODY = ("syllable_rate", "end_pitch_st", "pitch_slope_st_s", "pitched_share")
RANGE_DB = 20.0  # a frame this far under the greeting's loudest is not its speech
END_FRAMES = 10  # the utterance's end: its last 200 ms of pitched frames
MIN_PITCHED = 8  # pitched frames needed for a pitch contour
SHORT_S = 2.5  # greetings shorter than this are the confusable ones
LOOKS_S = (0.6, 1.8)  # silence after the greeting at which the held-out engine is judged
CLASSES = (
    "person-short",
    "person-repeat",
    "person-late",
    "person-long",
    "vm-short",
    "vm-personal",
    "vm-carrier",
)
# Each engine's '?' against '.', in voices of the train and validation splits.
QUESTION_PAIRS = {
    "en": (("Hello?", "Hello."), ("Yes?", "Yes."), ("Is that you?", "That is you.")),
    "ru": (("Алло?", "Алло."), ("Да?", "Да.")),
}


# -- features -------------------------------------------------------------------------------


def end_pitch(pitch: np.ndarray) -> float:
    """Median pitch of the last ``END_FRAMES`` pitched frames against the median of all,
    semitones (0 with too little pitch): a question rises, a statement falls."""
    voiced = pitch[pitch > 0]
    if voiced.size < MIN_PITCHED:
        return 0.0
    st = 12.0 * np.log2(voiced / np.median(voiced))
    return float(np.clip(np.median(st[-END_FRAMES:]), -12.0, 12.0))


def pitch_slope(pitch: np.ndarray) -> float:
    """Least-squares slope of the pitched frames' pitch over the utterance, semitones a second
    (0 with too little pitch): a read sentence declines."""
    at = np.flatnonzero(pitch > 0)
    if at.size < MIN_PITCHED:
        return 0.0
    st = np.clip(12.0 * np.log2(pitch[at] / np.median(pitch[at])), -12.0, 12.0)
    return float(np.clip(np.polyfit(at * FRAME_MS / 1000, st, 1)[0], -30.0, 30.0))


def prosody(level: np.ndarray, pitch: np.ndarray) -> dict[str, float]:
    """The pitch features of one utterance's level (dBFS) and pitch (Hz, 0 unpitched) tracks
    (its syllable rate is the detector's own feature)."""
    loud = level >= level.max() - RANGE_DB if level.size else level.astype(bool)
    return {
        "end_pitch_st": end_pitch(pitch),
        "pitch_slope_st_s": pitch_slope(pitch),
        "pitched_share": float(((pitch > 0) & loud).sum()) / max(1, int(loud.sum())),
    }


def tracks(pcm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Level (dBFS, floored at -100) and pitch (Hz, 0 where not pitched) of each 20 ms frame."""
    n = pcm.size // FRAME_SAMPLES
    frames = pcm[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES).astype(np.int16)
    level = np.array([max(-100.0, dbfs(f)) for f in frames])
    pitch = np.zeros(n)
    for i in range(1, n):
        periodicity, hz = _pitch(frames[i - 1], frames[i])
        if periodicity >= _PITCHED:
            pitch[i] = hz
    return level, pitch


def looks(pcm: np.ndarray) -> list[dict[str, float]]:
    """The detector's features at each look (as bench/amd_train.py collects them), with the
    prosody of the greeting it judges: from its first word's start to its latest word's end."""
    level, pitch = tracks(pcm)
    seen: list[dict[str, float]] = []
    detector = AnsweringMachineDetector(amd_train.PROBE)

    def judged(features: dict[str, float]) -> None:
        if features["silence_s"] > amd_train.MAX_SILENCE_S:
            return
        end = detector.frames - round(features["silence_s"] * 1000 / FRAME_MS)
        start = end - round(features["greeting_s"] * 1000 / FRAME_MS)
        seen.append({**features, **prosody(level[start:end], pitch[start:end])})

    detector.on_judge = judged
    for i in range(level.size):
        if detector.feed(pcm[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]) is not None:
            break
    return seen


# -- figures --------------------------------------------------------------------------------


def auc(machines: np.ndarray, people: np.ndarray) -> float:
    """Probability that a machine's value is above a person's (ties count half)."""
    if not machines.size or not people.size:
        return math.nan
    values = np.concatenate([machines, people])
    order = values.argsort(kind="stable")
    ranks = np.empty(values.size)
    ranks[order] = np.arange(1, values.size + 1)
    for v in np.unique(values):  # ties share their mean rank
        same = values == v
        ranks[same] = ranks[same].mean()
    m = machines.size
    return float((ranks[:m].sum() - m * (m + 1) / 2) / (m * people.size))


def question_rendering(cache: Path) -> None:
    print("1. '?' against '.': end pitch, semitones against the utterance's median")
    voices = [s for s in amd_corpus._speakers() if s.split in ("train", "val")]
    for engine in ("espeak", "flite", "festival"):
        for lang, pairs in QUESTION_PAIRS.items():
            speakers = [s for s in voices if s.engine == engine and s.lang == lang][:2]
            for speaker in speakers:
                cells = []
                for question, statement in pairs:
                    ends = []
                    for text in (question, statement):
                        pcm = amd_corpus.synthesize(speaker, text, 1.0, 0, cache)
                        ends.append(end_pitch(tracks(pcm.astype(np.int16))[1]))
                    cells.append(f"{question!r} {ends[0]:+5.1f} / '.' {ends[1]:+5.1f}")
                print(f"  {speaker.name:<26} " + "   ".join(cells))


def _engine(row: dict) -> str:
    return str(row["speaker"].split(":")[0])


def distributions(calls: list[tuple[dict, list[dict[str, float]]]]) -> None:
    first = [(row, seen[0]) for row, seen in calls if seen]
    print("2. at the first look at the greeting: median [25th, 75th percentile]")
    for name in PROSODY:
        print(f"  {name}")
        for cls in CLASSES:
            values = [f[name] for row, f in first if row["cls"] == cls]
            if values:
                q1, q2, q3 = np.percentile(values, (25, 50, 75))
                print(f"    {cls:<14} {len(values):5d} calls  {q2:7.2f} [{q1:6.2f}, {q3:6.2f}]")
    print(f"3. AUC machines against people, greetings under {SHORT_S} s, first look")
    short = [(row, f) for row, f in first if f["greeting_s"] < SHORT_S]
    groups = sorted({(_engine(row), row["lang"]) for row, _ in short})
    print("  " + " " * 18 + "".join(f"{e + '-' + lang:>14}" for e, lang in groups))
    for name in PROSODY:
        cells = []
        for engine, lang in groups:
            sel = [(r, f) for r, f in short if _engine(r) == engine and r["lang"] == lang]
            m = np.array([f[name] for r, f in sel if r["label"] == "machine"])
            p = np.array([f[name] for r, f in sel if r["label"] == "human"])
            cells.append(f"{auc(m, p):7.2f} {len(m):2d}/{len(p):<3d}")
        print(f"  {name:<18}" + "".join(f"{c:>14}" for c in cells))


def leave_one_out(calls: list[tuple[dict, list[dict[str, float]]]]) -> None:
    print("4. AUC on a held-out engine or language, trained on the rest (detector's features")
    print("   alone, then with one prosody feature), at 0.6 s and 1.8 s of silence")
    base = [n for n in amd_train.FEATURES if n not in PROSODY]
    sets = [("base", base)] + [(f"+{n}", [*base, n]) for n in PROSODY]
    held_out: list[tuple[str, Callable[[dict], bool]]] = [
        ("espeak", lambda r: _engine(r) == "espeak"),
        ("flite", lambda r: _engine(r) == "flite"),
        ("festival", lambda r: _engine(r) == "festival"),
        ("russian", lambda r: r["lang"] == "ru"),
    ]
    for held, out in held_out:
        train = [(r, s) for r, s in calls if s and not out(r)]
        test = [(r, s) for r, s in calls if s and out(r)]
        if not train or not test:
            continue
        cells = []
        for label, names in sets:
            x = np.array([[f[n] for n in names] for _, seen in train for f in seen])
            y = np.array([r["label"] == "machine" for r, seen in train for _ in seen], float)
            w = np.array([1.0 / len(seen) for _, seen in train for _ in seen])
            mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
            beta = amd_train.fit((x - mean) / scale, y, w)
            scores = []
            for at in LOOKS_S:
                points = [(r, _look_at(seen, at)) for r, seen in test]
                kept = [(r, f) for r, f in points if f is not None]
                z = np.array([[f[n] for n in names] for _, f in kept])
                p = beta[0] + ((z - mean) / scale) @ beta[1:] if kept else np.array([])
                machine = np.array([r["label"] == "machine" for r, _ in kept], bool)
                scores.append(auc(p[machine], p[~machine]) if kept else math.nan)
            cells.append(f"{label} {scores[0]:.3f} {scores[1]:.3f}")
        print(f"  held out {held:<9} {len(test):5d} calls: " + " | ".join(cells))


def _look_at(seen: list[dict[str, float]], silence_s: float) -> dict[str, float] | None:
    for features in seen:
        if abs(features["silence_s"] - silence_s) < 0.01:
            return features
    return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=amd_corpus.default_cache())
    parser.add_argument("--smoke", action="store_true", help="a 60-call corpus (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.calls = 60
    folder = amd_corpus.build(args.seed, args.calls, args.cache, args.jobs)
    question_rendering(args.cache)
    calls = []
    for split in ("train", "val"):
        for row, pcm in amd_corpus.load(folder, split):
            if row["label"] in ("human", "machine"):
                calls.append((row, looks(pcm)))
    print(f"corpus {folder.name}, train and validation: {len(calls)} people and machines")
    distributions(calls)
    leave_one_out(calls)


if __name__ == "__main__":
    main()
