"""A packet capture on loopback for tests that must prove what is (not) on the wire: dumpcap
with a capture filter, started and ready before the traffic, stopped after it; tshark reads the
file back.

    async with loopback_capture(tmp_path / "call.pcapng", "tcp port 5061") as capture:
        ...  # the traffic
    fields = await capture.fields("rtp.payload", display="rtp", decode_as=[...])
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

__all__ = ["LoopbackCapture", "loopback_capture"]


@contextlib.asynccontextmanager
async def loopback_capture(path: Path, capture_filter: str) -> AsyncIterator[LoopbackCapture]:
    """A capture of `capture_filter` on lo, ready when entered, written out when left."""
    capture = LoopbackCapture(path, capture_filter)
    await capture.start()
    try:
        yield capture
    finally:
        await capture.stop()


class LoopbackCapture:
    def __init__(self, path: Path, capture_filter: str, *, interface: str = "lo") -> None:
        self.path = path
        self.capture_filter = capture_filter
        self.interface = interface
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            "dumpcap", "-i", self.interface, "-f", self.capture_filter, "-w", str(self.path),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self._proc.stderr is not None
        seen = b""
        try:
            while b"Capturing on" not in seen:  # dumpcap says so once the filter is installed
                line = await asyncio.wait_for(self._proc.stderr.readline(), 10)
                if not line:
                    raise RuntimeError(f"dumpcap did not start: {seen.decode(errors='replace')}")
                seen += line
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGINT)  # dumpcap flushes and closes the file
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    def raw(self) -> bytes:
        """The capture file's bytes (a search for cleartext anywhere in any packet)."""
        return self.path.read_bytes()

    async def fields(
        self,
        *fields: str,
        display: str = "",
        decode_as: tuple[str, ...] = (),
        options: tuple[str, ...] = (),
    ) -> list[list[str]]:
        """tshark's values of `fields` for each packet matching `display`."""
        args = ["tshark", "-n", "-r", str(self.path), "-T", "fields"]
        for field in fields:
            args += ["-e", field]
        for rule in decode_as:
            args += ["-d", rule]
        for option in options:
            args += ["-o", option]
        if display:
            args += ["-Y", display]
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        if proc.returncode != 0:
            raise RuntimeError(f"tshark failed: {err.decode(errors='replace')[-500:]}")
        return [line.split("\t") for line in out.decode().splitlines() if line]
