"""DTMF across the bridge between phones that press keys differently: SIPp (an independent SIP
stack) sends its keys only as SIP INFO and baresip, the agent's phone, receives every one as
RFC 4733; the other way, a caller without telephone-event receives baresip's RFC 4733 keys as
SIP INFO. (Before, INFO digits were consumed by the engine and RFC 4733 towards a phone
without telephone-event was dropped.)"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from sip_test_env import carrier
from sip_test_env.sipp import run_sipp

from .callfloor import DID_103, floor_engine, idle, phone

pytestmark = pytest.mark.peers

SCENARIOS = Path(__file__).resolve().parent / "scenarios"


def _sipp(engine: Any, tmp_path: Path, scenario: str) -> asyncio.Task[Any]:
    return asyncio.ensure_future(
        run_sipp(
            SCENARIOS / scenario,
            f"127.0.0.1:{engine.sip_port}",
            service=DID_103,
            duration_ms=None,
            extra_args=["-i", carrier.CARRIER_IP],
            workdir=tmp_path / "sipp",
            timeout=20,
        )
    )


async def test_info_keys_from_sipp_reach_a_baresip_agent(pg_url: str, tmp_path: Path) -> None:
    async with floor_engine(pg_url, tmp_path) as engine, phone("103", engine, tmp_path) as a103:
        await a103.wait_registered()
        sipp = _sipp(engine, tmp_path, "uac_ivr_info.xml")  # INFO 1, 2, 3, then waits for BYE
        await a103.wait_event("CALL_INCOMING", timeout=5)
        await a103.accept()
        received = ""
        for _ in range(3):
            received += (await a103.wait_event("CALL_DTMF_START", timeout=5))["param"]
        assert received == "123"
        await a103.hangup()
        result = await sipp
        assert result.ok, result.summary()
        await idle(engine)


async def test_rfc4733_keys_reach_a_caller_without_telephone_event_as_info(
    pg_url: str, tmp_path: Path
) -> None:
    async with floor_engine(pg_url, tmp_path) as engine, phone("103", engine, tmp_path) as a103:
        await a103.wait_registered()
        sipp = _sipp(engine, tmp_path, "uac_info_receive.xml")  # expects INFO 4, 5, 6, then BYE
        await a103.wait_event("CALL_INCOMING", timeout=5)
        await a103.accept()
        await a103.wait_event("CALL_ESTABLISHED", timeout=5)
        await a103.send_dtmf("456")
        result = await sipp
        assert result.ok, result.summary()
        await a103.wait_event("CALL_CLOSED", timeout=5)
        await idle(engine)
