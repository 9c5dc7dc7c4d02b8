"""Recordings whose writer died: a ``kill -9`` of the engine mid-call leaves a valid WAV (see
recorder.py) whose header may lag the data by one flush, and no analytics. At the next start
:func:`recover_recording` makes the header count every whole 20 ms frame on disk and computes
the talk analytics from the audio, as :class:`CallRecorder` would have at the end of the call.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from telephony.media import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE

from .analytics import SpeechAnalytics, TalkAnalytics, TalkTimeline
from .errors import RecordingError
from .recorder import _BLOCK, _CHANNELS, _HEADER, _MAX_DATA_BYTES, _wav_header

logger = logging.getLogger(__name__)

__all__ = ["RecoveredRecording", "recover_recording"]

_STEREO_FRAME: Final = FRAME_SAMPLES * _BLOCK  # bytes of one 20 ms stereo frame
_CHUNK_FRAMES: Final = 500  # 10 s of audio read at a time


@dataclass(frozen=True)
class RecoveredRecording:
    """What a recording left by a crash holds."""

    path: str
    duration_seconds: float
    """Audio in the file now: whole 20 ms frames."""
    frames: int
    """20 ms stereo frames."""
    recovered_seconds: float
    """Audio that was on disk beyond what the old header counted (0 when it was current)."""
    analytics: TalkAnalytics | None
    """Talk statistics of the audio, or None when asked for none."""


def recover_recording(
    path: str | os.PathLike[str], *, analytics: SpeechAnalytics | bool = True
) -> RecoveredRecording:
    """Repair the header of a recording CallRecorder left unfinished and analyse its audio.

    Only this package's format is accepted (canonical 44-byte header, PCM, 2 channels, 8 kHz,
    16 bit); anything else raises RecordingError and the file is left as it is. Audio is never
    removed: a trailing partial frame stays in the file, uncounted.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDWR | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise RecordingError(f"{name}: cannot open recording: {exc}") from exc
    try:
        header = os.pread(fd, _HEADER.size, 0)
        on_disk = os.fstat(fd).st_size - _HEADER.size
        counted = _check_header(name, header)
        data_bytes = min(max(on_disk, 0), _MAX_DATA_BYTES) // _STEREO_FRAME * _STEREO_FRAME
        if data_bytes != counted:
            os.pwrite(fd, _wav_header(data_bytes), 0)
            logger.info(
                "%s: header now counts %d bytes of audio (it counted %d)", name, data_bytes, counted
            )
        speech: SpeechAnalytics | None = None
        if isinstance(analytics, SpeechAnalytics):
            speech = analytics
        elif analytics:
            speech = SpeechAnalytics()
        if speech is not None:
            _analyse(fd, data_bytes, speech)
    except OSError as exc:
        raise RecordingError(f"{name}: cannot recover recording: {exc}") from exc
    finally:
        os.close(fd)
    frames = data_bytes // _STEREO_FRAME
    return RecoveredRecording(
        path=name,
        duration_seconds=round(data_bytes / _BLOCK / SAMPLE_RATE, 3),
        frames=frames,
        recovered_seconds=round(max(data_bytes - counted, 0) / _BLOCK / SAMPLE_RATE, 3),
        analytics=speech.result() if speech is not None else None,
    )


def talk_timeline(path: str | os.PathLike[str], *, gap_ms: int = 300) -> dict[str, Any]:
    """Who spoke when in a finished recording of this engine (customer left, agent right):
    {"duration_seconds", "segments": [{"who", "start", "end"}], "analytics"} from the same VAD
    and smoothing as the call's analytics. Read only; RecordingError for anything else."""
    name = os.fspath(path)
    timeline = TalkTimeline(gap_frames=gap_ms // FRAME_MS)
    speech = SpeechAnalytics(timeline=timeline)
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise RecordingError(f"{name}: cannot open recording: {exc}") from exc
    try:
        counted = _check_header(name, os.pread(fd, _HEADER.size, 0))
        on_disk = os.fstat(fd).st_size - _HEADER.size
        data_bytes = min(counted, max(on_disk, 0)) // _STEREO_FRAME * _STEREO_FRAME
        _analyse(fd, data_bytes, speech)
    except OSError as exc:
        raise RecordingError(f"{name}: cannot read recording: {exc}") from exc
    finally:
        os.close(fd)
    return {
        "duration_seconds": timeline.duration_seconds,
        "segments": timeline.segments(),
        "analytics": speech.result().to_dict(),
    }


def _check_header(name: str, header: bytes) -> int:
    """The data size the header counts; RecordingError unless it is our format."""
    if len(header) < _HEADER.size:
        raise RecordingError(f"{name}: too short for a WAV header ({len(header)} bytes)")
    (riff, _, wave, fmt, fmt_size, codec, channels, rate, _, block, bits, data, size) = (
        _HEADER.unpack(header)
    )
    if (riff, wave, fmt, data) != (b"RIFF", b"WAVE", b"fmt ", b"data") or fmt_size != 16:
        raise RecordingError(f"{name}: not a recording of this engine (unexpected WAV layout)")
    if (codec, channels, rate, block, bits) != (1, _CHANNELS, SAMPLE_RATE, _BLOCK, 16):
        raise RecordingError(
            f"{name}: not 8 kHz 16-bit stereo PCM (codec {codec}, {channels} channels,"
            f" {rate} Hz, {bits} bit)"
        )
    return int(size)


def _analyse(fd: int, data_bytes: int, speech: SpeechAnalytics) -> None:
    offset = _HEADER.size
    end = _HEADER.size + data_bytes
    while offset < end:
        chunk = os.pread(fd, min(_CHUNK_FRAMES * _STEREO_FRAME, end - offset), offset)
        if len(chunk) < _STEREO_FRAME:
            break
        chunk = chunk[: len(chunk) // _STEREO_FRAME * _STEREO_FRAME]
        offset += len(chunk)
        stereo = np.frombuffer(chunk, dtype="<i2")
        left, right = stereo[0::2], stereo[1::2]
        for start in range(0, left.size, FRAME_SAMPLES):
            stop = start + FRAME_SAMPLES
            speech.feed(left[start:stop], right[start:stop])
