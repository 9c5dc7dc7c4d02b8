"""Fixtures for the CRM bridge: a real aiohttp webhook receiver on 127.0.0.1 (the migrated
database per test, `crm_url` and `pool`, is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ._helpers import Receiver


@pytest.fixture
async def receiver_factory() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    made: list[Receiver] = []

    async def make(**kwargs: Any) -> Receiver:
        receiver = Receiver(**kwargs)
        made.append(receiver)
        return await receiver.start()

    try:
        yield make
    finally:
        for receiver in made:
            await receiver.stop()
