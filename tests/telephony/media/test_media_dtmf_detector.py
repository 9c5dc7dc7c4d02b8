from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip_test_env import tools
from telephony.media import (
    DTMF_FREQUENCIES,
    DtmfDetector,
    DtmfDetectorConfig,
    busy_tone,
    dtmf_sequence,
    goertzel_power,
    pcm_to_alaw,
    pcm_to_ulaw,
    read_wav,
    ringback_tone,
    tone_power_db,
    tone_samples,
    ulaw_to_pcm,
)
from telephony.media import alaw_to_pcm as alaw_decode

KEYS = "123A456B789C*0#D"
Pcm = npt.NDArray[np.int16]


def detect(samples: Pcm, detector: DtmfDetector | None = None, frame: int = 160) -> str:
    det = detector or DtmfDetector()
    padded = np.concatenate([samples, np.zeros(-samples.size % frame + 320, dtype=np.int16)])
    return "".join(det.feed(padded[i : i + frame]) or "" for i in range(0, padded.size, frame))


def silence(seconds: float) -> Pcm:
    return np.zeros(round(seconds * 8000), dtype=np.int16)


def key(digit: str, seconds: float, level: float = -10.0, scale: float = 1.0) -> Pcm:
    low, high = DTMF_FREQUENCIES[digit]
    return tone_samples([low * scale, high * scale], seconds, level_dbfs=level)


def add(*parts: Pcm) -> Pcm:
    total = np.sum([p.astype(np.int64) for p in parts], axis=0)
    return np.clip(total, -32768, 32767).astype(np.int16)


def vowels(seconds: float, seed: int) -> Pcm:
    """Speech-like audio: pitch-gliding glottal pulses through three formant resonators, in
    80-250 ms segments with random formants, one in five a fricative (noise)."""
    rng = np.random.default_rng(seed)
    total = round(seconds * 8000)
    parts = []
    n = 0
    while n < total:
        size = round(rng.uniform(0.08, 0.25) * 8000)
        f0 = np.linspace(*rng.uniform(90, 260, 2), size) * (1 + 0.01 * rng.standard_normal(size))
        source = np.diff(np.floor(np.cumsum(f0 / 8000)), prepend=0.0)
        if rng.random() < 0.2:
            source = rng.standard_normal(size)
        z = np.exp(-1j * 2 * np.pi * np.fft.rfftfreq(size, 1 / 8000) / 8000)
        response = np.ones_like(z)
        for lo, hi, bw_lo, bw_hi in (
            (300, 900, 50, 120),
            (900, 2300, 70, 150),
            (2300, 3200, 150, 150),
        ):
            r = math.exp(-math.pi * rng.uniform(bw_lo, bw_hi) / 8000)
            theta = 2 * math.pi * rng.uniform(lo, hi) / 8000
            response /= (1 - r * np.exp(1j * theta) * z) * (1 - r * np.exp(-1j * theta) * z)
        y = np.fft.irfft(np.fft.rfft(source) * response, size)
        parts.append(y / (np.max(np.abs(y)) + 1e-9) * rng.uniform(3000, 15000))
        n += size
    return np.clip(np.concatenate(parts)[:total], -32768, 32767).astype(np.int16)


# -- Goertzel power ------------------------------------------------------------------------------


def test_goertzel_power_is_mean_square_of_the_component() -> None:
    tone = tone_samples([1000.0], 0.02, level_dbfs=-6)
    rms_squared = (32768 * 10 ** (-6 / 20)) ** 2
    assert abs(goertzel_power(tone, 1000) / rms_squared - 1) < 0.01
    assert goertzel_power(tone, 2000) < rms_squared * 1e-4
    assert goertzel_power(np.zeros(0), 1000) == 0.0
    assert tone_power_db(np.zeros(160, dtype=np.int16), 1000) == -math.inf
    noise = np.random.default_rng(0).normal(0, 3000, 8000)
    assert tone_power_db(noise, 1000) < -20


# -- detection -----------------------------------------------------------------------------------


def test_all_sixteen_keys_once_each() -> None:
    source = dtmf_sequence(KEYS, tone=0.1, gap=0.1)
    det = DtmfDetector()
    got = "".join(det.feed(frame) or "" for frame in source)
    assert got == KEYS


@pytest.mark.parametrize("offset", range(0, 160, 16))
def test_every_key_at_every_alignment(offset: int) -> None:
    parts = [silence(offset / 8000)]
    for digit in KEYS:
        parts += [key(digit, 0.06), silence(0.06)]
    assert detect(np.concatenate(parts)) == KEYS


@pytest.mark.parametrize("digit", list(KEYS))
def test_each_key_through_g711(digit: str) -> None:
    pcm = np.concatenate([silence(0.013), key(digit, 0.08, level=-20), silence(0.1)])
    assert detect(ulaw_to_pcm(pcm_to_ulaw(pcm))) == digit
    assert detect(alaw_decode(pcm_to_alaw(pcm))) == digit


def test_minimum_duration() -> None:
    for offset in range(0, 160, 8):
        lead = silence(0.05 + offset / 8000)
        assert detect(np.concatenate([lead, key("5", 0.040), silence(0.1)])) == "5"
        assert detect(np.concatenate([lead, key("5", 0.025), silence(0.1)])) == ""
        assert detect(np.concatenate([lead, key("5", 0.020), silence(0.1)])) == ""


def test_long_press_is_one_digit() -> None:
    assert detect(np.concatenate([key("8", 2.0), silence(0.1)])) == "8"


def test_short_dropout_inside_a_press_is_one_digit() -> None:
    pcm = np.concatenate([key("3", 0.1), silence(0.005), key("3", 0.1), silence(0.1)])
    assert detect(pcm) == "3"


def test_repeated_key_with_a_short_pause_is_two_digits() -> None:
    pcm = np.concatenate([key("3", 0.06), silence(0.04), key("3", 0.06), silence(0.1)])
    assert detect(pcm) == "33"


def test_key_change_without_pause() -> None:
    pcm = np.concatenate([key("1", 0.08), key("2", 0.08), silence(0.1)])
    assert detect(pcm) == "12"


def test_levels() -> None:
    for level, expected in ((-3.0, "9"), (-20.0, "9"), (-32.0, "9"), (-40.0, ""), (-50.0, "")):
        assert detect(np.concatenate([key("9", 0.1, level), silence(0.1)])) == expected, level


def test_twist_limits() -> None:
    def pair(low_level: float, high_level: float) -> Pcm:
        low = tone_samples([770.0], 0.1, level_dbfs=low_level)
        high = tone_samples([1336.0], 0.1, level_dbfs=high_level)
        return np.concatenate([add(low, high), silence(0.1)])

    assert detect(pair(-10, -16)) == "5"  # low group 6 dB stronger: fine
    assert detect(pair(-10, -22)) == ""  # 12 dB: too much
    assert detect(pair(-13, -10)) == "5"  # high group 3 dB stronger: fine
    assert detect(pair(-16, -10)) == ""  # 6 dB: too much


def test_frequency_tolerance() -> None:
    for scale, expected in ((1.015, "6"), (0.985, "6"), (1.035, ""), (0.965, "")):
        pcm = np.concatenate([key("6", 0.1, scale=scale), silence(0.1)])
        assert detect(pcm) == expected, scale


def test_noise_at_20_db_snr() -> None:
    rng = np.random.default_rng(3)
    pcm = np.concatenate(
        [silence(0.05), *(np.concatenate([key(d, 0.07, -20), silence(0.07)]) for d in "2580")]
    )
    noisy = add(
        pcm,
        np.clip(rng.normal(0, 32768 * 10 ** (-37 / 20), pcm.size), -32768, 32767).astype(np.int16),
    )
    assert detect(noisy) == "2580"


@pytest.mark.parametrize(
    "frequencies",
    [[697.0], [1209.0], [1633.0], [1000.0], [350.0, 440.0], [697.0, 770.0], [1209.0, 1336.0]],
)
def test_single_tones_and_same_group_pairs_are_not_digits(frequencies: list[float]) -> None:
    assert detect(tone_samples(frequencies, 1.0, level_dbfs=-10)) == ""


def test_call_progress_tones_are_not_digits() -> None:
    for source in (ringback_tone(), busy_tone()):
        det = DtmfDetector()
        assert "".join(det.feed(source.next_frame()) or "" for _ in range(400)) == ""  # type: ignore[arg-type]


def test_noise_is_not_a_digit() -> None:
    rng = np.random.default_rng(7)
    white = np.clip(rng.normal(0, 4000, 8000 * 20), -32768, 32767).astype(np.int16)
    assert detect(white) == ""


def test_speech_like_audio_is_not_a_digit() -> None:
    talk_off = "".join(detect(vowels(10.0, seed)) for seed in range(12))
    assert talk_off == ""


def test_speech_with_digits_mixed_in() -> None:
    speech = vowels(3.0, 99) // 4
    digits = np.concatenate([silence(0.5), key("4", 0.1), silence(0.8), key("#", 0.1)])
    pcm = add(speech, np.concatenate([digits, silence(3.0 - digits.size / 8000)]))
    assert detect(pcm) == "4#"


def test_real_speech_from_espeak(tmp_path: Path) -> None:
    tools.require("espeak-ng", "sox")
    text = (
        "Thank you for calling. Please press one for sales, two for support. "
        "Your call is important to us; an agent will be with you shortly."
    )
    raw, wav = tmp_path / "raw.wav", tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(wav)], check=True)
    speech = read_wav(wav)
    assert speech.size > 8000 * 5
    assert detect(speech) == ""
    assert detect(np.clip(speech.astype(np.int64) * 3, -32768, 32767).astype(np.int16)) == ""


def test_frame_size_does_not_matter() -> None:
    pcm = np.concatenate(list(dtmf_sequence("147*", tone=0.07, gap=0.07)))
    for frame in (80, 160, 240, 1000):
        assert detect(pcm, frame=frame) == "147*"


def test_reset_forgets_a_press_in_progress() -> None:
    det = DtmfDetector()
    tone = key("7", 0.2)
    assert det.feed(tone[:800]) == "7"
    det.reset()
    assert det.feed(tone[800:1600]) == "7"  # a new press after reset


def test_config_changes_behaviour() -> None:
    strict = DtmfDetector(DtmfDetectorConfig(min_duration_ms=80))
    assert detect(np.concatenate([key("1", 0.06), silence(0.1)]), strict) == ""
    assert detect(np.concatenate([key("1", 0.1), silence(0.1)]), strict) == "1"


@given(
    digits=st.text(alphabet=KEYS, min_size=1, max_size=5),
    tone_ms=st.integers(50, 150),
    gap_ms=st.integers(50, 150),
    level=st.floats(-30, -3),
    lead=st.integers(0, 400),
)
@settings(max_examples=40, deadline=None)
def test_generated_dialling_is_read_back(
    digits: str, tone_ms: int, gap_ms: int, level: float, lead: int
) -> None:
    source = dtmf_sequence(digits, tone=tone_ms / 1000, gap=gap_ms / 1000, level_dbfs=level)
    pcm = np.concatenate([np.zeros(lead, dtype=np.int16), *source])
    assert detect(ulaw_to_pcm(pcm_to_ulaw(pcm))) == digits
