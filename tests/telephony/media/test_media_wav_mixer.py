from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from telephony.media import (
    FRAME_SAMPLES,
    MediaError,
    MixMatrix,
    WavFormatError,
    WavSink,
    WavSource,
    mix,
    mix_bytes,
    read_wav,
    tone_power_db,
    tone_samples,
)
from telephony.media import mixer as mixer_module


def write_wav(path: Path, samples: np.ndarray, *, rate: int = 8000, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())


# -- WavSink -------------------------------------------------------------------------------------


def test_mono_sink_is_valid_after_every_flush(tmp_path: Path) -> None:
    path = tmp_path / "rec.wav"
    sink = WavSink(path)
    tone = tone_samples([440.0], 0.1)
    with wave.open(str(path), "rb") as w:  # valid (empty) from the start
        assert w.getnframes() == 0
    for i in range(0, 800, FRAME_SAMPLES):
        sink.write(tone[i : i + FRAME_SAMPLES])
    sink.flush()
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        assert w.getnframes() == 800
        data = np.frombuffer(w.readframes(800), dtype="<i2")
    assert np.array_equal(data, tone)
    sink.write(tone[:160])
    sink.flush()
    assert read_wav(path).size == 960
    assert sink.frames_written == 960 and abs(sink.duration - 0.12) < 1e-9
    sink.close()
    sink.close()  # idempotent
    assert sink.closed
    with pytest.raises(MediaError):
        sink.write(tone[:160])


def test_header_bytes(tmp_path: Path) -> None:
    path = tmp_path / "h.wav"
    with WavSink(path) as sink:
        sink.write(np.array([1, -2, 3], dtype=np.int16))
    raw = path.read_bytes()
    assert raw[:4] == b"RIFF" and int.from_bytes(raw[4:8], "little") == 36 + 6
    assert raw[8:16] == b"WAVEfmt "
    assert raw[36:40] == b"data" and int.from_bytes(raw[40:44], "little") == 6
    assert raw[44:] == b"\x01\x00\xfe\xff\x03\x00"


def test_stereo_sink(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    left = tone_samples([500.0], 0.02)
    right = tone_samples([1500.0], 0.02)
    with WavSink(path, channels=2) as sink:
        sink.write_stereo(left, right)
        sink.write(np.column_stack([right, left]))
        with pytest.raises(MediaError):
            sink.write(left)
        with pytest.raises(MediaError):
            sink.write_stereo(left, right[:80])
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getnframes()) == (2, 320)
        data = np.frombuffer(w.readframes(320), dtype="<i2").reshape(-1, 2)
    assert np.array_equal(data[:160, 0], left) and np.array_equal(data[:160, 1], right)
    assert np.array_equal(data[160:, 0], right)
    assert tone_power_db(data[:160, 0], 500) > -1 and tone_power_db(data[:160, 1], 1500) > -1


def test_sink_arguments(tmp_path: Path) -> None:
    with pytest.raises(MediaError):
        WavSink(tmp_path / "x.wav", channels=3)
    with WavSink(tmp_path / "m.wav") as mono, pytest.raises(MediaError):
        mono.write_stereo(np.zeros(1, np.int16), np.zeros(1, np.int16))


# -- WavSource -----------------------------------------------------------------------------------


def test_source_frames_and_loop(tmp_path: Path) -> None:
    path = tmp_path / "prompt.wav"
    samples = tone_samples([700.0], 0.05)  # 400 samples: 2.5 frames
    write_wav(path, samples)
    source = WavSource(path)
    assert abs(source.duration - 0.05) < 1e-9
    frames = list(source)
    assert len(frames) == 3 and not frames[2][80:].any()
    assert np.array_equal(np.concatenate(frames)[:400], samples)
    looped = WavSource(path, loop=True)
    out = np.concatenate([looped.next_frame() for _ in range(5)])  # type: ignore[misc]
    assert np.array_equal(out, np.tile(samples, 2))


def test_sink_to_source_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "rt.wav"
    tone = tone_samples([1000.0, 1300.0], 0.2, level_dbfs=-15)
    with WavSink(path) as sink:
        sink.write(tone)
    assert np.array_equal(read_wav(path), tone)


@pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (8000, 2), (44100, 2)])
def test_other_formats_are_refused(tmp_path: Path, rate: int, channels: int) -> None:
    path = tmp_path / "other.wav"
    write_wav(path, np.zeros(100 * channels, dtype=np.int16), rate=rate, channels=channels)
    with pytest.raises(WavFormatError, match="need 8000 Hz mono 16-bit"):
        WavSource(path)


def test_eight_bit_and_garbage_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "u8.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(bytes(100))
    with pytest.raises(WavFormatError):
        read_wav(path)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not a wav file at all")
    with pytest.raises(WavFormatError):
        read_wav(junk)


# -- mixing --------------------------------------------------------------------------------------


def test_mix_saturates() -> None:
    a = np.array([30000, -30000, 100, 0], dtype=np.int16)
    b = np.array([10000, -10000, -50, 0], dtype=np.int16)
    assert mix([a, b]).tolist() == [32767, -32768, 50, 0]
    assert mix([a, b, b]).tolist() == [32767, -32768, 0, 0]
    assert mix([a]).tolist() == a.tolist() and mix([a]) is not a
    assert mix([]).shape == (160,) and not mix([]).any()


@pytest.mark.parametrize("audioop", [True, False])
def test_mix_bytes_matches_numpy(audioop: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not audioop:
        monkeypatch.setattr(mixer_module, "_audioop", None)
    elif mixer_module._audioop is None:
        pytest.skip("no audioop in this interpreter")
    a = tone_samples([300.0], 0.02, level_dbfs=-1)
    b = tone_samples([310.0], 0.02, level_dbfs=-1)
    assert mix_bytes(a.tobytes(), b.tobytes()) == mix([a, b]).tobytes()


def frames(*freqs: float) -> np.ndarray:
    return np.stack([tone_samples([f], 0.02, level_dbfs=-20) for f in freqs])


def test_two_party_bridge() -> None:
    m = MixMatrix(2)
    inputs = frames(500, 1500)
    out = m.mix(inputs)
    assert np.array_equal(out[0], inputs[1]) and np.array_equal(out[1], inputs[0])
    assert m.hears(0, 1) and not m.hears(0, 0)


def test_monitor_whisper_barge() -> None:
    customer, agent, supervisor = 0, 1, 2
    m = MixMatrix(3, conference=False)
    m.connect(customer, agent)
    m.connect(agent, customer)
    # Monitor: the supervisor hears both, nobody hears the supervisor.
    m.connect(customer, supervisor)
    m.connect(agent, supervisor)
    inputs = frames(400, 1000, 2500)
    out = m.mix(inputs)
    assert tone_power_db(out[customer], 2500) < -60 and tone_power_db(out[agent], 2500) < -60
    assert tone_power_db(out[supervisor], 400) > -4 and tone_power_db(out[supervisor], 1000) > -4
    # Whisper: the supervisor's row reaches the agent's column only.
    m.connect(supervisor, agent)
    out = m.mix(inputs)
    assert tone_power_db(out[agent], 2500) > -4 and tone_power_db(out[customer], 2500) < -60
    assert m.routes[supervisor].tolist() == [False, True, False]
    # Barge: everyone hears the supervisor.
    m.connect(supervisor, customer)
    out = m.mix(inputs)
    assert tone_power_db(out[customer], 2500) > -4
    assert np.array_equal(out[customer], mix([inputs[agent], inputs[supervisor]]))
    # The supervisor leaves.
    m.isolate(supervisor)
    out = m.mix(inputs)
    assert np.array_equal(out[customer], inputs[agent]) and not out[supervisor].any()
    m.disconnect(agent, customer)
    assert not m.mix(inputs)[customer].any()
    m.connect(customer, customer)  # a party never hears itself
    assert not m.hears(customer, customer)


def test_batch_of_calls_in_one_product() -> None:
    m = MixMatrix(3)
    batch = np.stack([frames(300 + 10 * i, 800 + 10 * i, 2000 + 10 * i) for i in range(50)])
    assert batch.shape == (50, 3, 160)
    out = m.mix(batch)
    assert out.shape == (50, 3, 160) and out.dtype == np.int16
    for i in (0, 17, 49):
        assert np.array_equal(out[i], m.mix(batch[i]))
        assert np.array_equal(out[i, 0], mix([batch[i, 1], batch[i, 2]]))


def test_matrix_mix_saturates() -> None:
    loud = np.full((3, 160), 20000, dtype=np.int16)
    assert (MixMatrix(3).mix(loud) == 32767).all()
    with pytest.raises(ValueError):
        MixMatrix(0)
