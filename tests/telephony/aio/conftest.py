"""Two of our own UserAgents on loopback, and an answered call between them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from sip_test_env.ports import free_port, free_port_range
from telephony.aio import Call, EndpointConfig, UserAgent, UserAgentConfig
from telephony.media import Frame
from telephony.sip import NameAddr, SipUri, TimerConfig


def sip_uri(user: str | None, port: int) -> SipUri:
    return SipUri(
        scheme="sip", user=user, password=None, host="127.0.0.1", port=port, params={}, headers={}
    )


@contextlib.asynccontextmanager
async def started_user_agents(**endpoint: Any) -> AsyncIterator[tuple[UserAgent, UserAgent]]:
    """Two started UserAgents on loopback, T1 = 50 ms (Timer F is 3.2 s); `endpoint`: more
    EndpointConfig settings."""
    uas = []
    try:
        for _ in range(2):
            low, high = free_port_range(20, "udp")
            config = EndpointConfig(port=free_port("both"), timers=TimerConfig(t1=0.05), **endpoint)
            ua = UserAgent(UserAgentConfig(endpoint=config, rtp_ports=(low, high)))
            await ua.start()
            uas.append(ua)
        yield uas[0], uas[1]
    finally:
        for ua in uas:
            await ua.close()


@pytest.fixture
async def user_agents() -> AsyncIterator[tuple[UserAgent, UserAgent]]:
    """(caller's, callee's) UserAgent, started; T1 = 50 ms so that Timer F is 3.2 s."""
    async with started_user_agents() as uas:
        yield uas


async def dial(caller_ua: UserAgent, callee_ua: UserAgent, user: str) -> Call:
    """The caller's leg of a call to `user` at the callee's UserAgent."""
    port = callee_ua.endpoint.port
    return await caller_ua.dial(
        sip_uri(user, port),
        ("udp", "127.0.0.1", port),
        from_=NameAddr(None, sip_uri("15550001", caller_ua.endpoint.port), {}),
    )


async def answered_call(caller_ua: UserAgent, callee_ua: UserAgent) -> tuple[Call, Call]:
    """The caller dials the callee, who answers: (caller's leg, callee's leg), both connected."""
    incoming: asyncio.Future[Call] = asyncio.get_running_loop().create_future()

    async def answer(call: Call) -> None:
        await call.answer()
        incoming.set_result(call)

    callee_ua.on_incoming = answer
    caller = await dial(caller_ua, callee_ua, "ivr")
    callee = await asyncio.wait_for(incoming, 5)
    await asyncio.wait_for(caller.next_event(), 5)  # Answered
    await asyncio.wait_for(callee.next_event(), 5)  # Answered (ACK in)
    return caller, callee


async def heard(call: Call, count: int) -> np.ndarray:
    """The next `count` frames the far end of `call` sends, decoded."""
    frames: list[Frame] = []
    enough = asyncio.Event()

    def hear(frame: Frame) -> None:
        frames.append(frame)
        if len(frames) >= count:
            enough.set()

    stop = call.listen(hear)
    try:
        await asyncio.wait_for(enough.wait(), 5)
    finally:
        stop()
    return np.concatenate(frames)
