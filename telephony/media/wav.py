"""WAV files for prompts (read) and recordings (write): 8 kHz, 16-bit PCM.

:class:`WavSource` reads mono 8 kHz 16-bit files only; converting other rates, widths and channel
counts to that is a later issue (``sox in.wav -r 8000 -c 1 -b 16 out.wav`` does it today).
:class:`WavSink` writes its own 44-byte header and rewrites the RIFF and data sizes on every
:meth:`WavSink.flush`, so a recording is a valid file after each flush even if the process dies.
"""

from __future__ import annotations

import logging
import os
import struct
import sys
import wave
from types import TracebackType
from typing import BinaryIO, Final

import numpy as np
import numpy.typing as npt

from .errors import MediaError, WavFormatError
from .frames import FRAME_SAMPLES, SAMPLE_RATE, Frame, SampleSource

logger = logging.getLogger(__name__)

__all__ = ["WavSink", "WavSource", "read_wav"]

_HEADER: Final = struct.Struct("<4sI4s4sIHHIIHH4sI")
_HEADER_SIZE: Final = _HEADER.size  # 44
_LITTLE: Final = sys.byteorder == "little"


def read_wav(path: str | os.PathLike[str]) -> npt.NDArray[np.int16]:
    """All samples of an 8 kHz mono 16-bit PCM WAV file."""
    try:
        with wave.open(os.fspath(path), "rb") as wav:
            rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
            if (rate, channels, width) != (SAMPLE_RATE, 1, 2):
                raise WavFormatError(
                    f"{path}: {rate} Hz, {channels} channel(s), {8 * width}-bit; "
                    f"need {SAMPLE_RATE} Hz mono 16-bit"
                )
            data = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise WavFormatError(f"{path}: not a PCM WAV file: {exc}") from exc
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


class WavSource(SampleSource):
    """A prompt: frames of a WAV file (read whole into memory), looping or ending."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        loop: bool = False,
        frame_samples: int = FRAME_SAMPLES,
    ) -> None:
        self.path = os.fspath(path)
        super().__init__(read_wav(path), loop=loop, frame_samples=frame_samples)

    @property
    def duration(self) -> float:
        return self.samples.size / SAMPLE_RATE


class WavSink:
    """Appends int16 frames to a WAV file; mono, or stereo with one party per channel."""

    def __init__(
        self, path: str | os.PathLike[str], *, channels: int = 1, sample_rate: int = SAMPLE_RATE
    ) -> None:
        if channels not in (1, 2):
            raise MediaError("WavSink writes mono or stereo")
        self.path = os.fspath(path)
        self.channels = channels
        self.sample_rate = sample_rate
        #: Sample frames written (one sample per channel each).
        self.frames_written = 0
        self._file: BinaryIO | None = open(self.path, "wb")  # closed in close()
        self._file.write(self._header(0))
        self._file.flush()  # a valid (empty) file from the start
        self._flushed_bytes = 0

    @property
    def duration(self) -> float:
        return self.frames_written / self.sample_rate

    @property
    def closed(self) -> bool:
        return self._file is None

    def _header(self, data_bytes: int) -> bytes:
        block = 2 * self.channels
        return _HEADER.pack(
            b"RIFF",
            36 + data_bytes,
            b"WAVE",
            b"fmt ",
            16,
            1,  # PCM
            self.channels,
            self.sample_rate,
            self.sample_rate * block,
            block,
            16,
            b"data",
            data_bytes,
        )

    def _out(self) -> BinaryIO:
        if self._file is None:
            raise MediaError(f"{self.path}: WavSink is closed")
        return self._file

    def write(self, frame: npt.NDArray[np.int16]) -> None:
        """Append samples: shape (n,) for mono, (n, 2) interleaved for stereo."""
        samples = np.asarray(frame, dtype=np.int16)
        if self.channels == 2 and (samples.ndim != 2 or samples.shape[1] != 2):
            raise MediaError("a stereo WavSink takes (n, 2) frames; see write_stereo")
        self._append(samples)

    def write_stereo(self, left: Frame, right: Frame) -> None:
        """Append one frame per channel (e.g. customer left, agent right)."""
        if self.channels != 2:
            raise MediaError("write_stereo needs a stereo WavSink")
        if left.shape != right.shape:
            raise MediaError("left and right frames differ in length")
        self._append(np.column_stack((left, right)).astype(np.int16, copy=False))

    def _append(self, samples: npt.NDArray[np.int16]) -> None:
        data = samples.tobytes() if _LITTLE else samples.astype("<i2").tobytes()
        self._out().write(data)
        self.frames_written += samples.shape[0]

    def flush(self) -> None:
        """Make the file valid as it stands: rewrite the sizes, flush to the OS."""
        out = self._out()
        data_bytes = self.frames_written * 2 * self.channels
        if data_bytes != self._flushed_bytes:
            out.seek(0)
            out.write(self._header(data_bytes))
            out.seek(0, os.SEEK_END)
            self._flushed_bytes = data_bytes
        out.flush()

    def close(self) -> None:
        if self._file is None:
            return
        self.flush()
        self._file.close()
        self._file = None

    def __enter__(self) -> WavSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
