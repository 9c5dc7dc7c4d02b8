"""Prompts in the formats people record them in become 8 kHz mono 16-bit, once, cached."""

from __future__ import annotations

import os
import shutil
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from ivr import FlowError, Prompt, PromptCache, PromptError, load_flow
from sip_test_env import tools
from telephony.media import dbfs, linear_bytes_to_ulaw, read_wav, tone_power_db


def riff(
    fmt_tag: int, channels: int, rate: int, bits: int, data: bytes, *, extensible: bool = False
) -> bytes:
    block = channels * bits // 8
    if extensible:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt = struct.pack("<HHIIHH", 0xFFFE, channels, rate, rate * block, block, bits)
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", fmt_tag) + guid_tail
    else:
        fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"LIST" + struct.pack("<I", 4) + b"INFO"  # a chunk readers must skip
    body += b"data" + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")
    return b"RIFF" + struct.pack("<I", len(body)) + body


def sine(rate: int, freq: float = 1000.0, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return amp * np.sin(2 * np.pi * freq * t)


def encode(kind: str, x: np.ndarray) -> bytes:
    if kind == "u8":
        return np.clip(np.round(x * 127 + 128), 0, 255).astype(np.uint8).tobytes()
    if kind == "s16":
        return np.round(x * 32767).astype("<i2").tobytes()
    if kind == "s24":
        v = np.round(x * 8388607).astype(np.int32)
        return (
            np.stack([v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF], axis=1)
            .astype(np.uint8)
            .tobytes()
        )
    if kind == "s32":
        return np.round(x * 2147483647).astype("<i4").tobytes()
    if kind == "f32":
        return x.astype("<f4").tobytes()
    if kind == "ulaw":
        return linear_bytes_to_ulaw(np.round(x * 32767).astype(np.int16).tobytes())
    raise AssertionError(kind)


FORMATS = [
    # (description, tag, bits, rate, channels, encoding, extensible)
    ("44.1 kHz stereo 16-bit", 1, 16, 44100, 2, "s16", False),
    ("48 kHz mono float32 extensible", 3, 32, 48000, 1, "f32", True),
    ("16 kHz mono 24-bit", 1, 24, 16000, 1, "s24", False),
    ("22.05 kHz stereo 32-bit", 1, 32, 22050, 2, "s32", False),
    ("11.025 kHz mono 8-bit", 1, 8, 11025, 1, "u8", False),
    ("8 kHz mono mu-law", 7, 8, 8000, 1, "ulaw", False),
    ("8 kHz mono 16-bit already", 1, 16, 8000, 1, "s16", False),
]


@pytest.mark.parametrize(
    ("what", "tag", "bits", "rate", "channels", "enc", "ext"), FORMATS, ids=[f[0] for f in FORMATS]
)
def test_common_formats_become_8khz_mono_16bit(
    tmp_path: Path, what: str, tag: int, bits: int, rate: int, channels: int, enc: str, ext: bool
) -> None:
    x = sine(rate)
    if channels == 2:
        x = np.stack([x, x], axis=1).reshape(-1)  # the same tone in both channels
    src = tmp_path / "in.wav"
    src.write_bytes(riff(tag, channels, rate, bits, encode(enc, x), extensible=ext))
    out = PromptCache(tmp_path / "cache").prepare(Prompt(file=src))
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
    samples = read_wav(out)
    assert abs(samples.size - 8000) <= 1
    middle = samples[800:7200]
    assert tone_power_db(middle, 1000.0) > -0.5  # the tone, nothing else
    assert abs(dbfs(middle) - (-9.03)) < 0.5  # 0.5 full scale sine: -6 dB peak, -9 dB RMS


def test_downsampling_removes_what_8khz_cannot_carry(tmp_path: Path) -> None:
    x = sine(44100, 1000.0) * 0.5 + sine(44100, 6000.0) * 0.5  # 6 kHz would alias to 2 kHz
    src = tmp_path / "in.wav"
    src.write_bytes(riff(1, 1, 44100, 16, encode("s16", x)))
    samples = read_wav(PromptCache(tmp_path / "cache").convert(src))[800:7200]
    assert tone_power_db(samples, 1000.0) > -0.5
    assert tone_power_db(samples, 2000.0) < -40


def test_conversion_happens_once_per_content(tmp_path: Path) -> None:
    src = tmp_path / "in.wav"
    src.write_bytes(riff(1, 1, 16000, 16, encode("s16", sine(16000))))
    cache = PromptCache(tmp_path / "cache")
    first = cache.convert(src)
    os.utime(first, (1, 1))
    copy = tmp_path / "copy.wav"
    shutil.copy(src, copy)
    assert cache.convert(copy) == first and first.stat().st_mtime == 1  # reused, not rewritten
    src.write_bytes(riff(1, 1, 16000, 16, encode("s16", sine(16000, 500.0))))
    assert cache.convert(src) != first
    assert len(list((tmp_path / "cache").glob("*.wav"))) == 2


def test_unusable_files_give_clear_errors(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path / "cache")
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio")
    with pytest.raises(PromptError, match="not a WAV file"):
        cache.convert(bad)
    odd = tmp_path / "adpcm.wav"
    odd.write_bytes(riff(2, 1, 8000, 4, b"\x00" * 100))
    with pytest.raises(PromptError, match="format 0x2 with 4-bit samples is not supported"):
        cache.convert(odd)


def test_a_flow_with_an_unusable_prompt_is_refused_at_load(tmp_path: Path) -> None:
    (tmp_path / "notes.wav").write_text("not audio")
    (tmp_path / "flow.toml").write_text(
        'start = "a"\n\n[nodes.a]\nkind = "hangup"\nprompts = ["notes.wav"]\n'
    )
    with pytest.raises(FlowError, match="not a WAV file") as info:
        load_flow(tmp_path / "flow.toml", prepare=PromptCache(tmp_path / "cache").prepare)
    assert info.value.line == 5


def test_text_prompts_without_espeak_say_what_is_missing(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path / "cache", espeak="no-such-espeak-binary")
    with pytest.raises(PromptError, match="needs espeak-ng, which is not installed"):
        cache.prepare(Prompt(text="Press one"))


@tools.needs("espeak-ng")
def test_text_prompts_are_spoken_and_cached(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path / "cache")
    out = cache.prepare(Prompt(text="Press one to talk to a manager."))
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
    speech = read_wav(out)
    assert speech.size > 8000 and dbfs(speech) > -40
    os.utime(out, (1, 1))
    assert cache.prepare(Prompt(text="Press one to talk to a manager.")) == out
    assert out.stat().st_mtime == 1
