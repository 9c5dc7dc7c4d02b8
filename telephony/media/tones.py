"""Tone generation: sine sums frame by frame with continuous phase, DTMF keys, and the North
American call-progress tones (ringback 440+480 Hz 2 s on / 4 s off, busy 480+620 Hz 0.5/0.5).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt

from .errors import MediaError
from .frames import FRAME_SAMPLES, SAMPLE_RATE, Frame, SampleSource

logger = logging.getLogger(__name__)

__all__ = [
    "DTMF_COLUMNS",
    "DTMF_FREQUENCIES",
    "DTMF_ROWS",
    "ToneSource",
    "busy_tone",
    "dtmf_sequence",
    "dtmf_tone",
    "ringback_tone",
    "tone_samples",
]

#: Low group (rows) and high group (columns) of the DTMF keypad, Hz (ITU-T Q.23).
DTMF_ROWS: Final = (697.0, 770.0, 852.0, 941.0)
DTMF_COLUMNS: Final = (1209.0, 1336.0, 1477.0, 1633.0)
_KEYPAD: Final = ("123A", "456B", "789C", "*0#D")

#: Key -> (row frequency, column frequency).
DTMF_FREQUENCIES: Final[Mapping[str, tuple[float, float]]] = MappingProxyType(
    {
        key: (DTMF_ROWS[r], DTMF_COLUMNS[c])
        for r, keys in enumerate(_KEYPAD)
        for c, key in enumerate(keys)
    }
)

_FULL_SCALE: Final = 32768.0


class ToneSource:
    """A sum of sines, one frame per :meth:`next_frame`, phase-continuous across frames.

    ``level_dbfs`` is the RMS level of each component (see :func:`frames.dbfs`). ``cadence``
    alternates on and off times in seconds, starting on, and repeats; ``duration`` (seconds)
    ends the source, the last frame padded with silence. Without a duration it never ends.
    """

    def __init__(
        self,
        frequencies: Sequence[float],
        *,
        level_dbfs: float = -10.0,
        duration: float | None = None,
        cadence: Sequence[float] | None = None,
        sample_rate: int = SAMPLE_RATE,
        frame_samples: int = FRAME_SAMPLES,
    ) -> None:
        if not frequencies:
            raise MediaError("a tone needs at least one frequency")
        self.frequencies = tuple(float(f) for f in frequencies)
        self.level_dbfs = level_dbfs
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples
        self._amplitude = _FULL_SCALE * math.sqrt(2.0) * 10.0 ** (level_dbfs / 20.0)
        self._step = 2.0 * np.pi * np.asarray(self.frequencies) / sample_rate
        self._phase = np.zeros(len(self.frequencies))
        self._ramp = np.arange(frame_samples, dtype=np.float64)
        self._total = None if duration is None else round(duration * sample_rate)
        self._bounds: npt.NDArray[np.int64] | None = None
        if cadence:
            if len(cadence) % 2:
                raise MediaError("a cadence alternates on and off times: give an even count")
            self._bounds = np.cumsum([round(s * sample_rate) for s in cadence])
        #: Samples produced so far.
        self.position = 0

    def next_frame(self) -> Frame | None:
        n = self.frame_samples
        if self._total is not None and self.position >= self._total:
            return None
        phases = self._phase[:, None] + self._step[:, None] * self._ramp[None, :]
        signal = self._amplitude * np.sin(phases).sum(axis=0)
        self._phase = (self._phase + self._step * n) % (2.0 * np.pi)
        index = self.position + np.arange(n)
        if self._bounds is not None:
            segment = np.searchsorted(self._bounds, index % self._bounds[-1], side="right")
            signal[segment % 2 == 1] = 0.0
        if self._total is not None:
            signal[index >= self._total] = 0.0
        self.position += n
        frame: Frame = np.clip(np.rint(signal), -32768, 32767).astype(np.int16)
        return frame

    def __iter__(self) -> ToneSource:
        return self

    def __next__(self) -> Frame:
        frame = self.next_frame()
        if frame is None:
            raise StopIteration
        return frame


def tone_samples(
    frequencies: Sequence[float],
    seconds: float,
    *,
    level_dbfs: float = -10.0,
    sample_rate: int = SAMPLE_RATE,
) -> npt.NDArray[np.int16]:
    """``seconds`` of a steady tone as one array (no frame padding)."""
    total = round(seconds * sample_rate)
    source = ToneSource(
        frequencies, level_dbfs=level_dbfs, sample_rate=sample_rate, frame_samples=max(total, 1)
    )
    frame = source.next_frame()
    assert frame is not None
    return frame[:total]


def dtmf_tone(digit: str, *, duration: float = 0.1, level_dbfs: float = -10.0) -> ToneSource:
    """One DTMF key press: its row and column tones, each at ``level_dbfs``."""
    try:
        freqs = DTMF_FREQUENCIES[digit.upper()]
    except KeyError:
        raise MediaError(f"not a DTMF digit: {digit!r}") from None
    return ToneSource(freqs, level_dbfs=level_dbfs, duration=duration)


def dtmf_sequence(
    digits: str, *, tone: float = 0.1, gap: float = 0.1, level_dbfs: float = -10.0
) -> SampleSource:
    """Several key presses separated by silence (in-band dialling), as a frame source."""
    parts: list[npt.NDArray[np.int16]] = []
    gap_samples = np.zeros(round(gap * SAMPLE_RATE), dtype=np.int16)
    for digit in digits:
        if digit.upper() not in DTMF_FREQUENCIES:
            raise MediaError(f"not a DTMF digit: {digit!r}")
        parts.append(tone_samples(DTMF_FREQUENCIES[digit.upper()], tone, level_dbfs=level_dbfs))
        parts.append(gap_samples)
    samples = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
    return SampleSource(samples)


def ringback_tone(*, level_dbfs: float = -19.0) -> ToneSource:
    """North American ringback: 440+480 Hz, 2 s on, 4 s off, for ever."""
    return ToneSource((440.0, 480.0), level_dbfs=level_dbfs, cadence=(2.0, 4.0))


def busy_tone(*, level_dbfs: float = -19.0) -> ToneSource:
    """North American busy: 480+620 Hz, 0.5 s on, 0.5 s off, for ever."""
    return ToneSource((480.0, 620.0), level_dbfs=level_dbfs, cadence=(0.5, 0.5))
