"""SIP over WebSocket (RFC 7118) at GET /sip: browser phones (JsSIP, SIP.js) register and call
like any phone, with digest auth in SIP itself (the HTTP upgrade needs no API key).

Each connection is one flow of the SIP endpoint (`SipEndpoint.attach`): every frame, text or
binary, is one SIP message; what the engine sends to that peer goes back as one text frame on
the same socket, so a phone registered over it is rung over it (RFC 7118 5). A frame that does
not parse gets its 400 like a bad datagram and the socket stays up; the endpoint drops the
bindings of a connection that closes.

A page that holds an API key rather than the SIP password (the agent page) trades the key for a
login token (POST /sip/token: single use, TOKEN_SECONDS to use it) and opens /sip?token=...: that
connection then speaks for the token's extension without digest (pbx.Authenticator's
`trusted`), and for no other. A new connection needs a new token.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from aiohttp import WSCloseCode, WSMsgType, web

from .crm import ENGINE
from .openapi import EXTENSION, Param, operation
from .security import ApiError, acting_for, bound_extension, requires

logger = logging.getLogger(__name__)

PATH = "/sip"
SUBPROTOCOL = "sip"
MAX_MESSAGE = 65536
"""The largest frame read; a bigger one closes the connection (1009), as on TCP."""
TOKEN_SECONDS = 60.0
TOKENS = web.AppKey("sip_tokens", dict)
"""Login tokens not used yet: token -> (extension, monotonic time it expires)."""
SOCKETS = web.AppKey("sip_sockets", set)
"""The open connections: a stopping engine closes them (1001, going away); the HTTP runner's
cleanup would otherwise wait for each (a browser phone stays connected all day)."""


def is_open(request: web.Request) -> bool:
    """The upgrade needs no API key: the phone authenticates in SIP (digest)."""
    return request.path == PATH and request.method == "GET"


@operation(
    summary="SIP over WebSocket (RFC 7118)",
    description="Upgrade to a WebSocket with subprotocol `sip`; then one SIP message per frame. "
    "REGISTER and INVITE are challenged (digest) like any phone's, unless the connection was "
    "opened with `?token=` from POST /sip/token: then it speaks for that extension only.",
    tag="telephony",
    query=(Param("token", {"type": "string"}, "from POST /sip/token (single use)"),),
    responses={101: None},
    produces="text/plain",
    errors=(400, 401),
    public=True,
    extra_auth="SIP digest on REGISTER and INVITE, or a login token",
)
async def sip_websocket(request: web.Request) -> web.StreamResponse:
    offered = {p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")}
    if SUBPROTOCOL not in offered:
        raise ApiError(400, "a SIP WebSocket needs the subprotocol sip (RFC 7118 4.1)")
    identity = None
    if "token" in request.query:
        found = request.app[TOKENS].pop(request.query["token"], None)
        if found is None or found[1] <= time.monotonic():
            raise ApiError(401, "the login token is unknown, used or expired (POST /sip/token)")
        identity = str(found[0])
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
    endpoint.attach(peer, outbox.put_nowait, local_port=int(sockname[1]), identity=identity)
    writer = asyncio.create_task(_write(ws, outbox, peer), name=f"sip-ws-writer {peer}")
    sockets: set[web.WebSocketResponse] = request.app[SOCKETS]
    sockets.add(ws)
    logger.info(
        "SIP WebSocket from %s:%d%s", peer[1], peer[2], f" for {identity}" if identity else ""
    )
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                endpoint.receive(message.data.encode("utf-8"), peer)
            elif message.type == WSMsgType.BINARY:
                endpoint.receive(message.data, peer)
            elif message.type == WSMsgType.ERROR:
                logger.info("SIP WebSocket %s:%d: %s", peer[1], peer[2], ws.exception())
    finally:
        sockets.discard(ws)
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


TOKEN_BODY = {
    "type": "object",
    "properties": {"extension": {**EXTENSION, "description": "Whose phone (default: the "
                                 "agent key's own extension)."}},
}  # fmt: skip


@operation(
    summary="A login token for a browser phone's SIP WebSocket",
    description="Opens one `GET /sip?token=...` within the time given; that connection then "
    "registers and calls as the extension without its SIP password. An agent key gets tokens "
    "for its own extension only.",
    tag="telephony",
    body=TOKEN_BODY,
    body_required=False,
    responses={
        201: {
            "type": "object",
            "required": ["token", "extension", "expires_in", "path"],
            "properties": {
                "token": {"type": "string"},
                "extension": EXTENSION,
                "expires_in": {"type": "number"},
                "path": {"type": "string"},
            },
        }
    },
    errors=(400, 403, 404),
)
@requires("manager", "supervisor", "agent")
async def issue_token(request: web.Request) -> web.Response:
    """POST /sip/token {"extension": ...}: a single-use token that opens /sip as that extension."""
    body: object = {}
    if request.can_read_body:
        try:
            body = await request.json()
        except ValueError as exc:
            raise ApiError(400, "body must be JSON") from exc
    if not isinstance(body, dict) or not isinstance(body.get("extension", ""), str):
        raise ApiError(400, 'body must be {"extension": "..."} or empty')
    extension = body.get("extension") or bound_extension(request)
    if not extension:
        raise ApiError(400, "which extension? this key is bound to none")
    if extension not in request.app[ENGINE].switchboard.extensions:
        raise ApiError(404, f"no extension {extension}")
    acting_for(request, extension)
    tokens: dict[str, tuple[str, float]] = request.app[TOKENS]
    now = time.monotonic()
    for stale in [t for t, (_, until) in tokens.items() if until <= now]:
        del tokens[stale]
    token = secrets.token_urlsafe(24)
    tokens[token] = (extension, now + TOKEN_SECONDS)
    return web.json_response(
        {
            "token": token,
            "extension": extension,
            "expires_in": TOKEN_SECONDS,
            "path": f"{PATH}?token={token}",
        },
        status=201,
    )


async def _close_all(app: web.Application) -> None:
    sockets: set[web.WebSocketResponse] = app[SOCKETS]
    await asyncio.gather(
        *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"engine stopping") for ws in sockets),
        return_exceptions=True,
    )


def add_routes(app: web.Application) -> None:
    app[TOKENS] = {}
    app[SOCKETS] = set()
    app.on_shutdown.append(_close_all)
    app.router.add_get(PATH, sip_websocket)
    app.router.add_post(PATH + "/token", issue_token)
