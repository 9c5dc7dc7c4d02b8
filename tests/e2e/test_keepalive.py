"""Keepalives to registered phones ([sip] keepalive_interval): each binding gets an OPTIONS
ping at the interval (over UDP, or over the phone's TCP connection), which a live phone
answers; a phone that vanishes (SIGKILL: no un-REGISTER) stops answering, its binding is marked
unreachable but kept, and a call to it is refused at once (480) instead of ringing nobody until
the ring timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Literal

import aiohttp
import pytest

from callcenter.runtime import Engine, start_engine
from pbx import Binding
from sip_test_env.baresip import BaresipPeer

from .conftest import api_url, bearer, engine_config, registrar_of
from .test_metrics import parse

pytestmark = pytest.mark.peers

# T1 = 50 ms: an unanswered ping times out (Timer F, 64 T1) in 3.2 s.
SETTINGS = "keepalive_interval = 0.2\nt1 = 0.05\n"


@pytest.fixture
async def pinging_engine(pg_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    engine = await start_engine(
        engine_config(extra_sip=SETTINGS), database_url=pg_url, data_dir=tmp_path
    )
    try:
        yield engine
    finally:
        await engine.stop()


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"not {what} within {timeout}s"
        await asyncio.sleep(0.05)


def binding_of(engine: Engine, extension: str) -> Binding:
    registrar = engine.switchboard.registrar
    (binding,) = registrar.lookup(extension, now=engine.ua.loop.time(), include_unreachable=True)
    return binding


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_phone_that_stops_answering_pings_is_not_rung(
    pinging_engine: Engine, tmp_path: Path, transport: Literal["udp", "tcp"]
) -> None:
    engine = pinging_engine
    keepalives = engine.keepalives
    assert keepalives is not None
    registrar = registrar_of(engine)
    async with (
        BaresipPeer(
            "101", workdir=tmp_path, registrar=registrar, password="pass101", transport=transport
        ) as agent,
        BaresipPeer("102", workdir=tmp_path, registrar=registrar, password="pass102") as caller,
    ):
        await agent.wait_registered()
        await caller.wait_registered()
        sent = keepalives.sent
        await until(lambda: keepalives.sent >= sent + 6, 5, "pinged")
        assert keepalives.unanswered == 0 and binding_of(engine, "101").reachable

        await agent.kill()  # no un-REGISTER: the binding stays until it expires
        await until(lambda: not binding_of(engine, "101").reachable, 8, "found unreachable")
        assert keepalives.unanswered >= 1
        assert binding_of(engine, "102").reachable  # the live phone still answers
        async with (
            aiohttp.ClientSession() as http,
            http.get(api_url(engine, "/api/status"), headers=bearer()) as response,
        ):
            shown = {e["extension"]: e for e in (await response.json())["extensions"]}
        assert shown["101"]["registered"] and not shown["101"]["reachable"]
        assert shown["102"]["registered"] and shown["102"]["reachable"]
        async with (
            aiohttp.ClientSession() as http,
            http.get(api_url(engine, "/metrics"), headers=bearer()) as response,
        ):
            metrics = parse(await response.text())
        assert metrics["callcenter_registrations"] == 2
        assert metrics["callcenter_registrations_unreachable"] == 1
        assert metrics["callcenter_keepalives_sent_total"] >= 6
        assert metrics["callcenter_keepalives_unanswered_total"] >= 1

        started = asyncio.get_running_loop().time()
        await caller.dial("101")
        closed = await caller.wait_event("CALL_CLOSED", timeout=5)
        assert asyncio.get_running_loop().time() - started < 3  # refused, not rung for 30 s
        assert "480" in str(closed.get("param")), closed
