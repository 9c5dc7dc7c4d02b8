"""Answering-machine detection in a running campaign: a voicemail box whose greeting is short and
whose beep comes late gets the message after the beep; a person who answers with a long
greeting reaches an agent. The verdicts are stored per attempt and shown in the results."""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from callcenter.runtime import Engine
from dialer import Campaign, NewLead
from sip_test_env.audio import (
    first_tone_time,
    normalized_xcorr,
    read_wav,
    write_tone_wav,
    write_wav,
)
from sip_test_env.baresip import BaresipPeer
from sip_test_env.scripted_carrier import Customer, ScriptedCarrier
from sip_test_env.voices import person_wav, speak
from telephony.media import dbfs, tone_samples

from .conftest import api_url, bearer, registrar_of
from .test_campaign import (
    calling_hours_around_now,
    engine_on_carrier,
    run_to_the_end,
    store_leads,
)
from .test_metrics import parse

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng for voices"),
]

ROOT = Path(__file__).resolve().parents[2]
PROMPT = ROOT / "callcenter" / "prompts" / "we-will-call-you-back.wav"
BOX = "12125550301"
KAREN = "12125550302"
BEEP_AFTER = 1.2  # seconds of silence between the box's greeting and its beep


def _message_onset(record) -> float | None:  # type: ignore[no-untyped-def]
    """Loop time of the first frame the box heard that is louder than line silence."""
    for frame, at in zip(record.heard, record.heard_at, strict=True):
        if dbfs(frame) > -40.0:
            return at
    return None


async def test_short_greeting_late_beep_gets_the_message_after_it_and_long_hello_gets_an_agent(
    pg_url: str, tmp_path: Path
) -> None:
    greeting = speak("Message.", tmp_path / "vm.wav", speed=260)
    _, said, _ = read_wav(greeting)
    assert said.size / 8000 <= 0.55  # half a second: it passes for a person's "Hello?"
    # Eleven words at a brisk telephone pace (espeak-ng's default 175 wpm drags them to 3.9 s).
    long_hello = speak(
        "Hello, this is Karen from accounts, how can I help you?",
        tmp_path / "karen.wav",
        speed=230,
    )
    karen = person_wav(tmp_path / "karen-call.wav", long_hello, pause=4.0)
    customers = {
        BOX: Customer("machine", answer_after=0.5, speech=greeting, beep_after=BEEP_AFTER,
                      hang_up_after=25),
        KAREN: Customer("human", answer_after=0.5, speech=karen, hang_up_after=12),
    }  # fmt: skip
    run = await _run_campaign(
        pg_url, tmp_path, customers, amd_unsure="connect",
        # The agent says Karen was a machine after all: AMD's quality shows it.
        while_running=lambda engine, campaign: _agent_disposes(engine, campaign, f"+{KAREN}"),
    )  # fmt: skip
    outcomes, results, carrier, campaign = run.outcomes, run.results, run.carrier, run.campaign
    summary = run.summary
    assert outcomes == {f"+{BOX}": "answered-machine", f"+{KAREN}": "answered-human"}
    # The box: the message began after its beep had ended, and it is the campaign's message.
    box = carrier.record(BOX)
    assert box.beep_ended_at is not None
    onset = _message_onset(box)
    assert onset is not None
    assert box.beep_ended_at - 0.05 <= onset <= box.beep_ended_at + 1.5
    _, prompt, _ = read_wav(PROMPT)
    heard = zip(box.heard, box.heard_at, strict=True)
    after = np.concatenate([frame for frame, at in heard if at >= box.beep_ended_at - 0.05])
    assert normalized_xcorr(after, prompt)[0] > 0.8  # all of it, after the beep
    # Karen reached the agent: she heard the agent's tone.
    assert first_tone_time(carrier.record(KAREN).heard_samples(), 1000, 8000) is not None
    # The verdicts, with confidence and decision time, are stored and shown.
    assert results[f"+{BOX}"]["amd_verdict"] == "machine"
    assert results[f"+{BOX}"]["amd_reason"] == "beep"
    assert results[f"+{KAREN}"]["amd_verdict"] == "human"
    for row in results.values():
        assert 0.5 <= row["amd_confidence"] <= 1.0
        assert 0.0 < row["amd_seconds"] <= campaign.amd_max_seconds + 1.5
    assert (summary["machine"], summary["human"], summary["verdicts"]) == (1, 1, 2)
    assert summary["quality"]["judged"] == 0  # no agent had said anything yet
    metrics, amd_summary = run.extra
    labels = f'{{campaign="{campaign.name}",id="{campaign.id}"}}'
    assert metrics[f"callcenter_campaign_amd_false_person_rate{labels}"] == 1.0
    assert metrics[f"callcenter_campaign_amd_judged{labels}"] == 1.0
    assert f"callcenter_campaign_amd_false_machine_rate{labels}" not in metrics  # none heard
    verdict = f'{{campaign="{campaign.name}",id="{campaign.id}",verdict="machine"}}'
    assert metrics[f"callcenter_campaign_amd_verdicts{verdict}"] == 1.0
    assert amd_summary["quality"]["false_person"] == 1


async def _agent_disposes(engine, campaign, phone: str):  # type: ignore[no-untyped-def]
    """The agent marks `phone`'s call answering-machine through the API; then /metrics and the
    campaign's amd_summary."""
    # This campaign's call (the shared database holds other tests' calls to the same number).
    row = await engine.database.pool.fetchval(
        "SELECT id FROM calls WHERE to_number = $1 AND campaign_id = $2", phone, campaign.id
    )
    async with aiohttp.ClientSession(headers=bearer()) as http:
        url = api_url(engine, f"/calls/{row}/disposition")
        async with http.post(url, json={"disposition": "answering-machine"}) as r:
            assert r.status == 200, await r.text()
        async with http.get(api_url(engine, f"/campaigns/{campaign.id}")) as r:
            assert r.status == 200
            amd_summary = (await r.json())["amd_summary"]
        async with http.get(api_url(engine, "/metrics")) as r:
            assert r.status == 200
            metrics = parse(await r.text())
    return metrics, amd_summary


@dataclass
class _Run:
    outcomes: dict[str, str]
    """Lead outcomes by phone."""
    results: dict[str, dict[str, Any]]
    """AMD results by phone."""
    summary: dict[str, Any]
    """The campaign's amd_summary at its end (before `while_running`)."""
    carrier: ScriptedCarrier
    campaign: Any
    extra: Any = None
    """What `while_running` returned."""


async def _run_campaign(
    pg_url: str,
    tmp_path: Path,
    customers: dict[str, Customer],
    *,
    while_running: Callable[[Engine, Any], Awaitable[Any]] | None = None,
    **settings: Any,
) -> _Run:
    """Run a one-agent power campaign over `customers` to its end (then `while_running`,
    before the campaign stops)."""
    opens, closes = calling_hours_around_now()
    async with ScriptedCarrier(customers) as carrier:
        engine, store = await engine_on_carrier(carrier, pg_url, tmp_path)
        now = datetime.now(UTC)
        campaign = await store.create_campaign(
            Campaign(
                name=f"amd-{now.timestamp():.3f}", trunk="carrier", agents=("101",),
                mode="power", ratio=3.0, max_attempts=1, window_start=opens,
                window_end=closes, tz_default="UTC", max_ring_seconds=15,
                voicemail_prompt=str(PROMPT), **settings,
            ),
            now=now,
        )  # fmt: skip
        await store.import_leads(campaign.id, [NewLead(f"+{n}", "UTC") for n in customers], now=now)
        try:
            async with BaresipPeer(
                "101", workdir=tmp_path, registrar=registrar_of(engine), password="pass101",
                answermode="auto", audio_source=write_tone_wav(tmp_path / "a.wav", 1000, 60.0),
            ) as agent:  # fmt: skip
                await agent.wait_registered()
                await store.set_state(campaign.id, "start", now=datetime.now(UTC))
                await run_to_the_end(store, campaign.id, left=0, timeout=90)
                summary = await store.amd_summary(campaign.id)
                results = await store.amd_results(campaign.id)
                extra = None if while_running is None else await while_running(engine, campaign)
                await store.set_state(campaign.id, "stop", now=datetime.now(UTC))
        finally:
            await engine.stop()
    outcomes = {lead["phone"]: lead["outcome"] for lead in await store_leads(pg_url, campaign.id)}
    by_phone = {str(r["phone"]): r for r in results}
    return _Run(outcomes, by_phone, summary, carrier, campaign, extra)


async def test_sit_fax_and_an_unsure_silence_with_unsure_hang_up(
    pg_url: str, tmp_path: Path
) -> None:
    """SIT ends the attempt as failed, a fax as rejected; a silent answer is unsure, which
    this campaign hangs up on (no agent, no message)."""
    announcement = read_wav(speak("The number you have dialed is not in service.",
                                  tmp_path / "sit-words.wav"))[1]  # fmt: skip
    tones = [(913.8, 0.274), (1370.6, 0.274), (1776.7, 0.38)]  # special information tones
    sit = np.concatenate(
        [*(tone_samples([hz], s, level_dbfs=-14.0) for hz, s in tones), announcement]
    )
    fax = tone_samples([2100.0], 3.0, level_dbfs=-14.0)
    customers = {
        "12125550401": Customer("human", speech=write_wav(tmp_path / "sit.wav", sit)),
        "12125550402": Customer("human", speech=write_wav(tmp_path / "fax.wav", fax)),
        "12125550403": Customer("human", speech=None, hang_up_after=12),
    }
    run = await _run_campaign(
        pg_url, tmp_path, customers, amd_unsure="hangup", amd_initial_silence_seconds=2.0
    )
    outcomes, results = run.outcomes, run.results
    assert outcomes == {
        "+12125550401": "failed",
        "+12125550402": "rejected",
        "+12125550403": "answered-machine",
    }
    assert {p: (r["amd_verdict"], r["amd_reason"]) for p, r in results.items()} == {
        "+12125550401": ("sit", "sit-tones"),
        "+12125550402": ("fax", "fax-tone"),
        "+12125550403": ("unsure", "initial-silence"),
    }
    assert results["+12125550403"]["amd_seconds"] == pytest.approx(2.0, abs=0.1)


async def test_without_amd_every_answer_reaches_an_agent(pg_url: str, tmp_path: Path) -> None:
    greeting = speak(
        "Hi, you have reached John. Please leave a message after the tone.", tmp_path / "vm.wav"
    )
    customers = {"12125550501": Customer("machine", speech=greeting, hang_up_after=8)}
    run = await _run_campaign(pg_url, tmp_path, customers, amd=False)
    assert run.outcomes == {"+12125550501": "answered-human"}
    assert run.results == {}  # no verdict stored
