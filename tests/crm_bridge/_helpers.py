"""Test helpers of the CRM bridge: a real aiohttp receiver, a fake clock, polling waits."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


def free_port() -> int:
    """A loopback TCP port nobody listens on (yet): connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """A real HTTP server recording every request; `respond(request, body) -> status` decides
    the answer (200 by default), `delay` slows each answer down."""

    port: int = 0
    respond: Callable[[web.Request, bytes], int | Awaitable[int]] = lambda req, body: 200
    reply: Callable[[web.Request, bytes], Any] = lambda req, body: {"ok": True}
    delay: float = 0.0
    requests: list[Received] = field(default_factory=list)
    in_flight: set[str] = field(default_factory=set)
    overlaps: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if not self.port:
            self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        key = request.headers.get("Idempotency-Key", "")
        if key in self.in_flight:
            self.overlaps.append(key)
        self.in_flight.add(key)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            status = self.respond(request, body)
            if not isinstance(status, int):
                status = await status
            self.requests.append(
                Received(request.method, request.path, dict(request.headers), body, status)
            )
            if 200 <= status < 300:
                return web.json_response(self.reply(request, body), status=status)
            return web.Response(status=status, text="nope")
        finally:
            self.in_flight.discard(key)

    def keys(self, *, ok_only: bool = True) -> list[str]:
        return [
            r.headers.get("Idempotency-Key", "")
            for r in self.requests
            if not ok_only or 200 <= r.status < 300
        ]


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], *, timeout: float = 15.0, what: str = ""
) -> None:
    """Poll an async condition (real work in progress, not a timer) until true."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.01)


class FakeClock:
    """Seconds since the epoch that move only when told to."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
