"""Whether a SIP server answers on UDP: one OPTIONS, any response within the timeout.

For start-up checks (a proxy or engine process just launched), not for monitoring a peer
(pbx.trunks qualifies trunks through the transaction layer, with retransmissions)."""

from __future__ import annotations

import asyncio
import secrets


async def answers_options(host: str, port: int, timeout: float = 0.5) -> bool:
    """True once something at UDP `host:port` answers an OPTIONS, False after `timeout` or an
    ICMP error (nobody listening)."""
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[bool] = loop.create_future()

    class Probe(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            if data.startswith(b"SIP/2.0 ") and not answered.done():
                answered.set_result(True)

        def error_received(self, exc: Exception) -> None:
            if not answered.done():
                answered.set_result(False)

    transport, _ = await loop.create_datagram_endpoint(Probe, remote_addr=(host, port))
    try:
        local_host, local_port = transport.get_extra_info("sockname")[:2]
        tag = secrets.token_hex(6)
        probe = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {local_host}:{local_port};branch=z9hG4bK{tag}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:probe@{local_host}>;tag={tag}\r\n"
            f"To: <sip:{host}:{port}>\r\nCall-ID: probe-{tag}\r\n"
            "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        transport.sendto(probe.encode())
        try:
            return await asyncio.wait_for(answered, timeout)
        except TimeoutError:
            return False
    finally:
        transport.close()


__all__ = ["answers_options"]
