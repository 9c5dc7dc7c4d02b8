"""A call floor for the pickup and monitor tests: a carrier trunk with two numbers (one rings
agent 103, one the ring group of 103 and 105), pickup groups, supervisor 191 coaching 103."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from callcenter.runtime import Engine, start_engine
from pbx import AgentState, BridgedCall
from pbx.events import PresenceChanged
from sip_test_env import carrier
from sip_test_env.baresip import BaresipPeer
from sip_test_env.ports import free_port

from .conftest import calls_settled, engine_config, registrar_of

DID_103 = "+12025550103"
DID_GROUP = "+12025550110"
CUSTOMER = "+12125559876"
SUPERVISOR_KEY = "test-supervisor-key-01"


def floor_config(*, beep: bool = False, outbound: str | None = None, extra: str = "") -> str:
    return (
        extra
        + f"""
[[trunks]]
name = "carrier"
allow_from = ["{carrier.CARRIER_IP}"]
outbound = "{outbound or f"127.0.0.1:{free_port('both')}"}"

[[ring_groups]]
name = "support"
members = ["103", "105"]
ring_timeout = 20

[[dids]]
number = "{DID_103}"
trunk = "carrier"
route = "agent:103"

[[dids]]
number = "{DID_GROUP}"
trunk = "carrier"
route = "ringgroup:support"

# 104 is in both groups; 102 in neither.
[[pickup_groups]]
name = "floor"
members = ["103", "104"]

[[pickup_groups]]
name = "back-office"
members = ["104", "105"]

[[accounts]]
extension = "191"
password = "pass191"
role = "supervisor"
team = ["103", "104"]

[[api_keys]]
name = "supervisor"
key = "{SUPERVISOR_KEY}"
role = "supervisor"

[monitor]
beep = {"true" if beep else "false"}
"""
    )


@asynccontextmanager
async def floor_engine(
    pg_url: str,
    tmp_path: Path,
    *,
    beep: bool = False,
    outbound: str | None = None,
    extra: str = "",
    crm: str = "",
) -> AsyncIterator[Engine]:
    """The engine; `outbound` is where calls to customers go (the carrier's HOST:PORT);
    `extra` is more configuration (tables such as [[queues]]), `crm` more of [crm]."""
    config = engine_config(extra=floor_config(beep=beep, outbound=outbound, extra=extra), crm=crm)
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        yield engine
    finally:
        await engine.stop()


def customer(tmp_path: Path, tone: Path | None = None, **kwargs: Any) -> BaresipPeer:
    if not kwargs:
        return carrier.customer(CUSTOMER, workdir=tmp_path, audio_source=tone)
    return BaresipPeer(CUSTOMER, workdir=tmp_path, host=carrier.CARRIER_IP, audio_source=tone,
                       name=f"customer-{CUSTOMER}", **kwargs)  # fmt: skip


def phone(ext: str, engine: Engine, tmp_path: Path, tone: Path | None = None) -> BaresipPeer:
    return BaresipPeer(ext, workdir=tmp_path, registrar=registrar_of(engine),
                       password=f"pass{ext}", audio_source=tone)  # fmt: skip


async def call_in(engine: Engine, caller: BaresipPeer, did: str = DID_103) -> None:
    await caller.dial(carrier.did_uri(did, engine.sip_port))


async def wait_for(predicate, timeout: float = 5.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def available(engine: Engine, extension: str, timeout: float = 10.0) -> None:
    """Until `extension` may take calls again (its wrap-up over), on the PBX's presence events;
    a timeout names the state it was left in."""
    presence = engine.switchboard.presence
    loop = asyncio.get_running_loop()
    freed = asyncio.Event()

    def changed(event: PresenceChanged) -> None:
        if event.extension == extension and event.state is AgentState.AVAILABLE:
            freed.set()

    undo = engine.switchboard.events.subscribe(PresenceChanged, changed)
    try:
        if not presence.available(extension, now=loop.time()):
            try:
                await asyncio.wait_for(freed.wait(), timeout)
            except TimeoutError:
                state = presence.state(extension, now=loop.time())
                raise AssertionError(
                    f"{extension} still {state.value}, busy: {engine.switchboard.busy(extension)}"
                ) from None
    finally:
        undo()


def bridged_call(engine: Engine) -> BridgedCall:
    calls = [b for b in engine.switchboard.active.values() if b.b is not None]
    assert len(calls) == 1, engine.switchboard.active
    return calls[0]


async def idle(engine: Engine) -> None:
    await calls_settled(engine)
    await wait_for(lambda: not engine.switchboard.monitors, what="monitors gone")
