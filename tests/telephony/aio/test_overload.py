"""Overload control over real sockets: an event loop held up for real (a blocking hog) makes
the endpoint answer new INVITEs 503 with Retry-After at once, while a call in progress still
hangs up normally; once the loop keeps up again, new calls are taken."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from telephony.aio import UserAgent
from telephony.call import Answered, Ended
from telephony.sip import OverloadConfig, OverloadLevel

from .conftest import answered_call, dial, started_user_agents


@pytest.fixture
async def agents() -> AsyncIterator[tuple[UserAgent, UserAgent]]:
    # min_rate 0: no new call is admitted until the loop keeps up again (a real engine takes a
    # trickle at 5/s while it sheds).
    overload = OverloadConfig(shed_lag=0.1, drop_lag=5.0, recover_after=0.5, min_rate=0.0)
    async with started_user_agents(overload=overload) as uas:
        yield uas


def reached(ua: UserAgent, level: OverloadLevel) -> asyncio.Future[None]:
    done = asyncio.get_running_loop().create_future()

    def changed(now: OverloadLevel) -> None:
        if now is level and not done.done():
            done.set_result(None)

    ua.endpoint.overload.listeners.append(changed)
    return done


def hold_up_until(behind: asyncio.Future[None]) -> None:
    """Real work that holds the loop up, as a flood of setups would, until `behind` is set."""
    loop = asyncio.get_running_loop()

    def hog() -> None:
        time.sleep(0.25)
        if not behind.done():
            loop.call_soon(hog)

    loop.call_soon(hog)


async def test_new_calls_get_503_while_behind_and_calls_in_progress_go_on(
    agents: tuple[UserAgent, UserAgent],
) -> None:
    caller_ua, callee_ua = agents
    loop = asyncio.get_running_loop()
    ongoing, ongoing_callee = await answered_call(caller_ua, callee_ua)

    behind = reached(callee_ua, OverloadLevel.SHEDDING)

    hold_up_until(behind)
    await asyncio.wait_for(behind, 10)
    recovered = reached(callee_ua, OverloadLevel.NORMAL)

    refused = await dial(caller_ua, callee_ua, "102")
    ended = await asyncio.wait_for(refused.next_event(), 5)
    assert isinstance(ended, Ended) and ended.sip_status == 503
    assert callee_ua.endpoint.responses_sent.get(503, 0) >= 1
    assert callee_ua.endpoint.overload.shed >= 1 and not [
        c for c in callee_ua.calls.values() if c.call_id == refused.call_id
    ]
    # The call in progress hangs up as ever: a BYE is never shed.
    await ongoing.hangup()
    bye = await asyncio.wait_for(ongoing_callee.next_event(), 5)
    assert isinstance(bye, Ended) and bye.reason == "remote-bye"

    await asyncio.wait_for(recovered, 10)
    incoming: asyncio.Future[None] = loop.create_future()

    async def answer(call: object) -> None:
        await call.answer()  # type: ignore[attr-defined]
        incoming.set_result(None)

    callee_ua.on_incoming = answer
    taken = await dial(caller_ua, callee_ua, "103")
    await asyncio.wait_for(incoming, 5)
    assert isinstance(await asyncio.wait_for(taken.next_event(), 5), Answered)
    await taken.hangup()


async def test_a_retransmitted_invite_of_an_answered_call_is_not_refused_while_behind(
    agents: tuple[UserAgent, UserAgent],
) -> None:
    # The caller's INVITE crossed our 200 (or the 200 was lost) while the loop fell behind: the
    # retransmission belongs to the answered call's transaction, which repeats the 200. A 503
    # would tell the caller the call failed while the engine bridges it to an agent.
    caller_ua, callee_ua = agents
    loop = asyncio.get_running_loop()
    caller, callee = await answered_call(caller_ua, callee_ua)
    behind = reached(callee_ua, OverloadLevel.SHEDDING)

    hold_up_until(behind)
    await asyncio.wait_for(behind, 10)
    endpoint = callee_ua.endpoint
    shed, sent_503 = endpoint.overload.shed, endpoint.responses_sent.get(503, 0)
    retransmission = bytes(callee.invite)
    replies: asyncio.Queue[bytes] = asyncio.Queue()

    class Probe(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            replies.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(Probe, local_addr=("127.0.0.1", 0))
    try:
        here = transport.get_extra_info("sockname")[1]
        transport.sendto(retransmission, ("127.0.0.1", endpoint.port))
        # An OPTIONS right behind it: its answer means the retransmission was handled.
        options = (
            f"OPTIONS sip:ivr@127.0.0.1:{endpoint.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{here};branch=z9hG4bKprobe1\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p1\r\n"
            "To: <sip:ivr@127.0.0.1>\r\nCall-ID: probe-1\r\nCSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        transport.sendto(options.encode(), ("127.0.0.1", endpoint.port))
        reply = await asyncio.wait_for(replies.get(), 5)
        assert reply.startswith(b"SIP/2.0 200 ")
    finally:
        transport.close()
    # Absorbed by the answered call's transaction: not refused, not a new call.
    assert (endpoint.overload.shed, endpoint.responses_sent.get(503, 0)) == (shed, sent_503)
    assert endpoint.overload.level is not OverloadLevel.NORMAL  # it was behind all along
    # A new call at the same moment is still refused.
    refused = await dial(caller_ua, callee_ua, "104")
    ended = await asyncio.wait_for(refused.next_event(), 5)
    assert isinstance(ended, Ended) and ended.sip_status == 503
    await caller.hangup()


async def test_datagrams_waiting_in_the_socket_are_overload_while_the_loop_keeps_time(
    agents: tuple[UserAgent, UserAgent],
) -> None:
    # A loop reads a bounded batch per turn, so its timers can keep time while the socket's
    # buffer fills: the wait of each datagram in the kernel counts as the engine being behind.
    caller_ua, callee_ua = agents
    loop = asyncio.get_running_loop()
    endpoint = callee_ua.endpoint
    udp = endpoint._udp
    assert udp is not None and udp.stamped
    behind = reached(callee_ua, OverloadLevel.SHEDDING)
    loop.remove_reader(udp.sock.fileno())  # the engine reads nothing: datagrams queue up
    first = await dial(caller_ua, callee_ua, "102")
    await asyncio.sleep(1.0)  # the INVITE (and its retransmissions) wait in the kernel
    assert endpoint.overload.level is OverloadLevel.NORMAL  # the loop itself is on time
    loop.add_reader(udp.sock.fileno(), udp._readable)
    await asyncio.wait_for(behind, 5)

    refused = await dial(caller_ua, callee_ua, "103")
    ended = await asyncio.wait_for(refused.next_event(), 5)
    assert isinstance(ended, Ended) and ended.sip_status == 503
    await first.hangup()
