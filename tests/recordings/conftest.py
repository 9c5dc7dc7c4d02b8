"""Real speech for the analytics tests: espeak-ng speaks, sox converts to 8 kHz mono 16-bit."""

from __future__ import annotations

import subprocess
import wave
from collections.abc import Callable

import numpy as np
import pytest

from sip_test_env import tools


@pytest.fixture(scope="session")
def speak(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], np.ndarray]:
    """espeak-ng says a text, sox makes it 8 kHz mono 16-bit; leading/trailing silence cut."""
    tools.require("espeak-ng", "sox")
    folder = tmp_path_factory.mktemp("speech")

    def say(text: str, voice_name: str = "en-us") -> np.ndarray:
        raw, out = folder / "raw.wav", folder / "out.wav"
        subprocess.run(["espeak-ng", "-v", voice_name, "-w", str(raw), text], check=True)
        subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(out)], check=True)
        with wave.open(str(out), "rb") as w:
            samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
        loud = np.flatnonzero(np.abs(samples) > 100)
        return samples[loud[0] : loud[-1] + 1]

    return say
