"""BLF (issue 14, part 5): a SIPp subscriber watches extension 102 with the dialog event
package while baresip 101 calls it; the NOTIFYs say idle, early (ringing), confirmed and
terminated, the early and confirmed ones with 101 as the remote identity, and the
subscription ends with an in-dialog unsubscribe. A pickup by the BLF key (**102 from 103)
takes the ringing call. With BLF groups, an extension outside 102's group is refused (403),
and OPTIONS answers say Allow-Events: dialog. A carrier caller without a number stays
anonymous on the keys."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callcenter.runtime import Engine, start_engine
from pbx.blf import WITHHELD, LineState
from sip_test_env import carrier
from sip_test_env.baresip import BaresipPeer
from sip_test_env.sipp import extension_csv, run_sipp

from .conftest import engine_config, registrar_of

pytestmark = pytest.mark.peers


def phone(engine: Engine, ext: str, workdir: Path) -> BaresipPeer:
    return BaresipPeer(
        ext, workdir=workdir / ext, registrar=registrar_of(engine), password=f"pass{ext}"
    )


async def _watched(engine: Engine, extension: str, timeout: float = 5.0) -> None:
    """Until a subscription to `extension` is in place (its first NOTIFY sent)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not engine.switchboard.blf.watchers.watching(extension):
        assert loop.time() < deadline, "no subscription"
        await asyncio.sleep(0.02)


async def test_a_subscriber_sees_ringing_confirmed_and_idle(engine: Engine, tmp_path: Path) -> None:
    users = extension_csv(tmp_path / "users.csv", [("103", "102", "pass103")])
    subscriber = asyncio.create_task(
        run_sipp("subscribe_dialog.xml", registrar_of(engine), inf_csv=users,
                 workdir=tmp_path / "sipp", timeout=30)
    )  # fmt: skip
    async with phone(engine, "101", tmp_path) as a101, phone(engine, "102", tmp_path) as a102:
        await a101.wait_registered()
        await a102.wait_registered()
        await _watched(engine, "102")
        await a101.dial("102")
        await a102.wait_event("CALL_INCOMING", timeout=5)
        await a102.accept()
        await a101.wait_event("CALL_ESTABLISHED", timeout=5)
        await a102.wait_event("CALL_ESTABLISHED", timeout=5)
        # Our INVITE to 102 says what the engine takes subscriptions for (RFC 6665 4.4.4).
        bridged = next(iter(engine.switchboard.active.values()))
        assert bridged.b is not None
        assert bridged.b.invite.headers.get("Allow-Events") == "dialog"
        await a101.hangup()
        await a102.wait_event("CALL_CLOSED", timeout=5)
        result = await subscriber
    assert result.ok and result.successful == 1, result.summary()
    assert len(engine.switchboard.blf.watchers) == 0  # unsubscribed


@pytest.fixture
async def sales_floor(pg_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    """The test engine with 101-103 in one pickup group (what a BLF key's pickup needs)."""
    config = engine_config(
        extra='[[pickup_groups]]\nname = "sales"\nmembers = ["101", "102", "103"]\n'
    )
    running = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        yield running
    finally:
        await running.stop()


async def test_the_blf_key_picks_up_the_ringing_call(sales_floor: Engine, tmp_path: Path) -> None:
    engine = sales_floor
    async with (
        phone(engine, "101", tmp_path) as a101,
        phone(engine, "102", tmp_path) as a102,
        phone(engine, "103", tmp_path) as a103,
    ):
        for agent in (a101, a102, a103):
            await agent.wait_registered()
        await a101.dial("102")
        await a102.wait_event("CALL_INCOMING", timeout=5)
        state, direction = engine.switchboard.blf.line_state("102")
        assert (state.value, direction) == ("early", "recipient")
        await a103.dial("**102")
        await a101.wait_event("CALL_ESTABLISHED", timeout=5)
        await a103.wait_event("CALL_ESTABLISHED", timeout=5)
        await a102.wait_event("CALL_CLOSED", timeout=5)
        assert engine.switchboard.blf.line_state("103")[0].value == "confirmed"
        assert engine.switchboard.blf.line_state("102")[0].value == "terminated"
        await a101.hangup()
        await a103.wait_event("CALL_CLOSED", timeout=5)


async def test_the_access_list_refuses_a_watcher_outside_the_group(
    pg_url: str, tmp_path: Path
) -> None:
    config = engine_config(
        extra='[[blf_groups]]\nname = "sales"\nmembers = ["101", "102"]\nwatchers = ["190"]\n'
    )
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        users = extension_csv(tmp_path / "users.csv", [("103", "102", "pass103")])
        result = await run_sipp("subscribe_refused.xml", registrar_of(engine), inf_csv=users,
                                workdir=tmp_path / "sipp", timeout=20)  # fmt: skip
        assert result.ok and result.successful == 1, result.summary()
        assert len(engine.switchboard.blf.watchers) == 0
        assert engine.switchboard.blf.policy.allows("190", "102")
    finally:
        await engine.stop()


async def test_a_withheld_caller_stays_withheld_on_the_colleagues_keys(
    pg_url: str, tmp_path: Path
) -> None:
    """A carrier call without a number (From: anonymous) rings 102: the line reads early with
    the anonymous identity, never a number; answered, confirmed with the same."""
    did = "+12125550123"
    config = engine_config(
        extra=f'[[trunks]]\nname = "carrier"\nallow_from = ["{carrier.CARRIER_IP}"]\n\n'
        f'[[dids]]\nnumber = "{did}"\ntrunk = "carrier"\nroute = "agent:102"\n'
    )
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        async with (
            phone(engine, "102", tmp_path) as a102,
            carrier.customer("anonymous", workdir=tmp_path / "customer") as caller,
        ):
            await a102.wait_registered()
            await caller.dial(carrier.did_uri(did, engine.sip_port))
            await a102.wait_event("CALL_INCOMING", timeout=5)
            assert engine.switchboard.blf.line("102") == (LineState.EARLY, "recipient", WITHHELD)
            await a102.accept()
            await caller.wait_event("CALL_ESTABLISHED", timeout=5)
            state = engine.switchboard.blf.line("102")
            assert state == (LineState.CONFIRMED, "recipient", WITHHELD)
            await caller.hangup()
            await a102.wait_event("CALL_CLOSED", timeout=5)
    finally:
        await engine.stop()
