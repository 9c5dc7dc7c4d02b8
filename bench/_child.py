"""A bench's child process spoken to over a line protocol: JSON lines on its stdout, commands
("stats", "quit") on its stdin."""

from __future__ import annotations

import asyncio
import contextlib
import json


class LineChild:
    exited = "child process exited"
    """What a reader says when the child's stdout closes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def _read(self) -> dict[str, object]:
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(self.exited)
        return json.loads(line)  # type: ignore[no-any-return]

    async def stats(self) -> dict[str, int]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"stats\n")
        await self.proc.stdin.drain()
        return await self._read()  # type: ignore[return-value]

    async def stop(self) -> None:
        if self.proc.returncode is not None:
            return
        assert self.proc.stdin is not None
        with contextlib.suppress(ConnectionError):
            self.proc.stdin.write(b"quit\n")
            await self.proc.stdin.drain()
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
