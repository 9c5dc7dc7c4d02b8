"""Audio for the AMD tests: silence, tones, a synthetic voice, noise, espeak-ng speech, frames."""

from __future__ import annotations

import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from telephony.media import FRAME_SAMPLES, SAMPLE_RATE

RATE = SAMPLE_RATE


def gap(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), dtype=np.int16)


def tone(freq: float, seconds: float, dbfs: float = -15.0, start_sample: int = 0) -> np.ndarray:
    n = round(seconds * RATE)
    amplitude = 32768 * 10 ** (dbfs / 20) * np.sqrt(2)
    t = (np.arange(n) + start_sample) / RATE
    return np.round(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def voice(seconds: float, f0: float = 130.0, dbfs: float = -20.0) -> np.ndarray:
    """A vowel-like harmonic series with vibrato, which webrtcvad takes for speech."""
    n = round(seconds * RATE)
    t = np.arange(n) / RATE
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / RATE
    x = np.asarray(sum(np.sin(k * phase) / k for k in range(1, int(3500 / f0))))
    return scale(x, dbfs)


def scale(x: np.ndarray, dbfs: float) -> np.ndarray:
    """``x`` at an RMS of ``dbfs`` (measured over its audible part)."""
    x = x.astype(np.float64)
    loud = x[np.abs(x) > 0.01 * np.abs(x).max()]
    rms = float(np.sqrt(np.mean(loud**2)))
    return np.clip(np.round(x * 32768 * 10 ** (dbfs / 20) / rms), -32768, 32767).astype(np.int16)


def noise(seconds: float, dbfs: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 32768 * 10 ** (dbfs / 20), round(seconds * RATE))
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def mix(*parts: np.ndarray) -> np.ndarray:
    """Sum of signals (the shorter ones padded with silence)."""
    out = np.zeros(max(p.size for p in parts))
    for p in parts:
        out[: p.size] += p
    return np.clip(out, -32768, 32767).astype(np.int16)


def frames(samples: np.ndarray) -> Iterator[np.ndarray]:
    """20 ms frames; the last one padded with silence."""
    padded = np.concatenate([samples, np.zeros(-samples.size % FRAME_SAMPLES)])
    yield from padded.astype(np.int16).reshape(-1, FRAME_SAMPLES)


def frame_count(samples: np.ndarray) -> int:
    return -(-samples.size // FRAME_SAMPLES)


class Speaker:
    """espeak-ng speech at 8 kHz mono 16-bit, leading/trailing silence cut, cached per text."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._cache: dict[tuple[str, str, int], np.ndarray] = {}

    def say(self, text: str, voice_name: str = "en-us", speed: int = 150) -> np.ndarray:
        key = (text, voice_name, speed)
        if key not in self._cache:
            raw, out = self.folder / "raw.wav", self.folder / "out.wav"
            subprocess.run(
                ["espeak-ng", "-v", voice_name, "-s", str(speed), "-w", str(raw), text], check=True
            )
            subprocess.run(
                ["sox", "-V1", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(out)], check=True
            )
            with wave.open(str(out), "rb") as w:
                samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
            loud = np.flatnonzero(np.abs(samples) > 200)
            self._cache[key] = scale(samples[loud[0] : loud[-1] + 1], -20.0)
        return self._cache[key]
