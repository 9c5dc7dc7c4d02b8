"""API keys (Authorization: Bearer) with roles, request ids, and one JSON error body for every
failure: {"error": {"status": 404, "reason": "...", "request_id": "..."}}."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import asyncpg
from aiohttp import web

from callcenter.config import ApiKey
from callcenter.logging import request_id_var
from crm_bridge import CrmError, SessionStore
from dialer import DialerError

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
API_KEY = web.RequestKey("api_key", ApiKey)
REQUEST_ID = web.RequestKey("request_id", str)
PUBLIC_PATHS = frozenset({"/health", "/api/openapi.json"})
ALL_ROLES = ("admin", "manager", "supervisor", "agent")

# A client's X-Request-Id is kept when it is short and plain (it lands in our logs verbatim).
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


class ApiError(web.HTTPException):
    """A refusal with a JSON body {"error": {"status", "reason", "request_id"}}."""

    def __init__(self, status: int, reason: str) -> None:
        self.status_code = status
        self.error_reason = reason
        super().__init__(
            text=error_body(status, reason), content_type="application/json", reason=None
        )


def error_body(status: int, reason: str, request_id: str | None = None) -> str:
    error: dict[str, Any] = {"status": status, "reason": reason}
    error["request_id"] = request_id if request_id is not None else request_id_var.get()
    return json.dumps({"error": error})


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


LOGIN_SECONDS = 300.0
"""A login token opens one agent session within this time, once."""
SESSION_SECONDS = 12 * 3600.0
"""An agent session lasts a shift."""


class AgentSessions:
    """Short-lived agent logins for the agent page: a supervisor (or the agent's own key) gets
    a login token for one extension; the page trades it, once and within LOGIN_SECONDS, for a
    session key that acts as an agent key bound to that extension for SESSION_SECONDS. Only
    SHA-256 digests are kept: in PostgreSQL when given a `store` (every node sees every session,
    and sessions outlive a restart), else in this process (time is `time.monotonic()` unless
    given)."""

    def __init__(self, store: SessionStore | None = None) -> None:
        self._store = store
        self._logins: dict[str, tuple[str, str, float]] = {}
        self._sessions: dict[str, tuple[ApiKey, float]] = {}

    @staticmethod
    def _digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    @staticmethod
    def _key(digest: str, extension: str, by: str) -> ApiKey:
        return ApiKey(f"session:{extension} (from {by})", digest, "agent", extension)

    def _sweep(self, now: float) -> None:
        for table in (self._logins, self._sessions):
            for stale in [d for d, entry in table.items() if entry[-1] <= now]:
                del table[stale]

    async def issue_login(self, extension: str, *, by: str, now: float | None = None) -> str:
        token = secrets.token_urlsafe(24)
        if self._store is not None:
            await self._store.add_login(self._digest(token), extension, by, LOGIN_SECONDS)
            return token
        now = time.monotonic() if now is None else now
        self._sweep(now)
        self._logins[self._digest(token)] = (extension, by, now + LOGIN_SECONDS)
        return token

    async def redeem(self, login: str, *, now: float | None = None) -> tuple[str, ApiKey] | None:
        """A new session for a valid login token (spent by this), else None."""
        token = secrets.token_urlsafe(32)
        digest = self._digest(token)
        if self._store is not None:
            opened = await self._store.redeem(self._digest(login), digest, SESSION_SECONDS)
            return None if opened is None else (token, self._key(digest, *opened))
        now = time.monotonic() if now is None else now
        self._sweep(now)
        found = self._logins.pop(self._digest(login), None)
        if found is None:
            return None
        extension, by, _ = found
        key = self._key(digest, extension, by)
        self._sessions[digest] = (key, now + SESSION_SECONDS)
        return token, key

    async def find(self, presented: str, *, now: float | None = None) -> ApiKey | None:
        digest = self._digest(presented)
        if self._store is not None:
            opened = await self._store.find(digest)
            return None if opened is None else self._key(digest, *opened)
        found = self._sessions.get(digest)
        now = time.monotonic() if now is None else now
        if found is None or found[1] <= now:
            return None
        return found[0]

    async def end(self, key: ApiKey) -> None:
        if self._store is not None:
            await self._store.end(key.sha256)
        self._sessions.pop(key.sha256, None)


def is_session(key: ApiKey) -> bool:
    return key.name.startswith("session:")


def bound_extension(request: web.Request) -> str | None:
    """The extension the request's agent key is bound to, None for any other key."""
    key = request.get(API_KEY)
    return key.extension if key is not None and key.role == "agent" else None


def acting_for(request: web.Request, extension: str | None) -> None:
    """An agent key bound to an extension acts for that agent only: 403 for anyone else."""
    own = bound_extension(request)
    if own is not None and extension != own:
        raise ApiError(403, f"this key acts for extension {own} only")


async def key_of(
    ring: KeyRing, request: web.Request, sessions: AgentSessions | None = None
) -> ApiKey | None:
    """The key a request presents (Authorization: Bearer): a configured key or an agent
    session's; None when absent or unknown."""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return None
    key = ring.find(presented.strip())
    if key is None and sessions is not None:
        key = await sessions.find(presented.strip())
    return key


def auth_middleware(
    ring: KeyRing,
    *,
    open_paths: Callable[[web.Request], bool] | None = None,
    sessions: AgentSessions | None = None,
) -> Any:
    """Every path but PUBLIC_PATHS needs a known key. `open_paths(request)` may let more through
    (it then decides itself, e.g. /metrics from loopback)."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS:
            return await handler(request)
        key = await key_of(ring, request, sessions)
        if key is None:
            if open_paths is not None and open_paths(request):
                return await handler(request)
            logger.info("API: refused %s %s from %s: bad or missing key", request.method,
                        request.path, request.remote)  # fmt: skip
            raise ApiError(401, "a valid API key is required (Authorization: Bearer <key>)")
        request[API_KEY] = key
        return await handler(request)

    return authenticate


@web.middleware
async def request_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Keep the client's X-Request-Id (if sane) or make one; it goes back in the response
    header (see `echo_request_id`), in every error body and in the request's log lines."""
    offered = request.headers.get("X-Request-Id", "")
    rid = offered if _CLIENT_REQUEST_ID.fullmatch(offered) else secrets.token_hex(8)
    request[REQUEST_ID] = rid
    token = request_id_var.set(rid)
    try:
        if "\x00" in request.path or "%00" in request.raw_path:
            # No text column takes NUL, and no name of ours has one.
            return _error_response(400, "NUL characters are not allowed in a URL", rid, None)
        return await handler(request)
    finally:
        request_id_var.reset(token)


async def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every response, streamed or not, carries X-Request-Id."""
    rid = request.get(REQUEST_ID)
    if rid is not None:
        response.headers["X-Request-Id"] = rid


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as the one JSON shape, including aiohttp's own 404/405/413 and
    handler crashes (500, logged with the traceback)."""
    rid = request.get(REQUEST_ID)
    try:
        return await handler(request)
    except ApiError as exc:
        return _error_response(exc.status, exc.error_reason, rid, exc.headers)
    except (CrmError, DialerError) as exc:
        # A store's refusal the handler did not translate: its own status and reason.
        if exc.status >= 500:
            logger.exception("API: %s %s failed", request.method, request.path)
        return _error_response(exc.status, exc.reason, rid, None)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error_response(exc.status, exc.reason, rid, exc.headers)
    except (asyncpg.DataError, OverflowError) as exc:
        # PostgreSQL's class 22 (NUL in text, numbers or dates out of range) and date
        # arithmetic past year 9999: the client's values, not our fault.
        logger.info("API: %s %s: value refused: %s", request.method, request.path, exc)
        return _error_response(400, f"a value is out of range or not valid text: {exc}", rid, None)
    except Exception:
        logger.exception("API: %s %s failed", request.method, request.path)
        return _error_response(500, "internal error; see the engine log", rid, None)


_ENTITY_HEADERS = frozenset({"content-type", "content-length"})


def _error_response(status: int, reason: str, rid: str | None, headers: Any) -> web.Response:
    response = web.Response(
        status=status, text=error_body(status, reason, rid), content_type="application/json"
    )
    for name, value in (headers or {}).items():
        if name.lower() not in _ENTITY_HEADERS:
            response.headers[name] = value  # Allow (405), WWW-Authenticate...
    return response


def requires(*roles: str) -> Callable[[Handler], Handler]:
    """Only keys with one of `roles` (admin always) may call the handler. The roles are kept
    on the handler as `roles` for the OpenAPI document."""
    allowed = tuple(dict.fromkeys(("admin", *roles)))

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            key = request[API_KEY]
            if key.role not in allowed:
                raise ApiError(403, f"role {key.role} may not {request.method} {request.path}")
            return await handler(request)

        guarded.roles = allowed  # type: ignore[attr-defined]
        return guarded

    return decorate


def roles_of(handler: Any) -> tuple[str, ...]:
    """The roles that may call `handler` (every role when it is not guarded)."""
    return tuple(getattr(handler, "roles", ALL_ROLES))
