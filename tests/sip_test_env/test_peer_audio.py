"""Audio helpers of sip_test_env on synthetic signals (no peers needed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip_test_env.audio import (
    band_energy_db,
    first_tone_time,
    level_dbfs,
    normalized_xcorr,
    read_wav,
    tone_frames,
    tone_present,
    tone_samples,
    ulaw_encode,
    write_silence_wav,
    write_tone_wav,
    write_ulaw,
    write_wav,
)

RATE = 8000


def _noise(seconds: float, dbfs: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rms = 32767 / math.sqrt(2) * 10 ** (dbfs / 20)
    return np.clip(rng.normal(0, rms, round(seconds * RATE)), -32768, 32767).astype(np.int16)


def test_tone_wav_round_trip_keeps_format_and_level(tmp_path: Path) -> None:
    path = write_tone_wav(tmp_path / "t.wav", 1000, 1.0, dbfs=-12, lead_silence=0.5)
    rate, samples, channels = read_wav(path)
    assert (rate, channels, samples.dtype, samples.size) == (8000, 1, np.int16, 12000)
    assert np.all(samples[:4000] == 0)
    assert level_dbfs(samples[4000:]) == pytest.approx(-12.0, abs=0.1)


def test_silence_wav_is_silent(tmp_path: Path) -> None:
    _, samples, _ = read_wav(write_silence_wav(tmp_path / "s.wav", 2.0))
    assert samples.size == 16000
    assert level_dbfs(samples) == -math.inf
    assert first_tone_time(samples, 1000) is None


def test_stereo_wav_reads_as_frames_by_channels(tmp_path: Path) -> None:
    left = tone_samples(600, 0.5)
    right = tone_samples(1000, 0.5)
    _, samples, channels = read_wav(write_wav(tmp_path / "st.wav", np.stack([left, right], 1)))
    assert channels == 2 and samples.shape == (4000, 2)
    assert tone_present(samples[:, 0], 600) and not tone_present(samples[:, 0], 1000)
    assert tone_present(samples[:, 1], 1000)


def test_first_tone_time_finds_onset_after_silence() -> None:
    signal = np.concatenate([np.zeros(round(0.7 * RATE), np.int16), tone_samples(1000, 0.5)])
    onset = first_tone_time(signal, 1000, RATE)
    assert onset is not None and abs(onset - 0.7) <= 0.02
    assert first_tone_time(signal, 600, RATE) is None


def test_short_blip_is_not_a_tone() -> None:
    blip = np.concatenate([np.zeros(800, np.int16), tone_samples(1000, 0.06), np.zeros(800)])
    assert not tone_present(blip.astype(np.int16), 1000, min_duration=0.1)
    assert tone_present(blip.astype(np.int16), 1000, min_duration=0.04)


def test_quiet_tone_below_threshold_is_ignored() -> None:
    quiet = tone_samples(1000, 1.0, dbfs=-50)
    assert not tone_present(quiet, 1000)
    assert tone_present(quiet, 1000, min_dbfs=-60)


def test_noise_and_dtmf_pair_are_not_a_pure_tone() -> None:
    assert not tone_present(_noise(1.0, -20), 1000)
    dtmf_1 = (tone_samples(697, 0.5, dbfs=-15) + tone_samples(1209, 0.5, dbfs=-15)).astype(np.int16)
    assert not tone_present(dtmf_1, 697) and not tone_present(dtmf_1, 1209)


def test_tone_survives_mu_law_round_trip() -> None:
    # Decode via the G.711 segment formula (inverse of ulaw_encode) to mimic a phone path.
    codes = np.frombuffer(ulaw_encode(tone_samples(1000, 1.0)), dtype=np.uint8)
    inverted = ~codes.astype(np.int32) & 0xFF
    magnitude = (((inverted & 0x0F) << 3) + 0x84) << ((inverted >> 4) & 0x07)
    decoded = np.where(inverted & 0x80, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)
    assert first_tone_time(decoded, 1000) == 0.0
    peak, lag = normalized_xcorr(decoded, tone_samples(1000, 0.5))
    assert peak > 0.99 and lag % 8 == 0


def test_ulaw_encode_reference_points(tmp_path: Path) -> None:
    assert ulaw_encode(np.array([0, -1, 32767, -32768, 100], np.int16)) == bytes(
        [0xFF, 0x7E, 0x80, 0x00, 0xF2]
    )
    path = write_ulaw(tmp_path / "x.ulaw", tone_samples(1000, 0.1))
    assert path.stat().st_size == 800


def test_ulaw_encode_matches_audioop_when_available() -> None:
    audioop = pytest.importorskip("audioop")
    everything = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
    assert ulaw_encode(everything) == audioop.lin2ulaw(everything.tobytes(), 2)


def test_band_energy_tells_a_tone_from_its_absence() -> None:
    tone = tone_samples(1000, 1.0, dbfs=-12)
    assert band_energy_db(tone, 1000) == pytest.approx(-12.0, abs=0.5)
    assert band_energy_db(tone, 1500, relative_to=1000) < -60
    mixed = (tone.astype(np.int32) + tone_samples(1500, 1.0, dbfs=-18)).astype(np.int16)
    assert band_energy_db(mixed, 1500, relative_to=1000) == pytest.approx(-6.0, abs=0.5)
    assert band_energy_db(np.zeros(100, np.int16), 1000) == -math.inf


def test_xcorr_finds_delayed_copy_and_rejects_unrelated() -> None:
    reference = _noise(0.5, -20, seed=2)
    delayed = np.concatenate([np.zeros(1234, np.int16), reference, np.zeros(500, np.int16)])
    peak, lag = normalized_xcorr(delayed, reference)
    assert peak == pytest.approx(1.0, abs=1e-6) and lag == 1234
    unrelated, _ = normalized_xcorr(_noise(1.0, -20, seed=3), reference)
    assert abs(unrelated) < 0.2
    silent, _ = normalized_xcorr(np.zeros(8000, np.int16), reference)
    assert silent == 0.0
    limited, lag = normalized_xcorr(delayed, reference, max_lag=1000)
    assert lag <= 1000 and limited < 0.5


@settings(max_examples=40, deadline=None)
@given(
    freq=st.integers(min_value=300, max_value=3400),
    lead=st.integers(min_value=0, max_value=40),
    dbfs=st.floats(min_value=-30, max_value=-3),
)
def test_any_telephone_band_tone_is_found_at_its_onset(freq: int, lead: int, dbfs: float) -> None:
    lead_s = lead * 0.02
    signal = np.concatenate(
        [np.zeros(round(lead_s * RATE), np.int16), tone_samples(freq, 0.3, dbfs=dbfs)]
    )
    onset = first_tone_time(signal, freq)
    assert onset is not None and abs(onset - lead_s) <= 0.021
    # 100 Hz away is not the same tone.
    assert first_tone_time(signal, freq + 100) is None


def test_tone_frames_per_frame_flags() -> None:
    signal = np.concatenate([tone_samples(1000, 0.1), np.zeros(800, np.int16)])
    flags = tone_frames(signal, 1000)
    assert flags.tolist() == [True] * 5 + [False] * 5
