"""A recording left by a crash: the header catches up with the audio on disk and the analytics
come out as the recorder would have reported them."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import wave
from pathlib import Path

import numpy as np
import pytest

from recordings import CallRecorder, RecordingError, TalkTimeline, recover_recording, talk_timeline
from recordings.recorder import _wav_header

from ._audio import RATE, read_stereo, tone, voice

FRAME = 160
ROOT = Path(__file__).resolve().parents[2]


def conversation(seconds_each: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Customer speaks, then the agent, then both at once, then silence (left, right)."""
    n = round(seconds_each * RATE)
    quiet = np.zeros(n, dtype=np.int16)
    customer = np.concatenate([voice(seconds_each, 120), quiet, voice(seconds_each, 130), quiet])
    agent = np.concatenate([quiet, voice(seconds_each, 210), voice(seconds_each, 220), quiet])
    return customer, agent


def record(path: Path, customer: np.ndarray, agent: np.ndarray) -> CallRecorder:
    """A recorder fed the whole conversation and flushed, but never closed (the crash)."""
    rec = CallRecorder(path, flush_every_frames=50)
    for start in range(0, customer.size, FRAME):
        rec.push("customer", customer[start : start + FRAME])
        rec.push("agent", agent[start : start + FRAME])
        rec.tick()
    rec.flush()
    return rec


def test_a_current_header_is_left_alone_and_the_analytics_match_the_recorders(
    tmp_path: Path,
) -> None:
    customer, agent = conversation()
    rec = record(tmp_path / "call.wav", customer, agent)
    before = (tmp_path / "call.wav").read_bytes()
    expected = rec.result().analytics
    recovered = recover_recording(tmp_path / "call.wav")
    assert (tmp_path / "call.wav").read_bytes() == before
    assert recovered.frames == rec.frames == 400
    assert recovered.duration_seconds == 8.0 and recovered.recovered_seconds == 0.0
    assert recovered.analytics == expected
    assert expected is not None and expected.overtalk_seconds > 1.5
    assert expected.customer_talk_seconds > 3.5 and expected.agent_talk_seconds > 3.5
    rec.close()


def test_audio_past_a_lagging_header_is_counted_again(tmp_path: Path) -> None:
    customer, agent = conversation()
    path = tmp_path / "call.wav"
    rec = record(path, customer, agent)
    expected = rec.result().analytics
    rec.close()
    # The crash came between the data write and the header rewrite: the header counts 7 s.
    with open(path, "r+b") as f:
        f.write(_wav_header(7 * RATE * 4))
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() == 7 * RATE
    recovered = recover_recording(path)
    assert recovered.recovered_seconds == 1.0 and recovered.duration_seconds == 8.0
    assert recovered.analytics == expected
    left, right = read_stereo(path)
    assert np.array_equal(left, customer) and np.array_equal(right, agent)


def test_a_torn_last_write_is_kept_but_not_counted(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    rec = record(path, tone(500, 1.0), tone(900, 1.0))
    rec.close()
    with open(path, "ab") as f:
        f.write(b"\x01\x00" * 101)  # part of a flush that the kill cut short
    size = path.stat().st_size
    recovered = recover_recording(path, analytics=False)
    assert recovered.analytics is None and recovered.frames == 50
    assert path.stat().st_size == size  # nothing is cut off the file
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() == RATE


def test_what_is_not_our_recording_is_refused_untouched(tmp_path: Path) -> None:
    mono = tmp_path / "mono.wav"
    with wave.open(str(mono), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(tone(440, 0.5).tobytes())
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF" + bytes(100))
    short = tmp_path / "short.wav"
    short.write_bytes(b"RIFF")
    for path, words in [
        (mono, "not 8 kHz 16-bit stereo"),
        (junk, "not a recording of this engine"),
        (short, "too short"),
        (tmp_path / "missing.wav", "cannot open"),
    ]:
        before = path.read_bytes() if path.exists() else None
        with pytest.raises(RecordingError, match=words):
            recover_recording(path)
        assert (path.read_bytes() if path.exists() else None) == before


def test_after_a_real_kill_9(tmp_path: Path) -> None:
    """A child process records and is killed with SIGKILL mid-call; the recovery counts what it
    wrote and analyses it."""
    path = tmp_path / "killed.wav"
    script = textwrap.dedent(
        f"""
        import os, sys
        import numpy as np
        sys.path.insert(0, {str(ROOT)!r})
        from recordings import CallRecorder
        rec = CallRecorder({str(path)!r}, flush_every_frames=50)
        frame = (np.sin(np.arange(160) * 0.3) * 8000).astype(np.int16)
        for i in range(30 * 50):
            rec.push("customer", frame)
            rec.push("agent", frame)
            rec.tick()
            if i == 10 * 50 + 10:
                print("ready", flush=True)
                os.kill(os.getpid(), {int(signal.SIGKILL)})
        """
    )
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert child.stdout.strip() == "ready"
    recovered = recover_recording(path)
    # Killed after 511 ticks (10.22 s): at most the last flush interval (1 s) is lost.
    assert 9.22 <= recovered.duration_seconds <= 10.22
    assert recovered.analytics is not None
    assert recovered.analytics.duration_seconds == recovered.duration_seconds
    size = struct.unpack("<I", path.read_bytes()[40:44])[0]
    assert size == recovered.frames * FRAME * 4
    assert os.path.getsize(path) >= 44 + size


def test_the_timeline_says_who_spoke_when(tmp_path: Path) -> None:
    """Customer 0-2 s and 4-6 s, agent 2-6 s, silence 6-8 s: the timeline's runs, within the
    VAD's smoothing (a frame or a few), and the same analytics as the recorder's."""
    customer, agent = conversation()
    rec = record(tmp_path / "call.wav", customer, agent)
    rec.close()
    timeline = talk_timeline(tmp_path / "call.wav")
    assert timeline["duration_seconds"] == pytest.approx(8.0, abs=0.05)
    runs = [(s["who"], s["start"], s["end"]) for s in timeline["segments"]]
    assert [who for who, _, _ in runs] == ["customer", "agent", "customer"]
    for (_, start, end), (want_start, want_end) in zip(runs, [(0, 2), (2, 6), (4, 6)], strict=True):
        assert start == pytest.approx(want_start, abs=0.15)
        assert end == pytest.approx(want_end, abs=0.15)
    assert timeline["analytics"] == rec.result().analytics.to_dict()  # type: ignore[union-attr]


def test_the_timeline_bridges_short_pauses_only() -> None:
    timeline = TalkTimeline(gap_frames=2)
    for customer in "11001000111":
        timeline.add(customer == "1", False)
    assert timeline.segments() == [
        {"who": "customer", "start": 0.0, "end": 0.1},  # the 2-frame pause is bridged
        {"who": "customer", "start": 0.16, "end": 0.22},
    ]
    assert timeline.duration_seconds == 0.22
