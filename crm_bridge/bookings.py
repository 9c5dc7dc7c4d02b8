"""Agents' bookings in PostgreSQL, shared by the nodes of one database (pbx.booking's
AgentBookings): a claim is one INSERT that takes the agent's row unless a live claim holds
it, so two nodes claiming at once are decided by the primary key, not by a read first. The
other nodes hear of each change (a trigger NOTIFYs 'agent_bookings'), so their hunts and
dialers count the agent busy without asking the database each time.

Leases: every claim runs `lease` seconds from now; `renew()` (each lease/3 s, from the
composition root) extends this node's, so a killed node's claims lapse within `lease`
seconds and its agents are free again without its restart."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

import asyncpg

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "agent_bookings"


class PgAgentBookings:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        node: str,
        lease: float = 30.0,
        exclusive: Collection[str] | None = None,
    ) -> None:
        self._pool = pool
        self.node = node
        self.lease = lease
        self.exclusive = None if exclusive is None else frozenset(exclusive)
        """The extensions that take one call at a time (None: all); others are never
        refused here (their own node counts their calls)."""
        self._elsewhere: set[str] = set()
        """Agents other nodes' calls hold now, as last heard (`follow`)."""
        self._listener: asyncpg.pool.PoolConnectionProxy | None = None

    def booked_elsewhere(self, extension: str) -> bool:
        return extension in self._elsewhere

    async def follow(self) -> None:
        """Keep `booked_elsewhere` current: LISTEN for other nodes' changes, then read the
        live claims (a change between the two is heard, not lost). Holds one pooled
        connection until `close`."""
        self._listener = await self._pool.acquire()
        await self._listener.add_listener(NOTIFY_CHANNEL, self._notified)
        await self.reload()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        node, extension, op = [*payload.split("\n"), "", ""][:3]
        if node == self.node:
            if op == "booked":  # taken over from a lapsed claim of another node
                self._elsewhere.discard(extension)
            return
        if op == "booked":
            self._elsewhere.add(extension)
        else:
            self._elsewhere.discard(extension)

    async def reload(self) -> None:
        """Read the live claims of the other nodes (the lapsed ones of a dead node drop out
        here: their expiry announces nothing)."""
        rows = await self._pool.fetch(
            "SELECT extension FROM agent_bookings WHERE node <> $1 AND lease_until >= now()",
            self.node,
        )
        self._elsewhere = {r["extension"] for r in rows}

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        try:
            await listener.remove_listener(NOTIFY_CHANNEL, self._notified)
        except (OSError, asyncpg.PostgresError) as exc:  # the connection is gone anyway
            logger.debug("agent bookings: UNLISTEN failed: %s", exc)
        finally:
            await self._pool.release(listener)

    async def claim(self, extension: str, call_id: str) -> bool:
        if self.exclusive is not None and extension not in self.exclusive:
            return True
        row = await self._pool.fetchrow(
            "INSERT INTO agent_bookings (extension, node, call_id, lease_until)"
            " VALUES ($1, $2, $3, now() + make_interval(secs => $4))"
            " ON CONFLICT (extension) DO UPDATE SET node = EXCLUDED.node,"
            " call_id = EXCLUDED.call_id, booked_at = now(), lease_until = EXCLUDED.lease_until"
            " WHERE agent_bookings.lease_until < now()"
            " OR (agent_bookings.node = EXCLUDED.node"
            " AND agent_bookings.call_id = EXCLUDED.call_id)"
            " RETURNING call_id",
            extension,
            self.node,
            call_id,
            self.lease,
        )
        return row is not None

    async def release(self, extension: str, call_id: str) -> None:
        await self._pool.execute(
            "DELETE FROM agent_bookings WHERE extension = $1 AND node = $2 AND call_id = $3",
            extension,
            self.node,
            call_id,
        )

    async def renew(self) -> int:
        """Extend this node's leases; returns how many it holds."""
        result = await self._pool.execute(
            "UPDATE agent_bookings SET lease_until = now() + make_interval(secs => $2)"
            " WHERE node = $1",
            self.node,
            self.lease,
        )
        return int(result.split()[-1])

    async def clear(self) -> int:
        """Drop this node's claims (at start: a crash left them; none of its calls lives)."""
        result = await self._pool.execute("DELETE FROM agent_bookings WHERE node = $1", self.node)
        return int(result.split()[-1])

    async def holder(self, extension: str) -> tuple[str, str] | None:
        """(node, call_id) of the live claim on `extension`, if any."""
        row = await self._pool.fetchrow(
            "SELECT node, call_id FROM agent_bookings"
            " WHERE extension = $1 AND lease_until >= now()",
            extension,
        )
        return None if row is None else (row["node"], row["call_id"])

    async def renew_forever(self) -> None:
        """Each third of a lease until cancelled: renew this node's leases and reread the
        others' claims; a failed round is logged and retried at the next (a lease outlives
        two misses)."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.renew()
                await self.reload()
            except (OSError, asyncpg.PostgresError) as exc:
                logger.warning("agent bookings of %s not renewed: %s", self.node, exc)
