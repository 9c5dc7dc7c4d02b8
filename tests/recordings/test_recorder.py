from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recordings import CallRecorder, RecordingError

from ._audio import RATE, level_db, read_stereo, tone, voice

FRAME = 160
ROOT = Path(__file__).resolve().parents[2]


def frames_of(samples: np.ndarray, size: int = FRAME) -> list[np.ndarray]:
    return [samples[i : i + size] for i in range(0, samples.size, size)]


def ramp(start: int, n: int) -> np.ndarray:
    """Distinct non-zero samples, so that each one can be found again in the recording."""
    return (np.arange(start, start + n) % 32000 + 1).astype(np.int16)


# -- layout and duration -------------------------------------------------------------------------


def test_customer_left_agent_right(tmp_path: Path) -> None:
    customer, agent = frames_of(tone(600, 2.0)), frames_of(tone(1000, 2.0))
    with CallRecorder(tmp_path / "call.wav") as rec:
        for c, a in zip(customer, agent, strict=True):
            rec.push("customer", c)
            rec.push("agent", a)
            rec.tick()
    left, right = read_stereo(tmp_path / "call.wav")
    assert left.size == right.size == 2 * RATE
    # Each tone is in its own channel only: >= 60 dB above what leaks into the other.
    assert level_db(left, 600) - level_db(right, 600) > 60
    assert level_db(right, 1000) - level_db(left, 1000) > 60
    assert level_db(left, 600) - level_db(left, 1000) > 40
    assert level_db(right, 1000) - level_db(right, 600) > 40
    # Nothing lost or shifted: the channels are the pushed samples.
    assert np.array_equal(left, np.concatenate(customer))
    assert np.array_equal(right, np.concatenate(agent))


@pytest.mark.parametrize("ticks", [0, 1, 49, 50, 51, 377])
def test_duration_is_ticks_times_20ms(tmp_path: Path, ticks: int) -> None:
    rec = CallRecorder(tmp_path / "call.wav", analytics=False)
    for i in range(ticks):
        if i % 3 == 0:  # one side now and then, the other never: both still one frame per tick
            rec.push("customer", tone(600, 0.02))
        rec.tick()
    result = rec.close()
    assert result.frames == ticks
    assert result.duration_seconds == pytest.approx(ticks * 0.02)
    assert result.agent_missing_frames == ticks
    assert result.analytics is None
    with wave.open(str(tmp_path / "call.wav"), "rb") as w:
        assert w.getnframes() == ticks * FRAME
    size = os.path.getsize(tmp_path / "call.wav")
    header = (tmp_path / "call.wav").read_bytes()[:44]
    riff_size = struct.unpack_from("<I", header, 4)[0]
    data_size = struct.unpack_from("<I", header, 40)[0]
    assert (riff_size, data_size) == (size - 8, size - 44)


def test_agent_source_changes_without_reopening(tmp_path: Path) -> None:
    """Transfer: the first agent leaves, a second one picks up; same file, same right channel."""
    with CallRecorder(tmp_path / "call.wav", analytics=False) as rec:
        for leg_tone, seconds in ((tone(1000, 1.0), 1.0), (None, 0.5), (tone(1400, 1.0), 1.0)):
            for i in range(round(seconds * 50)):
                rec.push("customer", tone(600, 0.02))
                if leg_tone is not None:
                    rec.push("agent", leg_tone[i * FRAME : (i + 1) * FRAME])
                rec.tick()
    _, right = read_stereo(tmp_path / "call.wav")
    first, gap, second = right[:RATE], right[RATE : RATE + RATE // 2], right[-RATE:]
    assert level_db(first, 1000) - level_db(first, 1400) > 40
    assert not gap.any()
    assert level_db(second, 1400) - level_db(second, 1000) > 40


# -- jitter, loss, bursts ------------------------------------------------------------------------


def test_late_packet_becomes_silence_then_plays_one_frame_later(tmp_path: Path) -> None:
    audio = ramp(0, 10 * FRAME)
    packets = frames_of(audio)
    with CallRecorder(tmp_path / "call.wav", analytics=False) as rec:
        for i in range(3):
            rec.push("customer", packets[i])
            rec.tick()
        rec.tick()  # packet 3 is late: this tick has nothing
        rec.push("customer", packets[3])  # ... and arrives just before packet 4
        for i in range(4, 10):
            rec.push("customer", packets[i])
            rec.tick()
        rec.tick()
        result = rec.close()
    left, _ = read_stereo(tmp_path / "call.wav")
    assert result.customer_missing_frames == 1 and result.dropped_samples == 0
    assert not left[3 * FRAME : 4 * FRAME].any()
    assert np.array_equal(left[4 * FRAME :], audio[3 * FRAME :])  # nothing lost, one frame late


def test_lost_packet_is_a_gap_of_silence_in_place(tmp_path: Path) -> None:
    audio = ramp(0, 10 * FRAME)
    with CallRecorder(tmp_path / "call.wav", analytics=False) as rec:
        for i, packet in enumerate(frames_of(audio)):
            if i != 4:
                rec.push("agent", packet)
            rec.tick()
    _, right = read_stereo(tmp_path / "call.wav")
    expected = audio.copy()
    expected[4 * FRAME : 5 * FRAME] = 0
    assert np.array_equal(right, expected)  # later audio stays aligned to the clock


def test_burst_is_bounded_and_keeps_the_newest_audio(tmp_path: Path) -> None:
    audio = ramp(0, 20 * FRAME)
    with CallRecorder(tmp_path / "call.wav", max_buffered_ms=100, analytics=False) as rec:
        for packet in frames_of(audio):  # 400 ms arrive at once
            rec.push("customer", packet)
        for _ in range(10):
            rec.tick()
        result = rec.close()
    left, _ = read_stereo(tmp_path / "call.wav")
    kept = 800  # 100 ms
    assert result.dropped_samples == audio.size - kept
    assert np.array_equal(left[:kept], audio[-kept:])  # at most 100 ms behind the clock
    assert not left[kept:].any()


@pytest.mark.parametrize("packet_ms", [10, 30, 60])
def test_other_packet_sizes_play_without_holes(tmp_path: Path, packet_ms: int) -> None:
    """ptime 10/30/60 against a 20 ms clock: every sample plays, in order; a partial frame
    waits for the next packet (one 20 ms hole while the stream settles) instead of being chopped
    into a gap at every packet."""
    packet = packet_ms * 8
    audio = ramp(0, 120 * packet)
    ticks = np.arange(0, 120 * packet_ms + 100, 20)
    arrivals = np.arange(0, 120 * packet_ms, packet_ms)
    with CallRecorder(tmp_path / "call.wav", analytics=False) as rec:
        p = 0
        for now in ticks:
            while p < arrivals.size and arrivals[p] <= now:
                rec.push("customer", audio[p * packet : (p + 1) * packet])
                p += 1
            rec.tick()
        result = rec.close()
    left, _ = read_stereo(tmp_path / "call.wav")
    sound = np.flatnonzero(left)
    assert np.array_equal(left[sound], audio)
    assert sound[0] <= FRAME
    assert sound[-1] - sound[0] + 1 - audio.size <= FRAME  # at most one hole, while settling
    assert result.dropped_samples == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.sampled_from(["customer", "agent"]), st.integers(1, 400)),
            st.just(("tick", 0)),
        ),
        max_size=80,  # at most 32000 samples per side: every ramp value stays unique
    )
)
def test_every_sample_is_written_dropped_or_still_buffered(ops: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "call.wav"
        rec = CallRecorder(path, flush_every_frames=7, max_buffered_ms=100, analytics=False)
        pushed = {"customer": 0, "agent": 0}
        ticks = 0
        for what, n in ops:
            if what == "tick":
                rec.tick()
                ticks += 1
            else:
                rec.push(what, ramp(pushed[what], n))  # type: ignore[arg-type]
                pushed[what] += n
        buffered = {"customer": len(rec._customer) // 2, "agent": len(rec._agent) // 2}
        assert max(buffered.values()) <= 800
        result = rec.close()
        left, right = read_stereo(path)
    assert result.frames == ticks and left.size == ticks * FRAME
    written = 0
    for channel in (left, right):
        heard = channel[channel != 0]
        written += heard.size
        # In order and none twice: what was heard is the pushed stream with some parts dropped.
        assert np.all(np.diff(heard.astype(np.int64)) > 0)
    assert written + result.dropped_samples + sum(buffered.values()) == sum(pushed.values())


# -- crash safety --------------------------------------------------------------------------------


def test_valid_wav_after_every_flush(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    rec = CallRecorder(path, flush_every_frames=10, analytics=False)
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() == 0 and w.getnchannels() == 2  # valid before any audio
    flushes = []
    for tick in range(1, 101):
        rec.push("customer", tone(600, 0.02))
        rec.tick()
        with wave.open(str(path), "rb") as w:
            on_disk = w.getnframes()
            assert len(w.readframes(on_disk)) == on_disk * 4
        last_flush = flushes[-1] if flushes else 0
        assert on_disk in (tick * FRAME, last_flush * FRAME)  # all pending frames, or none
        if on_disk == tick * FRAME:
            flushes.append(tick)
    # The first flush is spread by the file name; then one every 10 ticks.
    assert 1 <= flushes[0] <= 10 and np.all(np.diff(flushes) == 10)
    rec.close()


def test_crash_without_close_loses_at_most_one_second(tmp_path: Path) -> None:
    path, copy = tmp_path / "call.wav", tmp_path / "after-crash.wav"
    seconds = 5
    customer = voice(seconds + 0.9)
    rec = CallRecorder(path)  # default: flush every 50 frames = 1 s
    for i, frame in enumerate(frames_of(customer)):
        rec.push("customer", frame)
        rec.push("agent", tone(1000, 0.02))
        rec.tick()
        assert i < 10_000
    shutil.copyfile(path, copy)  # the file as a crash would leave it: no close(), no flush()
    with wave.open(str(copy), "rb") as w:
        assert w.getnframes() / RATE >= seconds - 1
        on_disk = w.getnframes()
    left, right = read_stereo(copy)
    assert np.array_equal(left, customer[:on_disk])
    assert level_db(right, 1000) - level_db(right, 600) > 40
    rec.close()


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from recordings import CallRecorder

    rec = CallRecorder(sys.argv[1])
    t = np.arange(160)
    left = (8000 * np.sin(2 * np.pi * 600 * t / 8000)).astype(np.int16)
    right = (8000 * np.sin(2 * np.pi * 1000 * t / 8000)).astype(np.int16)
    for _ in range(3 * 50 + 20):  # 3.4 s of 20 ms ticks, the last 0.4 s not yet flushed
        rec.push("customer", left)
        rec.push("agent", right)
        rec.tick()
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_kill_9_leaves_a_playable_file(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], cwd=ROOT, capture_output=True, timeout=60
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() / RATE >= 2.0
    left, right = read_stereo(path)
    assert level_db(left, 600) - level_db(right, 600) > 40
    assert level_db(right, 1000) - level_db(left, 1000) > 40


def test_write_failure_stops_recording_not_the_call(tmp_path: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full to make writes fail")
    rec = CallRecorder(tmp_path / "call.wav", flush_every_frames=5)
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        os.dup2(full, rec._file.fd)  # type: ignore[union-attr,arg-type]  # the disk fills up
    finally:
        os.close(full)
    for _ in range(20):
        rec.push("customer", voice(0.02))
        rec.tick()  # no exception reaches the media clock
    result = rec.close()
    assert result.error is not None and "space" in result.error.lower()
    assert result.frames == 20 and result.duration_seconds == 0
    assert result.analytics is not None and result.analytics.duration_seconds == 0.4


# -- API edges -----------------------------------------------------------------------------------


def test_bad_input_and_closed_recorder(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path / "call.wav")
    with pytest.raises(RecordingError):
        rec.push("supervisor", tone(600, 0.02))  # type: ignore[arg-type]
    with pytest.raises(RecordingError):
        rec.push("customer", np.zeros(160, dtype=np.float32))
    with pytest.raises(RecordingError):
        rec.push("agent", b"\x00\x01\x02")
    rec.push("agent", tone(600, 0.02).tobytes())  # bytes are the cheap path
    rec.tick()
    first = rec.close()
    assert rec.close() == first  # closing twice reports again
    with pytest.raises(RecordingError):
        rec.push("customer", tone(600, 0.02))
    with pytest.raises(RecordingError):
        rec.tick()
    with pytest.raises(RecordingError):
        CallRecorder(tmp_path / "x.wav", flush_every_frames=0)
    with pytest.raises(RecordingError):
        CallRecorder(tmp_path / "no-such-folder" / "x.wav")


def test_close_reports_analytics(tmp_path: Path) -> None:
    with CallRecorder(tmp_path / "call.wav") as rec:
        speech = frames_of(voice(2.0))
        for i in range(150):  # customer 0-2 s, agent 1-3 s
            if i < 100:
                rec.push("customer", speech[i])
            if 50 <= i:
                rec.push("agent", speech[i - 50])
            rec.tick()
    analytics = rec.close().analytics
    assert analytics is not None
    assert analytics.duration_seconds == 3.0
    assert analytics.customer_talk_seconds == pytest.approx(2.0, abs=0.25)
    assert analytics.agent_talk_seconds == pytest.approx(2.0, abs=0.25)
    assert analytics.overtalk_seconds == pytest.approx(1.0, abs=0.25)


@settings(max_examples=40, deadline=None)
@given(
    batches=st.lists(
        st.tuples(st.integers(0, 7), st.integers(0, 1200), st.integers(0, 1200)),
        min_size=1,
        max_size=25,
    )
)
def test_ticks_in_batches_record_what_ticks_one_by_one_record(
    batches: list[tuple[int, int, int]],
) -> None:
    """`advance(n)` (the engine hands recorders 5 frames at once) writes the same file, the
    same analytics and the same missing-frame counts as n ticks, whatever each side got in
    between: whole frames, partial frames, nothing."""
    with tempfile.TemporaryDirectory() as folder:
        one, many = Path(folder) / "one.wav", Path(folder) / "many.wav"
        by_tick = CallRecorder(one, max_buffered_ms=1000)
        batched = CallRecorder(many, max_buffered_ms=1000)
        speech = voice(6.0)  # the customer talks (the VAD decides), the agent's samples count
        start = 0
        for frames, customer, agent in batches:
            c = np.resize(speech[start % speech.size :], customer)
            a = ramp(start, agent)
            start += customer + agent
            for rec in (by_tick, batched):
                rec.push("customer", c)
                rec.push("agent", a)
            for _ in range(frames):
                by_tick.tick()
            batched.advance(frames)
        results = by_tick.close(), batched.close()
        assert one.read_bytes()[44:] == many.read_bytes()[44:]
        assert results[0].analytics == results[1].analytics
        assert (results[0].customer_missing_frames, results[0].agent_missing_frames) == (
            results[1].customer_missing_frames,
            results[1].agent_missing_frames,
        )
