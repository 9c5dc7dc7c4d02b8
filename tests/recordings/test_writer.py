"""The recorder's file operations on one writer thread (recordings/writer.py): the same file as
writing in the caller, errors reported at the next flush, a bound on audio the disk owes."""

from __future__ import annotations

import threading
from pathlib import Path

from recordings import CallRecorder
from recordings.writer import DirectFiles, WavFile, WriterThread

from ._audio import read_stereo, tone, voice


def _record(path: Path, writer: WriterThread | DirectFiles | None, frames: int = 120) -> None:
    rec = CallRecorder(path, flush_every_frames=7, writer=writer)
    for i in range(frames):
        rec.push("customer", voice(0.02, f0=100.0 + i))
        if i % 3:
            rec.push("agent", tone(600, 0.02))
        rec.tick()
    result = rec.close()
    assert result.error is None and result.frames == frames


def test_the_thread_writes_the_same_file_as_the_caller(tmp_path: Path) -> None:
    writer = WriterThread()
    _record(tmp_path / "direct.wav", None)
    _record(tmp_path / "threaded.wav", writer)
    writer.stop()
    threaded = (tmp_path / "threaded.wav").read_bytes()
    assert threaded == (tmp_path / "direct.wav").read_bytes()
    left, right = read_stereo(tmp_path / "threaded.wav")
    assert left.size == right.size == 120 * 160


def test_the_operations_run_on_one_thread_in_order(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []

    class Watched(WriterThread):
        @staticmethod
        def _create(file: WavFile, header: bytes) -> None:
            seen.append(("create", threading.current_thread().name))
            WriterThread._create(file, header)

        @staticmethod
        def _close(file: WavFile) -> None:
            seen.append(("close", threading.current_thread().name))
            WriterThread._close(file)

    writer = Watched()
    for n in range(3):
        _record(tmp_path / f"{n}.wav", writer, frames=10)
    writer.stop()
    assert [what for what, _ in seen] == ["create", "close"] * 3
    assert {thread for _, thread in seen} == {"recordings-writer"}
    for n in range(3):
        assert read_stereo(tmp_path / f"{n}.wav")[0].size == 10 * 160


def test_a_file_the_thread_cannot_create_stops_the_recording_not_the_call(tmp_path: Path) -> None:
    writer = WriterThread()
    missing = tmp_path / "no-such-folder" / "call.wav"
    rec = CallRecorder(missing, flush_every_frames=5, writer=writer)
    for _ in range(20):  # the caller goes on: the error is the thread's
        rec.push("customer", voice(0.02))
        rec.tick()
    writer.stop()  # the thread has tried everything queued: the close sees how it went
    result = rec.close()
    assert result.error is not None and "cannot create recording" in result.error
    assert result.duration_seconds == 0 and result.frames == 20
    assert result.analytics is not None and result.analytics.duration_seconds == 0.4


def test_a_disk_that_falls_behind_stops_a_recording_instead_of_growing_memory(
    tmp_path: Path,
) -> None:
    writer = WriterThread(max_behind_bytes=0)  # nothing may wait for the disk
    rec = CallRecorder(tmp_path / "call.wav", flush_every_frames=5, writer=writer)
    for _ in range(10):
        rec.push("customer", voice(0.02))
        rec.tick()
    result = rec.close()
    writer.stop()
    assert result.error is not None and "behind" in result.error
    assert result.duration_seconds == 0 and writer.behind_bytes == 0
    assert read_stereo(tmp_path / "call.wav")[0].size == 0  # still a valid, empty WAV


def test_after_stop_the_caller_writes(tmp_path: Path) -> None:
    writer = WriterThread()
    writer.stop()  # never started: nothing to wait for
    _record(tmp_path / "late.wav", writer, frames=10)
    assert read_stereo(tmp_path / "late.wav")[0].size == 10 * 160
