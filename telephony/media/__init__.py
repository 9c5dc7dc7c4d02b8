"""Media in numpy: G.711 tables, 20 ms frames, tones, Goertzel/DTMF detection, WAV, mixing.

May import numpy (and webrtcvad); stdlib ``audioop`` is used where present for per-packet work.
Resampling and VAD come later (docs/architecture.md 2).
"""

from __future__ import annotations

from .errors import MediaError, WavFormatError
from .frames import (
    FRAME_BYTES,
    FRAME_MS,
    FRAME_SAMPLES,
    SAMPLE_RATE,
    Frame,
    FrameSource,
    SampleSource,
    dbfs,
    silence,
)
from .g711 import (
    ALAW_DECODE,
    ALAW_ENCODE,
    CODECS,
    HAVE_AUDIOOP,
    PCMA,
    PCMU,
    ULAW_DECODE,
    ULAW_ENCODE,
    AudioCodec,
    G711Codec,
    alaw_bytes_to_linear,
    alaw_to_pcm,
    linear_bytes_to_alaw,
    linear_bytes_to_ulaw,
    pcm_to_alaw,
    pcm_to_ulaw,
    ulaw_bytes_to_linear,
    ulaw_to_pcm,
)
from .goertzel import DtmfDetector, DtmfDetectorConfig, goertzel_power, tone_power_db
from .mixer import MixMatrix, mix, mix_bytes
from .tones import (
    DTMF_COLUMNS,
    DTMF_FREQUENCIES,
    DTMF_ROWS,
    ToneSource,
    busy_tone,
    dtmf_sequence,
    dtmf_tone,
    ringback_tone,
    tone_samples,
)
from .wav import WavSink, WavSource, read_wav

__all__ = [
    "ALAW_DECODE",
    "ALAW_ENCODE",
    "CODECS",
    "DTMF_COLUMNS",
    "DTMF_FREQUENCIES",
    "DTMF_ROWS",
    "FRAME_BYTES",
    "FRAME_MS",
    "FRAME_SAMPLES",
    "HAVE_AUDIOOP",
    "PCMA",
    "PCMU",
    "SAMPLE_RATE",
    "ULAW_DECODE",
    "ULAW_ENCODE",
    "AudioCodec",
    "DtmfDetector",
    "DtmfDetectorConfig",
    "Frame",
    "FrameSource",
    "G711Codec",
    "MediaError",
    "MixMatrix",
    "SampleSource",
    "ToneSource",
    "WavFormatError",
    "WavSink",
    "WavSource",
    "alaw_bytes_to_linear",
    "alaw_to_pcm",
    "busy_tone",
    "dbfs",
    "dtmf_sequence",
    "dtmf_tone",
    "goertzel_power",
    "linear_bytes_to_alaw",
    "linear_bytes_to_ulaw",
    "mix",
    "mix_bytes",
    "pcm_to_alaw",
    "pcm_to_ulaw",
    "read_wav",
    "ringback_tone",
    "silence",
    "tone_power_db",
    "tone_samples",
    "ulaw_bytes_to_linear",
    "ulaw_to_pcm",
]
