"""Call parking: the slots of the parking lot, and the codes that park and retrieve a call.

Pure: the switchboard parks a bridged call's caller in a free slot (the customer hears music,
the parker hears the slot and its leg goes), and any phone that dials *71SLOT or the slot
number itself takes the call back; nobody coming, the parker's phone is rung back. Slots are
numbers (701-720 by default) that must not be extensions.

An agent parks the caller from the phone the way Asterisk's users do: a blind transfer (REFER)
to the park extension 700, or the in-call code #72 (features.conf's parkcall) pressed as DTMF.
"""

from __future__ import annotations

import re

RETRIEVE = "*71"
_RETRIEVE = re.compile(r"^\*71(?P<slot>[0-9]{2,8})$")
DEFAULT_FIRST_SLOT = 701
DEFAULT_SLOTS = 20
DEFAULT_PARK_TIMEOUT = 60.0
"""Seconds a call stays parked before the parker's phone is rung back."""
PARK_EXTENSION = "700"
"""Where a phone blind-transfers (REFER) a call to park it."""
PARK_DIGITS = "#72"
"""Pressed during an answered call, parks the other party."""
DIGIT_GAP = 2.0
"""Seconds at most between two keys of PARK_DIGITS."""


def announcement(slot: str) -> str:
    """What the parker hears: the slot, digit by digit ("Parked on 7 0 1")."""
    return "Parked on " + " ".join(slot)


class FeatureDigits:
    """Watches the keys one party presses for `code` typed within DIGIT_GAP per key."""

    def __init__(self, code: str = PARK_DIGITS, gap: float = DIGIT_GAP) -> None:
        self.code = code
        self.gap = gap
        self._typed = ""
        self._last = float("-inf")

    def feed(self, digit: str, now: float) -> bool:
        """True when `digit` completes the code (which starts over)."""
        if now - self._last > self.gap:
            self._typed = ""
        self._last = now
        self._typed = (self._typed + digit)[-len(self.code) :]
        if self._typed == self.code:
            self._typed = ""
            return True
        return False


class ParkingLot:
    def __init__(self, first: int = DEFAULT_FIRST_SLOT, count: int = DEFAULT_SLOTS) -> None:
        self.slots = tuple(str(first + n) for n in range(count))
        self._parked: dict[str, str] = {}
        """Call key by slot."""

    def park(self, key: str) -> str | None:
        """The first free slot, now holding the call `key`; None when the lot is full (or the
        call is parked already)."""
        if key in self._parked.values():
            return None
        for slot in self.slots:
            if slot not in self._parked:
                self._parked[slot] = key
                return slot
        return None

    def take(self, slot: str) -> str | None:
        """The call parked in `slot`, which is free again; None when nothing is parked there."""
        return self._parked.pop(slot, None)

    def leave(self, key: str) -> None:
        """The call `key` is no longer parked (retrieved, rung back or hung up)."""
        for slot, parked in list(self._parked.items()):
            if parked == key:
                del self._parked[slot]

    def parked(self) -> dict[str, str]:
        return dict(self._parked)

    def retrieval(self, dialled: str) -> str | None:
        """The slot a dialled *71SLOT or bare slot number retrieves; None for anything else."""
        match = _RETRIEVE.match(dialled)
        slot = match["slot"] if match else dialled
        return slot if slot in self.slots else None
