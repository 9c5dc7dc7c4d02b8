"""Transaction layer scenarios on a virtual clock (RFC 3261 section 17, RFC 6026)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.sip.errors import LocalProtocolError, ParseError
from telephony.sip.message import SipRequest, SipResponse, make_response, parse_message
from telephony.sip.timers import TimerConfig
from telephony.sip.transaction import (
    ClientInviteState,
    ClientInviteTransaction,
    ClientNonInviteState,
    Peer,
    RequestReceived,
    ResponseReceived,
    ServerInviteState,
    ServerInviteTransaction,
    ServerNonInviteState,
    ServerNonInviteTransaction,
    TransactionEvent,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
    build_cancel,
    new_branch,
)

PEER: Peer = ("udp", "192.0.2.10", 5060)
CALL_ID = "a84b4c76e66710@pc33.example.com"


def request(
    method: str = "INVITE",
    *,
    branch: str = "z9hG4bK776asdhds",
    cseq: int = 314159,
    cseq_method: str | None = None,
    to_tag: str | None = None,
    uri: str = "sip:bob@example.com",
    extra: str = "",
) -> SipRequest:
    to = "Bob <sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        f"To: {to}\r\n"
        "From: Alice <sip:alice@example.com>;tag=1928301774\r\n"
        f"Call-ID: {CALL_ID}\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        "Contact: <sip:alice@192.0.2.10:5060>\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    )
    parsed = parse_message(text.encode())
    assert isinstance(parsed, SipRequest)
    return parsed


def response(req: SipRequest, status: int, *, to_tag: str = "a6c85cf") -> SipResponse:
    # Round trip through bytes, like a response arriving from the network.
    parsed = parse_message(bytes(make_response(req, status, to_tag=to_tag)))
    assert isinstance(parsed, SipResponse)
    return parsed


def events(layer: TransactionLayer) -> list[TransactionEvent]:
    out = []
    while (event := layer.next_event()) is not None:
        out.append(event)
    return out


def sent(layer: TransactionLayer) -> list[Any]:
    """Datagrams parsed back, for assertions on what went out."""
    out = []
    for data, peer in layer.datagrams_to_send():
        assert peer == PEER
        out.append(parse_message(data))
    return out


def run_until(layer: TransactionLayer, end: float) -> list[tuple[float, list[Any]]]:
    """Fire every timer up to ``end``; return (time, datagrams) for each firing that sent."""
    log = []
    while (deadline := layer.get_timer()) is not None and deadline <= end:
        layer.handle_timer(now=deadline)
        out = sent(layer)
        if out:
            log.append((deadline, out))
    return log


def starts(log: list[tuple[float, list[Any]]]) -> list[float]:
    return [t for t, _ in log]


# --- INVITE client ---------------------------------------------------------------------------


def test_invite_client_retransmits_with_timer_a_until_timer_b() -> None:
    layer = TransactionLayer()
    invite = request()
    txn = layer.send_request(invite, PEER, reliable=False, now=0.0)
    assert [m.method for m in sent(layer)] == ["INVITE"]
    log = run_until(layer, 100.0)
    assert starts(log) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(bytes(m) == bytes(invite) for _, out in log for m in out)
    evs = events(layer)
    assert evs == [TransactionTimedOut(txn), TransactionTerminated(txn)]
    assert txn.state is ClientInviteState.TERMINATED
    assert layer.active_count == 0 and layer.get_timer() is None


def test_invite_client_over_reliable_transport_does_not_retransmit() -> None:
    layer = TransactionLayer()
    txn = layer.send_request(request(), PEER, reliable=True, now=0.0)
    sent(layer)
    assert run_until(layer, 100.0) == []
    assert isinstance(events(layer)[0], TransactionTimedOut)
    assert txn.state is ClientInviteState.TERMINATED
    assert len(layer) == 0


def test_invite_client_provisional_stops_retransmission_and_timer_b() -> None:
    layer = TransactionLayer()
    invite = request()
    txn = layer.send_request(invite, PEER, reliable=False, now=0.0)
    sent(layer)
    layer.receive(response(invite, 100), PEER, reliable=False, now=0.2)
    layer.receive(response(invite, 180), PEER, reliable=False, now=0.3)
    assert txn.state is ClientInviteState.PROCEEDING
    assert [e.response.status for e in events(layer) if isinstance(e, ResponseReceived)] == [
        100,
        180,
    ]
    assert run_until(layer, 1000.0) == []
    assert txn.state is ClientInviteState.PROCEEDING  # the TU decides (CANCEL), not Timer B


def test_invite_client_acks_non_2xx_and_absorbs_retransmissions() -> None:
    layer = TransactionLayer()
    invite = request(extra="Route: <sip:p1.example.com;lr>\r\nRoute: <sip:p2.example.com;lr>\r\n")
    txn = layer.send_request(invite, PEER, reliable=False, now=0.0)
    sent(layer)
    busy = response(invite, 486)
    layer.receive(busy, PEER, reliable=False, now=0.1)
    assert txn.state is ClientInviteState.COMPLETED
    (ack,) = sent(layer)
    assert ack.method == "ACK"
    assert ack.uri == invite.uri
    assert ack.top_via.branch == invite.top_via.branch
    assert len(ack.vias) == 1
    assert ack.to.tag == "a6c85cf"
    assert ack.from_ == invite.from_
    assert ack.call_id == invite.call_id
    assert (ack.cseq.seq, ack.cseq.method) == (314159, "ACK")
    assert [str(r.uri) for r in ack.routes] == ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]
    assert [e.response.status for e in events(layer) if isinstance(e, ResponseReceived)] == [486]
    # The 486 again (our ACK was lost): ACK again, nothing for the TU.
    layer.receive(busy, PEER, reliable=False, now=1.0)
    assert [m.method for m in sent(layer)] == ["ACK"]
    assert events(layer) == []
    # Timer D ends it; no retransmissions of the INVITE happened meanwhile.
    log = run_until(layer, 100.0)
    assert log == []
    assert events(layer) == [TransactionTerminated(txn)]
    assert layer.active_count == 0


def test_invite_client_non_2xx_over_reliable_terminates_at_once() -> None:
    layer = TransactionLayer()
    invite = request()
    txn = layer.send_request(invite, PEER, reliable=True, now=0.0)
    sent(layer)
    layer.receive(response(invite, 603), PEER, reliable=True, now=0.1)
    assert [m.method for m in sent(layer)] == ["ACK"]
    assert txn.state is ClientInviteState.TERMINATED
    evs = events(layer)
    assert isinstance(evs[0], ResponseReceived) and evs[-1] == TransactionTerminated(txn)
    assert layer.active_count == 0


def test_invite_client_accepted_passes_2xx_retransmissions_until_timer_m() -> None:
    layer = TransactionLayer()
    invite = request()
    txn = layer.send_request(invite, PEER, reliable=False, now=0.0)
    sent(layer)
    ok = response(invite, 200)
    layer.receive(ok, PEER, reliable=False, now=0.1)
    assert txn.state is ClientInviteState.ACCEPTED
    assert sent(layer) == []  # the ACK for a 2xx is the TU's job
    layer.receive(ok, PEER, reliable=False, now=0.6)
    # A 2xx from another fork also reaches the TU.
    layer.receive(response(invite, 200, to_tag="fork2"), PEER, reliable=False, now=0.7)
    layer.receive(response(invite, 180), PEER, reliable=False, now=0.8)
    oks = [e for e in events(layer) if isinstance(e, ResponseReceived)]
    assert [e.response.to.tag for e in oks] == ["a6c85cf", "a6c85cf", "fork2"]
    assert run_until(layer, 100.0) == []
    assert txn.state is ClientInviteState.TERMINATED
    assert events(layer) == [TransactionTerminated(txn)]
    assert layer.active_count == 0
    # Too late now: a stray 2xx is dropped.
    layer.receive(ok, PEER, reliable=False, now=100.0)
    assert events(layer) == []


# --- non-INVITE client -----------------------------------------------------------------------


def test_non_invite_client_timer_e_is_capped_at_t2() -> None:
    layer = TransactionLayer()
    txn = layer.send_request(request("OPTIONS"), PEER, reliable=False, now=0.0)
    sent(layer)
    log = run_until(layer, 100.0)
    times = starts(log)
    assert times[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) == TimerConfig().t2
    assert times[-1] < 32.0
    assert events(layer) == [TransactionTimedOut(txn), TransactionTerminated(txn)]
    assert layer.active_count == 0


def test_non_invite_client_keeps_retransmitting_at_t2_when_proceeding() -> None:
    layer = TransactionLayer()
    bye = request("BYE", to_tag="a6c85cf")
    txn = layer.send_request(bye, PEER, reliable=False, now=0.0)
    sent(layer)
    layer.receive(response(bye, 100), PEER, reliable=False, now=0.2)
    assert txn.state is ClientNonInviteState.PROCEEDING
    log = run_until(layer, 12.0)
    # Timer E armed at 0.5 still fires, then T2 apart.
    assert starts(log) == [0.5, 4.5, 8.5]
    layer.receive(response(bye, 200), PEER, reliable=False, now=12.0)
    assert txn.state is ClientNonInviteState.COMPLETED
    # Retransmitted 200 absorbed; Timer K ends the transaction.
    layer.receive(response(bye, 200), PEER, reliable=False, now=13.0)
    assert run_until(layer, 100.0) == []
    statuses = [e.response.status for e in events(layer) if isinstance(e, ResponseReceived)]
    assert statuses == [100, 200]
    assert layer.active_count == 0


def test_non_invite_client_reliable() -> None:
    layer = TransactionLayer()
    register = request("REGISTER", uri="sip:example.com")
    txn = layer.send_request(register, PEER, reliable=True, now=0.0)
    sent(layer)
    assert layer.get_timer() == TimerConfig().timer_f  # only Timer F runs
    layer.receive(response(register, 401), PEER, reliable=True, now=0.1)
    assert txn.state is ClientNonInviteState.TERMINATED  # Timer K = 0
    assert layer.active_count == 0 and layer.get_timer() is None


def test_cancel_and_invite_client_transactions_share_a_branch() -> None:
    layer = TransactionLayer()
    invite = request()
    inv = layer.send_request(invite, PEER, reliable=False, now=0.0)
    layer.receive(response(invite, 180), PEER, reliable=False, now=0.1)
    cancel = build_cancel(invite)
    assert (cancel.method, str(cancel.uri), cancel.call_id) == ("CANCEL", str(invite.uri), CALL_ID)
    assert (cancel.cseq.seq, cancel.cseq.method) == (invite.cseq.seq, "CANCEL")
    assert cancel.top_via == invite.top_via and cancel.to == invite.to
    assert cancel.from_ == invite.from_
    can = layer.send_request(cancel, PEER, reliable=False, now=1.0)
    assert can is not inv and len(layer) == 2
    sent(layer)
    events(layer)
    layer.receive(response(cancel, 200), PEER, reliable=False, now=1.1)
    (ev,) = events(layer)
    assert isinstance(ev, ResponseReceived) and ev.transaction is can
    layer.receive(response(invite, 487), PEER, reliable=False, now=1.2)
    assert inv.state is ClientInviteState.COMPLETED


def test_send_request_refuses_misuse() -> None:
    layer = TransactionLayer()
    with pytest.raises(LocalProtocolError):
        layer.send_request(request("ACK"), PEER, reliable=False, now=0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_request(request(branch="1234"), PEER, reliable=False, now=0.0)
    layer.send_request(request(), PEER, reliable=False, now=0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_request(request(), PEER, reliable=False, now=0.0)


def test_stray_and_unmatchable_responses_are_dropped() -> None:
    layer = TransactionLayer()
    invite = request()
    layer.receive(response(invite, 200), PEER, reliable=False, now=0.0)
    no_via = SipResponse(200, "OK")
    layer.receive(no_via, PEER, reliable=False, now=0.0)
    assert events(layer) == [] and sent(layer) == []


def test_send_stateless_queues_bytes() -> None:
    layer = TransactionLayer()
    ack = request("ACK", branch=new_branch(), cseq=314159, to_tag="a6c85cf")
    layer.send_stateless(ack, PEER)
    assert layer.datagrams_to_send() == [(bytes(ack), PEER)]
    assert layer.active_count == 0


def test_new_branch_is_unique_and_cookied() -> None:
    branches = {new_branch() for _ in range(100)}
    assert len(branches) == 100
    assert all(b.startswith("z9hG4bK") for b in branches)


# --- INVITE server ---------------------------------------------------------------------------


def receive_invite(
    layer: TransactionLayer, *, reliable: bool = False, **kwargs: Any
) -> tuple[SipRequest, ServerInviteTransaction]:
    invite = request(**kwargs)
    layer.receive(invite, PEER, reliable=reliable, now=0.0)
    (ev,) = events(layer)
    assert isinstance(ev, RequestReceived) and ev.request == invite and ev.peer == PEER
    txn = ev.transaction
    assert isinstance(txn, ServerInviteTransaction)
    return invite, txn


def test_invite_server_sends_100_trying_when_the_tu_is_silent() -> None:
    layer = TransactionLayer()
    invite, txn = receive_invite(layer, extra="Timestamp: 54\r\n")
    assert sent(layer) == []  # deferred: the TU may answer within 200 ms (17.2.1)
    ((at, (trying,)),) = run_until(layer, 100.0)
    assert at == TimerConfig().trying_delay
    assert trying.status == 100
    assert trying.to.tag is None
    assert trying.headers.get("Timestamp") == "54"
    assert trying.top_via.branch == invite.top_via.branch
    assert txn.state is ServerInviteState.PROCEEDING
    assert txn.peer == PEER and txn.request is invite and not txn.reliable
    assert txn.id.startswith("ist:INVITE:")


def test_invite_server_absorbs_retransmissions_and_resends_last_response() -> None:
    layer = TransactionLayer()
    invite, txn = receive_invite(layer)
    sent(layer)
    layer.receive(invite, PEER, reliable=False, now=0.5)
    assert [m.status for m in sent(layer)] == [100]
    layer.send_response(txn, make_response(invite, 180, to_tag="t1"), now=0.6)
    layer.receive(invite, PEER, reliable=False, now=1.5)
    assert [m.status for m in sent(layer)] == [180, 180]
    layer.send_response(invite, make_response(invite, 486, to_tag="t1"), now=2.0)
    layer.receive(invite, PEER, reliable=False, now=2.1)
    assert [m.status for m in sent(layer)] == [486, 486]
    assert events(layer) == []  # nothing reached the TU
    assert txn.state is ServerInviteState.COMPLETED
    # Completed only resends bytes: the parsed messages are released (the collector's heap).
    assert txn.last_response is None and txn.method == "INVITE" and txn.call_id == invite.call_id
    with pytest.raises(LocalProtocolError, match="released in COMPLETED"):
        _ = txn.request


def test_waiting_transactions_keep_bytes_and_timers_but_no_parsed_message() -> None:
    # Each of the four machines, in the state it waits out a timer in.
    layer = TransactionLayer()
    invite, ist = receive_invite(layer)
    layer.send_response(ist, make_response(invite, 200, to_tag="t1"), now=0.1)
    options = request("OPTIONS", branch="z9hG4bKopt")
    layer.receive(options, PEER, reliable=False, now=0.2)
    (nist,) = [e.transaction for e in events(layer) if isinstance(e, RequestReceived)]
    assert nist is not None
    layer.send_response(nist, make_response(options, 200), now=0.3)
    ict = layer.send_request(request("INVITE", branch="z9hG4bKict"), PEER, reliable=False, now=0.4)
    layer.receive(response(ict.request, 200, to_tag="t2"), PEER, reliable=False, now=0.5)
    nict = layer.send_request(request("BYE", branch="z9hG4bKbye"), PEER, reliable=False, now=0.6)
    layer.receive(response(nict.request, 200, to_tag="t3"), PEER, reliable=False, now=0.7)
    sent(layer)
    for txn in (ist, nist, ict, nict):
        assert not txn.terminated and txn.last_response is None, txn
        with pytest.raises(LocalProtocolError):
            _ = txn.request
    # The server transactions still answer a retransmission with the same bytes.
    layer.receive(invite, PEER, reliable=False, now=1.0)
    layer.receive(options, PEER, reliable=False, now=1.0)
    assert [m.status for m in sent(layer)] == [200, 200]


def test_invite_server_timer_g_retransmits_until_ack_then_timer_i() -> None:
    layer = TransactionLayer()
    invite, txn = receive_invite(layer)
    layer.send_response(txn, make_response(invite, 486, to_tag="t1"), now=1.0)
    sent(layer)
    log = run_until(layer, 9.0)
    assert starts(log) == [1.5, 2.5, 4.5, 8.5]
    assert all(m.status == 486 for _, out in log for m in out)
    ack = request("ACK", to_tag="t1")  # same branch as the INVITE
    layer.receive(ack, PEER, reliable=False, now=9.0)
    assert txn.state is ServerInviteState.CONFIRMED
    layer.receive(ack, PEER, reliable=False, now=9.1)  # retransmitted ACK absorbed
    layer.receive(invite, PEER, reliable=False, now=9.2)  # late INVITE absorbed
    assert sent(layer) == [] and events(layer) == []
    assert run_until(layer, 100.0) == []  # Timer I: no more 486
    assert events(layer) == [TransactionTerminated(txn)]
    assert layer.active_count == 0


def test_invite_server_timer_h_without_ack() -> None:
    layer = TransactionLayer()
    invite, txn = receive_invite(layer)
    layer.send_response(txn, make_response(invite, 404, to_tag="t1"), now=0.0)
    sent(layer)
    log = run_until(layer, 100.0)
    times = starts(log)
    assert times[:4] == [0.5, 1.5, 3.5, 7.5]
    assert times[-1] < TimerConfig().timer_h
    assert events(layer) == [TransactionTimedOut(txn), TransactionTerminated(txn)]
    assert layer.active_count == 0


def test_invite_server_reliable_confirms_and_ends_at_once() -> None:
    layer = TransactionLayer()
    invite, txn = receive_invite(layer, reliable=True)
    layer.send_response(txn, make_response(invite, 486, to_tag="t1"), now=0.0)
    sent(layer)
    assert run_until(layer, 10.0) == []  # no Timer G
    layer.receive(request("ACK", to_tag="t1"), PEER, reliable=True, now=10.0)
    assert txn.state is ServerInviteState.TERMINATED
    assert layer.active_count == 0


def test_invite_server_2xx_retransmitted_until_its_ack() -> None:
    layer = TransactionLayer()
    invite, txn = receive_invite(layer)
    layer.send_response(txn, make_response(invite, 200, to_tag="t1"), now=0.0)
    assert [m.status for m in sent(layer)] == [200]  # answered at once: no 100 Trying
    assert txn.state is ServerInviteState.ACCEPTED
    log = run_until(layer, 4.0)
    assert starts(log) == [0.5, 1.5, 3.5]
    # A retransmitted INVITE (our 200 was lost) gets the 200 again, not the TU.
    layer.receive(invite, PEER, reliable=False, now=4.0)
    assert [m.status for m in sent(layer)] == [200]
    assert events(layer) == []
    # The ACK for a 2xx has its own branch and is not part of the transaction.
    ack = request("ACK", branch=new_branch(), to_tag="t1", uri="sip:alice@192.0.2.10")
    layer.receive(ack, PEER, reliable=False, now=4.1)
    assert events(layer) == [RequestReceived(ack, PEER, None)]
    assert txn.acked
    assert run_until(layer, 100.0) == []  # retransmissions stopped; Timer L ends it
    assert events(layer) == [TransactionTerminated(txn)]
    assert layer.active_count == 0


def test_invite_server_2xx_never_acked_times_out_at_timer_l() -> None:
    layer = TransactionLayer()
    invite, txn = receive_invite(layer, reliable=True)
    layer.send_response(txn, make_response(invite, 200, to_tag="t1"), now=0.0)
    sent(layer)
    log = run_until(layer, 100.0)
    # 13.3.1.4: the 2xx is retransmitted on reliable transports too, capped at T2.
    times = starts(log)
    assert times[:4] == [0.5, 1.5, 3.5, 7.5]
    assert times[-1] < TimerConfig().timer_l
    assert events(layer) == [TransactionTimedOut(txn), TransactionTerminated(txn)]
    assert layer.active_count == 0


def test_invite_server_refuses_a_second_final_response() -> None:
    layer = TransactionLayer()
    invite, txn = receive_invite(layer)
    layer.send_response(txn, make_response(invite, 486, to_tag="t1"), now=0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_response(txn, make_response(invite, 200, to_tag="t1"), now=0.1)
    with pytest.raises(LocalProtocolError):
        layer.send_response(txn, make_response(invite, 99), now=0.1)


def test_cancel_finds_the_invite_server_transaction() -> None:
    layer = TransactionLayer()
    invite, inv = receive_invite(layer)
    cancel = request("CANCEL")
    assert layer.find_invite_server_txn(cancel) is inv
    layer.receive(cancel, PEER, reliable=False, now=1.0)
    (ev,) = events(layer)
    assert isinstance(ev, RequestReceived)
    can = ev.transaction
    assert isinstance(can, ServerNonInviteTransaction) and can is not inv
    assert layer.find_invite_server_txn(request("CANCEL", branch="z9hG4bKother")) is None
    sent(layer)
    layer.send_response(can, make_response(cancel, 200, to_tag="t1"), now=1.0)
    layer.send_response(inv, make_response(invite, 487, to_tag="t1"), now=1.0)
    assert [(m.status, m.cseq.method) for m in sent(layer)] == [(200, "CANCEL"), (487, "INVITE")]


def test_rfc2543_requests_without_magic_cookie_still_match() -> None:
    layer = TransactionLayer()
    invite, txn = receive_invite(layer, branch="1")
    sent(layer)
    layer.receive(request(branch="1"), PEER, reliable=False, now=0.5)
    assert [m.status for m in sent(layer)] == [100]
    assert events(layer) == []
    layer.send_response(txn, make_response(invite, 486, to_tag="t1"), now=1.0)
    layer.receive(request("ACK", branch="1", to_tag="t1"), PEER, reliable=False, now=1.1)
    assert txn.state is ServerInviteState.CONFIRMED
    # A different CSeq is a different transaction.
    layer.receive(request(branch="1", cseq=2), PEER, reliable=False, now=2.0)
    assert len(layer) == 2


def test_request_without_via_is_a_remote_error() -> None:
    layer = TransactionLayer()
    invite = request()
    invite.headers.remove("Via")
    with pytest.raises(ParseError):
        layer.receive(invite, PEER, reliable=False, now=0.0)
    assert layer.active_count == 0


# --- deferred 100 Trying (RFC 3261 17.2.1) ----------------------------------------------------
# pyVoIP 1.6.8 ignores a 401 that follows a 100 Trying; our TU challenges at once.


def statuses(log: list[tuple[float, list[Any]]]) -> list[int]:
    return [m.status for _, out in log for m in out]


@pytest.mark.parametrize("reliable", [False, True])
def test_no_100_trying_when_the_tu_challenges_at_once(reliable: bool) -> None:
    layer = TransactionLayer()
    invite = request()
    layer.receive(invite, PEER, reliable=reliable, now=10.0)
    (ev,) = events(layer)
    assert isinstance(ev, RequestReceived) and ev.transaction is not None
    layer.send_response(ev.transaction, make_response(invite, 401, to_tag="t1"), now=10.0)
    seen = [m.status for m in sent(layer)]
    seen += statuses(run_until(layer, 10.1))
    layer.receive(request("ACK", to_tag="t1"), PEER, reliable=reliable, now=10.1)
    seen += [m.status for m in sent(layer)]
    seen += statuses(run_until(layer, 1000.0))
    assert seen and set(seen) == {401}
    assert layer.active_count == 0


@pytest.mark.parametrize("reliable", [False, True])
def test_silent_tu_gets_exactly_one_100_trying_after_the_delay(reliable: bool) -> None:
    layer = TransactionLayer()
    invite = request(extra="Timestamp: 3.5\r\n")
    layer.receive(invite, PEER, reliable=reliable, now=7.0)
    (ev,) = events(layer)
    assert isinstance(ev, RequestReceived)
    assert sent(layer) == []
    ((at, (trying,)),) = run_until(layer, 1000.0)
    assert at == 7.0 + TimerConfig().trying_delay
    assert trying.status == 100 and trying.headers.get("Timestamp") == "3.5"
    assert ev.transaction is not None and ev.transaction.state is ServerInviteState.PROCEEDING
    assert layer.get_timer() is None


def test_ringing_before_the_delay_suppresses_100_trying() -> None:
    layer = TransactionLayer()
    invite, txn = receive_invite(layer)
    assert run_until(layer, 0.1) == []
    layer.send_response(txn, make_response(invite, 180, to_tag="t1"), now=0.1)
    assert [m.status for m in sent(layer)] == [180]
    assert run_until(layer, 1000.0) == []
    assert txn.state is ServerInviteState.PROCEEDING


def test_retransmitted_invite_before_any_answer_gets_100_at_once() -> None:
    layer = TransactionLayer()
    invite, txn = receive_invite(layer, extra="Timestamp: 1\r\n")
    layer.receive(invite, PEER, reliable=False, now=0.1)
    (trying,) = sent(layer)
    assert trying.status == 100 and trying.headers.get("Timestamp") == "1"
    assert events(layer) == []
    assert run_until(layer, 1000.0) == []  # the timer has nothing left to do
    layer.receive(invite, PEER, reliable=False, now=1000.0)
    assert [m.status for m in sent(layer)] == [100]
    layer.send_response(txn, make_response(invite, 401, to_tag="t1"), now=1000.1)
    layer.receive(invite, PEER, reliable=False, now=1000.2)
    assert [m.status for m in sent(layer)] == [401, 401]


def test_zero_trying_delay_sends_100_before_the_tu_hears_of_the_invite() -> None:
    layer = TransactionLayer(TimerConfig(trying_delay=0.0))
    layer.receive(request(), PEER, reliable=False, now=0.0)
    assert [m.status for m in sent(layer)] == [100]
    assert isinstance(events(layer)[0], RequestReceived)
    assert layer.get_timer() is None


@settings(max_examples=200, deadline=None)
@given(
    answer_at=st.none() | st.floats(0.0, 1.0),
    retransmits=st.lists(st.floats(0.0, 1.0), max_size=4),
    reliable=st.booleans(),
)
def test_100_trying_is_only_sent_before_the_first_answer(
    answer_at: float | None, retransmits: list[float], reliable: bool
) -> None:
    layer = TransactionLayer()
    invite, txn = receive_invite(layer, reliable=reliable)
    delay = layer.config.trying_delay
    # On a tie, timers fire first, then the TU answers, then the retransmission arrives.
    steps = sorted(
        [(t, 1) for t in retransmits] + ([(answer_at, 0)] if answer_at is not None else [])
    )
    out: list[int] = []
    for t, is_retransmit in steps:
        out += statuses(run_until(layer, t))
        if is_retransmit:
            layer.receive(invite, PEER, reliable=reliable, now=t)
        else:
            layer.send_response(txn, make_response(invite, 401, to_tag="t1"), now=t)
        out += [m.status for m in sent(layer)]
    out += statuses(run_until(layer, 1000.0))

    early = [t for t in retransmits if answer_at is None or t < answer_at]
    timer_sends = (answer_at is None or delay <= answer_at) and all(t >= delay for t in early)
    # Each early retransmission is answered with a 100; the timer adds one only if it
    # fired before both the answer and any retransmission.
    assert out.count(100) == len(early) + timer_sends
    if answer_at is None:
        assert out.count(100) >= 1  # RFC 3261 17.2.1: the MUST when the TU stays silent
    else:
        first_answer = out.index(401)
        assert 100 not in out[first_answer:]


# --- lenient matching for pyVoIP ---------------------------------------------------------------


def test_reauthenticated_invite_reusing_the_branch_is_a_new_transaction() -> None:
    # pyVoIP 1.6.8 sends the INVITE with credentials under the first INVITE's branch,
    # with the next CSeq number.
    layer = TransactionLayer()
    branch = "z9hG4bKpyvoip1"
    first, txn1 = receive_invite(layer, branch=branch, cseq=1)
    layer.send_response(txn1, make_response(first, 401, to_tag="t1"), now=0.0)
    assert [m.status for m in sent(layer)] == [401]
    ack = request("ACK", branch=branch, cseq=1, to_tag="t1")
    layer.receive(ack, PEER, reliable=False, now=0.05)
    assert events(layer) == []  # absorbed by the first transaction
    assert txn1.state is ServerInviteState.CONFIRMED

    second = request(branch=branch, cseq=2, extra='Authorization: Digest username="a"\r\n')
    layer.receive(second, PEER, reliable=False, now=0.1)
    (ev,) = events(layer)
    assert isinstance(ev, RequestReceived) and ev.request is second
    txn2 = ev.transaction
    assert isinstance(txn2, ServerInviteTransaction) and txn2 is not txn1
    assert txn2.state is ServerInviteState.PROCEEDING
    assert txn1.state is ServerInviteState.CONFIRMED and len(layer) == 2
    # A late copy of the first INVITE is still absorbed by the first transaction.
    layer.receive(first, PEER, reliable=False, now=0.15)
    assert events(layer) == [] and sent(layer) == []
    # A CANCEL finds the INVITE with its own CSeq number.
    cancel = request("CANCEL", branch=branch, cseq=2)
    assert layer.find_invite_server_txn(cancel) is txn2
    layer.send_response(txn2, make_response(second, 200, to_tag="t2"), now=0.2)
    assert [m.status for m in sent(layer)] == [200]
    assert txn2.state is ServerInviteState.ACCEPTED


# --- non-INVITE server -----------------------------------------------------------------------


def test_non_invite_server_lifecycle() -> None:
    layer = TransactionLayer()
    options = request("OPTIONS")
    layer.receive(options, PEER, reliable=False, now=0.0)
    (ev,) = events(layer)
    assert isinstance(ev, RequestReceived)
    txn = ev.transaction
    assert isinstance(txn, ServerNonInviteTransaction)
    assert sent(layer) == []  # no automatic 100 for non-INVITE
    layer.receive(options, PEER, reliable=False, now=0.1)  # Trying: absorbed silently
    assert sent(layer) == [] and events(layer) == []
    layer.send_response(txn, make_response(options, 200, to_tag="t1"), now=0.2)
    assert txn.state is ServerNonInviteState.COMPLETED
    layer.receive(options, PEER, reliable=False, now=0.3)
    assert [m.status for m in sent(layer)] == [200, 200]
    with pytest.raises(LocalProtocolError):
        layer.send_response(txn, make_response(options, 500), now=0.4)
    assert run_until(layer, 100.0) == []
    assert events(layer) == [TransactionTerminated(txn)]
    assert layer.active_count == 0
    # The transaction is gone: the same request would now be new.
    with pytest.raises(LocalProtocolError):
        layer.send_response(options, make_response(options, 200), now=100.0)


def test_non_invite_server_provisional_is_resent() -> None:
    layer = TransactionLayer()
    info = request("INFO", to_tag="t1")
    layer.receive(info, PEER, reliable=False, now=0.0)
    (ev,) = events(layer)
    assert isinstance(ev, RequestReceived) and ev.transaction is not None
    layer.send_response(info, make_response(info, 100), now=0.1)
    layer.receive(info, PEER, reliable=False, now=0.2)
    assert [m.status for m in sent(layer)] == [100, 100]
    assert ev.transaction.state is ServerNonInviteState.PROCEEDING


def test_non_invite_server_reliable_ends_with_the_final_response() -> None:
    layer = TransactionLayer()
    bye = request("BYE", to_tag="t1")
    layer.receive(bye, PEER, reliable=True, now=0.0)
    layer.send_response(bye, make_response(bye, 200), now=0.0)
    assert layer.active_count == 0
    assert isinstance(events(layer)[-1], TransactionTerminated)


# --- transport errors, many transactions -----------------------------------------------------


def test_transport_error_fails_the_transaction() -> None:
    layer = TransactionLayer()
    txn = layer.send_request(request(), PEER, reliable=True, now=0.0)
    layer.transport_error(txn, now=0.1)
    assert events(layer) == [TransportFailed(txn), TransactionTerminated(txn)]
    layer.transport_error(txn, now=0.2)  # already gone: no-op
    assert layer.active_count == 0 and layer.get_timer() is None


def test_thousands_of_transactions_all_clean_up() -> None:
    layer = TransactionLayer()
    n = 2000
    for i in range(n):
        req = request("OPTIONS", branch=f"z9hG4bKc{i}")
        layer.send_request(req, ("udp", "192.0.2.10", 5060), reliable=False, now=i * 0.01)
        layer.receive(request("MESSAGE", branch=f"z9hG4bKs{i}"), PEER, reliable=False, now=i * 0.01)
        if i % 2:
            layer.receive(response(req, 200), PEER, reliable=False, now=i * 0.01 + 0.2)
    assert layer.active_count == 2 * n
    for ev in events(layer):
        if isinstance(ev, RequestReceived) and ev.transaction is not None:
            layer.send_response(ev.transaction, make_response(ev.request, 200), now=25.0)
    deadline = layer.get_timer()
    assert deadline is not None and deadline > 0
    while (deadline := layer.get_timer()) is not None:
        layer.handle_timer(now=deadline)
        layer.datagrams_to_send()
    assert layer.active_count == 0
    timed_out = [e for e in events(layer) if isinstance(e, TransactionTimedOut)]
    assert len(timed_out) == n // 2
    assert layer.get_timer() is None
    assert len(layer._heap) == 0


def test_reliable_flag_and_ids() -> None:
    layer = TransactionLayer()
    a = layer.send_request(request("OPTIONS", branch="z9hG4bKa"), PEER, reliable=True, now=0)
    b = layer.send_request(request("OPTIONS", branch="z9hG4bKb"), PEER, reliable=False, now=0)
    assert isinstance(a, ClientInviteTransaction) is False
    assert a.reliable and not b.reliable
    assert a.id != b.id and a.key != b.key
    assert set(layer.transactions()) == {a, b}
