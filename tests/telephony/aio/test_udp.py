"""The endpoint's UDP socket over real sockets: each datagram's kernel receive time tells how
long it waited before the engine read it, the input queue that overload control measures."""

from __future__ import annotations

import asyncio
import socket
import sys
import time

import pytest

from telephony.aio.addresses import udp_socket
from telephony.aio.udp import RECEIVE_BUFFER, UdpSocket

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="kernel receive stamps (SO_TIMESTAMP) are Linux"
)


async def test_a_datagram_that_waited_while_the_loop_was_busy_reports_its_wait() -> None:
    got: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
    udp = UdpSocket(udp_socket("127.0.0.1", 0), lambda d, a: got.put_nowait((d, a)))
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    try:
        assert udp.stamped
        address = udp.sock.getsockname()
        peer.sendto(b"first", address)
        time.sleep(0.2)  # the loop is held up: the datagram waits in the kernel meanwhile
        data, source = await asyncio.wait_for(got.get(), 5)
        assert data == b"first" and source == peer.getsockname()
        assert udp.take_wait() >= 0.19
        assert udp.take_wait() == 0.0  # taken: the next probe starts afresh

        peer.sendto(b"second", address)
        assert (await asyncio.wait_for(got.get(), 5))[0] == b"second"
        assert udp.take_wait() < 0.19

        # Sending: the peer gets it from the socket's address.
        udp.sendto(b"reply", peer.getsockname())
        peer.settimeout(5)
        assert peer.recvfrom(100) == (b"reply", address)
    finally:
        peer.close()
        udp.close()
    assert udp.sock.fileno() == -1
    udp.sendto(b"after close", ("127.0.0.1", 9))  # ignored: no error from a closed socket


async def test_a_failing_handler_loses_only_its_datagram(caplog: pytest.LogCaptureFixture) -> None:
    got: asyncio.Queue[bytes] = asyncio.Queue()

    def handle(data: bytes, _address: tuple[str, int]) -> None:
        if data == b"bad":
            raise ValueError("a bug")
        got.put_nowait(data)

    udp = UdpSocket(udp_socket("127.0.0.1", 0), handle)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for data in (b"bad", b"good"):
            peer.sendto(data, udp.sock.getsockname())
        assert await asyncio.wait_for(got.get(), 5) == b"good"
        assert "handling a datagram from 127.0.0.1 failed" in caplog.text
    finally:
        peer.close()
        udp.close()


async def test_the_receive_buffer_holds_a_burst_or_the_log_says_why_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A burst past the buffer is dropped by the kernel unseen: 300 datagrams of a call setup's
    # size, sent while the loop is held up, all arrive.
    got: list[bytes] = []
    all_read = asyncio.Event()

    def read(data: bytes, _address: tuple[str, int]) -> None:
        got.append(data)
        if len(got) == 300:
            all_read.set()

    udp = UdpSocket(udp_socket("127.0.0.1", 0), read)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if udp.receive_buffer < RECEIVE_BUFFER:  # no CAP_NET_ADMIN and a low rmem_max
            assert "raise net.core.rmem_max" in caplog.text
            pytest.skip(f"receive buffer limited to {udp.receive_buffer} bytes here")
        for n in range(300):
            peer.sendto(b"%04d" % n + b"x" * 900, udp.sock.getsockname())
        await asyncio.wait_for(all_read.wait(), 5)
        assert [d[:4] for d in got] == [b"%04d" % n for n in range(300)]
    finally:
        peer.close()
        udp.close()
