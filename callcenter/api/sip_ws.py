"""SIP over WebSocket (RFC 7118) at GET /sip: browser phones (JsSIP, SIP.js) register and call
like any phone, with digest auth in SIP itself (the HTTP upgrade needs no API key).

Each connection is one flow of the SIP endpoint (`SipEndpoint.attach`): every frame, text or
binary, is one SIP message; what the engine sends to that peer goes back as one text frame on
the same socket, so a phone registered over it is rung over it (RFC 7118 5). A frame that does
not parse gets its 400 like a bad datagram and the socket stays up; the endpoint drops the
bindings of a connection that closes.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import WSMsgType, web

from .crm import ENGINE
from .openapi import operation
from .security import ApiError

logger = logging.getLogger(__name__)

PATH = "/sip"
SUBPROTOCOL = "sip"
MAX_MESSAGE = 65536
"""The largest frame read; a bigger one closes the connection (1009), as on TCP."""


def is_open(request: web.Request) -> bool:
    """The upgrade needs no API key: the phone authenticates in SIP (digest)."""
    return request.path == PATH and request.method == "GET"


@operation(
    summary="SIP over WebSocket (RFC 7118)",
    description="Upgrade to a WebSocket with subprotocol `sip`; then one SIP message per frame. "
    "REGISTER and INVITE are challenged (digest) like any phone's.",
    tag="telephony",
    responses={101: None},
    produces="text/plain",
    errors=(400,),
    public=True,
    extra_auth="SIP digest on REGISTER and INVITE",
)
async def sip_websocket(request: web.Request) -> web.StreamResponse:
    offered = {p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")}
    if SUBPROTOCOL not in offered:
        raise ApiError(400, "a SIP WebSocket needs the subprotocol sip (RFC 7118 4.1)")
    ws = web.WebSocketResponse(
        protocols=(SUBPROTOCOL,), max_msg_size=MAX_MESSAGE, autoping=True, heartbeat=None
    )
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "expected a WebSocket upgrade")
    await ws.prepare(request)
    endpoint = request.app[ENGINE].ua.endpoint
    kind = "wss" if request.secure else "ws"
    transport = request.transport
    peername = transport.get_extra_info("peername") if transport is not None else None
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if not peername or not sockname:
        await ws.close()
        return ws
    peer = (kind, str(peername[0]).removeprefix("::ffff:"), int(peername[1]))
    outbox: asyncio.Queue[bytes] = asyncio.Queue()
    endpoint.attach(peer, outbox.put_nowait, local_port=int(sockname[1]))
    writer = asyncio.create_task(_write(ws, outbox, peer), name=f"sip-ws-writer {peer}")
    logger.info("SIP WebSocket from %s:%d", peer[1], peer[2])
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                endpoint.receive(message.data.encode("utf-8"), peer)
            elif message.type == WSMsgType.BINARY:
                endpoint.receive(message.data, peer)
            elif message.type == WSMsgType.ERROR:
                logger.info("SIP WebSocket %s:%d: %s", peer[1], peer[2], ws.exception())
    finally:
        endpoint.detach(peer)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        logger.info("SIP WebSocket from %s:%d closed", peer[1], peer[2])
    return ws


async def _write(ws: web.WebSocketResponse, outbox: asyncio.Queue[bytes], peer: object) -> None:
    """Sends the endpoint's messages in order, one frame each (text when they are UTF-8)."""
    while True:
        data = await outbox.get()
        try:
            try:
                await ws.send_str(data.decode("utf-8"))
            except UnicodeDecodeError:
                await ws.send_bytes(data)
        except (ConnectionError, RuntimeError) as exc:
            # Closing under us: the reader's loop ends and detaches the flow.
            logger.debug("SIP WebSocket %s: send failed: %s", peer, exc)
            return


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, sip_websocket)
