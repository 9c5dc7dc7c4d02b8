"""Voices for dialer and broadcast tests: espeak-ng speech at 8 kHz, and a "person" who answers
with a word, pauses (so answering-machine detection hears a human), then talks (a steady tone
a test can find in the agent's recording)."""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np

from telephony.media import tone_samples

from .audio import read_wav


def speak(text: str, path: Path, *, voice: str = "en-us", speed: int = 160) -> Path:
    """`text` spoken by espeak-ng, as an 8 kHz mono 16-bit WAV at `path`."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(path)], check=True)
    return path


def person_wav(
    path: Path,
    hello: Path,
    *,
    talk_hz: float = 700.0,
    talk_seconds: float = 3.0,
    pause: float = 3.0,
    level_dbfs: float = -12.0,
) -> Path:
    """ "Hello?" (the `hello` WAV), `pause` seconds of silence, then `talk_seconds` of a
    `talk_hz` tone standing for the rest of the conversation."""
    _, said, _ = read_wav(hello)
    talk = tone_samples([talk_hz], talk_seconds, level_dbfs=level_dbfs)
    audio = np.concatenate([said, np.zeros(int(8000 * pause), dtype=np.int16), talk])
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(audio.astype("<i2").tobytes())
    return path
