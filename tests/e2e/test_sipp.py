"""SIPp through the engine: authenticated UAC load into a static (non-registering) extension."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callcenter.runtime import Engine, start_engine
from sip_test_env.ports import free_port
from sip_test_env.sipp import extension_csv, run_sipp, start_sipp_uas

from .conftest import calls_settled, engine_config

pytestmark = pytest.mark.peers


@pytest.fixture
async def uas_port() -> int:
    return free_port("both")


@pytest.fixture
async def trunk_engine(pg_url: str, tmp_path: Path, uas_port: int) -> AsyncIterator[Engine]:
    config = engine_config(static={"150": f"sip:150@127.0.0.1:{uas_port}"})
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        yield engine
    finally:
        await engine.stop()


# 20 calls a second with 1 s calls: the engine must answer each ACK within T1 (500 ms), which
# the CPU load of parallel workers can delay (a 200 OK retransmitted to a finished SIPp call).
@pytest.mark.alone
async def test_200_calls_at_20_cps_through_the_engine(
    trunk_engine: Engine, uas_port: int, tmp_path: Path, db
) -> None:
    csv = extension_csv(tmp_path / "calls.csv", [("101", "150", "pass101")])
    async with start_sipp_uas("uas.xml", port=uas_port, workdir=tmp_path / "uas"):
        result = await run_sipp(
            "uac_auth.xml",
            f"127.0.0.1:{trunk_engine.sip_port}",
            calls=200,
            rate=20,
            inf_csv=csv,
            duration_ms=1000,
            timeout=60,
            workdir=tmp_path / "uac",
        )
    assert result.ok, result.summary()
    assert result.successful == 200
    # Each call's first INVITE was challenged statelessly: no transaction, no call for it.
    assert trunk_engine.ua.endpoint.challenged >= 200
    await calls_settled(trunk_engine, timeout=10)
    answered = await db.fetchval(
        "SELECT count(*) FROM calls WHERE from_number = '101' AND to_number = '150'"
        " AND outcome = 'answered'"
        " AND started_at > now() - interval '5 minutes'"
    )
    assert answered >= 200


async def test_cancel_and_busy(trunk_engine: Engine, uas_port: int, tmp_path: Path) -> None:
    csv = extension_csv(tmp_path / "calls.csv", [("102", "150", "pass102")])
    target = f"127.0.0.1:{trunk_engine.sip_port}"
    async with start_sipp_uas("uas_ring.xml", port=uas_port, workdir=tmp_path / "uas-ring"):
        cancelled = await run_sipp(
            "uac_cancel.xml", target, calls=3, rate=5, inf_csv=csv, workdir=tmp_path / "cancel"
        )
    assert cancelled.ok, cancelled.summary()
    async with start_sipp_uas("uas_busy.xml", port=uas_port, workdir=tmp_path / "uas-busy"):
        busy = await run_sipp(
            "uac_busy.xml", target, calls=3, rate=5, inf_csv=csv, workdir=tmp_path / "busy"
        )
    assert busy.ok, busy.summary()
    assert not trunk_engine.switchboard.active
