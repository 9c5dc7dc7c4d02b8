"""SIP dialogs, sans-IO (RFC 3261 section 12).

A :class:`Dialog` is the peer-to-peer state two user agents share after an INVITE: the
Call-ID and tags that name it, both CSeq spaces, the remote target and the route set. It
builds in-dialog requests (12.2.1.1, with loose and strict routing), checks the order of
incoming ones (12.2.2) and refreshes the remote target (target refresh requests and their 2xx).

The dialog's own life is a small table ``{(DialogState, DialogInput): DialogState}``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum, auto

from .errors import LocalProtocolError, ParseError, RemoteProtocolError
from .headers import Headers
from .message import SipRequest, SipResponse
from .uri import NameAddr, SipUri, Via, parse_uri

logger = logging.getLogger(__name__)

__all__ = [
    "DIALOG_TRANSITIONS",
    "Dialog",
    "DialogId",
    "DialogInput",
    "DialogRecord",
    "DialogState",
    "bye_from_record",
    "dialog_id_of_received_request",
    "dialog_id_of_response",
]

DialogId = tuple[str, str, str]
"""(Call-ID, local tag, remote tag): how dialogs are keyed (RFC 3261 12)."""

MAX_FORWARDS = 70
"""Max-Forwards of the requests a dialog builds (RFC 3261 8.1.1.6)."""

_MAX_LOCAL_CSEQ = 2**31 - 1
"""A request's CSeq number must stay below 2**31 (RFC 3261 8.1.1.5)."""

_TARGET_REFRESH = frozenset({"INVITE", "UPDATE"})
"""Methods whose Contact replaces the remote target (RFC 3261 12.2, RFC 3311)."""

_SAME_CSEQ = frozenset({"ACK", "CANCEL"})
"""Methods that reuse the CSeq number of the request they belong to."""

_DIALOG_FAILURES = frozenset({408, 481})
"""Responses after which the UAC should end the dialog (RFC 3261 12.2.1.2)."""


class DialogState(Enum):
    """RFC 3261 12: early (after a 1xx with a To tag), confirmed (after a 2xx), terminated."""

    EARLY = auto()
    CONFIRMED = auto()
    TERMINATED = auto()


class DialogInput(Enum):
    """What moves a dialog."""

    CONFIRM = auto()
    """A 2xx to the INVITE that created the dialog (received by the UAC, sent by the UAS)."""
    FAIL = auto()
    """A 300-699 final response to the INVITE that created the (early) dialog."""
    BYE = auto()
    """A BYE sent or received."""
    TERMINATE = auto()
    """The TU ends the dialog (e.g. 408/481 to an in-dialog request, session timer expiry)."""


DIALOG_TRANSITIONS: dict[tuple[DialogState, DialogInput], DialogState] = {
    (DialogState.EARLY, DialogInput.CONFIRM): DialogState.CONFIRMED,
    (DialogState.EARLY, DialogInput.FAIL): DialogState.TERMINATED,
    (DialogState.EARLY, DialogInput.BYE): DialogState.TERMINATED,
    (DialogState.EARLY, DialogInput.TERMINATE): DialogState.TERMINATED,
    # A retransmitted 2xx, or a 2xx to a re-INVITE: nothing changes.
    (DialogState.CONFIRMED, DialogInput.CONFIRM): DialogState.CONFIRMED,
    (DialogState.CONFIRMED, DialogInput.BYE): DialogState.TERMINATED,
    (DialogState.CONFIRMED, DialogInput.TERMINATE): DialogState.TERMINATED,
    (DialogState.TERMINATED, DialogInput.BYE): DialogState.TERMINATED,
    (DialogState.TERMINATED, DialogInput.TERMINATE): DialogState.TERMINATED,
}


def dialog_id_of_received_request(request: SipRequest) -> DialogId:
    """The id, as seen by us, of the dialog a received request belongs to (local = To tag)."""
    return (request.call_id, request.to.tag or "", request.from_.tag or "")


def dialog_id_of_response(response: SipResponse) -> DialogId:
    """The id, as seen by the UAC, of the dialog a received response belongs to."""
    return (response.call_id, response.from_.tag or "", response.to.tag or "")


def _target(contacts: list[NameAddr], what: str) -> SipUri:
    if not contacts:
        raise ParseError(f"{what} has no Contact")
    uri = contacts[0].uri
    if not isinstance(uri, SipUri):
        raise ParseError(f"{what} Contact is not a SIP URI: {uri}")
    return uri


def _state_for(response: SipResponse) -> DialogState:
    if 101 <= response.status < 200:
        return DialogState.EARLY
    if 200 <= response.status < 300:
        return DialogState.CONFIRMED
    raise LocalProtocolError(f"a {response.status} response does not create a dialog")


@dataclass(frozen=True)
class DialogRecord:
    """What it takes to send a request in a confirmed dialog, as plain text and numbers: kept
    outside the process (a database row) so that a restarted engine can still end the dialog.

    ``local_contact`` is what our requests in the dialog carry as Contact (None: no Contact,
    as in a BYE). The remote CSeq is left out: a restarted engine answers no request of the old
    dialog (they get 481), it only sends.
    """

    call_id: str
    local_tag: str
    remote_tag: str
    local_seq: int
    """CSeq number of our last request in the dialog."""
    local_uri: str
    """Our From address, without tag."""
    remote_uri: str
    """The peer's To address, without tag."""
    remote_target: str
    """The peer's Contact URI as last refreshed."""
    route_set: tuple[str, ...] = ()
    """Route set entries (name-addr), in sending order."""
    local_contact: str | None = None
    secure: bool = False
    is_uac: bool = True

    @property
    def dialog_id(self) -> DialogId:
        return (self.call_id, self.local_tag, self.remote_tag)


def bye_from_record(
    record: DialogRecord, *, via: Via, headers: Iterable[tuple[str, str]] = ()
) -> SipRequest:
    """The BYE that ends the dialog ``record`` describes, numbered one past its last CSeq
    (RFC 3261 15.1.1, 12.2.1.1: routed by its route set, strict or loose).

    ParseError when the record's addresses do not parse, LocalProtocolError when its CSeq
    space is spent.
    """
    dialog = Dialog.from_record(record)
    return dialog.create_request("BYE", via=via, headers=headers)


@dataclass
class Dialog:
    """One dialog, from our side (RFC 3261 12.1)."""

    call_id: str
    """Call-ID shared by every request of the dialog."""

    local_tag: str
    """Our tag: From tag of our requests, To tag of the peer's."""

    remote_tag: str
    """The peer's tag ('' for an RFC 2543 peer that sent none)."""

    local_seq: int
    """CSeq number of our last request (0 until a UAS sends its first one)."""

    remote_seq: int | None
    """CSeq number of the peer's last request, None until it sends one."""

    local_uri: NameAddr
    """Our From/To address, without tag."""

    remote_uri: NameAddr
    """The peer's From/To address, without tag."""

    remote_target: SipUri
    """Where our requests go: the peer's Contact URI (updated by target refresh requests)."""

    route_set: list[NameAddr] = field(default_factory=list)
    """Proxies our requests traverse, in sending order (from Record-Route)."""

    secure: bool = False
    """True when the dialog was set up with a SIPS Request-URI (over TLS)."""

    state: DialogState = DialogState.CONFIRMED
    """Early, confirmed or terminated."""

    is_uac: bool = True
    """True when we sent the INVITE that created the dialog."""

    # --- creation ---

    @classmethod
    def from_uas(
        cls, request: SipRequest, response: SipResponse, *, secure: bool | None = None
    ) -> Dialog:
        """The dialog we (UAS) create by answering ``request`` with ``response`` (1xx with a To
        tag, or 2xx), RFC 3261 12.1.1. ``secure`` defaults to "the Request-URI is sips:"."""
        local_tag = response.to.tag
        if not local_tag:
            raise LocalProtocolError("a dialog-creating response needs a To tag")
        uri = request.uri
        dialog = cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag or "",
            local_seq=0,
            remote_seq=request.cseq.seq,
            local_uri=_without_tag(request.to),
            remote_uri=_without_tag(request.from_),
            remote_target=_target(request.contacts, f"{request.method} request"),
            route_set=request.record_routes,
            secure=(isinstance(uri, SipUri) and uri.scheme == "sips") if secure is None else secure,
            state=_state_for(response),
            is_uac=False,
        )
        logger.debug("dialog %s created (UAS, %s)", dialog.call_id, dialog.state.name)
        return dialog

    @classmethod
    def from_uac(
        cls, request: SipRequest, response: SipResponse, *, secure: bool | None = None
    ) -> Dialog:
        """The dialog our ``request`` created when ``response`` (1xx with a To tag, or 2xx)
        arrived, RFC 3261 12.1.2. The route set is the response's Record-Route reversed."""
        local_tag = request.from_.tag
        if not local_tag:
            raise LocalProtocolError("our request has no From tag")
        state = _state_for(response)
        try:
            target = _target(response.contacts, f"{response.status} response")
        except ParseError:
            # A provisional response may omit Contact: keep the Request-URI until the 2xx.
            if state is DialogState.CONFIRMED or not isinstance(request.uri, SipUri):
                raise
            target = request.uri
        uri = request.uri
        dialog = cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=response.to.tag or "",
            local_seq=request.cseq.seq,
            remote_seq=None,
            local_uri=_without_tag(request.from_),
            remote_uri=_without_tag(response.to),
            remote_target=target,
            route_set=list(reversed(response.record_routes)),
            secure=(isinstance(uri, SipUri) and uri.scheme == "sips") if secure is None else secure,
            state=state,
            is_uac=True,
        )
        logger.debug("dialog %s created (UAC, %s)", dialog.call_id, dialog.state.name)
        return dialog

    @classmethod
    def from_record(cls, record: DialogRecord) -> Dialog:
        """The confirmed dialog a :class:`DialogRecord` describes (ParseError if it is junk)."""
        target = parse_uri(record.remote_target)
        if not isinstance(target, SipUri):
            raise ParseError(f"remote target is not a SIP URI: {record.remote_target}")
        if not 0 <= record.local_seq <= _MAX_LOCAL_CSEQ:
            raise ParseError(f"local CSeq {record.local_seq} out of range")
        return cls(
            call_id=record.call_id,
            local_tag=record.local_tag,
            remote_tag=record.remote_tag,
            local_seq=record.local_seq,
            remote_seq=None,
            local_uri=_without_tag(NameAddr.parse(record.local_uri)),
            remote_uri=_without_tag(NameAddr.parse(record.remote_uri)),
            remote_target=target,
            route_set=[NameAddr.parse(route) for route in record.route_set],
            secure=record.secure,
            state=DialogState.CONFIRMED,
            is_uac=record.is_uac,
        )

    def to_record(self, *, local_contact: NameAddr | None = None) -> DialogRecord:
        """This dialog as a :class:`DialogRecord` (``local_contact``: our Contact in it)."""
        return DialogRecord(
            call_id=self.call_id,
            local_tag=self.local_tag,
            remote_tag=self.remote_tag,
            local_seq=self.local_seq,
            local_uri=str(self.local_uri),
            remote_uri=str(self.remote_uri),
            remote_target=str(self.remote_target),
            route_set=tuple(str(route) for route in self.route_set),
            local_contact=None if local_contact is None else str(local_contact),
            secure=self.secure,
            is_uac=self.is_uac,
        )

    @property
    def dialog_id(self) -> DialogId:
        """(Call-ID, local tag, remote tag)."""
        return (self.call_id, self.local_tag, self.remote_tag)

    # --- state ---

    def handle(self, event: DialogInput) -> None:
        """Apply one input to the dialog's state table."""
        try:
            new = DIALOG_TRANSITIONS[(self.state, event)]
        except KeyError:
            raise LocalProtocolError(
                f"dialog {self.call_id}: {event.name} not allowed in state {self.state.name}"
            ) from None
        self._set_state(new, event)

    def _set_state(self, new: DialogState, cause: DialogInput) -> None:
        old = self.state
        self.state = new
        if old is not new:
            logger.debug(
                "dialog call-id=%s: %s -> %s on %s", self.call_id, old.name, new.name, cause.name
            )

    def confirm(self) -> None:
        """We (UAS) sent the 2xx to the INVITE that created the dialog."""
        self.handle(DialogInput.CONFIRM)

    def terminate(self) -> None:
        """End the dialog (BYE sent, 408/481 received, or the TU gives up)."""
        self.handle(DialogInput.TERMINATE)

    @property
    def terminated(self) -> bool:
        return self.state is DialogState.TERMINATED

    # --- requests we send (12.2.1.1) ---

    def create_request(
        self,
        method: str,
        *,
        via: Via,
        contact: NameAddr | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        cseq: int | None = None,
    ) -> SipRequest:
        """Build an in-dialog request. Its CSeq is the next local number; ACK and CANCEL take
        ``cseq`` (the number of the INVITE they belong to) instead. ``via`` should carry a fresh
        branch (the INVITE's own for a CANCEL). A BYE ends the dialog."""
        if self.terminated and method not in _SAME_CSEQ:
            raise LocalProtocolError(f"dialog {self.call_id} is terminated")
        if method in _SAME_CSEQ:
            if cseq is None:
                raise LocalProtocolError(f"{method} needs the cseq of its INVITE")
            number = cseq
        else:
            if cseq is not None:
                raise LocalProtocolError(f"{method} takes the next local CSeq, not a given one")
            if self.local_seq >= _MAX_LOCAL_CSEQ:
                raise LocalProtocolError("local CSeq space exhausted")
            self.local_seq += 1
            number = self.local_seq

        request_uri, routes = self._routing()
        out = Headers()
        out.add("Via", str(via))
        for route in routes:
            out.add("Route", str(route))
        out.add("Max-Forwards", str(MAX_FORWARDS))
        out.add("From", str(self.local_uri.with_tag(self.local_tag)))
        remote = self.remote_uri.with_tag(self.remote_tag) if self.remote_tag else self.remote_uri
        out.add("To", str(remote))
        out.add("Call-ID", self.call_id)
        out.add("CSeq", f"{number} {method}")
        if contact is not None:
            out.add("Contact", str(contact))
        for name, value in headers:
            out.add(name, value)
        if content_type is not None:
            out.add("Content-Type", content_type)
        elif body:
            raise LocalProtocolError("a body needs a content_type")
        if method == "BYE":
            self.handle(DialogInput.BYE)
        return SipRequest(method=method, uri=request_uri, headers=out, body=body)

    def create_ack(
        self,
        cseq: int,
        *,
        via: Via,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> SipRequest:
        """The ACK for a 2xx to the INVITE numbered ``cseq`` (RFC 3261 13.2.2.4): sent by the
        TU outside any transaction, with its own branch."""
        return self.create_request(
            "ACK", via=via, headers=headers, body=body, content_type=content_type, cseq=cseq
        )

    def _routing(self) -> tuple[SipUri, list[NameAddr]]:
        """Request-URI and Route headers (RFC 3261 12.2.1.1)."""
        if not self.route_set:
            return self.remote_target, []
        first = self.route_set[0].uri
        if isinstance(first, SipUri) and first.lr:
            return self.remote_target, list(self.route_set)
        # Strict router: it gets the Request-URI; the remote target travels as the last Route.
        if not isinstance(first, SipUri):
            raise LocalProtocolError(f"route set entry is not a SIP URI: {first}")
        # Parameters not allowed in a Request-URI (RFC 3261 19.1.1 table 1) are dropped.
        params = {k: v for k, v in first.params.items() if k != "method"}
        request_uri = SipUri(
            scheme=first.scheme,
            user=first.user,
            password=first.password,
            host=first.host,
            port=first.port,
            params=params,
        )
        routes = [*self.route_set[1:], NameAddr(None, self.remote_target)]
        return request_uri, routes

    # --- requests we receive (12.2.2) ---

    def receive_request(self, request: SipRequest) -> None:
        """Check and account an in-dialog request from the peer.

        Raises RemoteProtocolError 500 when its CSeq is lower than the last one (out of order,
        RFC 3261 12.2.2) and 481 when the dialog is already terminated. Updates the remote
        CSeq, refreshes the remote target on INVITE/UPDATE with a Contact; a BYE ends the dialog.
        """
        if request.call_id != self.call_id or (request.to.tag or "") != self.local_tag:
            raise LocalProtocolError("request does not belong to this dialog")
        method = request.method
        if method in _SAME_CSEQ:
            return  # ACK/CANCEL reuse the INVITE's number; no ordering to check
        if self.terminated:
            raise RemoteProtocolError("dialog terminated", status_code=481)
        seq = request.cseq.seq
        if self.remote_seq is not None and seq < self.remote_seq:
            raise RemoteProtocolError(
                f"CSeq {seq} lower than {self.remote_seq}: out of order", status_code=500
            )
        self.remote_seq = seq
        if method in _TARGET_REFRESH and request.contacts:
            self.remote_target = _target(request.contacts, f"{method} request")
        if method == "BYE":
            self.handle(DialogInput.BYE)

    # --- responses we receive (12.2.1.2, 13.2.2.4) ---

    def receive_response(self, response: SipResponse) -> None:
        """Account a response to one of our requests in this dialog (UAC side).

        A 2xx to the creating INVITE confirms an early dialog and recomputes its route set from
        the 2xx; a 2xx to a target refresh request (INVITE, UPDATE) replaces the remote target
        with its Contact; a 300-699 to the INVITE that created an early dialog ends it; 408 and
        481 end the dialog.
        """
        method = response.cseq.method
        status = response.status
        if 200 <= status < 300 and method in _TARGET_REFRESH:
            contacts = response.contacts
            if contacts:
                self.remote_target = _target(contacts, f"{status} response")
            if method == "INVITE" and self.state is DialogState.EARLY:
                if self.is_uac:
                    self.route_set = list(reversed(response.record_routes))
                self.handle(DialogInput.CONFIRM)
        elif status >= 300 and method == "INVITE" and self.state is DialogState.EARLY:
            self.handle(DialogInput.FAIL)
        elif status in _DIALOG_FAILURES and not self.terminated:
            self.handle(DialogInput.TERMINATE)


def _without_tag(address: NameAddr) -> NameAddr:
    params = {k: v for k, v in address.params.items() if k != "tag"}
    return NameAddr(address.display_name, address.uri, params)
