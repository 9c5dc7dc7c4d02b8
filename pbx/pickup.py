"""Call pickup: which ringing call an agent takes with *8 (group pickup) or **EXT (directed).

Pure: the switchboard hands in what rings now and acts on the answer (answer the picker's leg,
CANCEL the ringing phones, bridge). An agent may belong to several pickup groups; *8 takes the
call that has waited longest among those ringing a phone of any group the picker is in, **EXT
the call ringing EXT, only when the picker shares a group with EXT.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

logger = logging.getLogger(__name__)

GROUP_PICKUP = "*8"
# **EXT: directed pickup of the call ringing extension EXT (2-8 digits like every extension).
DIRECTED_PICKUP = re.compile(r"^\*\*(?P<ext>[0-9]{2,8})$")


@dataclass(frozen=True)
class PickupGroup:
    name: str
    """How the configuration and logs name the group."""
    members: tuple[str, ...]
    """Extensions that may pick up each other's ringing calls."""


@dataclass(frozen=True)
class RingingCall:
    """A call that rings some phones now, as pickup sees it."""

    key: str
    """The switchboard's key of the call (the caller leg's Call-ID)."""
    ringing: frozenset[str]
    """Extensions whose phones ring for it."""
    since: datetime
    """When the call started: the oldest call is picked first."""


class PickupRefusal(enum.Enum):
    NOTHING_RINGING = "nothing-ringing"
    """No call rings a phone the picker may pick up (or EXT does not ring)."""
    NOT_ALLOWED = "not-allowed"
    """**EXT for an extension that shares no pickup group with the picker."""


@dataclass(frozen=True)
class Pickup:
    """The call the picker takes, and the extension it was ringing (for the CRM event)."""

    key: str
    picked_from: str


class PickupGroups:
    """The configured groups, indexed by member."""

    def __init__(self, groups: Iterable[PickupGroup] = ()) -> None:
        self.groups = tuple(groups)
        self._peers: dict[str, set[str]] = {}
        for group in self.groups:
            for member in group.members:
                self._peers.setdefault(member, set()).update(group.members)

    def peers(self, extension: str) -> frozenset[str]:
        """Everyone sharing at least one group with `extension`, itself excluded."""
        return frozenset(self._peers.get(extension, set()) - {extension})

    def may_pick(self, picker: str, extension: str) -> bool:
        return extension in self.peers(picker)

    def select(
        self, picker: str, calls: Sequence[RingingCall], *, target: str | None = None
    ) -> Pickup | PickupRefusal:
        """The call `picker` takes: with `target` (**EXT) the one ringing it, else (*8) the
        oldest ringing any phone of the picker's groups."""
        if target is not None:
            if not self.may_pick(picker, target):
                return PickupRefusal.NOT_ALLOWED
            wanted = frozenset({target})
        else:
            wanted = self.peers(picker)
        best: RingingCall | None = None
        for call in calls:
            if call.ringing & wanted and (best is None or call.since < best.since):
                best = call
        if best is None:
            return PickupRefusal.NOTHING_RINGING
        return Pickup(best.key, target or min(best.ringing & wanted))


@dataclass(frozen=True)
class PickupCode:
    """A dialled pickup code: *8 (target None) or **EXT."""

    target: str | None


def parse_pickup(dialled: str) -> PickupCode | None:
    """The pickup code in a dialled string; None when it is none."""
    if dialled == GROUP_PICKUP:
        return PickupCode(None)
    match = DIRECTED_PICKUP.match(dialled)
    return PickupCode(match["ext"]) if match else None
