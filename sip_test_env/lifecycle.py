"""Test peers (phones, proxies, relays) used as `async with` (`Started`, from
telephony.aio: started on entry and stopped on exit, and stopped again when their start fails
half way, so no process a test began outlives it); and the end of a peer's process group.
(`callcenter/cluster.py` ends its nodes the same way with its own loop: the product does not
import the test environment.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal


async def end_process_group(
    proc: asyncio.subprocess.Process,
    *,
    signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGKILL),
    timeout: float = 5.0,
) -> None:
    """Signal the process group `proc` leads (its children, one per worker, too) with each of
    `signals` in turn until it has ended, waiting up to `timeout` after each."""
    for sig in signals:
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), timeout)
