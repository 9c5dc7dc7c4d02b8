from __future__ import annotations

import math

import numpy as np
import pytest

from telephony.media import (
    DTMF_FREQUENCIES,
    FRAME_BYTES,
    FRAME_MS,
    FRAME_SAMPLES,
    SAMPLE_RATE,
    MediaError,
    SampleSource,
    ToneSource,
    busy_tone,
    dbfs,
    dtmf_sequence,
    dtmf_tone,
    ringback_tone,
    silence,
    tone_power_db,
    tone_samples,
)


def test_frame_constants() -> None:
    assert (SAMPLE_RATE, FRAME_MS, FRAME_SAMPLES, FRAME_BYTES) == (8000, 20, 160, 320)
    frame = silence()
    assert frame.dtype == np.int16 and frame.shape == (160,) and not frame.any()
    frame[0] = 1
    assert not silence().any()  # a new array every time


def test_dbfs() -> None:
    assert dbfs(silence()) == -math.inf
    assert dbfs(np.zeros(0, dtype=np.int16)) == -math.inf
    square = np.array([32767, -32768] * 80, dtype=np.int16)
    assert abs(dbfs(square)) < 0.001
    t = np.arange(8000)
    sine = np.rint(32767 * np.sin(2 * np.pi * 1000 * t / 8000 + 0.3)).astype(np.int16)
    assert abs(dbfs(sine) + 3.01) < 0.01
    assert abs(dbfs(sine // 10) - (dbfs(sine) - 20)) < 0.01


def test_sample_source_pads_the_last_frame() -> None:
    samples = np.arange(1, 401, dtype=np.int16)
    frames = list(SampleSource(samples))
    assert [f.shape for f in frames] == [(160,)] * 3
    assert np.array_equal(np.concatenate(frames)[:400], samples)
    assert not frames[-1][80:].any()
    assert SampleSource(np.zeros(0, dtype=np.int16)).next_frame() is None


def test_sample_source_loops_seamlessly() -> None:
    samples = np.arange(1, 401, dtype=np.int16)
    source = SampleSource(samples, loop=True)
    out = np.concatenate([source.next_frame() for _ in range(10)])  # type: ignore[misc]
    assert np.array_equal(out, np.tile(samples, 4)[:1600])
    short = SampleSource(np.array([1, 2, 3], dtype=np.int16), loop=True)
    first, second = short.next_frame(), short.next_frame()
    assert first is not None and second is not None
    assert np.array_equal(np.concatenate([first, second]), np.tile([1, 2, 3], 107)[:320])


def test_tone_frequency_and_level() -> None:
    tone = tone_samples([1000.0], 0.5, level_dbfs=-12)
    assert tone.dtype == np.int16 and tone.size == 4000
    assert abs(dbfs(tone) + 12) < 0.05
    assert tone_power_db(tone, 1000) > -0.1
    assert tone_power_db(tone, 1100) < -30
    dual = tone_samples([350.0, 440.0], 0.5, level_dbfs=-20)
    assert abs(dbfs(dual) - (-20 + 10 * math.log10(2))) < 0.1
    assert abs(tone_power_db(dual, 350) + 3.01) < 0.2
    assert abs(tone_power_db(dual, 440) + 3.01) < 0.2


def test_tone_phase_is_continuous_across_frames() -> None:
    source = ToneSource([1234.5, 777.0], level_dbfs=-6)
    framed = np.concatenate([source.next_frame() for _ in range(50)])  # type: ignore[misc]
    whole = tone_samples([1234.5, 777.0], 1.0, level_dbfs=-6)
    assert np.max(np.abs(framed.astype(int) - whole.astype(int))) <= 1
    # No click at frame edges: the sample-to-sample step never exceeds the tone's maximum slope.
    steps = np.abs(np.diff(framed.astype(np.int64)))
    peak = 32768 * math.sqrt(2) * 10 ** (-6 / 20)
    assert steps.max() <= 2 * math.pi * (1234.5 + 777.0) / 8000 * peak + 2


def test_duration_ends_the_source() -> None:
    source = ToneSource([440.0], duration=0.05)
    frames = list(source)
    assert len(frames) == 3
    assert frames[2][:80].any() and not frames[2][80:].any()
    assert source.next_frame() is None


def test_ringback_cadence() -> None:
    source = ringback_tone()
    levels = [dbfs(f) for f in (source.next_frame() for _ in range(600))]  # 12 s
    on = [lv > -40 for lv in levels]
    assert on[:100] == [True] * 100 and on[100:300] == [False] * 200
    assert on[300:400] == [True] * 100 and on[400:600] == [False] * 200
    first = np.concatenate([source.next_frame() for _ in range(10)])  # type: ignore[misc]
    assert tone_power_db(first, 440) > -3.5 and tone_power_db(first, 480) > -3.5
    assert abs(dbfs(first) - (-19 + 3.01)) < 0.2


def test_busy_cadence() -> None:
    source = busy_tone()
    on = [dbfs(f) > -40 for f in (source.next_frame() for _ in range(100))]
    assert on == ([True] * 25 + [False] * 25) * 2
    frame = source.next_frame()
    assert frame is not None
    assert tone_power_db(frame, 480) > -3.5 and tone_power_db(frame, 620) > -3.5


def test_cadence_boundaries_are_sample_exact() -> None:
    source = ToneSource([1100.0], cadence=(0.0125, 0.0125))  # 100 samples on, 100 off
    samples = np.concatenate([source.next_frame() for _ in range(5)])  # type: ignore[misc]
    gate = np.tile(np.repeat([True, False], 100), 4)
    assert not samples[~gate].any()
    assert np.count_nonzero(samples[gate]) > 380


def test_dtmf_tones() -> None:
    for digit, (low, high) in DTMF_FREQUENCIES.items():
        frame = dtmf_tone(digit).next_frame()
        assert frame is not None
        assert tone_power_db(frame, low) > -3.5 and tone_power_db(frame, high) > -3.5
    assert len(DTMF_FREQUENCIES) == 16
    assert DTMF_FREQUENCIES["5"] == (770.0, 1336.0)
    assert DTMF_FREQUENCIES["D"] == (941.0, 1633.0)
    assert len(list(dtmf_tone("a", duration=0.1))) == 5
    seq = np.concatenate(list(dtmf_sequence("12", tone=0.05, gap=0.05)))
    assert seq.size == 1600  # tone, gap, tone, gap: 0.2 s
    assert seq[:400].any() and not seq[400:800].any()


def test_bad_arguments() -> None:
    with pytest.raises(MediaError):
        ToneSource([])
    with pytest.raises(MediaError):
        ToneSource([440.0], cadence=(1.0,))
    with pytest.raises(MediaError):
        dtmf_tone("E")
    with pytest.raises(MediaError):
        dtmf_sequence("1x")
