"""UserAgent.on_dialog hears what a restarted engine would need of each answered leg (its
confirmation, our CSeq moving on, a target refresh, the end), and UserAgent.request() sends a
request outside any leg through the transaction layer."""

from __future__ import annotations

import asyncio

from telephony.aio import Call, LegState, UserAgent
from telephony.sip import DialogRecord, Headers, NameAddr, SipRequest

from .conftest import answered_call, dial, sip_uri

Heard = list[tuple[LegState, DialogRecord]]


def listen(ua: UserAgent) -> Heard:
    heard: Heard = []

    def on_dialog(call: Call) -> None:
        assert call.dialog is not None
        heard.append((call.state, call.dialog.to_record()))

    ua.on_dialog = on_dialog
    return heard


async def test_each_leg_is_heard_from_confirmation_to_end(
    user_agents: tuple[UserAgent, UserAgent],
) -> None:
    caller_ua, callee_ua = user_agents
    caller_heard, callee_heard = listen(caller_ua), listen(callee_ua)
    caller, callee = await answered_call(caller_ua, callee_ua)
    # One each: the UAC on the 2xx, the UAS when it sent it (before the ACK).
    assert [state for state, _ in caller_heard] == [LegState.CONNECTED]
    assert [state for state, _ in callee_heard] == [LegState.ANSWERING]
    ours, theirs = caller_heard[0][1], callee_heard[0][1]
    assert ours.call_id == theirs.call_id == caller.call_id
    assert (ours.local_tag, ours.remote_tag) == (theirs.remote_tag, theirs.local_tag)
    assert ours.is_uac and not theirs.is_uac
    assert (ours.local_seq, theirs.local_seq) == (1, 0)
    assert ours.remote_target == f"sip:127.0.0.1:{callee_ua.endpoint.port}"

    await caller.send_dtmf("5", method="info")  # an in-dialog request: our CSeq moves on
    assert caller_heard[-1][1].local_seq == 2

    # A session refresh with the same Contact changes nothing a BYE needs: not heard.
    assert callee.media is not None and callee.dialog is not None
    update = callee.dialog.create_request(
        "UPDATE",
        via=callee_ua.endpoint.new_via(callee.peer),
        contact=callee_ua.contact(callee.peer),
        body=callee.media.local_sdp(),
        content_type="application/sdp",
    )
    # request(): the 200 comes once the caller's leg has taken the UPDATE in.
    answered = await callee_ua.request(update, callee.peer)
    assert answered is not None and answered.status == 200
    assert len(caller_heard) == 2
    # An UPDATE with another Contact is a target refresh (RFC 3311): heard with the new target.
    for method, port in (("UPDATE", 5999), ("INVITE", 5998)):  # and so is a re-INVITE's
        refresh = callee.dialog.create_request(
            method,
            via=callee_ua.endpoint.new_via(callee.peer),
            contact=NameAddr(None, sip_uri("moved", port), {}),
            body=callee.media.local_sdp(),
            content_type="application/sdp",
        )
        answered = await callee_ua.request(refresh, callee.peer)
        assert answered is not None and answered.status == 200
        if method == "INVITE":  # the 2xx to a re-INVITE wants its ACK (RFC 3261 13.2.2.4)
            ack = callee.dialog.create_ack(
                refresh.cseq.seq, via=callee_ua.endpoint.new_via(callee.peer)
            )
            callee_ua.endpoint.send_stateless(ack, callee.peer)
        assert caller_heard[-1][1].remote_target == f"sip:moved@127.0.0.1:{port}"
    assert len(caller_heard) == 4
    assert callee.dialog.local_seq == 3  # the callee's three requests

    # Hanging up: both legs are heard ending.
    await caller.hangup()
    await asyncio.wait_for(callee.ended, 5)
    assert caller_heard[-1][0] is LegState.ENDED and callee_heard[-1][0] is LegState.ENDED
    # Confirmed, then ended; the caller's INFO changed nothing here. The requests this test
    # sent in the callee's dialog behind the leg's back moved its CSeq: whenever the leg hears
    # of it (a response routed to it), the listener is told the new number, never an older one.
    seqs = [record.local_seq for _, record in callee_heard]
    assert callee_heard[0][0] is LegState.ANSWERING and seqs[0] == 0 and seqs[-1] == 3
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(state is LegState.CONNECTED for state, _ in callee_heard[1:-1])


async def test_a_leg_that_never_answered_is_never_heard(
    user_agents: tuple[UserAgent, UserAgent],
) -> None:
    caller_ua, callee_ua = user_agents
    heard = listen(caller_ua)
    callee_heard = listen(callee_ua)
    callee_ua.on_incoming = lambda call: call.reject(486)
    leg = await dial(caller_ua, callee_ua, "busy")
    await asyncio.wait_for(leg.ended, 5)
    assert leg.final_status == 486
    assert heard == [] and callee_heard == []


async def test_request_waits_for_the_final_response_or_timer_f(
    user_agents: tuple[UserAgent, UserAgent],
) -> None:
    caller_ua, callee_ua = user_agents

    def options(port: int) -> SipRequest:
        headers = Headers()
        headers.add("Via", str(caller_ua.endpoint.new_via(("udp", "127.0.0.1", port))))
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<sip:probe@127.0.0.1:{caller_ua.endpoint.port}>;tag=p1")
        headers.add("To", f"<sip:127.0.0.1:{port}>")
        headers.add("Call-ID", f"probe-{port}@127.0.0.1")
        headers.add("CSeq", "1 OPTIONS")
        return SipRequest(method="OPTIONS", uri=sip_uri(None, port), headers=headers)

    port = callee_ua.endpoint.port
    response = await caller_ua.request(options(port), ("udp", "127.0.0.1", port))
    assert response is not None and response.status == 200
    # Nobody answers on a socket that only listens: the UDP retransmissions go unheard and
    # Timer F (64 * T1 = 3.2 s here) ends it.
    loop = asyncio.get_running_loop()
    silent, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, ("127.0.0.1", 0))
    try:
        dead = silent.get_extra_info("sockname")[1]
        started = loop.time()
        assert await caller_ua.request(options(dead), ("udp", "127.0.0.1", dead)) is None
        assert loop.time() - started >= 3.0
    finally:
        silent.close()
    assert not caller_ua._waiting
