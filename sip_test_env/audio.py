"""Test audio: make WAV prompts and analyse what a peer recorded.

Levels are in dBFS relative to a full-scale sine (a sine of peak 32767 is 0 dBFS), so a tone
written at -12 dBFS measures -12 dBFS. Tone detection works on 20 ms frames: a frame holds the
tone when the sinusoid fitted at that frequency explains most of the frame's energy and the
frame is louder than -40 dBFS. That survives G.711 (mu-law noise is ~-38 dB below the signal)
and rejects silence, speech, DTMF pairs and tones more than ~40 Hz away.
"""

from __future__ import annotations

import logging
import math
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

__all__ = [
    "FULL_SCALE",
    "RATE",
    "band_energy_db",
    "first_tone_time",
    "level_dbfs",
    "normalized_xcorr",
    "read_wav",
    "tone_frames",
    "tone_present",
    "tone_samples",
    "ulaw_encode",
    "write_silence_wav",
    "write_tone_wav",
    "write_ulaw",
    "write_wav",
]

RATE = 8000
FULL_SCALE = 32767.0
_SINE_RMS_FS = FULL_SCALE / math.sqrt(2.0)
_FRAME_SECONDS = 0.02

Samples = npt.NDArray[np.int16]


def _amplitude(dbfs: float) -> float:
    return float(FULL_SCALE * 10.0 ** (dbfs / 20.0))


def tone_samples(freq: float, seconds: float, rate: int = RATE, dbfs: float = -12.0) -> Samples:
    """A sine of `freq` Hz, `seconds` long, peak level `dbfs`, as int16."""
    n = round(seconds * rate)
    t = np.arange(n, dtype=np.float64) / rate
    return np.round(_amplitude(dbfs) * np.sin(2.0 * np.pi * freq * t)).astype(np.int16)


def write_wav(path: str | Path, samples: npt.ArrayLike, rate: int = RATE) -> Path:
    """Write mono (1-D) or multi-channel ((n, ch)) int16 samples as a 16-bit PCM WAV."""
    data = np.asarray(samples)
    if data.dtype != np.int16:
        data = np.clip(np.round(data), -32768, 32767).astype(np.int16)
    channels = 1 if data.ndim == 1 else int(data.shape[1])
    out = Path(path)
    with wave.open(str(out), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.astype("<i2").tobytes())
    return out


def write_tone_wav(
    path: str | Path,
    freq: float,
    seconds: float,
    dbfs: float = -12.0,
    lead_silence: float = 0.0,
    rate: int = RATE,
) -> Path:
    """An 8 kHz mono 16-bit WAV: `lead_silence` s of silence, then `seconds` of tone."""
    silence = np.zeros(round(lead_silence * rate), dtype=np.int16)
    return write_wav(path, np.concatenate([silence, tone_samples(freq, seconds, rate, dbfs)]), rate)


def write_silence_wav(path: str | Path, seconds: float, rate: int = RATE) -> Path:
    """An 8 kHz mono 16-bit WAV of digital silence."""
    return write_wav(path, np.zeros(round(seconds * rate), dtype=np.int16), rate)


def read_wav(path: str | Path) -> tuple[int, Samples, int]:
    """Read a 16-bit PCM WAV -> (rate, samples, channels).

    Mono gives a 1-D array; more channels give shape (frames, channels).
    """
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: {8 * w.getsampwidth()}-bit WAV, expected 16-bit")
        rate, channels = w.getframerate(), w.getnchannels()
        raw = w.readframes(w.getnframes())
    data = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    if channels > 1:
        data = data.reshape(-1, channels)
    return rate, data, channels


def ulaw_encode(samples: npt.ArrayLike) -> bytes:
    """int16 -> G.711 mu-law bytes (for SIPp's raw `rtp_stream` files); ITU reference rounding."""
    pcm = np.asarray(samples, dtype=np.int32) >> 2  # 14-bit, as G.711's reference code
    negative = pcm < 0
    magnitude = np.minimum(np.where(negative, -pcm, pcm), 8159) + 0x21
    ends = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    segment = np.searchsorted(ends, magnitude)
    code = np.where(
        segment >= 8, 0x7F, (np.minimum(segment, 7) << 4) | ((magnitude >> (segment + 1)) & 0x0F)
    )
    return (code ^ np.where(negative, 0x7F, 0xFF)).astype(np.uint8).tobytes()


def write_ulaw(path: str | Path, samples: npt.ArrayLike) -> Path:
    """Raw headerless mu-law file (SIPp `<exec rtp_stream="FILE,loops,0"/>`)."""
    out = Path(path)
    out.write_bytes(ulaw_encode(samples))
    return out


def _mono_float(samples: npt.ArrayLike) -> npt.NDArray[np.float64]:
    data = np.asarray(samples, dtype=np.float64)
    if data.ndim != 1:
        raise ValueError("expected mono samples (1-D); pick a channel with samples[:, i]")
    return data


def level_dbfs(samples: npt.ArrayLike) -> float:
    """RMS level in dBFS (full-scale sine = 0 dBFS); -inf for digital silence or no samples."""
    data = _mono_float(samples)
    if data.size == 0:
        return -math.inf
    rms = math.sqrt(float(np.mean(data * data)))
    return 20.0 * math.log10(rms / _SINE_RMS_FS) if rms > 0 else -math.inf


def _frames(data: npt.NDArray[np.float64], size: int) -> npt.NDArray[np.float64]:
    count = data.size // size
    return data[: count * size].reshape(count, size)


def tone_frames(
    samples: npt.ArrayLike,
    freq: float,
    rate: int = RATE,
    *,
    frame_seconds: float = _FRAME_SECONDS,
    min_ratio: float = 0.6,
    min_dbfs: float = -40.0,
) -> npt.NDArray[np.bool_]:
    """Per frame: does a `freq` Hz tone dominate it?

    The tone dominates when a least-squares sinusoid at `freq` explains at least `min_ratio` of
    the frame's energy and the frame's level is at least `min_dbfs`.
    """
    size = max(1, round(frame_seconds * rate))
    frames = _frames(_mono_float(samples), size)
    if frames.shape[0] == 0:
        return np.zeros(0, dtype=np.bool_)
    t = np.arange(size, dtype=np.float64) / rate
    basis = np.stack([np.cos(2 * np.pi * freq * t), np.sin(2 * np.pi * freq * t)], axis=1)
    # Least squares per frame: coefficients = (B^T B)^-1 B^T x; explained energy = x^T B coef.
    gram = basis.T @ basis
    proj = frames @ basis
    coef = np.linalg.solve(gram, proj.T).T
    explained = np.sum(coef * proj, axis=1)
    energy = np.sum(frames * frames, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(energy > 0, explained / energy, 0.0)
        level = 10.0 * np.log10(energy / size / _SINE_RMS_FS**2)
    flags: npt.NDArray[np.bool_] = (ratio >= min_ratio) & (level >= min_dbfs)
    return flags


def first_tone_time(
    samples: npt.ArrayLike,
    freq: float,
    rate: int = RATE,
    min_duration: float = 0.1,
    *,
    frame_seconds: float = _FRAME_SECONDS,
    min_ratio: float = 0.6,
    min_dbfs: float = -40.0,
) -> float | None:
    """Seconds from the start of `samples` to the first run of tone frames at least
    `min_duration` long, or None when the tone never lasts that long."""
    flags = tone_frames(
        samples,
        freq,
        rate,
        frame_seconds=frame_seconds,
        min_ratio=min_ratio,
        min_dbfs=min_dbfs,
    )
    need = max(1, math.ceil(min_duration / frame_seconds - 1e-9))
    run = 0
    for i, hit in enumerate(flags):
        run = run + 1 if hit else 0
        if run >= need:
            return (i - need + 1) * frame_seconds
    return None


def tone_present(
    samples: npt.ArrayLike,
    freq: float,
    rate: int = RATE,
    min_duration: float = 0.1,
    *,
    min_ratio: float = 0.6,
    min_dbfs: float = -40.0,
) -> bool:
    """True when a `freq` Hz tone lasts at least `min_duration` somewhere in `samples`."""
    found = first_tone_time(
        samples, freq, rate, min_duration, min_ratio=min_ratio, min_dbfs=min_dbfs
    )
    return found is not None


def band_energy_db(
    samples: npt.ArrayLike,
    freq: float,
    rate: int = RATE,
    *,
    relative_to: float | None = None,
    bandwidth: float = 50.0,
) -> float:
    """Energy in the band `freq` +- `bandwidth`/2 over the whole signal, in dBFS, or in dB
    relative to the band around `relative_to` when given ("no trace of 1500 Hz": the result
    is far below 0). Hann-windowed FFT; -inf for an empty band or silence."""
    data = _mono_float(samples)
    if data.size == 0:
        return -math.inf
    window = np.hanning(data.size) if data.size > 1 else np.ones(1)
    spectrum = np.abs(np.fft.rfft(data * window)) ** 2
    freqs = np.fft.rfftfreq(data.size, 1.0 / rate)
    # Scale so a full-scale sine inside the band reads 0 dB (Parseval with the window's power).
    scale = 2.0 / (data.size * float(np.sum(window * window))) / _SINE_RMS_FS**2

    def band(center: float) -> float:
        mask = np.abs(freqs - center) <= bandwidth / 2.0
        return float(np.sum(spectrum[mask])) * scale

    own = band(freq)
    if relative_to is None:
        return 10.0 * math.log10(own) if own > 0 else -math.inf
    ref = band(relative_to)
    if own <= 0:
        return -math.inf
    if ref <= 0:
        return math.inf
    return 10.0 * math.log10(own / ref)


def normalized_xcorr(
    signal: npt.ArrayLike,
    reference: npt.ArrayLike,
    *,
    max_lag: int | None = None,
) -> tuple[float, int]:
    """Best normalised cross-correlation of `reference` inside `signal` -> (peak, lag).

    `lag` is the sample offset in `signal` where `reference` lines up best; `peak` is in
    [-1, 1] (identical audio through G.711 gives ~0.99, unrelated audio or silence ~0).
    `signal` shorter than `reference` is zero-padded. `max_lag` limits the lags searched.
    """
    sig = _mono_float(signal)
    ref = _mono_float(reference)
    if ref.size == 0:
        raise ValueError("empty reference")
    if sig.size < ref.size:
        sig = np.concatenate([sig, np.zeros(ref.size - sig.size)])
    lags = sig.size - ref.size + 1
    if max_lag is not None:
        lags = min(lags, max_lag + 1)
        sig = sig[: lags + ref.size - 1]
    ref_norm = math.sqrt(float(np.sum(ref * ref)))
    if ref_norm == 0:
        return 0.0, 0
    size = 1 << (sig.size + ref.size - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(sig, size) * np.conj(np.fft.rfft(ref, size)), size)[:lags]
    cumulative = np.concatenate([[0.0], np.cumsum(sig * sig)])
    window_energy = cumulative[ref.size : ref.size + lags] - cumulative[:lags]
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = np.where(
            window_energy > 1e-9, corr / (ref_norm * np.sqrt(np.maximum(window_energy, 0))), 0.0
        )
    best = int(np.argmax(norm))
    return float(norm[best]), best


_MP3_BITRATES = {
    "1": (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    "2": (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def mp3_frames(data: bytes) -> tuple[int, int, float]:
    """Walk an MPEG audio Layer III stream frame by frame (ID3v2 tag skipped): (frames, sample
    rate, seconds). Raises ValueError where the stream stops being a chain of valid frames."""
    pos = 0
    if data[:3] == b"ID3":
        size = data[6:10]
        pos = 10 + ((size[0] << 21) | (size[1] << 14) | (size[2] << 7) | size[3])
    frames, rate, samples = 0, 0, 0
    while pos + 4 <= len(data):
        header = int.from_bytes(data[pos : pos + 4], "big")
        version, layer = (header >> 19) & 3, (header >> 17) & 3
        if header >> 21 != 0x7FF or layer != 1 or version == 1:
            raise ValueError(f"no MPEG Layer III frame at byte {pos}")
        bitrate = _MP3_BITRATES["1" if version == 3 else "2"][(header >> 12) & 15] * 1000
        rate = _MP3_RATES[version][(header >> 10) & 3]
        per_frame = 1152 if version == 3 else 576
        length = (per_frame // 8) * bitrate // rate + ((header >> 9) & 1)
        if length < 4:
            raise ValueError(f"bad frame length at byte {pos}")
        frames += 1
        samples += per_frame
        pos += length
    return frames, rate, samples / rate if rate else 0.0
