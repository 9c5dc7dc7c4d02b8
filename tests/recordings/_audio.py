"""Audio helpers for the recordings tests: tones, a synthetic voice, WAV reads, spectra."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

RATE = 8000


def tone(freq: float, seconds: float, amplitude: float = 8000.0) -> np.ndarray:
    n = round(seconds * RATE)
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(n) / RATE)).astype(np.int16)


def voice(seconds: float, f0: float = 120.0, amplitude: float = 8000.0) -> np.ndarray:
    """A vowel-like harmonic series with vibrato: webrtcvad takes it for speech (a pure tone it
    often takes for noise after adapting)."""
    n = round(seconds * RATE)
    t = np.arange(n) / RATE
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / RATE
    x = sum(np.sin(k * phase) / k for k in range(1, int(3500 / f0)))
    return (np.asarray(x) / np.abs(x).max() * amplitude).astype(np.int16)


def read_stereo(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """Left and right channels of an 8 kHz 16-bit stereo WAV (checks the format)."""
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, RATE)
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return data[0::2].astype(np.int16), data[1::2].astype(np.int16)


def level_db(samples: np.ndarray, freq: float) -> float:
    """Level (dB, arbitrary reference) of the FFT bin nearest ``freq``."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(samples.size)))
    bin_ = round(freq * samples.size / RATE)
    return float(20 * np.log10(spectrum[bin_ - 2 : bin_ + 3].max() + 1e-9))
