"""Long-lived event streams (server-sent events: the dashboard's and each agent's) end when the
engine stops, instead of when their next keepalive finds the client gone: a stream waits on
its queue for up to KEEPALIVE seconds, and the HTTP runner's cleanup would wait for it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from aiohttp import web

STREAMS = web.AppKey("streams", set[asyncio.Task[object]])


def install(app: web.Application) -> None:
    app[STREAMS] = set()
    app.on_shutdown.append(_close)


@contextlib.contextmanager
def held(request: web.Request) -> Iterator[None]:
    """The handler's task streams until the block ends; a stopping engine cancels it (the
    handlers take CancelledError as the end of the stream)."""
    task = asyncio.current_task()
    streams = request.app[STREAMS]
    if task is not None:
        streams.add(task)
    try:
        yield
    finally:
        if task is not None:
            streams.discard(task)


async def _close(app: web.Application) -> None:
    streams: set[asyncio.Task[object]] = app[STREAMS]
    for task in list(streams):
        task.cancel()
