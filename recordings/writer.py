"""Where a recorder's bytes go: the file operations of one WAV, done in the caller
(:class:`DirectFiles`) or on one writer thread for every recording of the engine
(:class:`WriterThread`).

Why a thread: on ext4 creating a file waits for the journal, and PostgreSQL beside the engine
commits (fsyncs its WAL) many times a second. Measured on the 2-core test box: 650 us median per
create, 2.6 ms at worst, against 32 us with no database committing. On the event loop that is
lag for every answered call (0.65 ms x 200 calls/s = 13 % of the loop's time blocked, not
counted as CPU); on a thread the loop goes on, since the system calls release the GIL. Appends
and closes go the same way, behind the create. One thread for all recordings keeps each file's
operations in order (one FIFO queue) and costs the caller one queue put per flush; it is the
shape of FreeSWITCH's and Asterisk's recorders, which write from their own threads.

An error on the thread (cannot create, disk full) lands on the file's ``error``; the recorder
reads it at its next flush and stops writing, as it does for an error in the caller.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, Final

from .errors import RecordingError

logger = logging.getLogger(__name__)

__all__ = ["DirectFiles", "FileWriter", "WavFile", "WriterThread"]

_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)

MAX_BEHIND_BYTES: Final = 256 * 1024 * 1024
"""Audio queued for the writer thread at most (about 2.3 hours of stereo calls, or 1000 calls'
8 s): beyond it the disk is not keeping up, and a file whose append would pass the bound stops
recording (its error says so) instead of the engine's memory growing without end."""


class WavFile:
    """One recording's file as the writer holds it."""

    __slots__ = ("error", "fd", "path", "reported", "written")

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None
        self.written = 0
        """Audio bytes appended (and counted by the header) so far."""
        self.error: str | None = None
        """Why the file stopped taking writes (set by whichever side did the write)."""
        self.reported = False
        """Whether `error` was logged (by the writer's thread or by the recorder)."""


class FileWriter:
    """The file operations a recorder needs, done at once in the caller."""

    def create(self, path: str, header: bytes) -> WavFile:
        """A new file holding `header` (a valid, empty WAV)."""
        raise NotImplementedError

    def append(self, file: WavFile, data: bytes, header: bytes, *, fsync: bool) -> None:
        """Append `data`, then rewrite the header in place (sizes after data: a crash in
        between leaves a header that undercounts, still valid); `fsync` syncs the file."""
        raise NotImplementedError

    def close(self, file: WavFile) -> None:
        raise NotImplementedError

    @staticmethod
    def _create(file: WavFile, header: bytes) -> None:
        try:
            file.fd = os.open(file.path, _FLAGS, 0o640)
            os.write(file.fd, header)
        except OSError as exc:
            file.error = f"cannot create recording: {exc}"

    @staticmethod
    def _append(file: WavFile, data: bytes, header: bytes, fsync: bool) -> None:
        fd = file.fd
        if fd is None or file.error is not None:
            return
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            file.written += written
            os.pwrite(fd, header, 0)
            if fsync:
                os.fsync(fd)
        except OSError as exc:
            file.error = str(exc)

    @staticmethod
    def _close(file: WavFile) -> None:
        fd, file.fd = file.fd, None
        if fd is None:
            return
        try:
            os.close(fd)
        except OSError as exc:
            file.error = file.error or str(exc)


class DirectFiles(FileWriter):
    """Every operation done at once, in the caller (tools, tests, the recovery at start)."""

    def create(self, path: str, header: bytes) -> WavFile:
        file = WavFile(path)
        self._create(file, header)
        if file.error is not None:
            raise RecordingError(f"{path}: {file.error}")
        return file

    def append(self, file: WavFile, data: bytes, header: bytes, *, fsync: bool) -> None:
        self._append(file, data, header, fsync)

    def close(self, file: WavFile) -> None:
        self._close(file)


class WriterThread(FileWriter):
    """Every operation queued to one thread, started at the first one. `stop` writes what is
    queued and ends the thread; operations after it are done in the caller."""

    def __init__(self, *, max_behind_bytes: int = MAX_BEHIND_BYTES) -> None:
        self.max_behind_bytes = max_behind_bytes
        self._queue: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None]
        self._queue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self.behind_bytes = 0
        """Audio queued and not yet written."""

    def create(self, path: str, header: bytes) -> WavFile:
        file = WavFile(path)
        self._submit(self._create, file, header)
        return file

    def append(self, file: WavFile, data: bytes, header: bytes, *, fsync: bool) -> None:
        if self.behind_bytes + len(data) > self.max_behind_bytes:
            file.error = f"the disk is behind by {self.behind_bytes // 2**20} MiB of audio"
            return
        with self._lock:
            self.behind_bytes += len(data)
        self._submit(self._written, file, data, header, fsync)

    def close(self, file: WavFile) -> None:
        self._submit(self._close, file)

    def stop(self, timeout: float | None = None) -> None:
        """Write everything queued, then end the thread (blocks: call it off the event loop,
        once no recording is open)."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)
        with self._lock:
            self._stopped = True
            self._thread = None
        while True:  # anything queued behind the end
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                operation, args = item
                operation(*args)

    def _written(self, file: WavFile, data: bytes, header: bytes, fsync: bool) -> None:
        try:
            self._append(file, data, header, fsync)
        finally:
            with self._lock:
                self.behind_bytes -= len(data)

    def _submit(self, operation: Callable[..., None], *args: Any) -> None:
        with self._lock:
            if self._stopped:
                run_here = True
            else:
                run_here = False
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="recordings-writer", daemon=True
                    )
                    self._thread.start()
        if run_here:
            operation(*args)
        else:
            self._queue.put((operation, args))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            operation, args = item
            try:
                operation(*args)
            except Exception:  # a bug: this file is lost, the others go on
                logger.exception("recording writer: %s failed", operation.__name__)
            file = args[0]
            if file.error is not None and not file.reported:
                # Said here: the recorder may have closed before this (a short call).
                file.reported = True
                logger.error("%s: recording stopped: %s", file.path, file.error)
