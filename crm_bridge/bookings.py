"""Agents' bookings in PostgreSQL, shared by the nodes of one database (pbx.booking's
AgentBookings): a claim is one INSERT that takes the agent's row unless a live claim holds
it, so two nodes claiming at once are decided by the primary key, not by a read first. The
other nodes hear of each change (a trigger NOTIFYs 'agent_bookings'), so their hunts and
dialers count the agent busy without asking the database each time.

Leases: every claim runs `lease` seconds from now; `renew()` (each lease/3 s, from the
composition root) extends this node's, so a killed node's claims lapse within `lease`
seconds and its agents are free again without its restart.

Reservations: a node's dialer holds the idle agents it paces for (`reserve`, a row whose
call_id is RESERVED), so another node's dialer does not count them too; a call of the same
node takes the reservation over when it books the agent, and `unreserve` gives back what the
dialer no longer needs.

Releases: a call's agent is released with the wrap-up the call began (`wrap_up_end`, asked of
this node's presence), written into their agent_presence row by the same statement, so a node
hearing the agent free reads their wrap-up with it and never offers them a call in between.

Liveness: `renew()` also renews the node's row in `cluster_nodes`; a node whose row's lease ran
out is dead (`dead_nodes`), and a survivor closes its dialer attempts in flight."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence
from datetime import datetime

import asyncpg

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "agent_bookings"
RESERVED = "dialer"
"""The call_id of a dialer's reservation of an idle agent (no call yet)."""


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
        self._elsewhere: dict[str, str] = {}
        """Agents other nodes hold now, as last heard (`follow`): extension -> call_id
        (RESERVED for a dialer's reservation)."""
        self.on_call_elsewhere: Callable[[str, bool], None] | None = None
        """Told (extension, on a call) when another node's call takes an agent or lets it go
        (reservations are not calls): the node shows the agent on a call."""
        self._listener: asyncpg.pool.PoolConnectionProxy | None = None
        self.wrap_up_end: Callable[[str], datetime | None] | None = None
        """Asked at each release: when the agent's wrap-up ends, as this node has it (None:
        not in one); the release writes it into agent_presence."""

    def booked_elsewhere(self, extension: str) -> bool:
        return extension in self._elsewhere

    async def follow(self) -> None:
        """Keep `booked_elsewhere` current: LISTEN for other nodes' changes, then read the
        live claims (a change between the two is heard, not lost). Holds one pooled
        connection until `close`."""
        self._listener = await self._pool.acquire()
        await self._listener.add_listener(NOTIFY_CHANNEL, self._notified)
        await self.reload()

    def on_call_elsewhere_now(self, extension: str) -> bool:
        """Whether another node's call (not a reservation) holds `extension`, as last heard."""
        return self._elsewhere.get(extension, RESERVED) != RESERVED

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        node, extension, op, call_id = [*payload.split("\n"), "", "", ""][:4]
        if node == self.node or op != "booked":  # ours now (maybe taken over), or free
            self._set(extension, None)
        else:
            self._set(extension, call_id or RESERVED)

    def _set(self, extension: str, call_id: str | None) -> None:
        was = self.on_call_elsewhere_now(extension)
        if call_id is None:
            self._elsewhere.pop(extension, None)
        else:
            self._elsewhere[extension] = call_id
        now = self.on_call_elsewhere_now(extension)
        if now != was and self.on_call_elsewhere is not None:
            self.on_call_elsewhere(extension, now)

    async def reload(self) -> None:
        """Read the live claims of the other nodes (the lapsed ones of a dead node drop out
        here: their expiry announces nothing)."""
        rows = await self._pool.fetch(
            "SELECT extension, call_id FROM agent_bookings"
            " WHERE node <> $1 AND lease_until >= now()",
            self.node,
        )
        live = {r["extension"]: r["call_id"] for r in rows}
        for extension in [*self._elsewhere, *live]:
            self._set(extension, live.get(extension))

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
            " AND agent_bookings.call_id IN (EXCLUDED.call_id, $5))"
            " RETURNING call_id",
            extension,
            self.node,
            call_id,
            self.lease,
            RESERVED,
        )
        return row is not None

    async def reserve(self, extensions: Sequence[str]) -> set[str]:
        """Hold idle `extensions` for this node's dialer; returns those it holds now (its own
        reservations renewed, free or lapsed rows taken). An agent booked by a call, here
        or elsewhere, is not reserved. Extensions taking many calls are never refused."""
        free = {e for e in extensions if self.exclusive is not None and e not in self.exclusive}
        wanted = [e for e in extensions if e not in free]
        if not wanted:
            return free
        rows = await self._pool.fetch(
            "INSERT INTO agent_bookings (extension, node, call_id, lease_until)"
            " SELECT e, $2, $3, now() + make_interval(secs => $4) FROM unnest($1::text[]) AS e"
            " ON CONFLICT (extension) DO UPDATE SET node = EXCLUDED.node,"
            " call_id = EXCLUDED.call_id, booked_at = now(), lease_until = EXCLUDED.lease_until"
            " WHERE agent_bookings.lease_until < now()"
            " OR (agent_bookings.node = EXCLUDED.node"
            " AND agent_bookings.call_id = EXCLUDED.call_id)"
            " RETURNING extension",
            wanted,
            self.node,
            RESERVED,
            self.lease,
        )
        return free | {r["extension"] for r in rows}

    async def unreserve(self, extensions: Collection[str]) -> None:
        """Give back this node's reservations of `extensions` (a call's booking stays)."""
        if extensions:
            await self._pool.execute(
                "DELETE FROM agent_bookings"
                " WHERE extension = ANY($1::text[]) AND node = $2 AND call_id = $3",
                list(extensions),
                self.node,
                RESERVED,
            )

    async def release(self, extension: str, call_id: str) -> None:
        """Give the booking back; with the agent's wrap-up, in one statement (the other nodes
        hear the release once it is committed, their row holding the wrap-up already)."""
        wrap_up_end = self.wrap_up_end(extension) if self.wrap_up_end is not None else None
        if wrap_up_end is None:
            await self._pool.execute(
                "DELETE FROM agent_bookings WHERE extension = $1 AND node = $2 AND call_id = $3",
                extension,
                self.node,
                call_id,
            )
            return
        await self._pool.execute(
            "WITH gone AS (DELETE FROM agent_bookings"
            " WHERE extension = $1 AND node = $2 AND call_id = $3 RETURNING extension)"
            " INSERT INTO agent_presence (extension, wrap_up_until, node)"
            " SELECT extension, $4, $2 FROM gone ON CONFLICT (extension) DO UPDATE"
            " SET wrap_up_until = EXCLUDED.wrap_up_until, node = EXCLUDED.node,"
            " updated_at = now()",
            extension,
            self.node,
            call_id,
            wrap_up_end,
        )

    async def renew(self) -> int:
        """Extend this node's leases (its bookings and its liveness); returns how many
        bookings it holds."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO cluster_nodes (node, lease_until)"
                " VALUES ($1, now() + make_interval(secs => $2))"
                " ON CONFLICT (node) DO UPDATE SET lease_until = EXCLUDED.lease_until",
                self.node,
                self.lease,
            )
            result = await conn.execute(
                "UPDATE agent_bookings SET lease_until = now() + make_interval(secs => $2)"
                " WHERE node = $1",
                self.node,
                self.lease,
            )
        return int(result.split()[-1])

    async def join(self) -> None:
        """This node is alive from now on (at start; `renew` keeps it so)."""
        await self._pool.execute(
            "INSERT INTO cluster_nodes (node, lease_until)"
            " VALUES ($1, now() + make_interval(secs => $2))"
            " ON CONFLICT (node) DO UPDATE SET lease_until = EXCLUDED.lease_until,"
            " started_at = now()",
            self.node,
            self.lease,
        )

    async def leave(self) -> None:
        """This node stops cleanly: its row goes (its attempts are closed by itself)."""
        await self._pool.execute("DELETE FROM cluster_nodes WHERE node = $1", self.node)

    async def dead_nodes(self) -> list[str]:
        """Nodes whose liveness lease ran out (killed, or cut off from the database)."""
        rows = await self._pool.fetch(
            "SELECT node FROM cluster_nodes WHERE lease_until < now() AND node <> $1 ORDER BY node",
            self.node,
        )
        return [r["node"] for r in rows]

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
