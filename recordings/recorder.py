"""Stereo call recording: customer LEFT, agent RIGHT, 8 kHz 16-bit PCM WAV.

The B2BUA pushes each side's decoded audio as it arrives (any size, late, lost or in bursts) and
the 20 ms media clock calls :meth:`CallRecorder.tick` once per frame; each tick takes one frame
per side from a small per-side buffer (silence when a side has nothing), so the file is aligned
to the call's clock, not to packet arrival. Pushes are by side, not by leg: when a transfer or a
pickup changes who is on the agent side, the new leg simply pushes as "agent" into the same file.

Crash safety: the file is a valid WAV from the moment it is created. Ticks collect audio in
memory; every ``flush_every_frames`` ticks (default 50 = 1 s) the frames are interleaved in one
numpy operation, appended with one ``write(2)``, and the RIFF and data sizes are rewritten in
place. The first flush comes after 1..``flush_every_frames`` ticks, spread by the file name, so
that calls answered on the same tick do not all flush on the same tick. A ``kill -9`` loses at
most the audio since the last flush: what was written sits in the OS page cache, which outlives
the process. ``fsync`` adds durability against an OS crash or power loss at the cost of a
blocking disk round trip per flush (see bench/bench_recording.py). Where the file operations run
is the ``writer``'s choice (recordings/writer.py): here, or on one thread for every recording.
"""

from __future__ import annotations

import logging
import os
import struct
import sys
import zlib
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Literal

import numpy as np

from telephony.media import FRAME_BYTES, FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE

from .analytics import SpeechAnalytics, TalkAnalytics
from .errors import RecordingError
from .writer import DirectFiles, FileWriter, WavFile

logger = logging.getLogger(__name__)

__all__ = ["CallRecorder", "RecordingResult", "Side"]

#: Whose audio a push carries; the customer is the left channel, the agent the right.
Side = Literal["customer", "agent"]

_CHANNELS: Final = 2
_BLOCK: Final = 2 * _CHANNELS  # bytes per stereo sample frame
_HEADER: Final = struct.Struct("<4sI4s4sIHHIIHH4sI")  # canonical 44-byte PCM WAV header
_MAX_DATA_BYTES: Final = 0xFFFFFFFF - (_HEADER.size - 8)  # RIFF sizes are 32-bit
_SILENT_FRAME: Final = bytes(FRAME_BYTES)
_LITTLE: Final = sys.byteorder == "little"


def _wav_header(data_bytes: int) -> bytes:
    return _HEADER.pack(
        b"RIFF",
        _HEADER.size - 8 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        _CHANNELS,
        SAMPLE_RATE,
        SAMPLE_RATE * _BLOCK,
        _BLOCK,
        16,
        b"data",
        data_bytes,
    )


@dataclass(frozen=True)
class RecordingResult:
    """What a closed recording holds."""

    path: str
    """The WAV file."""
    duration_seconds: float
    """Audio in the file: ticks * 20 ms (less only if writing failed)."""
    frames: int
    """Media-clock ticks recorded (20 ms stereo frames)."""
    dropped_samples: int
    """Samples (both sides together) thrown away because a side's buffer overflowed: bursts
    beyond ``max_buffered_ms``."""
    customer_missing_frames: int
    """Ticks where the customer side had no audio (silence written): loss, late packets, hold."""
    agent_missing_frames: int
    """Ticks where the agent side had no audio; equal to ``frames`` means one-way audio."""
    analytics: TalkAnalytics | None
    """Talk statistics, or None when the recorder ran without analytics."""
    error: str | None = None
    """Why writing stopped early (disk full, size limit); None when the file is complete."""


class CallRecorder:
    """One call's stereo WAV recording, fed by side and clocked by :meth:`tick`.

    ``flush_every_frames`` bounds what a crash can lose (50 frames = 1 s); ``max_buffered_ms``
    bounds each side's buffer: beyond it the oldest audio is dropped (and counted) so a burst of
    packets cannot add latency without limit. ``fsync`` syncs the file to disk on every flush;
    it blocks whoever writes: the caller with the default ``writer`` (:class:`DirectFiles`),
    the writer's thread with a :class:`~recordings.writer.WriterThread` (the engine's: file
    creates and appends off the event loop). ``analytics``: True runs a default
    :class:`SpeechAnalytics`, False none, or pass your own.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        flush_every_frames: int = 50,
        max_buffered_ms: int = 100,
        fsync: bool = False,
        analytics: SpeechAnalytics | bool = True,
        writer: FileWriter | None = None,
    ) -> None:
        if flush_every_frames < 1:
            raise RecordingError("flush_every_frames must be at least 1")
        if max_buffered_ms < 2 * FRAME_MS:
            raise RecordingError(f"max_buffered_ms must be at least {2 * FRAME_MS}")
        self.path = os.fspath(path)
        self.flush_every_frames = flush_every_frames
        self.fsync = fsync
        self._max_bytes = 2 * (max_buffered_ms * SAMPLE_RATE // 1000)
        if isinstance(analytics, SpeechAnalytics):
            self._analytics: SpeechAnalytics | None = analytics
        else:
            self._analytics = SpeechAnalytics() if analytics else None
        #: Ticks so far (20 ms stereo frames).
        self.frames = 0
        #: Samples dropped from overflowing side buffers (both sides together).
        self.dropped_samples = 0
        #: Ticks where a side had no audio and silence was written (loss, lateness, hold).
        self.customer_missing_frames = 0
        self.agent_missing_frames = 0
        #: Why writing stopped (the call goes on; audio is discarded), or None.
        self.error: str | None = None
        # Per side: audio pushed but not yet taken by a tick.
        self._customer = bytearray()
        self._agent = bytearray()
        self._buffers = {"customer": self._customer, "agent": self._agent}
        # Per side: frames ticked but not yet written.
        self._pending_left = bytearray()
        self._pending_right = bytearray()
        self._pending_frames = 0
        # The first flush comes after 1..flush_every_frames ticks, spread by the file name, so
        # that calls answered on the same tick do not all write (and fsync) on the same tick.
        self._flush_at = flush_every_frames - zlib.crc32(self.path.encode()) % flush_every_frames
        self._data_bytes = 0
        self._writer = writer or DirectFiles()
        # A valid, empty WAV from the start (DirectFiles raises RecordingError if it cannot be
        # made; a WriterThread reports it at the first flush).
        self._file: WavFile | None = self._writer.create(self.path, _wav_header(0))
        logger.debug("recording %s", self.path)

    @property
    def closed(self) -> bool:
        return self._file is None

    @property
    def duration_seconds(self) -> float:
        """Audio written after the last flush (with a WriterThread: handed to its thread, on
        disk once it has written it)."""
        return self._data_bytes / _BLOCK / SAMPLE_RATE

    def buffer(self, side: Side) -> tuple[bytearray, int]:
        """The buffer of `side`'s audio not yet ticked, and the bytes it may hold: for a
        producer that appends little-endian 16-bit PCM itself (the native RTP relay), keeping
        the newest `max` bytes as `push` does (what it drops is its to count)."""
        try:
            return self._buffers[side], self._max_bytes
        except KeyError:
            raise RecordingError(f"side is 'customer' or 'agent', not {side!r}") from None

    def push(self, side: Side, pcm: bytes | bytearray | np.ndarray) -> None:
        """Queue decoded audio of one side: int16 samples, or their bytes (little-endian).

        Any number of samples; the next ticks take them 160 at a time.
        """
        try:
            buffer = self._buffers[side]
        except KeyError:
            raise RecordingError(f"side is 'customer' or 'agent', not {side!r}") from None
        if self._file is None:
            raise RecordingError(f"{self.path}: recorder is closed")
        if isinstance(pcm, np.ndarray):
            if pcm.dtype != np.int16:
                raise RecordingError(f"push takes int16 samples, not {pcm.dtype}")
            pcm = pcm.tobytes() if _LITTLE else pcm.astype("<i2").tobytes()
        elif len(pcm) % 2:
            raise RecordingError("16-bit audio has an even number of bytes")
        buffer += pcm
        excess = len(buffer) - self._max_bytes
        if excess > 0:
            del buffer[:excess]
            self.dropped_samples += excess // 2

    def tick(self, _frame: int | None = None) -> None:
        """One 20 ms tick of the media clock: record one stereo frame. (It takes the clock's
        frame number, unused, so that it can subscribe to a MediaClock as it is.)"""
        self.advance(1)

    def advance(self, frames: int) -> None:
        """`frames` ticks at once (a clock that hands recorders their ticks in batches): the
        same file and analytics as that many calls of `tick`, each side's audio taken in one
        slice."""
        if self._file is None:
            raise RecordingError(f"{self.path}: recorder is closed")
        if frames <= 0:
            return
        # A side short of a frame contributes silence and keeps its partial frame for the next
        # tick, so 30 ms packets settle one frame late instead of being chopped into gaps.
        left, missing = _take(self._customer, frames)
        self.customer_missing_frames += missing
        right, missing = _take(self._agent, frames)
        self.agent_missing_frames += missing
        self.frames += frames
        if self._analytics is not None:
            self._analytics.feed_frames(left, right)
        if self.error is not None:
            return
        self._pending_left += left
        self._pending_right += right
        self._pending_frames += frames
        if self._pending_frames >= self._flush_at:
            self._flush_at = self.flush_every_frames
            self.flush()

    def flush(self) -> None:
        """Append the pending frames and rewrite the header: the file is valid as it stands."""
        file = self._file
        if file is None or self._pending_frames == 0 or self.error is not None:
            return
        samples = self._pending_frames * FRAME_SAMPLES
        stereo = np.empty(2 * samples, dtype="<i2")
        stereo[0::2] = np.frombuffer(self._pending_left, dtype="<i2")
        stereo[1::2] = np.frombuffer(self._pending_right, dtype="<i2")
        self._pending_left = bytearray()
        self._pending_right = bytearray()
        self._pending_frames = 0
        data = stereo.tobytes()
        if self._data_bytes + len(data) > _MAX_DATA_BYTES:
            self._fail("WAV size limit (4 GiB) reached")
            return
        self._writer.append(file, data, _wav_header(self._data_bytes + len(data)), fsync=self.fsync)
        if file.error is not None:  # this write, or an earlier one on the writer's thread
            self._data_bytes = file.written  # what the file holds: nothing is written after
            self._fail(file.error)
            return
        self._data_bytes += len(data)

    def _fail(self, reason: str) -> None:
        self.error = reason
        self._pending_left.clear()
        self._pending_right.clear()
        self._pending_frames = 0
        file = self._file
        if file is not None and file.error == reason and file.reported:
            return  # the writer's thread said it already
        if file is not None:
            file.reported = True
        logger.error("%s: recording stopped: %s", self.path, reason)

    def result(self) -> RecordingResult:
        """What the recording holds so far (after the last flush)."""
        return RecordingResult(
            path=self.path,
            duration_seconds=round(self.duration_seconds, 3),
            frames=self.frames,
            dropped_samples=self.dropped_samples,
            customer_missing_frames=self.customer_missing_frames,
            agent_missing_frames=self.agent_missing_frames,
            analytics=self._analytics.result() if self._analytics is not None else None,
            error=self.error,
        )

    def close(self) -> RecordingResult:
        """Flush what is pending, close the file and report; closing twice reports again."""
        file = self._file
        if file is not None:
            self.flush()
            self._writer.close(file)
            if file.error is not None and self.error is None:
                self._data_bytes = min(self._data_bytes, file.written)
                self._fail(file.error)
            self._file = None
            logger.debug("recorded %s: %.2f s", self.path, self.duration_seconds)
        return self.result()

    def __enter__(self) -> CallRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _take(buffer: bytearray, frames: int) -> tuple[bytes, int]:
    """Up to `frames` whole frames from the front of `buffer`, silence for those it lacks (at
    the end: what has not arrived yet), and how many it lacked."""
    whole = min(len(buffer) // FRAME_BYTES, frames)
    size = whole * FRAME_BYTES
    if whole == frames:
        audio = bytes(buffer[:size])
        del buffer[:size]
        return audio, 0
    audio = bytes(buffer[:size]) + _SILENT_FRAME * (frames - whole)
    del buffer[:size]
    return audio, frames - whole
