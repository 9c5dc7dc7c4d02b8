"""Free loopback ports for test peers.

Other processes on the machine (and other tests of this process) may hold ports, so peers take
ports that are free right now for both transports they need. Ports come from below the kernel's
ephemeral range so an outgoing connection cannot grab them between the check and the bind, and
every port handed out is remembered so two peers of one process never get the same one. The pool
is a ring: once the cursor has gone all the way round, the ports of the last turn may be handed
out again where they are free (a turn is thousands of ports, far longer than a test keeps one), so
a long run never runs out.

Under pytest-xdist every worker takes its own share of each range (`worker_share`): the peer
pool here, and the engines' and the carrier's RTP ranges of the tests; processes run side by side
(scripts/test's unit lanes beside the e2e workers) take theirs by SIP_TEST_PORT_SHARE(S).
Processes cannot see each other's handed-out ports, and a port that one checked free may be
bound by another before its peer starts; disjoint shares make that impossible. They also keep a
late RTP packet of one process's call from reaching another's engine on a reused port.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import socket
import threading
from typing import Literal

logger = logging.getLogger(__name__)

__all__ = [
    "SHARES_ENV",
    "SHARE_ENV",
    "PortKind",
    "free_port",
    "free_port_range",
    "port_is_free",
    "worker_share",
]

PortKind = Literal["udp", "tcp", "both"]

# Below Linux's default ephemeral range (32768-60999): the kernel never picks these on its own.
# 30000-31999 above it is the scripted carrier's RTP range (sip_test_env.scripted_carrier).
_POOL_LOW = 20000
_POOL_HIGH = 29999
_ATTEMPTS = 2000

_lock = threading.Lock()
_handed_out: set[int] = set()
_cursor: int | None = None


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


SHARE_ENV = "SIP_TEST_PORT_SHARE"
"""Environment: the share (0, 1...) of every range this process takes; under pytest-xdist the
first of its run, worker gwK taking the one K after it."""
SHARES_ENV = "SIP_TEST_PORT_SHARES"
"""Environment: how many shares the ranges are cut into (default: just enough for this run)."""


def _env_int(name: str) -> int | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise ValueError(f"{name}={text!r}: expected a whole number")
    return int(text)


def _share() -> tuple[int, int]:
    """(K, N): this process takes the K-th of N equal parts of every range."""
    k = _env_int(SHARE_ENV) or 0
    n = k + 1
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if worker.startswith("gw") and worker[2:].isdigit() and workers.isdigit() and int(workers):
        # A worker started again after a crash ("gwN" and up) reuses a share of its run.
        n = k + int(workers)
        k += int(worker[2:]) % int(workers)
    n = _env_int(SHARES_ENV) or n
    if k >= n:
        raise ValueError(f"port share {k} of {n}: set {SHARES_ENV} above {SHARE_ENV} + workers")
    return k, n


def worker_share(low: int, high: int) -> tuple[int, int]:
    """This process's part of the port range `low`-`high` (inclusive).

    The whole range unless the range is shared: under pytest-xdist with N workers worker "gwK"
    takes the K-th of N equal consecutive parts, and processes run side by side (scripts/test's
    lanes) can take parts of their own with SIP_TEST_PORT_SHARE and SIP_TEST_PORT_SHARES."""
    k, n = _share()
    if n == 1:
        return low, high
    size = (high - low + 1) // n
    if size < 2:
        raise ValueError(f"ports {low}-{high} cannot be cut into {n} shares")
    start = low + k * size
    return start, start + size - 1


def _pool() -> tuple[int, int]:
    high = min(_POOL_HIGH, _ephemeral_low() - 1)
    low = min(_POOL_LOW, high - 1000)
    return worker_share(low, high)


def _can_bind(sock_type: int, host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, sock_type) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
                raise
            return False
    return True


def port_is_free(port: int, kind: PortKind = "both", host: str = "127.0.0.1") -> bool:
    """True when `port` can be bound now on `host` for the transports of `kind`, and on no
    other address either: the wildcard bind fails while any address holds the port, so a peer
    still on 127.0.0.2 (a customer, the carrier) is seen by a check for 127.0.0.1, and the
    other way round (CI: a customer baresip "Address already in use" on 127.0.0.2)."""
    hosts = (host, "0.0.0.0") if host != "0.0.0.0" else (host,)
    for where in hosts:
        if kind in ("udp", "both") and not _can_bind(socket.SOCK_DGRAM, where, port):
            return False
        if kind in ("tcp", "both") and not _can_bind(socket.SOCK_STREAM, where, port):
            return False
    return True


def free_port_range(
    n: int = 1,
    kind: PortKind = "udp",
    host: str = "127.0.0.1",
    *,
    even: bool = True,
) -> tuple[int, int]:
    """Reserve `n` consecutive free ports; returns (low, high) inclusive.

    `even=True` starts the block on an even port (RTP on even, RTCP on the next odd one).
    The ports stay reserved until the pool has been gone round once (the module docstring).
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    global _cursor
    low, high = _pool()
    with _lock:
        if _cursor is None:
            # A random starting point keeps parallel test processes apart; after that blocks are
            # handed out one after another, so a long run never fragments the pool.
            _cursor = random.randrange(low, high)
        start = _cursor
        for _ in range(_ATTEMPTS):
            if start + n > high:
                # A new turn of the ring: the ports handed out on the last one may go again.
                start = low
                _handed_out.clear()
            if even and start % 2:
                start += 1
            block = range(start, start + n)
            taken = next((p for p in block if p in _handed_out), None)
            if taken is not None:
                start = taken + 1
                continue
            busy = next((p for p in block if not port_is_free(p, kind, host)), None)
            if busy is not None:
                start = busy + 1
                continue
            _handed_out.update(block)
            _cursor = block[-1] + 1
            logger.debug("ports %d-%d (%s) handed out", block[0], block[-1], kind)
            return block[0], block[-1]
    raise RuntimeError(f"no {n} free consecutive {kind} ports on {host}")


def free_port(kind: PortKind = "both", host: str = "127.0.0.1") -> int:
    """One free port for `kind` ("both" = free for UDP and TCP alike), reserved as by
    free_port_range."""
    return free_port_range(1, kind, host, even=False)[0]
