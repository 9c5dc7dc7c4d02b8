"""A CRM that receives the engine's webhooks, for tests: a real aiohttp server on loopback that
checks signatures, can be down (connection refused) or failing (503) on demand, and keeps what
arrived in order."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from crm_bridge import SIGNATURE_HEADER, verify_signature, webhooks

from .ports import free_port


@dataclass
class Delivery:
    idempotency_key: str
    event: str
    data: dict[str, Any]


@dataclass
class WebhookReceiver:
    secret: str
    """Checked both ways: Standard Webhooks headers and the legacy header."""
    port: int = field(default_factory=lambda: free_port("tcp"))
    fail_first: int = 0
    """Answer this many requests with `fail_status` before accepting."""
    fail_status: int = 503
    """503 makes the engine retry; a 4xx such as 422 makes it dead-letter the event at once."""
    received: list[Delivery] = field(default_factory=list)
    """Every accepted delivery, duplicates included, in arrival order."""
    refused: int = 0
    bad_signatures: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            webhooks.verify([self.secret], request.headers, body, now=time.time())
        except webhooks.WebhookVerificationError:
            self.bad_signatures += 1
            return web.Response(status=401)
        if not verify_signature(self.secret, body, request.headers.get(SIGNATURE_HEADER, "")):
            self.bad_signatures += 1
            return web.Response(status=401)
        if self.refused < self.fail_first:
            self.refused += 1
            return web.Response(status=self.fail_status)
        payload = json.loads(body)
        self.received.append(
            Delivery(request.headers["Idempotency-Key"], payload["event"], payload["data"])
        )
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        """Down: connections are refused until start() again."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def unique(self) -> list[Delivery]:
        """Deliveries once per idempotency key, in first-arrival order."""
        seen: set[str] = set()
        out = []
        for delivery in self.received:
            if delivery.idempotency_key not in seen:
                seen.add(delivery.idempotency_key)
                out.append(delivery)
        return out

    def config(self, name: str = "test-crm") -> str:
        """The engine config lines of this receiver as a CRM endpoint ([crm] section body)."""
        return (
            f'[[crm.endpoints]]\nname = "{name}"\nkind = "webhook"\nurl = "{self.url}"\n'
            f'secret = "{self.secret}"\ntimeout = 2\n'
        )
