"""Live events per agent (screen pops, presence), fanned out to server-sent-event streams."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

logger = logging.getLogger(__name__)

# A slow or vanished browser must not make the engine hold its events without bound.
QUEUE_LIMIT = 100


class AgentEvents:
    def __init__(self) -> None:
        self._streams: dict[str, set[asyncio.Queue[tuple[str, dict[str, Any]]]]] = defaultdict(set)

    def subscribe(self, extension: str) -> asyncio.Queue[tuple[str, dict[str, Any]]]:
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(QUEUE_LIMIT)
        self._streams[extension].add(queue)
        return queue

    def unsubscribe(self, extension: str, queue: asyncio.Queue[tuple[str, dict[str, Any]]]) -> None:
        self._streams[extension].discard(queue)

    def publish(self, extension: str, kind: str, data: dict[str, Any]) -> None:
        for queue in list(self._streams.get(extension, ())):
            try:
                queue.put_nowait((kind, data))
            except asyncio.QueueFull:
                logger.warning("events for %s dropped: the stream is not read", extension)
