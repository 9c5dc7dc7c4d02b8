"""Prompts: any common WAV (or a text for espeak-ng) made into the engine's 8 kHz mono 16-bit PCM,
once, cached on disk under the hash of what it was made from.

WAV files are read by a small RIFF reader of our own (the stdlib `wave` of Python 3.11 refuses
WAVE_FORMAT_EXTENSIBLE and float files, which editors write by default): PCM 8/16/24/32-bit,
IEEE float 32/64-bit, G.711 A-law and mu-law, any rate and channel count. Channels are averaged;
the rate is changed in the frequency domain (the spectrum cut at the new Nyquist frequency is
the anti-aliasing filter).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import struct
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from telephony.media import SAMPLE_RATE, alaw_bytes_to_linear, ulaw_bytes_to_linear

from .errors import PromptError
from .flow import Prompt

logger = logging.getLogger(__name__)

# Bump when the conversion changes, so old cache entries are not reused.
_CONVERTER = "v1"
_PCM, _FLOAT, _ALAW, _ULAW, _EXTENSIBLE = 1, 3, 6, 7, 0xFFFE
_TTS_TIMEOUT = 30.0


def read_any_wav(path: str | Path) -> tuple[npt.NDArray[np.float64], int]:
    """Samples of a WAV as float mono in [-1, 1) and its rate."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PromptError(f"{path}: cannot read: {exc.strerror}") from exc
    return decode_wav(data, str(path))


def decode_wav(data: bytes, name: str = "<wav>") -> tuple[npt.NDArray[np.float64], int]:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise PromptError(f"{name}: not a WAV file (no RIFF/WAVE header)")
    fmt: tuple[int, int, int, int] | None = None
    payload: bytes | None = None
    offset = 12
    while offset + 8 <= len(data):
        chunk, size = (
            data[offset : offset + 4],
            struct.unpack("<I", data[offset + 4 : offset + 8])[0],
        )
        body = data[offset + 8 : offset + 8 + size]
        if chunk == b"fmt ":
            if len(body) < 16:
                raise PromptError(f"{name}: fmt chunk too short")
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == _EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack("<H", body[24:26])[0]  # first bytes of the sub-format GUID
            fmt = (tag, channels, rate, bits)
        elif chunk == b"data":
            payload = body
        offset += 8 + size + (size & 1)  # chunks are word-aligned
    if fmt is None or payload is None:
        raise PromptError(f"{name}: WAV without fmt or data chunk")
    tag, channels, rate, bits = fmt
    if channels < 1 or rate < 1000:
        raise PromptError(f"{name}: {channels} channels at {rate} Hz is not audio we can use")
    samples = _samples(tag, bits, payload, name)
    usable = samples.size - samples.size % channels
    mono = samples[:usable].reshape(-1, channels).mean(axis=1)
    return mono, rate


def _samples(tag: int, bits: int, payload: bytes, name: str) -> npt.NDArray[np.float64]:
    if tag == _PCM and bits == 8:
        return (np.frombuffer(payload, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    if tag == _PCM and bits == 16:
        return np.frombuffer(payload[: len(payload) // 2 * 2], dtype="<i2") / 32768.0
    if tag == _PCM and bits == 24:
        raw = np.frombuffer(payload[: len(payload) // 3 * 3], dtype=np.uint8).reshape(-1, 3)
        value = raw[:, 0].astype(np.int32) | (raw[:, 1].astype(np.int32) << 8)
        value |= raw[:, 2].astype(np.int32) << 16
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        return value / float(1 << 23)
    if tag == _PCM and bits == 32:
        return np.frombuffer(payload[: len(payload) // 4 * 4], dtype="<i4") / float(1 << 31)
    if tag == _FLOAT and bits in (32, 64):
        dtype = "<f4" if bits == 32 else "<f8"
        size = bits // 8
        return np.frombuffer(payload[: len(payload) // size * size], dtype=dtype).astype(np.float64)
    if tag in (_ALAW, _ULAW) and bits == 8:
        decode = alaw_bytes_to_linear if tag == _ALAW else ulaw_bytes_to_linear
        return np.frombuffer(decode(payload), dtype=np.int16) / 32768.0
    raise PromptError(f"{name}: WAV format {tag:#x} with {bits}-bit samples is not supported")


def resample(samples: npt.NDArray[np.float64], rate: int, target: int) -> npt.NDArray[np.float64]:
    """Change the sample rate; above the new Nyquist frequency everything is cut."""
    if rate == target or samples.size == 0:
        return samples
    n_out = round(samples.size * target / rate)
    # Pad so the transform's wrap-around does not smear the end into the start.
    pad = min(samples.size, rate // 10)
    padded = np.concatenate([samples, np.zeros(pad)])
    spectrum = np.fft.rfft(padded)
    n_padded_out = round(padded.size * target / rate)
    bins = n_padded_out // 2 + 1
    if bins <= spectrum.size:
        spectrum = spectrum[:bins]
    else:
        spectrum = np.concatenate([spectrum, np.zeros(bins - spectrum.size, dtype=complex)])
    out = np.fft.irfft(spectrum, n_padded_out) * (n_padded_out / padded.size)
    result: npt.NDArray[np.float64] = out[:n_out]
    return result


def to_int16(samples: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    return np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16)


def write_wav(path: Path, samples: npt.NDArray[np.int16]) -> None:
    """8 kHz mono 16-bit, written beside and renamed: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with wave.open(str(tmp), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples.astype("<i2").tobytes())
    tmp.replace(path)


class PromptCache:
    """Makes prompts playable and keeps the results in `directory` (content-addressed)."""

    def __init__(
        self,
        directory: str | Path,
        *,
        espeak: str | None = "espeak-ng",
        voice: str = "en-us",
        words_per_minute: int = 150,
    ) -> None:
        self.directory = Path(directory)
        self.espeak = shutil.which(espeak) if espeak else None
        """The espeak-ng binary, or None when text prompts cannot be made."""
        self.voice = voice
        self.words_per_minute = words_per_minute

    def prepare(self, prompt: Prompt) -> Path:
        """The cached 8 kHz mono 16-bit WAV for `prompt`, made now if needed."""
        if prompt.text is not None:
            return self.speak(prompt.text)
        if prompt.file is None:
            raise PromptError("a prompt needs a file or a text")
        return self.convert(prompt.file)

    def convert(self, path: str | Path) -> Path:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise PromptError(f"{path}: cannot read: {exc.strerror}") from exc
        digest = hashlib.sha256(_CONVERTER.encode() + b"\0" + data).hexdigest()
        out = self.directory / f"{digest}.wav"
        if out.is_file():
            return out
        samples, rate = decode_wav(data, str(path))
        self.directory.mkdir(parents=True, exist_ok=True)
        write_wav(out, to_int16(resample(samples, rate, SAMPLE_RATE)))
        logger.info("prompt %s: converted from %d Hz to %s", path, rate, out.name)
        return out

    def speak(self, text: str) -> Path:
        key = f"{_CONVERTER}\0tts\0{self.voice}\0{self.words_per_minute}\0{text}"
        out = self.directory / f"tts-{hashlib.sha256(key.encode()).hexdigest()}.wav"
        if out.is_file():
            return out
        if self.espeak is None:
            raise PromptError(
                f"text prompt {text!r} needs espeak-ng, which is not installed"
                " (apt-get install espeak-ng), or record it as a WAV"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.directory) as tmp:
            raw = Path(tmp) / "tts.wav"
            command = [
                self.espeak,
                "-v",
                self.voice,
                "-s",
                str(self.words_per_minute),
                "-w",
                str(raw),
                "--",
                text,
            ]
            try:
                done = subprocess.run(
                    command, capture_output=True, timeout=_TTS_TIMEOUT, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise PromptError(f"text prompt {text!r}: espeak-ng failed: {exc}") from exc
            if done.returncode != 0 or not raw.is_file():
                reason = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
                raise PromptError(f"text prompt {text!r}: espeak-ng failed: {reason}")
            samples, rate = read_any_wav(raw)
        write_wav(out, to_int16(resample(samples, rate, SAMPLE_RATE)))
        logger.info("prompt %r: spoken by espeak-ng into %s", text, out.name)
        return out


__all__ = ["PromptCache", "decode_wav", "read_any_wav", "resample", "to_int16"]
