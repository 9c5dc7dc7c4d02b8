"""The agent page's login tokens and sessions in PostgreSQL (migration 0026), so that a session
opened on one node works on every node and outlives a restart. Rows are keyed by the SHA-256
digest of the token (the caller hashes); expiry is the database's clock, one for all nodes."""

from __future__ import annotations

import asyncpg


class SessionStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def add_login(self, digest: str, extension: str, by: str, seconds: float) -> None:
        """A login token for `extension`, issued by key `by`, valid for `seconds`; expired
        logins and sessions are swept on the way."""
        async with self._pool.acquire() as conn, conn.transaction():
            await self._sweep(conn)
            await conn.execute(
                "INSERT INTO agent_logins (digest, extension, issued_by, expires_at)"
                " VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
                digest,
                extension,
                by,
                seconds,
            )

    async def redeem(self, login: str, session: str, seconds: float) -> tuple[str, str] | None:
        """Spends the login `login` (a digest) for a session `session` lasting `seconds`:
        (extension, issued_by), or None when the login is unknown, spent or expired. One
        transaction: a login opens one session, whichever node is asked."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "DELETE FROM agent_logins WHERE digest = $1 AND expires_at > now()"
                " RETURNING extension, issued_by",
                login,
            )
            if row is None:
                return None
            await conn.execute(
                "INSERT INTO agent_sessions (digest, extension, issued_by, expires_at)"
                " VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
                session,
                row["extension"],
                row["issued_by"],
                seconds,
            )
            return str(row["extension"]), str(row["issued_by"])

    async def find(self, session: str) -> tuple[str, str] | None:
        """(extension, issued_by) of a live session, None for an unknown or expired one."""
        row = await self._pool.fetchrow(
            "SELECT extension, issued_by FROM agent_sessions"
            " WHERE digest = $1 AND expires_at > now()",
            session,
        )
        return None if row is None else (str(row["extension"]), str(row["issued_by"]))

    async def end(self, session: str) -> None:
        await self._pool.execute("DELETE FROM agent_sessions WHERE digest = $1", session)

    @staticmethod
    async def _sweep(conn: asyncpg.Connection) -> None:
        await conn.execute("DELETE FROM agent_logins WHERE expires_at <= now()")
        await conn.execute("DELETE FROM agent_sessions WHERE expires_at <= now()")
