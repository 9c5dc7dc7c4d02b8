"""TaskSet: a failed task is logged with its traceback when it ends, never reported later by the
garbage collector as "Task exception was never retrieved"."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

import pytest

from telephony.aio import TaskSet
from telephony.aio.tasks import cancel_and_wait


async def _fail() -> None:
    await asyncio.sleep(0)
    raise ValueError("boom")


async def test_a_failure_is_logged_once_as_the_task_ends(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tasks = TaskSet("call")
    failed = tasks.spawn(_fail())
    ended = tasks.spawn(asyncio.sleep(0))
    assert len(tasks) == 2
    await asyncio.wait([failed, ended])
    await asyncio.sleep(0)  # the done callbacks run on the next loop turn
    assert not tasks
    del failed
    gc.collect()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert errors[0].getMessage().startswith("call task ") and errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], ValueError)
    assert not any("never retrieved" in r.getMessage() for r in caplog.records)


async def test_cancelling_is_not_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    tasks = TaskSet("engine")
    waiting = tasks.spawn(asyncio.Event().wait())
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.wait([waiting])
    await asyncio.sleep(0)
    assert not tasks
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_cancel_and_wait_absorbs_the_tasks_end_but_not_the_callers_own_cancel() -> None:
    stopping = asyncio.Event()
    let_go = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopping.set()
            await let_go.wait()  # winding down takes a while
            raise

    # Alone: the task's CancelledError is absorbed.
    task = asyncio.get_running_loop().create_task(slow_to_stop())
    await asyncio.sleep(0)
    let_go.set()
    await cancel_and_wait(task)
    assert task.cancelled()

    # A supervisor cancelled while it waits for its worker ends cancelled, not running on.
    stopping.clear()
    let_go.clear()
    worker = asyncio.get_running_loop().create_task(slow_to_stop())
    await asyncio.sleep(0)
    after: list[str] = []

    async def supervisor() -> None:
        await cancel_and_wait(worker)
        after.append("went on")  # what a swallowed cancel let happen

    outer = asyncio.get_running_loop().create_task(supervisor())
    await stopping.wait()
    outer.cancel()
    let_go.set()
    with contextlib.suppress(asyncio.CancelledError):
        await outer
    assert outer.cancelled() and worker.cancelled() and after == []
