"""Seats: an agent's nailed-up line for power and predictive dialing.

An agent who dials the seat code (*55) keeps that call up for the shift. The engine answers it,
beeps, and then holds it silent; a person the dialer reaches is bridged to an idle seat at once,
with no ringing (VICIdial's agent session, Twilio's "conference per agent"), so the connect
delay after the AMD verdict is the bridge's set-up, not a phone's ring and an agent's reach for
the answer key. When the customer hangs up, the seat stays up and the agent goes into wrap-up as
after any customer call; hanging up the seat's call ends the shift (and a call on it).

The table is pure: the switchboard answers the code, holds the legs and asks which seat takes
a call.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

SEAT_CODE = "*55"
SEAT_RING_SECONDS = 30.0
"""How long the engine rings an agent's phone to seat them (the API's "call my phone")."""

Leg = TypeVar("Leg")


class SeatError(Exception):
    """A seat that cannot be taken or left now; `status` is the HTTP answer."""

    def __init__(self, reason: str, status: int = 409) -> None:
        super().__init__(reason)
        self.status = status


@dataclass
class Seat(Generic[Leg]):
    agent: str
    leg: Leg
    """The agent's call to the seat code, answered and held."""
    since: float
    """When the agent took the seat."""
    on_call: bool = False
    """A customer is bridged to it now."""
    calls: int = 0
    """Customers bridged to it since it was taken."""


class Seats(Generic[Leg]):
    """The seats taken now, one per agent at most."""

    def __init__(self) -> None:
        self._seats: dict[str, Seat[Leg]] = {}

    def take(self, agent: str, leg: Leg, *, now: float) -> Seat[Leg] | None:
        """`agent` sits down on `leg`; None (refused) when the agent has a seat already."""
        if agent in self._seats:
            return None
        seat = self._seats[agent] = Seat(agent, leg, now)
        return seat

    def leave(self, agent: str, leg: Leg) -> Seat[Leg] | None:
        """The seat's call ended: the agent stands up (None when `leg` is no seat)."""
        seat = self._seats.get(agent)
        if seat is None or seat.leg is not leg:
            return None
        return self._seats.pop(agent)

    def get(self, agent: str) -> Seat[Leg] | None:
        return self._seats.get(agent)

    def holder(self, leg: Leg) -> str | None:
        """The agent whose seat `leg` is (None: no seat's)."""
        return next((a for a, seat in self._seats.items() if seat.leg is leg), None)

    def __contains__(self, agent: object) -> bool:
        return agent in self._seats

    def __len__(self) -> int:
        return len(self._seats)

    def idle(self, agents: Iterable[str]) -> list[str]:
        """Those of `agents` sitting on a seat with no customer on it, in the order given."""
        return [a for a in agents if (s := self._seats.get(a)) is not None and not s.on_call]

    def occupy(self, agent: str) -> Seat[Leg]:
        """A customer is bridged to `agent`'s seat (which must be idle)."""
        seat = self._seats[agent]
        if seat.on_call:
            raise ValueError(f"seat of {agent} has a call already")
        seat.on_call = True
        seat.calls += 1
        return seat

    def release(self, agent: str) -> None:
        """The customer on `agent`'s seat is gone (the seat may be gone too)."""
        seat = self._seats.get(agent)
        if seat is not None:
            seat.on_call = False
