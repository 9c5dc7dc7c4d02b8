"""A peer that cannot be reached at all (TCP connect refused) fails the call at once as a 503
(RFC 3261 8.1.3.1), instead of retrying into a closed port until Timer B."""

from __future__ import annotations

import asyncio

from sip_test_env.ports import free_port
from telephony.aio import UserAgent
from telephony.call import Ended
from telephony.sip import NameAddr

from .conftest import sip_uri


async def test_a_refused_tcp_connect_ends_the_leg_as_unreachable(
    user_agents: tuple[UserAgent, UserAgent],
) -> None:
    caller_ua, _ = user_agents
    closed = free_port("tcp")  # nobody listens there
    leg = await caller_ua.dial(
        sip_uri("102", closed),
        ("tcp", "127.0.0.1", closed),
        from_=NameAddr(None, sip_uri("101", caller_ua.endpoint.port), {}),
    )
    ended = await asyncio.wait_for(leg.next_event(), 2)  # Timer B would be 3.2 s here
    assert ended == Ended(leg.call_id, "unreachable", 503)
    assert leg.final_status == 503
    assert not caller_ua.calls and not list(caller_ua.endpoint.layer.transactions())
