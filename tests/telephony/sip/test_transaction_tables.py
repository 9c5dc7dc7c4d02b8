"""Every transition-table pair of the four transaction machines, plus Hypothesis runs of random
input sequences through the layer (states only ever move along the tables)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.sip.errors import LocalProtocolError
from telephony.sip.message import SipRequest, SipResponse, make_response, parse_message
from telephony.sip.transaction import (
    CLIENT_INVITE_TRANSITIONS,
    CLIENT_NON_INVITE_TRANSITIONS,
    SERVER_INVITE_TRANSITIONS,
    SERVER_NON_INVITE_TRANSITIONS,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    RequestReceived,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    Transaction,
    TransactionLayer,
    TransactionTerminated,
    new_branch,
)

PEER = ("udp", "192.0.2.10", 5060)
BRANCH = "z9hG4bKtable1"

TABLES: dict[type[Any], dict[Any, Any]] = {
    ClientInviteTransaction: CLIENT_INVITE_TRANSITIONS,
    ClientNonInviteTransaction: CLIENT_NON_INVITE_TRANSITIONS,
    ServerInviteTransaction: SERVER_INVITE_TRANSITIONS,
    ServerNonInviteTransaction: SERVER_NON_INVITE_TRANSITIONS,
}

# How to reach each state from the initial one, as a list of input names.
PATHS: dict[type[Any], dict[str, list[str]]] = {
    ClientInviteTransaction: {
        "CALLING": [],
        "PROCEEDING": ["RECV_1XX"],
        "ACCEPTED": ["RECV_2XX"],
        "COMPLETED": ["RECV_FINAL"],
    },
    ClientNonInviteTransaction: {
        "TRYING": [],
        "PROCEEDING": ["RECV_1XX"],
        "COMPLETED": ["RECV_FINAL"],
    },
    ServerInviteTransaction: {
        "PROCEEDING": [],
        "ACCEPTED": ["SEND_2XX"],
        "COMPLETED": ["SEND_FINAL"],
        "CONFIRMED": ["SEND_FINAL", "RECV_ACK"],
    },
    ServerNonInviteTransaction: {
        "TRYING": [],
        "PROCEEDING": ["SEND_1XX"],
        "COMPLETED": ["SEND_FINAL"],
    },
}

DEFAULT_STATUS = {"RECV_1XX": 180, "RECV_2XX": 200, "SEND_1XX": 180, "SEND_2XX": 200}


def make_request(method: str, *, branch: str = BRANCH, to_tag: str | None = None) -> SipRequest:
    cseq_method = "INVITE" if method == "ACK" else method
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{method} sip:bob@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        f"To: {to}\r\n"
        "From: <sip:alice@example.com>;tag=ft\r\n"
        "Call-ID: tables@example.com\r\n"
        f"CSeq: 7 {cseq_method}\r\n"
        "Contact: <sip:alice@192.0.2.10>\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    req = parse_message(text.encode())
    assert isinstance(req, SipRequest)
    return req


class Harness:
    """One transaction of a given kind in a layer, driven by input names."""

    def __init__(self, kind: type[Any], *, reliable: bool = False) -> None:
        self.kind = kind
        self.reliable = reliable
        self.layer = TransactionLayer()
        self.now = 0.0
        self.method = (
            "INVITE" if kind in (ClientInviteTransaction, ServerInviteTransaction) else "BYE"
        )
        self.request = make_request(self.method)
        self.txn: Any
        if kind in (ClientInviteTransaction, ClientNonInviteTransaction):
            self.txn = self.layer.send_request(self.request, PEER, reliable=reliable, now=0.0)
        else:
            self.layer.receive(self.request, PEER, reliable=reliable, now=0.0)
            event = self.layer.next_event()
            assert isinstance(event, RequestReceived)
            self.txn = event.transaction
        assert isinstance(self.txn, kind)

    def response(self, status: int) -> SipResponse:
        return make_response(self.request, status, to_tag="tt")

    def default_final(self) -> int:
        return 486 if self.method == "INVITE" else 200

    def apply(self, name: str, status: int | None = None) -> None:
        layer, now = self.layer, self.now
        if name.startswith("TIMER_"):
            inputs = {i.name: i for i in _input_enum(self.txn)}
            timer_input = inputs[name]
            assert timer_input in self.txn._timers, f"{name} not armed in {self.txn.state}"
            deadline = self.txn._timers.pop(timer_input)[0]
            self.now = deadline
            self.txn.handle(timer_input, now=deadline)
        elif name.startswith("RECV_") and name not in ("RECV_REQUEST", "RECV_ACK"):
            if status is None:
                status = DEFAULT_STATUS.get(name, self.default_final())
            layer.receive(self.response(status), PEER, reliable=self.reliable, now=now)
        elif name == "RECV_REQUEST":
            layer.receive(self.request, PEER, reliable=self.reliable, now=now)
        elif name == "RECV_ACK":
            layer.receive(make_request("ACK", to_tag="tt"), PEER, reliable=self.reliable, now=now)
        elif name == "RECV_ACK_NEW_BRANCH":
            ack = make_request("ACK", branch=new_branch(), to_tag="tt")
            layer.receive(ack, PEER, reliable=self.reliable, now=now)
        elif name.startswith("SEND_"):
            if status is None:
                status = DEFAULT_STATUS.get(name, self.default_final())
            layer.send_response(self.txn, self.response(status), now=now)
        elif name == "TRANSPORT_ERROR":
            layer.transport_error(self.txn, now=now)
        else:
            raise AssertionError(name)

    def goto(self, state: str) -> None:
        for name in PATHS[self.kind][state]:
            self.apply(name)
        assert self.txn.state.name == state


def _input_enum(txn: Transaction[Any, Any]) -> type[Enum]:
    table = TABLES[type(txn)]
    return type(next(iter(table))[1])


@contextmanager
def recording() -> Iterator[list[tuple[type[Any], Enum, Enum, Enum]]]:
    """Record every (machine, old state, input, new state) the transactions go through."""
    log: list[tuple[type[Any], Enum, Enum, Enum]] = []
    original = Transaction._set_state

    def spy(self: Transaction[Any, Any], new: Any, cause: Any) -> None:
        log.append((type(self), self.state, cause, new))
        original(self, new, cause)

    Transaction._set_state = spy  # type: ignore[method-assign]
    try:
        yield log
    finally:
        Transaction._set_state = original  # type: ignore[method-assign]


def all_pairs() -> list[Any]:
    return [
        pytest.param(kind, state, inp, nxt, id=f"{kind.__name__}-{state.name}-{inp.name}")
        for kind, table in TABLES.items()
        for (state, inp), (_, nxt) in table.items()
    ]


@pytest.mark.parametrize(("kind", "state", "inp", "expected"), all_pairs())
def test_every_table_pair(kind: type[Any], state: Enum, inp: Enum, expected: Enum) -> None:
    harness = Harness(kind)
    harness.goto(state.name)
    with recording() as log:
        harness.apply(inp.name)
    assert harness.txn.state is expected
    assert log[0][1:] == (state, inp, expected)
    if expected.name == "TERMINATED":
        assert harness.txn not in set(harness.layer.transactions())


def missing_pairs() -> list[Any]:
    out = []
    for kind, table in TABLES.items():
        states = {s for s, _ in table}
        inputs = {i for _, i in table}
        for state in states:
            for inp in inputs:
                if (state, inp) not in table:
                    out.append(
                        pytest.param(
                            kind, state, inp, id=f"{kind.__name__}-{state.name}-{inp.name}"
                        )
                    )
    return out


@pytest.mark.parametrize(("kind", "state", "inp"), missing_pairs())
def test_missing_pairs_are_local_errors(kind: type[Any], state: Enum, inp: Enum) -> None:
    harness = Harness(kind)
    harness.goto(state.name)
    # Network inputs always have an entry: what is missing is only TU misuse or a timer that
    # is never armed in that state.
    assert not inp.name.startswith("RECV_")
    assert inp not in harness.txn._timers
    with pytest.raises(LocalProtocolError):
        harness.txn.handle(inp, now=harness.now)
    assert harness.txn.state is state


@pytest.mark.parametrize("kind", list(TABLES))
def test_tables_only_name_their_own_states(kind: type[Any]) -> None:
    table = TABLES[kind]
    state_enum = type(next(iter(table))[0])
    for (state, _), (action, nxt) in table.items():
        assert isinstance(state, state_enum) and isinstance(nxt, state_enum)
        assert state.name != "TERMINATED"
        assert action is None or callable(action)
    # Every live state is reachable and has an exit.
    assert {s.name for s, _ in table} == set(PATHS[kind])


# --- Hypothesis: random input sequences through the layer -----------------------------------

CLIENT_OPS = {
    ClientInviteTransaction: ["RECV_1XX", "RECV_2XX", "RECV_FINAL", "TRANSPORT_ERROR"],
    ClientNonInviteTransaction: ["RECV_1XX", "RECV_FINAL", "TRANSPORT_ERROR"],
}
SERVER_OPS = {
    ServerInviteTransaction: [
        "RECV_REQUEST",
        "RECV_ACK",
        "RECV_ACK_NEW_BRANCH",
        "SEND_1XX",
        "SEND_2XX",
        "SEND_FINAL",
        "TRANSPORT_ERROR",
    ],
    ServerNonInviteTransaction: ["RECV_REQUEST", "SEND_1XX", "SEND_FINAL", "TRANSPORT_ERROR"],
}
OPS = {**CLIENT_OPS, **SERVER_OPS}
STATUSES = {
    "RECV_1XX": [100, 180, 183],
    "SEND_1XX": [100, 180, 183],
    "RECV_2XX": [200, 202],
    "SEND_2XX": [200, 202],
}
FINALS_INVITE = [300, 404, 486, 487, 500, 603]
FINALS_OTHER = [200, 202, 401, 404, 481, 500]
WAITING_FOR_TU = {"PROCEEDING", "TRYING"}


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[type[Any], bool, list[tuple[str, Any]]]:
    kind = draw(st.sampled_from(list(TABLES)))
    reliable = draw(st.booleans())
    invite = kind in (ClientInviteTransaction, ServerInviteTransaction)
    finals = FINALS_INVITE if invite else FINALS_OTHER
    op = st.one_of(
        st.tuples(st.just("ADVANCE"), st.floats(0.0, 40.0)),
        st.sampled_from(OPS[kind]).flatmap(
            lambda name: st.tuples(st.just(name), st.sampled_from(STATUSES.get(name, finals)))
        ),
    )
    return kind, reliable, draw(st.lists(op, max_size=25))


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_random_sequences_follow_the_tables(
    scenario: tuple[type[Any], bool, list[tuple[str, Any]]],
) -> None:
    kind, reliable, ops = scenario
    with recording() as log:
        harness = Harness(kind, reliable=reliable)
        layer = harness.layer
        for name, value in ops:
            if name == "ADVANCE":
                harness.now += value
                layer.handle_timer(now=harness.now)
                continue
            state_before = harness.txn.state
            try:
                harness.apply(name, value)
            except LocalProtocolError:
                # Only the TU can misuse the layer: a response the state does not allow,
                # or one sent on a finished transaction.
                assert name.startswith("SEND_")
                assert harness.txn.state is state_before
        harness.now += 10_000.0
        layer.handle_timer(now=harness.now)

    for machine, old, inp, new in log:
        assert TABLES[machine][(old, inp)][1] is new
    # Nothing is left but transactions waiting for their TU's answer, and they hold no timer.
    assert layer.get_timer() is None
    for txn in layer.transactions():
        assert txn.state.name in WAITING_FOR_TU
        assert not txn._timers
    terminated = []
    while (event := layer.next_event()) is not None:
        if isinstance(event, TransactionTerminated):
            terminated.append(event.transaction)
    assert len(terminated) == len(set(terminated))
    assert all(t.state.name == "TERMINATED" for t in terminated)
