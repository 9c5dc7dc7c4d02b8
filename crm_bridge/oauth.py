"""OAuth 2.0 tokens of CRM accounts, kept in PostgreSQL and shared by every engine node.

amoCRM (https://www.amocrm.ru/developers/content/oauth/step-by-step): an access token lasts
24 h; `POST <account>/oauth2/access_token` with `grant_type=refresh_token` returns a new access
token *and a new refresh token*, and the old refresh token is spent. Bitrix24 local apps
(https://apidocs.bitrix24.com/api-reference/oauth/index.html) refresh the same way at
`https://oauth.bitrix.info/oauth/token/` (1 h access tokens). Two nodes refreshing at once with
the same refresh token would lock one of them out for good, so a refresh happens under the
token row's lock (`SELECT ... FOR UPDATE`): one node refreshes and commits the new pair, the
others wait on the lock and then read it.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg

from .adapters import HttpRequest, to_json
from .config import CrmEndpoint
from .errors import CrmError

logger = logging.getLogger(__name__)

BITRIX_TOKEN_URL = "https://oauth.bitrix.info/oauth/token/"
REFRESH_MARGIN = 300.0
"""Seconds before expiry when a token is refreshed instead of used."""


class OAuthError(CrmError):
    """No usable token: none stored yet, or the CRM refused the code or refresh token."""

    status = 502


def token_request(endpoint: CrmEndpoint, grant: Mapping[str, str]) -> HttpRequest:
    """The token endpoint request for `grant` (authorization_code with `code`, or
    refresh_token with `refresh_token`)."""
    client = endpoint.oauth
    if client is None:
        raise OAuthError(f"CRM endpoint {endpoint.name!r} has no [oauth] client")
    fields = {
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        **grant,
    }
    if endpoint.kind == "bitrix24":
        url = client.token_url or BITRIX_TOKEN_URL
        query = urllib.parse.urlencode(fields)
        return HttpRequest("GET", f"{url}?{query}", {}, b"")
    if client.redirect_uri:
        fields["redirect_uri"] = client.redirect_uri
    url = client.token_url or endpoint.account + "/oauth2/access_token"
    return HttpRequest("POST", url, {"Content-Type": "application/json"}, to_json(fields))


def read_token_answer(status: int, body: bytes) -> dict[str, Any]:
    """access_token, refresh_token, expires_in (and anything else) of a 200 answer; OAuthError
    with the CRM's reason otherwise."""
    try:
        answer = json.loads(body) if body else {}
    except ValueError:
        answer = {}
    if status != 200 or not isinstance(answer, dict) or not answer.get("access_token"):
        reason = ""
        if isinstance(answer, dict):
            reason = str(answer.get("hint") or answer.get("error_description") or "")
            reason = reason or str(answer.get("detail") or answer.get("error") or "")
        raise OAuthError(f"token endpoint answered {status}: {reason or body[:200]!r}")
    if not answer.get("refresh_token"):
        raise OAuthError("token endpoint gave no refresh_token")
    return answer


class TokenStore:
    """Access tokens per endpoint; `now` is seconds since the epoch (tests move it)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        session: aiohttp.ClientSession,
        *,
        now: Callable[[], float] = time.time,
        margin: float = REFRESH_MARGIN,
    ) -> None:
        self._pool = pool
        self._session = session
        self._now = now
        self._margin = margin
        self._cache: dict[str, tuple[str, float]] = {}
        self.refreshes = 0
        """Refreshes this store made (for tests and logs)."""

    async def access_token(self, endpoint: CrmEndpoint, *, stale: str | None = None) -> str:
        """A valid access token; `stale` is one the CRM just refused (401): refresh even if
        it has not expired yet, unless another node already did."""
        cached = self._cache.get(endpoint.name)
        if cached and cached[0] != stale and cached[1] - self._margin > self._now():
            return cached[0]
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT access_token, refresh_token, expires_at FROM crm_oauth_tokens"
                " WHERE endpoint = $1 FOR UPDATE",
                endpoint.name,
            )
            if row is None:
                raise OAuthError(
                    f"CRM endpoint {endpoint.name!r} has no OAuth tokens yet: run"
                    f" `callcenter crm-auth {endpoint.name} --code <authorization code>`"
                )
            expires = row["expires_at"].timestamp()
            if row["access_token"] != stale and expires - self._margin > self._now():
                self._cache[endpoint.name] = (row["access_token"], expires)
                return str(row["access_token"])
            grant = {"grant_type": "refresh_token", "refresh_token": row["refresh_token"]}
            answer = await self._ask(endpoint, grant)
            token = await self._store(conn, endpoint, answer)
            self.refreshes += 1
            logger.info("%s: OAuth access token refreshed", endpoint.name)
            return token

    async def exchange_code(self, endpoint: CrmEndpoint, code: str) -> None:
        """First tokens from an authorization code (the CLI's `crm-auth`)."""
        answer = await self._ask(endpoint, {"grant_type": "authorization_code", "code": code})
        async with self._pool.acquire() as conn:
            await self._store(conn, endpoint, answer)

    async def _ask(self, endpoint: CrmEndpoint, grant: Mapping[str, str]) -> dict[str, Any]:
        request = token_request(endpoint, grant)
        try:
            async with self._session.request(
                request.method,
                request.url,
                data=request.body or None,
                headers=dict(request.headers),
                timeout=aiohttp.ClientTimeout(total=endpoint.timeout),
                allow_redirects=False,
            ) as response:
                body = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise OAuthError(f"token endpoint unreachable: {type(exc).__name__}: {exc}") from exc
        return read_token_answer(status, body)

    async def _store(
        self, conn: asyncpg.Connection, endpoint: CrmEndpoint, answer: Mapping[str, Any]
    ) -> str:
        expires_in = float(answer.get("expires_in") or 3600)
        expires = datetime.fromtimestamp(self._now(), UTC) + timedelta(seconds=expires_in)
        extra = {k: answer[k] for k in ("client_endpoint", "member_id", "domain") if answer.get(k)}
        await conn.execute(
            "INSERT INTO crm_oauth_tokens"
            " (endpoint, account, access_token, refresh_token, expires_at, extra, refreshed_at)"
            " VALUES ($1, $2, $3, $4, $5, $6::jsonb, now())"
            " ON CONFLICT (endpoint) DO UPDATE SET account = $2, access_token = $3,"
            " refresh_token = $4, expires_at = $5, extra = $6::jsonb, refreshed_at = now()",
            endpoint.name,
            endpoint.account,
            answer["access_token"],
            answer["refresh_token"],
            expires,
            json.dumps(extra),
        )
        self._cache[endpoint.name] = (str(answer["access_token"]), expires.timestamp())
        return str(answer["access_token"])
