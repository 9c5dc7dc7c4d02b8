"""The SIP UDP socket, read and written by the endpoint itself instead of an asyncio transport,
so that each datagram tells how long it waited in the kernel before the engine read it.

That wait is the engine's real input queue (docs/architecture.md 4, overload control). The
event loop's lateness misses it: a loop reads a bounded batch of datagrams per turn (uvloop
32), so its timers keep time while the socket's buffer fills behind it. Measured at 300
calls/s offered to one engine on 2 cores: each second the loop's probe fired at most 50-90 ms
late while datagrams waited up to 140-190 ms. asyncio's
datagram protocol does not pass a datagram's ancillary data on, so the endpoint reads with
``recvmsg`` and the kernel's receive time (``SO_TIMESTAMP``, Linux) of each datagram.
Elsewhere (no stamps) the wait is not known and only the loop's lateness counts.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Callable

logger = logging.getLogger(__name__)

__all__ = ["UdpSocket"]

# Linux's SO_TIMESTAMP (the "old" one, a struct timeval of two native longs); Python's socket
# module does not name it. The same number on x86, ARM, RISC-V and the other generic ABIs.
_SO_TIMESTAMP = 29
_TIMEVAL = struct.Struct("@ll")
_ANCILLARY = socket.CMSG_SPACE(_TIMEVAL.size)
_MAX_DATAGRAM = 65535
BATCH = 64
"""Datagrams read per readable event at most, so one busy socket does not starve the loop's
other work (timers, the database, other sockets)."""
RECEIVE_BUFFER = 4 * 1024 * 1024
"""Bytes of the socket's receive buffer asked for. The kernel's default (212 kB) holds about
200 small datagrams (each is charged its buffer's whole size), some 50 ms of traffic at 300
calls/s: a burst past it is dropped unseen (4436 datagrams dropped in one 10 s run, the callee's
100/180/200 among them, so the engine resent answered INVITEs until the ring timeout). With room
for a second of traffic a backlog waits instead, and its wait is what overload control
measures. Above ``net.core.rmem_max`` only with CAP_NET_ADMIN (SO_RCVBUFFORCE)."""
# Linux reports twice the size asked for (the other half is its bookkeeping).
_REPORTED = 2 if sys.platform.startswith("linux") else 1


def _widen_receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for `size` bytes of receive buffer, forced past net.core.rmem_max when allowed, and
    return the size granted (as asked for, not as the kernel reports it)."""
    for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if option is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
            break
        except OSError:
            continue
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // _REPORTED


def _enable_stamps(sock: socket.socket) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMP, 1)
    except OSError:
        return False
    return True


class UdpSocket:
    """One bound non-blocking UDP socket on the running loop: ``receive(data, address)`` for
    each datagram read, ``sendto`` queued when the kernel's send buffer is full (as an asyncio
    transport does), and ``take_wait()``: the longest a datagram waited in the kernel before it
    was read, since the last call."""

    def __init__(
        self,
        sock: socket.socket,
        receive: Callable[[bytes, tuple[str, int]], None],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.sock = sock
        self.family = sock.family
        self._receive = receive
        self._loop = loop or asyncio.get_running_loop()
        self.stamped = _enable_stamps(sock)
        """Whether datagrams carry their kernel receive time (else ``take_wait`` stays 0)."""
        self.receive_buffer = _widen_receive_buffer(sock, RECEIVE_BUFFER)
        """The receive buffer granted, bytes."""
        if self.receive_buffer < RECEIVE_BUFFER:
            logger.warning(
                "SIP UDP receive buffer is %d kB, not the %d kB asked for: raise "
                "net.core.rmem_max, or bursts of datagrams are dropped unseen",
                self.receive_buffer // 1024,
                RECEIVE_BUFFER // 1024,
            )
        self._wait = 0.0
        self._outgoing: deque[tuple[bytes, tuple[str, int]]] = deque()
        self._closed = False
        self._loop.add_reader(sock.fileno(), self._readable)

    def take_wait(self) -> float:
        """The longest wait in the kernel (s) of a datagram read since the last call."""
        wait, self._wait = self._wait, 0.0
        return wait

    def _readable(self) -> None:
        sock = self.sock
        for _ in range(BATCH):
            try:
                data, ancillary, _flags, address = sock.recvmsg(_MAX_DATAGRAM, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # An ICMP error of an earlier send (port unreachable): nothing to read here.
                logger.debug("udp error: %s", exc)
                continue
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMP:
                    seconds, micros = _TIMEVAL.unpack_from(value)
                    wait = time.time() - (seconds + micros / 1e6)
                    if wait > self._wait:
                        self._wait = wait
            try:
                self._receive(data, address)
            except Exception:  # a bug in one message's handling: the socket goes on
                logger.exception("udp: handling a datagram from %s failed", address[0])
            if self._closed:
                return

    def sendto(self, data: bytes, address: tuple[str, int]) -> None:
        if self._closed:
            return
        if not self._outgoing:
            try:
                self.sock.sendto(data, address)
                return
            except (BlockingIOError, InterruptedError):
                self._loop.add_writer(self.sock.fileno(), self._writable)
            except OSError as exc:
                logger.debug("udp send to %s failed: %s", address[0], exc)
                return
        self._outgoing.append((data, address))

    def _writable(self) -> None:
        while self._outgoing:
            data, address = self._outgoing[0]
            try:
                self.sock.sendto(data, address)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.debug("udp send to %s failed: %s", address[0], exc)
            self._outgoing.popleft()
        self._loop.remove_writer(self.sock.fileno())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self.sock.fileno())
        if self._outgoing:
            self._loop.remove_writer(self.sock.fileno())
            self._outgoing.clear()
        self.sock.close()
