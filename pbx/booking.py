"""Who books an agent for a call, when several engine nodes share the agents.

Each node counts its own calls (`Switchboard.busy`); nodes behind one proxy also share the
agents, so before a call rings an agent's phone it claims the agent in a store every node
sees, and a claim another call holds refuses it: one agent is never booked twice, whichever
nodes the two calls are on. A claim is released when the agent's phone stops ringing without
answering, or when the call ends; the store's claims carry a lease the node keeps renewing,
so a dead node's claims lapse by themselves.

`AgentBookings` is the protocol; `LocalBookings` (one node: its own count is the whole
truth) claims everything. The shared one is crm_bridge.PgAgentBookings (PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol


class AgentBookings(Protocol):
    async def claim(self, extension: str, call_id: str) -> bool:
        """Book `extension` for the call `call_id`; False when another call holds it."""
        ...

    async def release(self, extension: str, call_id: str) -> None:
        """Give back the booking of `extension` by `call_id` (nothing when it holds none). A
        shared store gives the agent's wrap-up with it (BridgedCall.on_over has begun it),
        so no node sees the agent free before their wrap-up."""
        ...

    def booked_elsewhere(self, extension: str) -> bool:
        """Whether another node's call holds `extension`, as last heard (may lag by the
        time a notification takes; `claim` is the one that decides)."""
        ...

    async def reserve(self, extensions: Sequence[str]) -> set[str]:
        """Hold idle `extensions` for this node's dialer (another node's dialer then counts
        them busy; this node's calls take them over); returns those this node holds."""
        ...

    async def unreserve(self, extensions: Collection[str]) -> None:
        """Give back this node's reservations of `extensions`."""
        ...


class LocalBookings:
    """A single node: nobody else books its agents."""

    async def claim(self, extension: str, call_id: str) -> bool:
        return True

    async def release(self, extension: str, call_id: str) -> None:
        return None

    def booked_elsewhere(self, extension: str) -> bool:
        return False

    async def reserve(self, extensions: Sequence[str]) -> set[str]:
        return set(extensions)

    async def unreserve(self, extensions: Collection[str]) -> None:
        return None


__all__ = ["AgentBookings", "LocalBookings"]
