"""SIP transactions, sans-IO (RFC 3261 section 17, RFC 6026).

Four state machines, one per transaction kind, each a module-level table
``{(State, Input): (action, next_state)}``:

- :class:`ClientInviteTransaction` (17.1.1, with RFC 6026's Accepted state and Timer M)
- :class:`ClientNonInviteTransaction` (17.1.2)
- :class:`ServerInviteTransaction` (17.2.1, with RFC 6026's Accepted state and Timer L)
- :class:`ServerNonInviteTransaction` (17.2.2)

Network inputs (received messages) have an entry in every live state, so retransmissions and
strays are absorbed by explicit "ignore" entries; a pair missing from a table means our own
code misused the machine and raises :class:`LocalProtocolError`.

:class:`TransactionLayer` owns the transactions and is driven by an asyncio shell: it feeds
``receive()``, ``send_request()``, ``send_response()`` and ``handle_timer()``, then drains
``datagrams_to_send()`` and ``next_event()`` and re-arms one timer at ``get_timer()``.

Choices beyond the letter of RFC 3261:

- An INVITE server transaction sends "100 Trying" only if the TU has not answered within
  ``TimerConfig.trying_delay`` (200 ms, RFC 3261 17.2.1), or at once when the INVITE is
  retransmitted before any answer. Peers such as pyVoIP 1.6.8 ignore a 401 that follows a 100,
  and our TU challenges unauthenticated INVITEs synchronously.
- Server transactions with the magic cookie are also keyed by CSeq number (see
  :func:`server_key`).
- After a 2xx to INVITE, the server transaction (Accepted state) does the UAS core's 2xx
  retransmission itself (RFC 3261 13.3.1.4: T1 doubling up to T2, on every transport), stops
  when the ACK for that 2xx arrives (matched by Call-ID, CSeq number and From tag, since that
  ACK has its own branch), and re-sends the 2xx when the INVITE is retransmitted. If no ACK came
  when Timer L (64*T1) fires, the TU gets :class:`TransactionTimedOut` for the INVITE server
  transaction: RFC 3261 says the session should then be ended with a BYE.
- The ACK for a 2xx is never part of a transaction: it reaches the TU as
  :class:`RequestReceived` with ``transaction=None``.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import secrets
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum, auto
from typing import Any, ClassVar, Generic, TypeAlias, TypeVar, cast

from .errors import LocalProtocolError, RemoteProtocolError
from .headers import Headers
from .message import SipRequest, SipResponse, make_response
from .timers import TimerConfig

logger = logging.getLogger(__name__)

__all__ = [
    "CLIENT_INVITE_TRANSITIONS",
    "CLIENT_NON_INVITE_TRANSITIONS",
    "MAGIC_COOKIE",
    "SERVER_INVITE_TRANSITIONS",
    "SERVER_NON_INVITE_TRANSITIONS",
    "AnyTransaction",
    "ClientInviteInput",
    "ClientInviteState",
    "ClientInviteTransaction",
    "ClientNonInviteInput",
    "ClientNonInviteState",
    "ClientNonInviteTransaction",
    "ClientTransaction",
    "Peer",
    "RequestReceived",
    "ResponseReceived",
    "ServerInviteInput",
    "ServerInviteState",
    "ServerInviteTransaction",
    "ServerNonInviteInput",
    "ServerNonInviteState",
    "ServerNonInviteTransaction",
    "ServerTransaction",
    "Transaction",
    "TransactionEvent",
    "TransactionLayer",
    "TransactionTerminated",
    "TransactionTimedOut",
    "TransportFailed",
    "build_ack_for_non_2xx",
    "build_cancel",
    "client_key",
    "new_branch",
    "server_key",
]

Peer: TypeAlias = Hashable
"""Opaque address of the other side, e.g. ``("udp", "127.0.0.1", 5060)``; the shell's business."""

MAGIC_COOKIE = "z9hG4bK"
"""Branch prefix of RFC 3261 transactions (8.1.1.7); without it, RFC 2543 matching applies."""

_ACK = "ACK"
_INVITE = "INVITE"
_CANCEL = "CANCEL"
_HEAP_SLACK = 256
_MAX_TIMERS_PER_TXN = 3
_MAX_FORWARDS = "70"
"""Max-Forwards of the ACK a client INVITE transaction builds (RFC 3261 8.1.1.6)."""


def new_branch() -> str:
    """A fresh, globally unique Via branch carrying the RFC 3261 magic cookie."""
    return MAGIC_COOKIE + secrets.token_hex(10)


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransactionEvent:
    """Base of everything the layer tells its transaction user (TU)."""


@dataclass(frozen=True)
class RequestReceived(TransactionEvent):
    """A new request for the TU (retransmissions are absorbed and never show up here)."""

    request: SipRequest
    """The request as received."""

    peer: Peer
    """Where it came from; responses go back there."""

    transaction: ServerTransaction | None
    """The server transaction to answer through; ``None`` for an ACK to a 2xx (RFC 3261 17.1.1.1:
    that ACK is not part of any transaction) and other stray ACKs."""


@dataclass(frozen=True)
class ResponseReceived(TransactionEvent):
    """A response for the TU, matched to one of its client transactions."""

    response: SipResponse
    """The response as received."""

    transaction: ClientTransaction
    """The client transaction it belongs to. For INVITE, 2xx retransmissions keep arriving here
    while the transaction is Accepted (RFC 6026) so the TU can re-send its ACK."""


@dataclass(frozen=True)
class TransactionTimedOut(TransactionEvent):
    """Timer B or F fired (client: treat as a 408 Request Timeout), Timer H fired (server: the ACK
    for our non-2xx final never came), or Timer L fired on an INVITE server transaction whose 2xx
    was never ACKed (the TU should end the session with a BYE, RFC 3261 13.3.1.4)."""

    transaction: AnyTransaction
    """The transaction that gave up."""


@dataclass(frozen=True)
class TransportFailed(TransactionEvent):
    """The shell reported that the transport could not deliver this transaction's messages
    (RFC 3261 17.1.4 / 17.2.4: a client TU treats it as a 503)."""

    transaction: AnyTransaction
    """The transaction that failed."""


@dataclass(frozen=True)
class TransactionTerminated(TransactionEvent):
    """The transaction reached Terminated and left the layer; its state may be forgotten."""

    transaction: AnyTransaction
    """The transaction that ended."""


# --- machines ---------------------------------------------------------------------------------


class ClientInviteState(Enum):
    """RFC 3261 figure 5 with RFC 6026's Accepted state."""

    CALLING = auto()
    PROCEEDING = auto()
    ACCEPTED = auto()
    COMPLETED = auto()
    TERMINATED = auto()


class ClientInviteInput(Enum):
    """What can happen to an INVITE client transaction."""

    TIMER_A = auto()
    TIMER_B = auto()
    TIMER_D = auto()
    TIMER_M = auto()
    RECV_1XX = auto()
    RECV_2XX = auto()
    RECV_FINAL = auto()
    """A 300-699 final response."""
    TRANSPORT_ERROR = auto()


class ClientNonInviteState(Enum):
    """RFC 3261 figure 6."""

    TRYING = auto()
    PROCEEDING = auto()
    COMPLETED = auto()
    TERMINATED = auto()


class ClientNonInviteInput(Enum):
    """What can happen to a non-INVITE client transaction."""

    TIMER_E = auto()
    TIMER_F = auto()
    TIMER_K = auto()
    RECV_1XX = auto()
    RECV_FINAL = auto()
    """A 200-699 final response."""
    TRANSPORT_ERROR = auto()


class ServerInviteState(Enum):
    """RFC 3261 figure 7 with RFC 6026's Accepted state."""

    PROCEEDING = auto()
    ACCEPTED = auto()
    COMPLETED = auto()
    CONFIRMED = auto()
    TERMINATED = auto()


class ServerInviteInput(Enum):
    """What can happen to an INVITE server transaction."""

    RECV_REQUEST = auto()
    """A retransmission of the INVITE."""
    RECV_ACK = auto()
    """An ACK for our final response: matched by branch (the ACK for a non-2xx), or, in the
    Accepted state, by Call-ID, CSeq number and From tag (the ACK for a 2xx has its own branch)."""
    SEND_1XX = auto()
    SEND_2XX = auto()
    SEND_FINAL = auto()
    """A 300-699 final response from the TU."""
    TIMER_G = auto()
    TIMER_H = auto()
    TIMER_I = auto()
    TIMER_L = auto()
    TIMER_2XX = auto()
    """The UAS core's 2xx retransmission timer (RFC 3261 13.3.1.4)."""
    TIMER_TRYING = auto()
    """Deferred 100 Trying (RFC 3261 17.2.1): armed on creation, sends the 100 only if the TU
    has not responded yet; it does nothing once any response went out."""
    TRANSPORT_ERROR = auto()


class ServerNonInviteState(Enum):
    """RFC 3261 figure 8."""

    TRYING = auto()
    PROCEEDING = auto()
    COMPLETED = auto()
    TERMINATED = auto()


class ServerNonInviteInput(Enum):
    """What can happen to a non-INVITE server transaction."""

    RECV_REQUEST = auto()
    """A retransmission of the request."""
    SEND_1XX = auto()
    SEND_FINAL = auto()
    """A 200-699 final response from the TU."""
    TIMER_J = auto()
    TRANSPORT_ERROR = auto()


_Message: TypeAlias = SipRequest | SipResponse | None
_S = TypeVar("_S", bound=Enum)
_I = TypeVar("_I", bound=Enum)
_Table: TypeAlias = Mapping[tuple[_S, _I], tuple[Callable[[Any, _Message], None] | None, _S]]


class Transaction(Generic[_S, _I]):
    """Behaviour common to the four machines; the layer creates them, never the TU."""

    kind: ClassVar[str]
    """Short name used in logs and ids: "ict", "nict", "ist", "nist"."""

    state: _S
    """Current state (an Enum of the subclass's machine)."""

    def __init__(
        self,
        layer: TransactionLayer,
        request: SipRequest,
        peer: Peer,
        key: Hashable,
        *,
        reliable: bool,
        now: float,
    ) -> None:
        self._request: SipRequest | None = request
        #: The request's Call-ID and method (kept when the request is released).
        self.call_id = request.call_id
        self.method = request.method
        #: Where our messages go.
        self.peer = peer
        #: True for TCP-like transports: no retransmissions, zero wait timers.
        self.reliable = reliable
        #: The matching key in the layer (RFC 3261 17.1.3 / 17.2.3).
        self.key = key
        #: The top Via branch of the request (may lack the magic cookie on RFC 2543 requests).
        self.branch: str = request.top_via.branch or ""
        #: Unique among this layer's transactions, for logs and dictionaries.
        self.id = f"{self.kind}:{request.method}:{self.branch}#{layer._next_serial()}"
        #: The last response sent (server) or received (client).
        self.last_response: SipResponse | None = None
        self._layer = layer
        self._config = layer.config
        self._now = now
        self._timers: dict[_I, tuple[float, int]] = {}
        self._intervals: dict[_I, float] = {}
        self._due_now: list[_I] = []
        self._last_response_bytes = b""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.state.name}>"

    released_in: ClassVar[frozenset[Enum]] = frozenset()
    """States in which only bytes and timers are left to do (absorbing retransmissions until
    a wait timer, e.g. Timer J's 32 s): entering one releases the parsed request and the last
    response. Transactions outlive their calls by those timers, and their messages' objects
    (~70 per message, all tracked by the cyclic collector) were most of the heap that a full
    collection walked: 529 ms stalls at 200 calls/s, each making answered calls' INVITEs
    retransmit past Timer A."""

    @property
    def request(self) -> SipRequest:
        """The request that created the transaction (LocalProtocolError once released)."""
        if self._request is None:
            raise LocalProtocolError(f"{self.id}: its request was released in {self.state.name}")
        return self._request

    @property
    def terminated(self) -> bool:
        """True once the transaction left the layer."""
        return self.state.name == "TERMINATED"

    # table plumbing -------------------------------------------------------------------------

    def _transitions(self) -> _Table[_S, _I]:
        raise NotImplementedError

    def handle(self, event: _I, message: _Message = None, *, now: float) -> None:
        """Apply one input. Used by the layer; tests may call it directly."""
        table = self._transitions()
        try:
            action, next_state = table[(self.state, event)]
        except KeyError:
            raise LocalProtocolError(
                f"{self.kind} {self.branch}: {event.name} not allowed in state {self.state.name}"
            ) from None
        self._now = now
        if action is not None:
            action(self, message)
        self._set_state(next_state, event)
        if self.terminated:
            self._layer._remove(self)
            return
        self._fire_due(now=now)

    def _fire_due(self, *, now: float) -> None:
        # Zero-length timers (wait timers on reliable transports) fire at once, inside the
        # input that started them.
        while self._due_now and not self.terminated:
            self.handle(self._due_now.pop(0), now=now)

    def _set_state(self, new: _S, cause: _I) -> None:
        old = self.state
        self.state = new
        if old is not new:
            logger.debug(
                "%s %s call-id=%s: %s -> %s on %s",
                self.kind,
                self.branch,
                self.call_id,
                old.name,
                new.name,
                cause.name,
            )
            if new in self.released_in:
                self._request = None
                self.last_response = None

    # timer and output helpers ---------------------------------------------------------------

    def _start_timer(self, timer: _I, duration: float | None) -> None:
        """Arm ``timer`` to fire after ``duration`` seconds; None = not started; 0 = at once."""
        if duration is None:
            return
        self._intervals[timer] = duration
        if duration <= 0:
            self._due_now.append(timer)
        else:
            self._layer._arm(self, timer, self._now + duration)

    def _stop_timer(self, *timers: _I) -> None:
        for timer in timers:
            self._timers.pop(timer, None)
            self._intervals.pop(timer, None)

    def _send(self, data: bytes) -> None:
        self._layer._queue_datagram(data, self.peer)

    def _emit(self, event: TransactionEvent) -> None:
        self._layer._events.append(event)

    def _as_any(self) -> AnyTransaction:
        # Every concrete transaction is one of the four subclasses.
        return cast("AnyTransaction", self)

    def _ignore(self, message: _Message) -> None:
        """Absorb a retransmission or a message the RFC says to drop."""

    def _time_out(self, message: _Message) -> None:
        self._emit(TransactionTimedOut(self._as_any()))

    def _transport_failed(self, message: _Message) -> None:
        self._emit(TransportFailed(self._as_any()))


# --- INVITE client transaction (RFC 3261 17.1.1, RFC 6026 7.2) -----------------------------


class ClientInviteTransaction(Transaction[ClientInviteState, ClientInviteInput]):
    """An INVITE we sent and its responses."""

    kind = "ict"
    released_in = frozenset(
        {ClientInviteState.ACCEPTED, ClientInviteState.COMPLETED, ClientInviteState.TERMINATED}
    )

    def __init__(
        self,
        layer: TransactionLayer,
        request: SipRequest,
        peer: Peer,
        key: Hashable,
        *,
        reliable: bool,
        now: float,
    ) -> None:
        super().__init__(layer, request, peer, key, reliable=reliable, now=now)
        self.state = ClientInviteState.CALLING
        self._request_bytes = bytes(request)
        self._ack_bytes = b""
        self._send(self._request_bytes)
        self._start_timer(ClientInviteInput.TIMER_A, self._config.timer_a(reliable=reliable))
        self._start_timer(ClientInviteInput.TIMER_B, self._config.timer_b)

    def _transitions(self) -> _Table[ClientInviteState, ClientInviteInput]:
        return CLIENT_INVITE_TRANSITIONS

    def _retransmit(self, message: _Message) -> None:
        self._send(self._request_bytes)
        interval = self._config.next_timer_a(self._intervals[ClientInviteInput.TIMER_A])
        self._start_timer(ClientInviteInput.TIMER_A, interval)

    def _pass_provisional(self, message: _Message) -> None:
        # Proceeding: no more retransmissions, and Timer B no longer applies (the TU
        # decides when to give up, e.g. with CANCEL).
        self._stop_timer(ClientInviteInput.TIMER_A, ClientInviteInput.TIMER_B)
        self._pass_up(message)

    def _pass_2xx(self, message: _Message) -> None:
        self._stop_timer(ClientInviteInput.TIMER_A, ClientInviteInput.TIMER_B)
        self._start_timer(ClientInviteInput.TIMER_M, self._config.timer_m)
        self._pass_up(message)

    def _pass_final_and_ack(self, message: _Message) -> None:
        assert isinstance(message, SipResponse)
        self._stop_timer(ClientInviteInput.TIMER_A, ClientInviteInput.TIMER_B)
        self._ack_bytes = bytes(build_ack_for_non_2xx(self.request, message))
        self._send(self._ack_bytes)
        self._start_timer(ClientInviteInput.TIMER_D, self._config.timer_d(reliable=self.reliable))
        self._pass_up(message)

    def _resend_ack(self, message: _Message) -> None:
        self._send(self._ack_bytes)

    def _pass_up(self, message: _Message) -> None:
        assert isinstance(message, SipResponse)
        self.last_response = message
        self._emit(ResponseReceived(message, self))


_CI = ClientInviteState
_CIn = ClientInviteInput
_CIT = ClientInviteTransaction

CLIENT_INVITE_TRANSITIONS: dict[
    tuple[ClientInviteState, ClientInviteInput],
    tuple[Callable[[ClientInviteTransaction, _Message], None] | None, ClientInviteState],
] = {
    (_CI.CALLING, _CIn.TIMER_A): (_CIT._retransmit, _CI.CALLING),
    (_CI.CALLING, _CIn.TIMER_B): (_CIT._time_out, _CI.TERMINATED),
    (_CI.CALLING, _CIn.RECV_1XX): (_CIT._pass_provisional, _CI.PROCEEDING),
    (_CI.CALLING, _CIn.RECV_2XX): (_CIT._pass_2xx, _CI.ACCEPTED),
    (_CI.CALLING, _CIn.RECV_FINAL): (_CIT._pass_final_and_ack, _CI.COMPLETED),
    (_CI.CALLING, _CIn.TRANSPORT_ERROR): (_CIT._transport_failed, _CI.TERMINATED),
    (_CI.PROCEEDING, _CIn.RECV_1XX): (_CIT._pass_up, _CI.PROCEEDING),
    (_CI.PROCEEDING, _CIn.RECV_2XX): (_CIT._pass_2xx, _CI.ACCEPTED),
    (_CI.PROCEEDING, _CIn.RECV_FINAL): (_CIT._pass_final_and_ack, _CI.COMPLETED),
    (_CI.PROCEEDING, _CIn.TRANSPORT_ERROR): (_CIT._transport_failed, _CI.TERMINATED),
    # RFC 6026 7.2: every 2xx (retransmitted or from another fork) goes to the TU, which ACKs.
    (_CI.ACCEPTED, _CIn.RECV_1XX): (_CIT._ignore, _CI.ACCEPTED),
    (_CI.ACCEPTED, _CIn.RECV_2XX): (_CIT._pass_up, _CI.ACCEPTED),
    (_CI.ACCEPTED, _CIn.RECV_FINAL): (_CIT._ignore, _CI.ACCEPTED),
    (_CI.ACCEPTED, _CIn.TIMER_M): (None, _CI.TERMINATED),
    (_CI.ACCEPTED, _CIn.TRANSPORT_ERROR): (None, _CI.ACCEPTED),
    # Completed: the final response is retransmitted because our ACK was lost: ACK again.
    (_CI.COMPLETED, _CIn.RECV_1XX): (_CIT._ignore, _CI.COMPLETED),
    (_CI.COMPLETED, _CIn.RECV_2XX): (_CIT._ignore, _CI.COMPLETED),
    (_CI.COMPLETED, _CIn.RECV_FINAL): (_CIT._resend_ack, _CI.COMPLETED),
    (_CI.COMPLETED, _CIn.TIMER_D): (None, _CI.TERMINATED),
    (_CI.COMPLETED, _CIn.TRANSPORT_ERROR): (_CIT._transport_failed, _CI.TERMINATED),
}


def build_ack_for_non_2xx(request: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK a client INVITE transaction sends for a 300-699 response (RFC 3261 17.1.1.3).

    Same Request-URI, Call-ID, From, CSeq number and top Via (so the same branch) as the INVITE,
    the To of the response (with its tag), and the INVITE's Route headers.
    """
    headers = Headers()
    headers.add("Via", request.headers.get_all("Via")[0])
    for route in request.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", _MAX_FORWARDS)
    headers.add("From", _first(request.headers, "From"))
    headers.add("To", _first(response.headers, "To"))
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", f"{request.cseq.seq} {_ACK}")
    return SipRequest(method=_ACK, uri=request.uri, headers=headers, body=b"")


def build_cancel(request: SipRequest) -> SipRequest:
    """The CANCEL for a request we sent (RFC 3261 9.1): same Request-URI, Call-ID, To, From,
    CSeq number and top Via (so the same branch), and the same Route headers. Send it with
    :meth:`TransactionLayer.send_request` once a provisional response has arrived."""
    if request.method == _ACK:
        raise LocalProtocolError("an ACK cannot be cancelled")
    headers = Headers()
    headers.add("Via", request.headers.get_all("Via")[0])
    for route in request.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", _MAX_FORWARDS)
    headers.add("From", _first(request.headers, "From"))
    headers.add("To", _first(request.headers, "To"))
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", f"{request.cseq.seq} {_CANCEL}")
    return SipRequest(method=_CANCEL, uri=request.uri, headers=headers, body=b"")


def _first(headers: Headers, name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise LocalProtocolError(f"message has no {name} header")
    return value


# --- non-INVITE client transaction (RFC 3261 17.1.2) ---------------------------------------


class ClientNonInviteTransaction(Transaction[ClientNonInviteState, ClientNonInviteInput]):
    """A non-INVITE request we sent (never ACK) and its responses."""

    kind = "nict"
    released_in = frozenset({ClientNonInviteState.COMPLETED, ClientNonInviteState.TERMINATED})

    def __init__(
        self,
        layer: TransactionLayer,
        request: SipRequest,
        peer: Peer,
        key: Hashable,
        *,
        reliable: bool,
        now: float,
    ) -> None:
        super().__init__(layer, request, peer, key, reliable=reliable, now=now)
        self.state = ClientNonInviteState.TRYING
        self._request_bytes = bytes(request)
        self._send(self._request_bytes)
        self._start_timer(ClientNonInviteInput.TIMER_E, self._config.timer_e(reliable=reliable))
        self._start_timer(ClientNonInviteInput.TIMER_F, self._config.timer_f)

    def _transitions(self) -> _Table[ClientNonInviteState, ClientNonInviteInput]:
        return CLIENT_NON_INVITE_TRANSITIONS

    def _retransmit(self, message: _Message) -> None:
        self._send(self._request_bytes)
        interval = self._config.next_timer_e(
            self._intervals[ClientNonInviteInput.TIMER_E],
            proceeding=self.state is ClientNonInviteState.PROCEEDING,
        )
        self._start_timer(ClientNonInviteInput.TIMER_E, interval)

    def _pass_up(self, message: _Message) -> None:
        assert isinstance(message, SipResponse)
        self.last_response = message
        self._emit(ResponseReceived(message, self))

    def _pass_final(self, message: _Message) -> None:
        self._stop_timer(ClientNonInviteInput.TIMER_E, ClientNonInviteInput.TIMER_F)
        self._start_timer(
            ClientNonInviteInput.TIMER_K, self._config.timer_k(reliable=self.reliable)
        )
        self._pass_up(message)


_CN = ClientNonInviteState
_CNn = ClientNonInviteInput
_CNT = ClientNonInviteTransaction

CLIENT_NON_INVITE_TRANSITIONS: dict[
    tuple[ClientNonInviteState, ClientNonInviteInput],
    tuple[Callable[[ClientNonInviteTransaction, _Message], None] | None, ClientNonInviteState],
] = {
    (_CN.TRYING, _CNn.TIMER_E): (_CNT._retransmit, _CN.TRYING),
    (_CN.TRYING, _CNn.TIMER_F): (_CNT._time_out, _CN.TERMINATED),
    (_CN.TRYING, _CNn.RECV_1XX): (_CNT._pass_up, _CN.PROCEEDING),
    (_CN.TRYING, _CNn.RECV_FINAL): (_CNT._pass_final, _CN.COMPLETED),
    (_CN.TRYING, _CNn.TRANSPORT_ERROR): (_CNT._transport_failed, _CN.TERMINATED),
    # Proceeding: Timer E keeps running (reset to T2 when it fires), Timer F still applies.
    (_CN.PROCEEDING, _CNn.TIMER_E): (_CNT._retransmit, _CN.PROCEEDING),
    (_CN.PROCEEDING, _CNn.TIMER_F): (_CNT._time_out, _CN.TERMINATED),
    (_CN.PROCEEDING, _CNn.RECV_1XX): (_CNT._pass_up, _CN.PROCEEDING),
    (_CN.PROCEEDING, _CNn.RECV_FINAL): (_CNT._pass_final, _CN.COMPLETED),
    (_CN.PROCEEDING, _CNn.TRANSPORT_ERROR): (_CNT._transport_failed, _CN.TERMINATED),
    # Completed: absorb retransmitted responses until Timer K.
    (_CN.COMPLETED, _CNn.RECV_1XX): (_CNT._ignore, _CN.COMPLETED),
    (_CN.COMPLETED, _CNn.RECV_FINAL): (_CNT._ignore, _CN.COMPLETED),
    (_CN.COMPLETED, _CNn.TIMER_K): (None, _CN.TERMINATED),
    (_CN.COMPLETED, _CNn.TRANSPORT_ERROR): (None, _CN.COMPLETED),
}


# --- INVITE server transaction (RFC 3261 17.2.1, RFC 6026 7.1) -----------------------------


class ServerInviteTransaction(Transaction[ServerInviteState, ServerInviteInput]):
    """An INVITE we received and the responses the TU sends to it."""

    kind = "ist"
    released_in = frozenset(
        {
            ServerInviteState.ACCEPTED,
            ServerInviteState.COMPLETED,
            ServerInviteState.CONFIRMED,
            ServerInviteState.TERMINATED,
        }
    )

    def __init__(
        self,
        layer: TransactionLayer,
        request: SipRequest,
        peer: Peer,
        key: Hashable,
        *,
        reliable: bool,
        now: float,
    ) -> None:
        super().__init__(layer, request, peer, key, reliable=reliable, now=now)
        self.state = ServerInviteState.PROCEEDING
        #: True once the ACK for our 2xx arrived (Accepted state only).
        self.acked = False
        #: (Call-ID, CSeq number, From tag): how the ACK for a 2xx finds us (it has its own branch).
        self.ack_key = _ack_key(request)
        self._start_timer(ServerInviteInput.TIMER_TRYING, self._config.trying_delay)

    def _transitions(self) -> _Table[ServerInviteState, ServerInviteInput]:
        return SERVER_INVITE_TRANSITIONS

    def _send_response(self, message: _Message) -> None:
        assert isinstance(message, SipResponse)
        self.last_response = message
        self._last_response_bytes = bytes(message)
        self._send(self._last_response_bytes)

    def _resend_response(self, message: _Message) -> None:
        if self._last_response_bytes:
            self._send(self._last_response_bytes)

    def _send_trying(self) -> None:
        self._send_response(_trying(self.request))

    def _trying_due(self, message: _Message) -> None:
        # The TU may have answered (e.g. a synchronous 401) before the timer fired.
        if self.last_response is None:
            self._send_trying()

    def _resend_or_trying(self, message: _Message) -> None:
        # A retransmitted INVITE before any answer: the peer wants a sign of life now.
        # Once the 100 went out, last_response is set and TIMER_TRYING does nothing.
        if self.last_response is None:
            self._send_trying()
        else:
            self._resend_response(message)

    def _send_2xx(self, message: _Message) -> None:
        self._send_response(message)
        self._layer._awaiting_ack[self.ack_key] = self
        self._start_timer(ServerInviteInput.TIMER_L, self._config.timer_l)
        self._start_timer(ServerInviteInput.TIMER_2XX, self._config.first_2xx_retransmit)

    def _send_final(self, message: _Message) -> None:
        self._send_response(message)
        self._start_timer(ServerInviteInput.TIMER_G, self._config.timer_g(reliable=self.reliable))
        self._start_timer(ServerInviteInput.TIMER_H, self._config.timer_h)

    def _retransmit_final(self, message: _Message) -> None:
        self._resend_response(None)
        interval = self._config.next_timer_g(self._intervals[ServerInviteInput.TIMER_G])
        self._start_timer(ServerInviteInput.TIMER_G, interval)

    def _retransmit_2xx(self, message: _Message) -> None:
        self._resend_response(None)
        interval = self._config.next_2xx_retransmit(self._intervals[ServerInviteInput.TIMER_2XX])
        self._start_timer(ServerInviteInput.TIMER_2XX, interval)

    def _confirm(self, message: _Message) -> None:
        self._stop_timer(ServerInviteInput.TIMER_G, ServerInviteInput.TIMER_H)
        self._start_timer(ServerInviteInput.TIMER_I, self._config.timer_i(reliable=self.reliable))

    def _ack_for_2xx(self, message: _Message) -> None:
        self.acked = True
        self._stop_timer(ServerInviteInput.TIMER_2XX)

    def _accepted_timeout(self, message: _Message) -> None:
        if not self.acked:
            self._emit(TransactionTimedOut(self))


_SI = ServerInviteState
_SIn = ServerInviteInput
_SIT = ServerInviteTransaction

SERVER_INVITE_TRANSITIONS: dict[
    tuple[ServerInviteState, ServerInviteInput],
    tuple[Callable[[ServerInviteTransaction, _Message], None] | None, ServerInviteState],
] = {
    # Proceeding: a retransmitted INVITE gets the last provisional again, or 100 Trying when
    # the TU has sent nothing yet; TIMER_TRYING sends the 100 unless the TU answered first.
    (_SI.PROCEEDING, _SIn.RECV_REQUEST): (_SIT._resend_or_trying, _SI.PROCEEDING),
    (_SI.PROCEEDING, _SIn.RECV_ACK): (_SIT._ignore, _SI.PROCEEDING),
    (_SI.PROCEEDING, _SIn.SEND_1XX): (_SIT._send_response, _SI.PROCEEDING),
    (_SI.PROCEEDING, _SIn.SEND_2XX): (_SIT._send_2xx, _SI.ACCEPTED),
    (_SI.PROCEEDING, _SIn.SEND_FINAL): (_SIT._send_final, _SI.COMPLETED),
    (_SI.PROCEEDING, _SIn.TIMER_TRYING): (_SIT._trying_due, _SI.PROCEEDING),
    (_SI.PROCEEDING, _SIn.TRANSPORT_ERROR): (_SIT._transport_failed, _SI.TERMINATED),
    # Accepted (RFC 6026): absorb INVITE retransmissions (re-sending the 2xx), retransmit the
    # 2xx until its ACK (13.3.1.4), let the TU send further 2xx.
    (_SI.ACCEPTED, _SIn.RECV_REQUEST): (_SIT._resend_response, _SI.ACCEPTED),
    (_SI.ACCEPTED, _SIn.RECV_ACK): (_SIT._ack_for_2xx, _SI.ACCEPTED),
    (_SI.ACCEPTED, _SIn.SEND_2XX): (_SIT._send_response, _SI.ACCEPTED),
    (_SI.ACCEPTED, _SIn.TIMER_2XX): (_SIT._retransmit_2xx, _SI.ACCEPTED),
    (_SI.ACCEPTED, _SIn.TIMER_L): (_SIT._accepted_timeout, _SI.TERMINATED),
    (_SI.ACCEPTED, _SIn.TIMER_TRYING): (None, _SI.ACCEPTED),
    (_SI.ACCEPTED, _SIn.TRANSPORT_ERROR): (_SIT._transport_failed, _SI.TERMINATED),
    # Completed: re-send the non-2xx final on retransmitted INVITE or Timer G, until the ACK.
    (_SI.COMPLETED, _SIn.RECV_REQUEST): (_SIT._resend_response, _SI.COMPLETED),
    (_SI.COMPLETED, _SIn.RECV_ACK): (_SIT._confirm, _SI.CONFIRMED),
    (_SI.COMPLETED, _SIn.TIMER_G): (_SIT._retransmit_final, _SI.COMPLETED),
    (_SI.COMPLETED, _SIn.TIMER_H): (_SIT._time_out, _SI.TERMINATED),
    (_SI.COMPLETED, _SIn.TIMER_TRYING): (None, _SI.COMPLETED),
    (_SI.COMPLETED, _SIn.TRANSPORT_ERROR): (_SIT._transport_failed, _SI.TERMINATED),
    # Confirmed: absorb ACK retransmissions until Timer I.
    (_SI.CONFIRMED, _SIn.RECV_REQUEST): (_SIT._ignore, _SI.CONFIRMED),
    (_SI.CONFIRMED, _SIn.RECV_ACK): (_SIT._ignore, _SI.CONFIRMED),
    (_SI.CONFIRMED, _SIn.TIMER_I): (None, _SI.TERMINATED),
    (_SI.CONFIRMED, _SIn.TIMER_TRYING): (None, _SI.CONFIRMED),
    (_SI.CONFIRMED, _SIn.TRANSPORT_ERROR): (None, _SI.CONFIRMED),
}


# --- non-INVITE server transaction (RFC 3261 17.2.2) ---------------------------------------


class ServerNonInviteTransaction(Transaction[ServerNonInviteState, ServerNonInviteInput]):
    """A non-INVITE request we received (CANCEL included) and the TU's responses to it."""

    kind = "nist"
    released_in = frozenset({ServerNonInviteState.COMPLETED, ServerNonInviteState.TERMINATED})

    def __init__(
        self,
        layer: TransactionLayer,
        request: SipRequest,
        peer: Peer,
        key: Hashable,
        *,
        reliable: bool,
        now: float,
    ) -> None:
        super().__init__(layer, request, peer, key, reliable=reliable, now=now)
        self.state = ServerNonInviteState.TRYING

    def _transitions(self) -> _Table[ServerNonInviteState, ServerNonInviteInput]:
        return SERVER_NON_INVITE_TRANSITIONS

    def _send_response(self, message: _Message) -> None:
        assert isinstance(message, SipResponse)
        self.last_response = message
        self._last_response_bytes = bytes(message)
        self._send(self._last_response_bytes)

    def _resend_response(self, message: _Message) -> None:
        self._send(self._last_response_bytes)

    def _send_final(self, message: _Message) -> None:
        self._send_response(message)
        self._start_timer(
            ServerNonInviteInput.TIMER_J, self._config.timer_j(reliable=self.reliable)
        )


_SN = ServerNonInviteState
_SNn = ServerNonInviteInput
_SNT = ServerNonInviteTransaction

SERVER_NON_INVITE_TRANSITIONS: dict[
    tuple[ServerNonInviteState, ServerNonInviteInput],
    tuple[Callable[[ServerNonInviteTransaction, _Message], None] | None, ServerNonInviteState],
] = {
    # Trying: nothing to re-send yet, a retransmission is simply absorbed.
    (_SN.TRYING, _SNn.RECV_REQUEST): (_SNT._ignore, _SN.TRYING),
    (_SN.TRYING, _SNn.SEND_1XX): (_SNT._send_response, _SN.PROCEEDING),
    (_SN.TRYING, _SNn.SEND_FINAL): (_SNT._send_final, _SN.COMPLETED),
    (_SN.TRYING, _SNn.TRANSPORT_ERROR): (_SNT._transport_failed, _SN.TERMINATED),
    (_SN.PROCEEDING, _SNn.RECV_REQUEST): (_SNT._resend_response, _SN.PROCEEDING),
    (_SN.PROCEEDING, _SNn.SEND_1XX): (_SNT._send_response, _SN.PROCEEDING),
    (_SN.PROCEEDING, _SNn.SEND_FINAL): (_SNT._send_final, _SN.COMPLETED),
    (_SN.PROCEEDING, _SNn.TRANSPORT_ERROR): (_SNT._transport_failed, _SN.TERMINATED),
    (_SN.COMPLETED, _SNn.RECV_REQUEST): (_SNT._resend_response, _SN.COMPLETED),
    (_SN.COMPLETED, _SNn.TIMER_J): (None, _SN.TERMINATED),
    (_SN.COMPLETED, _SNn.TRANSPORT_ERROR): (None, _SN.COMPLETED),
}

ClientTransaction: TypeAlias = ClientInviteTransaction | ClientNonInviteTransaction
ServerTransaction: TypeAlias = ServerInviteTransaction | ServerNonInviteTransaction
AnyTransaction: TypeAlias = ClientTransaction | ServerTransaction


# --- matching keys -----------------------------------------------------------------------------


def _ack_key(request: SipRequest) -> tuple[str, int, str | None]:
    return (request.call_id, request.cseq.seq, request.from_.tag)


def server_key(request: SipRequest) -> Hashable:
    """The server transaction a request belongs to (RFC 3261 17.2.3).

    With the magic cookie: top Via branch and sent-by, the method (INVITE for an ACK, so the
    ACK for a non-2xx lands in the INVITE's transaction; CANCEL has its own), and, beyond RFC
    3261, the CSeq number. pyVoIP 1.6.8 re-sends its INVITE with credentials after a 401 under
    the same branch but a new CSeq; on branch alone that INVITE would be absorbed as a
    retransmission of the completed first transaction and the call would hang. The ACK for a
    non-2xx and the CANCEL carry their INVITE's CSeq number, so compliant peers match as before.
    Without the cookie (RFC 2543 peers): Request-URI, From tag, Call-ID, CSeq number, top Via
    and method; the To tag is left out so the ACK (which carries it) still matches its INVITE.
    Raises RemoteProtocolError (ParseError) when Via, CSeq, Call-ID or From is unreadable.
    """
    return _server_key(request, _INVITE if request.method == _ACK else request.method)


def _server_key(request: SipRequest, method: str) -> Hashable:
    """:func:`server_key` with the method given (CANCEL looks for its INVITE this way)."""
    via = request.top_via
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return (branch, via.host.lower(), via.port, method, request.cseq.seq)
    return (
        "rfc2543",
        str(request.uri),
        request.from_.tag,
        request.call_id,
        request.cseq.seq,
        str(via),
        method,
    )


def client_key(message: SipRequest | SipResponse) -> Hashable:
    """The client transaction a response belongs to (RFC 3261 17.1.3): top Via branch and CSeq
    method (so a CANCEL's responses do not reach the INVITE sharing its branch)."""
    return (message.top_via.branch, message.cseq.method)


# --- the layer ---------------------------------------------------------------------------------


class TransactionLayer:
    """All transactions of one SIP endpoint, sans-IO.

    Inputs: :meth:`receive`, :meth:`send_request`, :meth:`send_response`,
    :meth:`send_stateless`, :meth:`handle_timer`, :meth:`transport_error`.
    Outputs: :meth:`datagrams_to_send`, :meth:`next_event`, :meth:`get_timer`.
    """

    def __init__(self, config: TimerConfig | None = None) -> None:
        #: Timer values; all transactions of this layer use them.
        self.config = config if config is not None else TimerConfig()
        self._client: dict[Hashable, ClientTransaction] = {}
        self._server: dict[Hashable, ServerTransaction] = {}
        self._awaiting_ack: dict[tuple[str, int, str | None], ServerInviteTransaction] = {}
        self._datagrams: list[tuple[bytes, Peer]] = []
        self._events: deque[TransactionEvent] = deque()
        # Heap of (deadline, serial, transaction, timer); an entry is stale unless the
        # transaction still holds exactly (deadline, serial) for that timer.
        self._heap: list[tuple[float, int, Transaction[Any, Any], Enum]] = []
        self._serials = itertools.count()

    # --- inspection ---

    def __len__(self) -> int:
        return len(self._client) + len(self._server)

    @property
    def active_count(self) -> int:
        """Live transactions (client and server); 0 once every call is over."""
        return len(self)

    def transactions(self) -> Iterator[AnyTransaction]:
        """Every live transaction, clients first."""
        yield from self._client.values()
        yield from self._server.values()

    # --- inputs ---

    def receive(
        self, message: SipRequest | SipResponse, peer: Peer, *, reliable: bool, now: float
    ) -> None:
        """Feed one parsed message from ``peer``.

        Requests go to their server transaction (retransmissions are absorbed there) or open a
        new one; responses go to their client transaction or are dropped. Raises
        RemoteProtocolError for a request whose Via/CSeq/Call-ID/From cannot be read (answer it
        statelessly if possible); unreadable responses are dropped.
        """
        if isinstance(message, SipResponse):
            self._receive_response(message, now=now)
        else:
            self._receive_request(message, peer, reliable=reliable, now=now)

    def _receive_request(
        self, request: SipRequest, peer: Peer, *, reliable: bool, now: float
    ) -> None:
        key = server_key(request)
        txn = self._server.get(key)
        if request.method == _ACK:
            if isinstance(txn, ServerInviteTransaction):
                for_2xx = txn.state is ServerInviteState.ACCEPTED
                txn.handle(ServerInviteInput.RECV_ACK, request, now=now)
                if not for_2xx:
                    return  # the ACK for our non-2xx final: absorbed by the transaction
            else:
                # The ACK for a 2xx has its own branch; find the transaction by dialog.
                accepted = self._awaiting_ack.get(_ack_key(request))
                if accepted is not None:
                    accepted.handle(ServerInviteInput.RECV_ACK, request, now=now)
            # The ACK for a 2xx is not part of the transaction: it goes to the TU.
            self._events.append(RequestReceived(request, peer, None))
            return
        if isinstance(txn, ServerInviteTransaction):
            txn.handle(ServerInviteInput.RECV_REQUEST, request, now=now)
            return
        if isinstance(txn, ServerNonInviteTransaction):
            txn.handle(ServerNonInviteInput.RECV_REQUEST, request, now=now)
            return
        new: ServerTransaction
        if request.method == _INVITE:
            new = ServerInviteTransaction(self, request, peer, key, reliable=reliable, now=now)
        else:
            new = ServerNonInviteTransaction(self, request, peer, key, reliable=reliable, now=now)
        self._server[key] = new
        logger.debug("%s created for %s from %r", new.id, request.method, peer)
        # TIMER_TRYING of 0 (send the 100 at once) is due before the TU hears of the INVITE.
        new._fire_due(now=now)
        self._events.append(RequestReceived(request, peer, new))

    def _receive_response(self, response: SipResponse, *, now: float) -> None:
        try:
            key = client_key(response)
        except RemoteProtocolError as exc:
            logger.debug("dropping unmatchable response %d: %s", response.status, exc)
            return
        txn = self._client.get(key)
        if txn is None:
            logger.debug("dropping stray response %d for %r", response.status, key)
            return
        status = response.status
        if isinstance(txn, ClientInviteTransaction):
            if 100 <= status < 200:
                txn.handle(ClientInviteInput.RECV_1XX, response, now=now)
            elif 200 <= status < 300:
                txn.handle(ClientInviteInput.RECV_2XX, response, now=now)
            elif 300 <= status < 700:
                txn.handle(ClientInviteInput.RECV_FINAL, response, now=now)
            else:
                logger.debug("dropping response with status %d", status)
        elif 100 <= status < 200:
            txn.handle(ClientNonInviteInput.RECV_1XX, response, now=now)
        elif 200 <= status < 700:
            txn.handle(ClientNonInviteInput.RECV_FINAL, response, now=now)
        else:
            logger.debug("dropping response with status %d", status)

    def send_request(
        self, request: SipRequest, peer: Peer, *, reliable: bool, now: float
    ) -> ClientTransaction:
        """Start a client transaction for ``request`` (not ACK: see :meth:`send_stateless`).

        The request must carry its own top Via with a fresh magic-cookie branch
        (:func:`new_branch`). It is queued for sending at once and retransmitted as the timers say.
        """
        if request.method == _ACK:
            raise LocalProtocolError("ACK is not sent through a transaction; use send_stateless")
        try:
            key = client_key(request)
        except RemoteProtocolError as exc:
            raise LocalProtocolError(f"cannot send an incomplete request: {exc}") from exc
        if not str(request.top_via.branch).startswith(MAGIC_COOKIE):
            raise LocalProtocolError("request needs a top Via with a z9hG4bK branch")
        if key in self._client:
            raise LocalProtocolError(f"a client transaction with key {key!r} already exists")
        txn: ClientTransaction
        if request.method == _INVITE:
            txn = ClientInviteTransaction(self, request, peer, key, reliable=reliable, now=now)
        else:
            txn = ClientNonInviteTransaction(self, request, peer, key, reliable=reliable, now=now)
        self._client[key] = txn
        logger.debug("%s created for %s to %r", txn.id, request.method, peer)
        return txn

    def send_response(
        self,
        target: ServerTransaction | SipRequest,
        response: SipResponse,
        *,
        now: float,
    ) -> None:
        """Send ``response`` through the server transaction ``target`` (or the one of the request
        ``target``), to the peer the request came from. Raises LocalProtocolError when the
        transaction is gone or the response is not allowed in its state."""
        if isinstance(target, SipRequest):
            found = self._server.get(server_key(target))
            if found is None:
                raise LocalProtocolError(f"no server transaction for {target.method} request")
            txn: ServerTransaction = found
        else:
            txn = target
        if txn.terminated or self._server.get(txn.key) is not txn:
            raise LocalProtocolError(f"{txn.id} is no longer active")
        status = response.status
        if not 100 <= status < 700:
            raise LocalProtocolError(f"cannot send status {status}")
        if isinstance(txn, ServerInviteTransaction):
            if status < 200:
                txn.handle(ServerInviteInput.SEND_1XX, response, now=now)
            elif status < 300:
                txn.handle(ServerInviteInput.SEND_2XX, response, now=now)
            else:
                txn.handle(ServerInviteInput.SEND_FINAL, response, now=now)
        elif status < 200:
            txn.handle(ServerNonInviteInput.SEND_1XX, response, now=now)
        else:
            txn.handle(ServerNonInviteInput.SEND_FINAL, response, now=now)

    def send_stateless(self, message: SipRequest | SipResponse, peer: Peer) -> None:
        """Queue a message outside any transaction: the ACK for a 2xx, stateless error replies."""
        self._queue_datagram(bytes(message), peer)

    def transport_error(self, transaction: AnyTransaction, *, now: float) -> None:
        """The shell could not deliver to ``transaction.peer`` (e.g. TCP connect refused)."""
        if transaction.terminated:
            return
        if isinstance(transaction, ClientInviteTransaction):
            transaction.handle(ClientInviteInput.TRANSPORT_ERROR, now=now)
        elif isinstance(transaction, ClientNonInviteTransaction):
            transaction.handle(ClientNonInviteInput.TRANSPORT_ERROR, now=now)
        elif isinstance(transaction, ServerInviteTransaction):
            transaction.handle(ServerInviteInput.TRANSPORT_ERROR, now=now)
        else:
            transaction.handle(ServerNonInviteInput.TRANSPORT_ERROR, now=now)

    def has_server_transaction(self, request: SipRequest) -> bool:
        """Whether `request` belongs to a server transaction in progress (a retransmission):
        what overload control must let through, not refuse as a new request."""
        try:
            return server_key(request) in self._server
        except RemoteProtocolError:
            return False

    def find_invite_server_txn(self, cancel: SipRequest) -> ServerInviteTransaction | None:
        """The INVITE server transaction a CANCEL targets (RFC 3261 9.2: same matching rules as
        17.2.3 except the method), so the TU can answer the INVITE with 487."""
        method = _INVITE if cancel.method == _CANCEL else cancel.method
        found = self._server.get(_server_key(cancel, method))
        return found if isinstance(found, ServerInviteTransaction) else None

    def handle_timer(self, *, now: float) -> None:
        """Fire every timer due at ``now``."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, serial, txn, timer = heapq.heappop(heap)
            if txn._timers.get(timer) != (deadline, serial):
                continue  # stopped or re-armed since
            del txn._timers[timer]
            txn.handle(timer, now=now)

    # --- outputs ---

    def get_timer(self) -> float | None:
        """The earliest deadline among live timers, or None."""
        heap = self._heap
        while heap:
            deadline, serial, txn, timer = heap[0]
            if txn._timers.get(timer) == (deadline, serial):
                return deadline
            heapq.heappop(heap)
        return None

    def datagrams_to_send(self) -> list[tuple[bytes, Peer]]:
        """Everything queued for the wire since the last call, in order."""
        out, self._datagrams = self._datagrams, []
        return out

    def next_event(self) -> TransactionEvent | None:
        """The next event for the TU, or None."""
        return self._events.popleft() if self._events else None

    # --- for the transactions ---

    def _next_serial(self) -> int:
        return next(self._serials)

    def _arm(self, txn: Transaction[Any, Any], timer: Enum, deadline: float) -> None:
        serial = next(self._serials)
        txn._timers[timer] = (deadline, serial)
        heap = self._heap
        heapq.heappush(heap, (deadline, serial, txn, timer))
        # Stopped timers stay in the heap until they surface; rebuild when they pile up
        # (a transaction holds at most three live timers).
        if len(heap) > _HEAP_SLACK + _MAX_TIMERS_PER_TXN * 2 * len(self):
            self._heap = [e for e in heap if e[2]._timers.get(e[3]) == (e[0], e[1])]
            heapq.heapify(self._heap)

    def _queue_datagram(self, data: bytes, peer: Peer) -> None:
        self._datagrams.append((data, peer))

    def _remove(self, txn: Transaction[Any, Any]) -> None:
        txn._timers.clear()
        txn._intervals.clear()
        txn._due_now.clear()
        if isinstance(txn, ClientInviteTransaction | ClientNonInviteTransaction):
            if self._client.get(txn.key) is txn:
                del self._client[txn.key]
        elif self._server.get(txn.key) is txn:
            del self._server[txn.key]
        if isinstance(txn, ServerInviteTransaction) and self._awaiting_ack.get(txn.ack_key) is txn:
            del self._awaiting_ack[txn.ack_key]
        self._events.append(TransactionTerminated(txn._as_any()))


def _trying(request: SipRequest) -> SipResponse:
    """100 Trying for an INVITE; it copies Timestamp (RFC 3261 8.2.6.1)."""
    timestamp = request.headers.get("Timestamp")
    extra = [("Timestamp", timestamp)] if timestamp is not None else []
    return make_response(request, 100, extra=extra)
