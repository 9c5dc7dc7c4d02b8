"""The unit of media work: a 20 ms frame of 8 kHz signed 16-bit mono audio (numpy int16).

Everything between decoding and encoding (mixing, detection, recording, prompts) works on these
frames; a frame source hands out one frame per tick of the 20 ms media clock.
"""

from __future__ import annotations

import logging
import math
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

__all__ = [
    "FRAME_BYTES",
    "FRAME_MS",
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "Frame",
    "FrameSource",
    "SampleSource",
    "dbfs",
    "silence",
]

SAMPLE_RATE: Final = 8000
FRAME_MS: Final = 20
FRAME_SAMPLES: Final = SAMPLE_RATE * FRAME_MS // 1000
#: Bytes of one frame as 16-bit linear PCM.
FRAME_BYTES: Final = 2 * FRAME_SAMPLES
_FULL_SCALE: Final = 32768.0

#: A frame (or any run) of int16 samples.
Frame = npt.NDArray[np.int16]


class FrameSource(Protocol):
    """Anything that hands out audio one frame at a time (prompts, tones, WAV files)."""

    def next_frame(self) -> Frame | None:
        """The next FRAME_SAMPLES samples, or None when the source has ended."""
        ...


def silence(samples: int = FRAME_SAMPLES) -> Frame:
    """A new all-zero frame."""
    return np.zeros(samples, dtype=np.int16)


def dbfs(samples: npt.NDArray[np.integer] | npt.NDArray[np.floating]) -> float:
    """RMS level relative to full scale (a full-scale square wave is 0 dBFS, a full-scale sine
    -3.01 dBFS); -inf for digital silence or an empty frame."""
    if samples.size == 0:
        return -math.inf
    x = samples.astype(np.float64)
    mean_square = float(np.dot(x, x)) / x.size
    if mean_square <= 0.0:
        return -math.inf
    return 10.0 * math.log10(mean_square / (_FULL_SCALE * _FULL_SCALE))


class SampleSource:
    """Frames cut from samples in memory; the last one is padded with silence.

    With ``loop`` the samples repeat for ever (music on hold); otherwise the source ends.
    """

    def __init__(
        self,
        samples: npt.NDArray[np.int16],
        *,
        loop: bool = False,
        frame_samples: int = FRAME_SAMPLES,
    ) -> None:
        self.samples = np.ascontiguousarray(samples, dtype=np.int16).reshape(-1)
        self.loop = loop
        self.frame_samples = frame_samples
        self.position = 0

    def next_frame(self) -> Frame | None:
        n, size = self.frame_samples, self.samples.size
        if size == 0:
            return None
        if self.position >= size:
            if not self.loop:
                return None
            self.position = 0
        end = self.position + n
        if end <= size:
            frame = self.samples[self.position : end].copy()
            self.position = end
            return frame
        head = self.samples[self.position :]
        if self.loop:
            # Wrap around so a looped prompt has no gap at the seam.
            reps = -(-(n - head.size) // size)
            tail = np.tile(self.samples, reps)[: n - head.size]
            self.position = (n - head.size) % size
            return np.concatenate([head, tail])
        self.position = size
        return np.concatenate([head, np.zeros(n - head.size, dtype=np.int16)])

    def __iter__(self) -> SampleSource:
        return self

    def __next__(self) -> Frame:
        frame = self.next_frame()
        if frame is None:
            raise StopIteration
        return frame
