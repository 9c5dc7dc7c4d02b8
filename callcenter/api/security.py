"""API keys (Authorization: Bearer) with roles, and JSON error bodies for every failure."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

from callcenter.config import ApiKey

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
API_KEY = web.RequestKey("api_key", ApiKey)
PUBLIC_PATHS = frozenset({"/health"})


class ApiError(web.HTTPException):
    """A refusal with a JSON body {"error": {"status", "reason"}}."""

    def __init__(self, status: int, reason: str) -> None:
        self.status_code = status
        super().__init__(
            text=_error_body(status, reason), content_type="application/json", reason=None
        )


def _error_body(status: int, reason: str) -> str:
    import json

    return json.dumps({"error": {"status": status, "reason": reason}})


class KeyRing:
    """Looks a presented key up by its SHA-256; compares in constant time."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._keys = list(keys)

    def find(self, presented: str) -> ApiKey | None:
        digest = hashlib.sha256(presented.encode()).hexdigest()
        found = None
        for key in self._keys:
            if hmac.compare_digest(key.sha256, digest):
                found = key
        return found


def auth_middleware(ring: KeyRing) -> Any:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        key = ring.find(presented.strip()) if scheme.lower() == "bearer" and presented else None
        if key is None:
            logger.info("API: refused %s %s from %s: bad or missing key", request.method,
                        request.path, request.remote)  # fmt: skip
            raise ApiError(401, "a valid API key is required (Authorization: Bearer <key>)")
        request[API_KEY] = key
        return await handler(request)

    return authenticate


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as JSON with a reason, including aiohttp's own 404/405."""
    try:
        return await handler(request)
    except ApiError:
        raise
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        raise ApiError(exc.status, exc.reason) from exc


def requires(*roles: str) -> Callable[[Handler], Handler]:
    """Only keys with one of `roles` (admin always) may call the handler."""

    def decorate(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            key = request[API_KEY]
            if key.role != "admin" and key.role not in roles:
                raise ApiError(403, f"role {key.role} may not {request.method} {request.path}")
            return await handler(request)

        return guarded

    return decorate
