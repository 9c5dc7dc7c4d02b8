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
    overload = OverloadConfig(shed_lag=0.1, drop_lag=5.0, recover_after=0.5)
    async with started_user_agents(overload=overload) as uas:
        yield uas


def reached(ua: UserAgent, level: OverloadLevel) -> asyncio.Future[None]:
    done = asyncio.get_running_loop().create_future()

    def changed(now: OverloadLevel) -> None:
        if now is level and not done.done():
            done.set_result(None)

    ua.endpoint.overload.listeners.append(changed)
    return done


async def test_new_calls_get_503_while_behind_and_calls_in_progress_go_on(
    agents: tuple[UserAgent, UserAgent],
) -> None:
    caller_ua, callee_ua = agents
    loop = asyncio.get_running_loop()
    ongoing, ongoing_callee = await answered_call(caller_ua, callee_ua)

    behind = reached(callee_ua, OverloadLevel.SHEDDING)

    def hog() -> None:  # real work that holds the loop up, as a flood of setups would
        time.sleep(0.25)
        if not behind.done():
            loop.call_soon(hog)

    loop.call_soon(hog)
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
