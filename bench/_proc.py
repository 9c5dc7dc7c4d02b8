"""What the kernel says about a process and the host (Linux /proc), for the bench scripts."""

from __future__ import annotations

import os

_TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of one process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def host_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds over all cores since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / _TICK, sum(values) / _TICK


def host_busy_percent(before: tuple[float, float], after: tuple[float, float]) -> float:
    """Busy share of every core between two host_busy_seconds() readings: 100% = one core."""
    total = after[1] - before[1]
    busy = (after[0] - before[0]) / total if total else 0.0
    return 100 * busy * (os.cpu_count() or 1)
