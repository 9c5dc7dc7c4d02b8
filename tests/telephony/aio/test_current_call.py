"""An incoming call's handler, and every task it starts, run in a context naming the call
(`telephony.aio.current_call`); the dialling side and the code outside keep theirs."""

from __future__ import annotations

import asyncio

from telephony.aio import Call, UserAgent, current_call

from .conftest import dial


async def test_the_handler_and_its_tasks_know_their_call(
    user_agents: tuple[UserAgent, UserAgent],
) -> None:
    caller_ua, callee_ua = user_agents
    seen: dict[str, str | None] = {}
    done = asyncio.Event()
    started: list[asyncio.Task[None]] = []

    def on_incoming(call: Call) -> None:
        seen["handler"] = current_call.get()
        seen["call"] = call.call_id

        async def later() -> None:
            await asyncio.sleep(0)
            seen["task"] = current_call.get()
            await call.answer()
            done.set()

        started.append(asyncio.get_running_loop().create_task(later()))

    callee_ua.on_incoming = on_incoming
    leg = await dial(caller_ua, callee_ua, "101")
    await asyncio.wait_for(done.wait(), 5)
    await started[0]
    assert seen["handler"] == seen["call"] == seen["task"] == leg.call_id
    # Nothing leaks out of the handler's context into the caller's or this test's.
    assert current_call.get() is None
    await leg.hangup()
