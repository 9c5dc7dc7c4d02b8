"""The dialer's building blocks in the PBX: originate a customer call through the trunk, then
connect the live answer to the longest-idle free agent, or play the safe-harbor message."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from callcenter.runtime import Engine, start_engine
from pbx import CallSummary
from sip_test_env.audio import first_tone_time, normalized_xcorr, read_wav, write_tone_wav
from sip_test_env.baresip import BaresipPeer
from sip_test_env.scripted_carrier import Customer, ScriptedCarrier
from telephony.call import Answered
from telephony.media import WavSource

from .conftest import calls_settled, engine_config, registrar_of

pytestmark = pytest.mark.peers

ROOT = Path(__file__).resolve().parents[2]
SAFE_HARBOR = ROOT / "callcenter" / "prompts" / "we-will-call-you-back.wav"


async def _engine(pg_url: str, tmp_path: Path, carrier: ScriptedCarrier) -> Engine:
    host, port = carrier.address
    trunk = f'[[trunks]]\nname = "carrier"\noutbound = "{host}:{port}"\ncaller_id = "12125550100"\n'
    return await start_engine(engine_config(extra=trunk), database_url=pg_url, data_dir=tmp_path)


async def test_live_answer_reaches_a_free_agent(pg_url: str, tmp_path: Path) -> None:
    hello = write_tone_wav(tmp_path / "hello.wav", 700, 1.0)
    customers = {"12125550001": Customer("human", answer_after=0.5, speech=hello, hang_up_after=6)}
    async with ScriptedCarrier(customers) as carrier:
        engine = await _engine(pg_url, tmp_path, carrier)
        try:
            agent_tone = write_tone_wav(tmp_path / "agent.wav", 1000, 20.0)
            async with BaresipPeer("101", workdir=tmp_path, registrar=registrar_of(engine),
                                   password="pass101", answermode="auto",
                                   audio_source=agent_tone) as agent:  # fmt: skip
                await agent.wait_registered()
                leg = await engine.switchboard.originate("12125550001")
                while not isinstance(await leg.next_event(timeout=5), Answered):
                    pass
                summary = CallSummary(leg.call_id, "campaign", "12125550001", datetime.now(UTC),
                                      direction="outbound")  # fmt: skip
                bridged = engine.switchboard.connect(
                    leg, ["101", "102"], summary=summary, timeout=2.0
                )
                # The phone reports the call up when it sends its 200; the engine bridges when
                # that 200 arrives, so wait for the engine's own answer event.
                answered: asyncio.Future[str] = asyncio.get_running_loop().create_future()
                bridged.when_answered(lambda b: answered.done() or answered.set_result(b.callee))
                await agent.wait_event("CALL_ESTABLISHED", timeout=3)
                assert await asyncio.wait_for(answered, 3) == "101"
                await agent.wait_event("CALL_CLOSED", timeout=10)  # the customer hangs up
                _rate, agent_heard, _ = read_wav(agent.recorded_wav())
            customer = carrier.record("12125550001")
            assert first_tone_time(customer.heard_samples(), 1000, 8000) is not None  # the agent
            assert first_tone_time(agent_heard, 700, 8000) is not None  # the customer's "hello"
            assert summary.outcome == "answered" and summary.answered_at is not None
            assert customer.invites == 1
            await calls_settled(engine)
        finally:
            await engine.stop()


async def test_no_free_agent_gets_the_safe_harbor_message(pg_url: str, tmp_path: Path) -> None:
    customers = {"12125550002": Customer("human", answer_after=0.3, hang_up_after=15)}
    async with ScriptedCarrier(customers) as carrier:
        engine = await _engine(pg_url, tmp_path, carrier)
        try:
            leg = await engine.switchboard.originate("12125550002")
            while not isinstance(await leg.next_event(timeout=5), Answered):
                pass

            async def safe_harbor(customer_leg) -> None:
                await customer_leg.play(WavSource(SAFE_HARBOR))
                await customer_leg.hangup(reason="abandoned")

            summary = CallSummary(leg.call_id, "campaign", "12125550002", datetime.now(UTC),
                                  direction="outbound")  # fmt: skip
            engine.switchboard.connect(
                leg, ["101"], summary=summary, timeout=2.0, on_no_agent=safe_harbor
            )
            await asyncio.wait_for(leg.ended, 15)
            await calls_settled(engine)
            _, prompt, _ = read_wav(SAFE_HARBOR)
            peak, _lag = normalized_xcorr(carrier.record("12125550002").heard_samples(), prompt)
            assert peak > 0.8
            assert summary.outcome != "answered" and summary.answered_at is None
        finally:
            await engine.stop()


async def test_an_agent_who_gives_up_before_the_customer_answers_makes_no_callback_task(
    pg_url: str, tmp_path: Path, db: Any
) -> None:
    """An agent's call out that the agent hangs up while it rings is cancelled, not a missed
    call: no callback task for the customer (before, every unanswered call that was not
    between agents counted as missed, outbound ones included)."""
    customers = {"12125550003": Customer("no-answer")}
    async with ScriptedCarrier(customers) as carrier:
        engine = await _engine(pg_url, tmp_path, carrier)
        try:
            async with BaresipPeer("101", workdir=tmp_path, registrar=registrar_of(engine),
                                   password="pass101") as agent:  # fmt: skip
                await agent.wait_registered()
                await agent.dial("12125550003")
                await agent.wait_event("CALL_RINGING", timeout=5)
                await agent.hangup()
                await agent.wait_event("CALL_CLOSED", timeout=5)
            await calls_settled(engine)
        finally:
            await engine.stop()
        assert carrier.record("12125550003").invites == 1
    row = await db.fetchrow(
        "SELECT id, direction, outcome FROM calls WHERE to_number = '+12125550003'"
        " ORDER BY id DESC LIMIT 1"
    )
    assert (row["direction"], row["outcome"]) == ("outbound", "cancelled")
    assert (
        await db.fetchval("SELECT count(*) FROM tasks WHERE created_from_call = $1", row["id"]) == 0
    )
