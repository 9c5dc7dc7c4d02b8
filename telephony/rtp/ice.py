"""ICE-lite (RFC 8445 2.5, 6.2) for one WebRTC leg, sans-IO: answer the browser's connectivity
checks on the leg's one port and say which address it nominated.

A lite agent on a server the browser reaches directly gathers one host candidate, sends no
checks of its own and is always controlled: each Binding request whose USERNAME is ours and
whose MESSAGE-INTEGRITY verifies with our password gets a success response (XOR-MAPPED-ADDRESS,
integrity, fingerprint); the address of a check carrying USE-CANDIDATE is the selected pair
(the browser's later checks are consent freshness, RFC 7675). The STUN codec is aioice's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aioice import stun

logger = logging.getLogger(__name__)

__all__ = ["IceLite", "is_stun"]

Address = tuple[str, int]


def is_stun(data: bytes) -> bool:
    """The first byte of a STUN message is 0-3 (RFC 7983 demultiplexing)."""
    return len(data) >= 20 and data[0] < 4


@dataclass
class IceLite:
    local_ufrag: str
    local_pwd: str
    remote_ufrag: str | None = None
    """The far end's ufrag from its SDP, when known: a check naming another is refused."""

    def __post_init__(self) -> None:
        self.selected: Address | None = None
        """The address the browser nominated (USE-CANDIDATE), where media goes."""
        self.checks = 0
        """Checks answered (connectivity and consent)."""
        self.refused = 0
        """Messages that were not a valid check for this leg (dropped silently)."""

    def receive(self, data: bytes, source: Address) -> tuple[bytes | None, bool]:
        """A STUN message from `source`: the response to send back to it (None: drop), and
        whether this check nominated `source` (the caller moves media there)."""
        try:
            request = stun.parse_message(data)
        except ValueError:
            self.refused += 1
            return None, False
        if (
            request.message_method != stun.Method.BINDING
            or request.message_class != stun.Class.REQUEST
        ):
            return None, False  # indications (keepalives) and stray responses need no answer
        username = request.attributes.get("USERNAME", "")
        ours, _, theirs = str(username).partition(":")
        if ours != self.local_ufrag or (self.remote_ufrag and theirs != self.remote_ufrag):
            self.refused += 1
            return None, False
        if not request.check_message_integrity(self.local_pwd.encode()):
            self.refused += 1
            return None, False
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=request.transaction_id,
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = source
        response.add_message_integrity(self.local_pwd.encode())  # and FINGERPRINT
        self.checks += 1
        nominated = "USE-CANDIDATE" in request.attributes
        if nominated and source != self.selected:
            logger.debug("ICE-lite: %s:%d nominated", *source)
            self.selected = source
        return bytes(response), nominated

    def check(self, remote_pwd: str, *, tie_breaker: int) -> bytes:
        """A nominating check of our own to a far end that is ICE-lite as well (two lite
        agents: the controlling one nominates the only pair there is), signed with the far
        end's password."""
        if self.remote_ufrag is None:
            raise ValueError("a check needs the far end's ufrag")
        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        request.attributes["USERNAME"] = f"{self.remote_ufrag}:{self.local_ufrag}"
        request.attributes["PRIORITY"] = 2130706431
        request.attributes["ICE-CONTROLLING"] = tie_breaker
        request.attributes["USE-CANDIDATE"] = None
        request.add_message_integrity(remote_pwd.encode())
        return bytes(request)
