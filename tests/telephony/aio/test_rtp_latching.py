"""Symmetric RTP on real loopback sockets: the engine sends where the phone really sends from,
and a stray source cannot hijack a live stream."""

from __future__ import annotations

import asyncio
import socket

from telephony.aio.rtp import RELATCH_AFTER, RtpPortPool
from tests.e2e.conftest import ENGINE_RTP_PORTS


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def _recv(sock: socket.socket, timeout: float = 1.0) -> bytes | None:
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(loop.sock_recv(sock, 2048), timeout)
    except TimeoutError:
        return None


async def test_latches_to_the_real_source_and_ignores_strays() -> None:
    pool = RtpPortPool("127.0.0.1", *ENGINE_RTP_PORTS)
    leg = await pool.open()
    phone, sdp_address, stray = _udp(), _udp(), _udp()
    got: list[bytes] = []
    leg.on_packet = got.append
    try:
        leg.set_remote(sdp_address.getsockname())  # what the SDP said
        leg.send(b"to-sdp")
        assert await _recv(sdp_address) == b"to-sdp"

        phone.sendto(b"hello", ("127.0.0.1", leg.port))  # the phone sends from elsewhere (NAT)
        await asyncio.sleep(0.05)
        assert got == [b"hello"] and leg.remote == phone.getsockname()
        leg.send(b"to-phone")
        assert await _recv(phone) == b"to-phone"

        stray.sendto(b"inject", ("127.0.0.1", leg.port))  # while the phone is live: ignored
        await asyncio.sleep(0.05)
        assert got == [b"hello"] and leg.remote == phone.getsockname()
        leg.set_remote(sdp_address.getsockname())  # a later SDP does not undo the latch
        assert leg.remote == phone.getsockname()
        assert RELATCH_AFTER > 0.05
    finally:
        pool.release(leg)
        for sock in (phone, sdp_address, stray):
            sock.close()
    assert pool.in_use == 0


async def test_a_phone_sending_from_its_sdp_address_is_latched_too() -> None:
    """The usual phone sends from where its SDP says: that first packet latches the leg as a
    moved source would, so a stray that knows the port cannot take the stream over (before,
    the leg stayed unlatched and the stray's packet moved it)."""
    pool = RtpPortPool("127.0.0.1", *ENGINE_RTP_PORTS)
    leg = await pool.open()
    phone, stray = _udp(), _udp()
    got: list[bytes] = []
    arrived: list[asyncio.Future[None]] = []

    def heard(data: bytes) -> None:
        got.append(data)
        for waiter in arrived:
            if not waiter.done():
                waiter.set_result(None)

    async def until_next() -> None:
        waiter = asyncio.get_running_loop().create_future()
        arrived.append(waiter)
        await asyncio.wait_for(waiter, 1.0)

    leg.on_packet = heard
    try:
        leg.set_remote(phone.getsockname())
        phone.sendto(b"hello", ("127.0.0.1", leg.port))
        await until_next()
        assert leg.latched and leg.remote == phone.getsockname()
        stray.sendto(b"inject", ("127.0.0.1", leg.port))
        phone.sendto(b"again", ("127.0.0.1", leg.port))  # sent after the stray's: read after
        await until_next()
        assert got == [b"hello", b"again"] and leg.remote == phone.getsockname()
    finally:
        pool.release(leg)
        for sock in (phone, stray):
            sock.close()
