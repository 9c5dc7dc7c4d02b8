"""Single-frequency power (the DFT term Goertzel's recursion computes) and in-band DTMF detection.

Numpy evaluates the term as one matrix product with cached cosine/sine rows, which for a
handful of frequencies over a 160-sample frame is far cheaper than running the recursion in
Python; the result is the same |X(f)|^2.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from .frames import FRAME_SAMPLES, SAMPLE_RATE
from .tones import DTMF_COLUMNS, DTMF_ROWS

logger = logging.getLogger(__name__)

__all__ = ["DtmfDetector", "DtmfDetectorConfig", "goertzel_power", "tone_power_db"]

_KEYPAD: Final = ("123A", "456B", "789C", "*0#D")
# Relative frequency offsets probed around a candidate tone to measure its true power and
# frequency: the 50 Hz resolution of a 20 ms window alone cannot tell 1.5% from 3.5%.
_PROBES: Final = np.linspace(-0.04, 0.04, 17)
# Drift allowed within one press: one probe step.
_STEADY: Final = 0.0051
_FULL_SCALE_POWER: Final = 32768.0 * 32768.0

Samples = npt.NDArray[np.integer] | npt.NDArray[np.floating]


@functools.lru_cache(maxsize=64)
def _basis(frequencies: tuple[float, ...], n: int, sample_rate: int) -> npt.NDArray[np.float64]:
    """Cosine rows then sine rows for ``frequencies`` over ``n`` samples (shared, read-only)."""
    w = 2.0 * np.pi * np.asarray(frequencies)[:, None] / sample_rate * np.arange(n)[None, :]
    rows: npt.NDArray[np.float64] = np.concatenate([np.cos(w), np.sin(w)])
    rows.setflags(write=False)
    return rows


def _powers(x: npt.NDArray[np.float64], basis: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    v = basis @ x
    k = v.size // 2
    # Scaled so a sine of RMS r at that frequency gives about r^2 (a mean-square power).
    result: npt.NDArray[np.float64] = (v[:k] * v[:k] + v[k:] * v[k:]) * (2.0 / (x.size * x.size))
    return result


def goertzel_power(samples: Samples, frequency: float, sample_rate: int = SAMPLE_RATE) -> float:
    """Mean-square power of the component at ``frequency`` (a sine of RMS r gives ~r^2)."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return 0.0
    return float(_powers(x, _basis((float(frequency),), x.size, sample_rate))[0])


def tone_power_db(samples: Samples, frequency: float, sample_rate: int = SAMPLE_RATE) -> float:
    """Power at ``frequency`` relative to the total power, in dB (0 for a pure tone; -inf for
    silence). A test's question "is this mostly a 1 kHz tone?" is ``tone_power_db(...) > -3``."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    total = float(np.dot(x, x)) / x.size if x.size else 0.0
    power = goertzel_power(x, frequency, sample_rate)
    if total <= 0.0 or power <= 0.0:
        return -math.inf
    return 10.0 * math.log10(power / total)


@dataclass(frozen=True, slots=True)
class DtmfDetectorConfig:
    """Thresholds of :class:`DtmfDetector` (defaults in the spirit of ITU-T Q.24)."""

    #: Weakest level accepted for each of the two tones, dBFS (RMS).
    min_tone_dbfs: float = -36.0
    #: How much stronger the low (row) tone may be than the high (column) tone, dB.
    max_low_over_high_db: float = 8.0
    #: How much stronger the high (column) tone may be than the low (row) tone, dB.
    max_high_over_low_db: float = 4.0
    #: How far the strongest row/column must stand above the other rows/columns, dB.
    min_peak_margin_db: float = 8.0
    #: Share of a window's power the two tones must carry (windows at a tone's edges are
    #: partly silence, so this is lower than the next one).
    min_tone_share: float = 0.7
    #: Share at least one window of a press must reach: a real key's tones carry ~100% of it,
    #: speech that happens to hit two DTMF frequencies stays well below.
    min_peak_tone_share: float = 0.9
    #: Largest accepted deviation from the nominal frequencies (Q.24: work at 1.5%, not 3.5%).
    max_frequency_deviation: float = 0.02
    #: Tone time before a digit is reported, ms.
    min_duration_ms: int = 40
    #: Time without the tone that ends a press, ms; shorter dropouts stay the same press.
    release_ms: int = 20
    #: Analysis window, samples (160 = 20 ms resolves the 73 Hz row spacing).
    window: int = FRAME_SAMPLES
    #: Step between windows, samples (half a window: finer timing than whole frames).
    hop: int = FRAME_SAMPLES // 2
    #: Sample rate of the audio fed in, Hz.
    sample_rate: int = SAMPLE_RATE


class DtmfDetector:
    """In-band DTMF: feed 20 ms frames, get each key press once.

    Every ``hop`` samples a window is checked: the strongest row and column tone must both be
    loud enough, near their nominal frequencies, within the twist limits, clearly above the
    other rows and columns, and together carry most of the window's power. A digit is reported
    once the same key has been seen at a steady frequency for ``min_duration_ms``, with at least
    one window where its tones carry nearly all the power; the press ends after ``release_ms``
    without it. Tuned against synthetic vowels and espeak-ng speech (no talk-off) and Q.24-style
    cases (1.5% frequency error accepted, 3.5% refused, 40 ms tones found at any alignment).
    """

    def __init__(self, config: DtmfDetectorConfig | None = None) -> None:
        self.config = cfg = config or DtmfDetectorConfig()
        tones = (*DTMF_ROWS, *DTMF_COLUMNS)
        self._coarse = _basis(tones, cfg.window, cfg.sample_rate)
        # Per tone, the probes around it.
        self._fine = [
            _basis(tuple(float(f) for f in tone * (1.0 + _PROBES)), cfg.window, cfg.sample_rate)
            for tone in tones
        ]
        min_samples = cfg.min_duration_ms * cfg.sample_rate // 1000
        self._min_windows = max(1, 1 + math.ceil((min_samples - cfg.window) / cfg.hop))
        self._release_windows = max(1, round(cfg.release_ms * cfg.sample_rate / 1000 / cfg.hop))
        self._min_tone = _FULL_SCALE_POWER * 10.0 ** (cfg.min_tone_dbfs / 10.0)
        self._low_over_high = 10.0 ** (cfg.max_low_over_high_db / 10.0)
        self._high_over_low = 10.0 ** (cfg.max_high_over_low_db / 10.0)
        self._margin = 10.0 ** (cfg.min_peak_margin_db / 10.0)
        self._candidate: str | None = None
        self._pressed: str | None = None
        self.reset()

    def reset(self) -> None:
        """Forget buffered audio and any press in progress (e.g. when the source changes)."""
        self._buffer = np.zeros(0, dtype=np.float64)
        self._candidate = None
        self._run = 0
        self._pressed = None
        self._gap = 0
        self._last_deviation = (0.0, 0.0)
        self._run_deviation = (0.0, 0.0)
        self._last_share = 0.0
        self._run_share = 0.0

    def feed(self, frame: Samples) -> str | None:
        """Feed samples (normally one frame); return the digit(s) whose press they confirm."""
        cfg = self.config
        self._buffer = np.concatenate([self._buffer, np.asarray(frame, dtype=np.float64)])
        found: list[str] = []
        while self._buffer.size >= cfg.window:
            digit = self._step(self.classify(self._buffer[: cfg.window]))
            if digit is not None:
                found.append(digit)
            self._buffer = self._buffer[cfg.hop :]
        return "".join(found) or None

    def classify(self, window: npt.NDArray[np.float64]) -> str | None:
        """The key whose tones dominate one analysis window, if any (no debouncing)."""
        total = float(np.dot(window, window)) / window.size
        if total < self._min_tone:
            return None  # too quiet to hold even one tone: the common case, kept cheap
        # Coarse pass at the nominal frequencies: rejects almost every non-DTMF window.
        powers = _powers(window, self._coarse).tolist()
        rows, cols = powers[:4], powers[4:]
        r = max(range(4), key=rows.__getitem__)
        c = max(range(4), key=cols.__getitem__)
        # A tone 4% off its nominal frequency loses up to ~3 dB here; the fine pass decides.
        if rows[r] < 0.5 * self._min_tone or cols[c] < 0.5 * self._min_tone:
            return None
        margin = self._margin
        if any(p * margin > rows[r] for i, p in enumerate(rows) if i != r):
            return None
        if any(p * margin > cols[c] for i, p in enumerate(cols) if i != c):
            return None
        low, low_dev = self._refine(window, r)
        high, high_dev = self._refine(window, 4 + c)
        limit = self.config.max_frequency_deviation
        if abs(low_dev) > limit or abs(high_dev) > limit:
            return None
        if low < self._min_tone or high < self._min_tone:
            return None
        if low > high * self._low_over_high or high > low * self._high_over_low:
            return None
        share = (low + high) / total
        if share < self.config.min_tone_share:
            return None
        self._last_deviation = (low_dev, high_dev)
        self._last_share = share
        return _KEYPAD[r][c]

    def _refine(self, window: npt.NDArray[np.float64], tone: int) -> tuple[float, float]:
        """Peak power near a nominal tone and its relative frequency offset."""
        probes = _powers(window, self._fine[tone])
        best = int(np.argmax(probes))
        return float(probes[best]), float(_PROBES[best])

    def _step(self, seen: str | None) -> str | None:
        if seen is not None and seen == self._pressed:
            self._gap = 0
            return None
        if self._pressed is not None:
            self._gap += 1
            if self._gap >= self._release_windows:
                self._pressed = None
        if seen is None:
            self._candidate = None
            self._run = 0
            return None
        # A key's tones keep their frequency; speech that happens to hit two DTMF tones glides.
        low, high = self._last_deviation
        steady = (
            abs(low - self._run_deviation[0]) <= _STEADY
            and abs(high - self._run_deviation[1]) <= _STEADY
        )
        if seen == self._candidate and steady:
            self._run += 1
            self._run_share = max(self._run_share, self._last_share)
        else:
            self._candidate, self._run = seen, 1
            self._run_deviation = self._last_deviation
            self._run_share = self._last_share
        if (
            self._run >= self._min_windows
            and self._pressed is None
            and self._run_share >= self.config.min_peak_tone_share
        ):
            self._pressed, self._gap = seen, 0
            self._candidate, self._run = None, 0
            logger.debug("in-band DTMF digit %s", seen)
            return seen
        return None
