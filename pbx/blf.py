"""BLF: subscriptions to the dialog event package (RFC 4235 over RFC 6665), sans-IO.

A phone's busy-lamp-field key SUBSCRIBEs (Event: dialog) to a colleague's extension; the
engine answers 200, sends a NOTIFY with the extension's state at once, then one on each change
(trying, early = ringing, confirmed, terminated = idle), until the subscription expires or the
phone unsubscribes (Expires: 0). This module holds the subscriptions and builds every message;
the glue (pbx.blf_service) authenticates the phone, sends what it builds and feeds it the
extensions' states. Time comes in as `now`.

The body is application/dialog-info+xml with one <dialog> (state="full": each NOTIFY says the
whole state, so a phone that missed one is right at the next). While the extension is on a
call or rings, the dialog names the other party (<remote><identity>, RFC 4235 4.1.6.1), so a
phone shows who calls the colleague; a withheld number stays withheld (anonymous).

Who may watch whom: BLF groups (WatchPolicy): with none configured every extension may watch
every other (one tenant); with groups, an extension is watched by its groups' members and
watchers only, and any other SUBSCRIBE to it gets 403.
"""

from __future__ import annotations

import enum
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass

from telephony.sip import (
    Dialog,
    NameAddr,
    RemoteProtocolError,
    SipRequest,
    SipResponse,
    Via,
    make_response,
)

EVENT = "dialog"
CONTENT_TYPE = "application/dialog-info+xml"
NAMESPACE = "urn:ietf:params:xml:ns:dialog-info"
DEFAULT_EXPIRES = 3600
"""RFC 4235 4.2: the dialog package's default subscription duration."""
MIN_EXPIRES = 60
MAX_EXPIRES = 3600


class LineState(enum.StrEnum):
    """An extension's state as the dialog package tells it (RFC 4235 3.7.1)."""

    TRYING = "trying"
    """It places a call that does not ring yet."""
    EARLY = "early"
    """Its phone rings (or its call rings elsewhere)."""
    CONFIRMED = "confirmed"
    """It is in a call."""
    TERMINATED = "terminated"
    """Idle."""


@dataclass(frozen=True)
class Party:
    """The other party of a monitored extension's call, as its colleagues' keys show it."""

    uri: str
    display: str | None = None


WITHHELD = Party("sip:anonymous@anonymous.invalid", "Anonymous")
"""What the NOTIFY says of a caller who withheld its number (RFC 3323's anonymous URI)."""


@dataclass(frozen=True)
class BlfGroup:
    """Extensions that watch each other's lines, and others that may watch them too
    (supervisors, a receptionist) without being watched."""

    name: str
    members: tuple[str, ...]
    watchers: tuple[str, ...] = ()


class WatchPolicy:
    """Which extension may watch which: everyone everyone without groups, else per group."""

    def __init__(self, groups: tuple[BlfGroup, ...] = ()) -> None:
        self.groups = groups

    def allows(self, watcher: str, monitored: str) -> bool:
        if not self.groups or watcher == monitored:
            return True
        return any(
            monitored in g.members and (watcher in g.members or watcher in g.watchers)
            for g in self.groups
        )


def dialog_info(
    entity: str,
    version: int,
    state: LineState,
    *,
    direction: str | None,
    remote: Party | None = None,
) -> bytes:
    """The dialog-info document of one extension: `direction` is "recipient" when the call
    rings it, "initiator" when it placed the call (None: not said); `remote` the other party
    of the call (RFC 4235 4.1.6: <local> is the extension, <remote> the party)."""
    ET.register_namespace("", NAMESPACE)
    root = ET.Element(
        f"{{{NAMESPACE}}}dialog-info",
        {"version": str(version), "state": "full", "entity": entity},
    )
    dialog = ET.SubElement(root, f"{{{NAMESPACE}}}dialog", {"id": "line"})
    if direction is not None:
        dialog.set("direction", direction)
    ET.SubElement(dialog, f"{{{NAMESPACE}}}state").text = state.value
    if remote is not None and state is not LineState.TERMINATED:
        local = ET.SubElement(ET.SubElement(dialog, f"{{{NAMESPACE}}}local"),
                              f"{{{NAMESPACE}}}identity")  # fmt: skip
        local.text = entity
        party = ET.SubElement(dialog, f"{{{NAMESPACE}}}remote")
        identity = ET.SubElement(party, f"{{{NAMESPACE}}}identity")
        if remote.display:
            identity.set("display", remote.display)
        identity.text = remote.uri
        ET.SubElement(party, f"{{{NAMESPACE}}}target", {"uri": remote.uri})
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document


@dataclass
class Subscription:
    dialog: Dialog
    watcher: str
    """The extension whose phone subscribed."""
    monitored: str
    """The extension it watches."""
    expires_at: float
    version: int = 0
    """Of the last dialog-info document sent (each NOTIFY one more)."""
    state: LineState | None = None
    """What the last NOTIFY said (None before the first)."""
    direction: str | None = None
    remote: Party | None = None
    """The other party of the monitored extension's call, as the last NOTIFY said."""
    ended: str | None = None
    """Set once terminated: the reason its final NOTIFY gives (timeout, deactivated...)."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.dialog.call_id, self.dialog.local_tag)


class SubscribeError(Exception):
    """A SUBSCRIBE we refuse: the response to send says why."""

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]] | None = None):
        super().__init__(reason)
        self.status = status
        self.headers = headers or []


class Watchers:
    """Every BLF subscription of the engine, by dialog."""

    def __init__(self, *, min_expires: int = MIN_EXPIRES, max_expires: int = MAX_EXPIRES) -> None:
        self.min_expires = min_expires
        self.max_expires = max_expires
        self._subs: dict[tuple[str, str], Subscription] = {}

    def __len__(self) -> int:
        return len(self._subs)

    def __iter__(self) -> Iterator[Subscription]:
        return iter(list(self._subs.values()))

    def watching(self, extension: str) -> list[Subscription]:
        return [s for s in self._subs.values() if s.monitored == extension]

    def _expires(self, request: SipRequest) -> int:
        text = request.headers.get("Expires")
        if text is None:
            return DEFAULT_EXPIRES
        if not text.strip().isdigit():
            raise SubscribeError(400, "Bad Expires")
        asked = int(text)
        if 0 < asked < self.min_expires:
            raise SubscribeError(
                423, "Interval Too Brief", [("Min-Expires", str(self.min_expires))]
            )
        return min(asked, self.max_expires)

    def subscribe(
        self, request: SipRequest, *, watcher: str, monitored: str | None, contact: NameAddr,
        now: float, allowed: bool = True,
    ) -> tuple[SipResponse, Subscription]:  # fmt: skip
        """An initial SUBSCRIBE (no To tag) from `watcher`'s phone for `monitored` (None: no
        such extension; `allowed`: the watch policy lets `watcher` watch it, else 403).
        Returns the 200 and the subscription, which owes its first NOTIFY at once; with
        Expires: 0 it is a fetch: that NOTIFY is its last. SubscribeError otherwise."""
        event = (request.headers.get("Event") or "").split(";")[0].strip().lower()
        if event != EVENT:
            raise SubscribeError(489, "Bad Event", [("Allow-Events", EVENT)])
        accept = request.headers.get("Accept")
        if accept is not None and CONTENT_TYPE not in accept.lower() and "*/*" not in accept:
            raise SubscribeError(406, "Not Acceptable", [("Accept", CONTENT_TYPE)])
        if monitored is None:
            raise SubscribeError(404, "No such extension")
        if not allowed:
            raise SubscribeError(403, "Not allowed to watch this extension")
        if not request.contacts:
            raise SubscribeError(400, "SUBSCRIBE without Contact")
        expires = self._expires(request)
        tag = secrets.token_hex(6)
        response = make_response(
            request,
            200,
            to_tag=tag,
            extra=[("Expires", str(expires)), ("Contact", str(contact))],
        )
        sub = Subscription(
            Dialog.from_uas(request, response), watcher, monitored, expires_at=now + expires
        )
        if expires == 0:
            sub.ended = "timeout"
        else:
            self._subs[sub.key] = sub
        return response, sub

    def refresh(
        self, request: SipRequest, *, contact: NameAddr, now: float
    ) -> tuple[SipResponse, Subscription]:
        """A SUBSCRIBE in one of our subscription dialogs: refresh, or with Expires: 0
        unsubscribe (its final NOTIFY is owed at once). SubscribeError 481 for a dialog we
        do not know."""
        sub = self._subs.get((request.call_id, request.to.tag or ""))
        if sub is None:
            raise SubscribeError(481, "Subscription does not exist")
        try:
            sub.dialog.receive_request(request)
        except RemoteProtocolError as exc:  # a CSeq out of order
            raise SubscribeError(exc.status_code, str(exc)) from None
        expires = self._expires(request)
        sub.expires_at = now + expires
        if expires == 0:
            sub.ended = "deactivated"
            del self._subs[sub.key]
        response = make_response(
            request, 200, extra=[("Expires", str(expires)), ("Contact", str(contact))]
        )
        return response, sub

    def has_dialog(self, request: SipRequest) -> bool:
        return (request.call_id, request.to.tag or "") in self._subs

    def changed(
        self,
        extension: str,
        state: LineState,
        direction: str | None = None,
        remote: Party | None = None,
    ) -> list[Subscription]:
        """The subscriptions to `extension` that must hear its new state (a NOTIFY each)."""
        owed = []
        for sub in self.watching(extension):
            if (sub.state, sub.direction, sub.remote) != (state, direction, remote):
                sub.state, sub.direction, sub.remote = state, direction, remote
                owed.append(sub)
        return owed

    def expire(self, *, now: float) -> list[Subscription]:
        """Subscriptions that ran out (their final NOTIFY, reason timeout, is owed)."""
        gone = [s for s in self._subs.values() if s.expires_at <= now]
        for sub in gone:
            sub.ended = "timeout"
            del self._subs[sub.key]
        return gone

    def drop(self, sub: Subscription) -> None:
        """Forget a subscription whose watcher is gone (a NOTIFY got 481 or no answer)."""
        self._subs.pop(sub.key, None)

    def notify(
        self, sub: Subscription, state: LineState, *, via: Via, contact: NameAddr, entity: str,
        now: float,
    ) -> SipRequest:  # fmt: skip
        """The NOTIFY telling `sub`'s phone the monitored extension's `state` (its last one
        when the subscription ended)."""
        sub.version += 1
        sub.state = state
        if sub.ended is not None:
            status = f"terminated;reason={sub.ended}"
        else:
            status = f"active;expires={max(0, round(sub.expires_at - now))}"
        body = dialog_info(entity, sub.version, state, direction=sub.direction, remote=sub.remote)
        return sub.dialog.create_request(
            "NOTIFY",
            via=via,
            contact=contact,
            headers=[("Event", EVENT), ("Subscription-State", status)],
            body=body,
            content_type=CONTENT_TYPE,
        )
