"""GET /metrics during a real call between two baresip agents: the figures move (active call,
registrations, SIP 200s, RTP packets, calls by outcome), the text parses as Prometheus 0.0.4;
the auth rules (admin key; keyless from loopback only with `[http] metrics_public`)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import aiohttp
import pytest

from callcenter.runtime import Engine, start_engine
from sip_test_env.audio import write_tone_wav

from .conftest import AGENT_KEY, agents_in_call, api_url, bearer, engine_config

SAMPLE = re.compile(r'^([a-z_:][a-z0-9_:]*)(\{(?:[a-z_]+="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')
LABEL = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[str, float]:
    """Prometheus text -> {"name{labels}": value}, the labels in name order (a scrape's order
    is the exposition's choice); fails on a malformed line or a sample whose family has no TYPE
    line."""
    typed: set[str] = set()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("#") or not line:
            continue
        match = SAMPLE.match(line)
        assert match, line
        assert match.group(1) in typed, line
        labels = sorted(LABEL.findall(match.group(2) or ""))
        inner = ",".join(f'{k}="{v}"' for k, v in labels)
        samples[match.group(1) + (f"{{{inner}}}" if labels else "")] = float(match.group(3))
    return samples


async def scrape(engine: Engine, headers: dict[str, str] | None = None) -> dict[str, float]:
    async with aiohttp.ClientSession() as http:
        async with http.get(api_url(engine, "/metrics"), headers=headers or bearer()) as response:
            assert response.status == 200, await response.text()
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            return parse(await response.text())


async def _until(engine: Engine, check: object, timeout: float = 5.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        found = await scrape(engine)
        if check(found):  # type: ignore[operator]
            return found
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.1)


@pytest.mark.peers
async def test_metrics_move_during_a_real_call(engine: Engine, tmp_path: Path) -> None:
    before = await scrape(engine)
    assert before["callcenter_active_calls"] == 0
    tone = write_tone_wav(tmp_path / "tone.wav", 800, 8.0)
    async with agents_in_call(engine, tmp_path, tone) as (caller, _):
        during = await _until(
            engine,
            lambda m: (
                m["callcenter_active_calls"] == 1
                and m["callcenter_rtp_packets_received_total"]
                >= before["callcenter_rtp_packets_received_total"] + 50
            ),
        )
        assert during["callcenter_registered_extensions"] >= 2
        assert during["callcenter_registrations"] >= 2
        assert during["callcenter_call_legs"] == 2
        assert during["callcenter_rtp_ports_in_use"] >= 2
        assert (
            during["callcenter_rtp_packets_sent_total"]
            > before["callcenter_rtp_packets_sent_total"]
        )
        ok = 'callcenter_sip_responses_sent_total{code="200"}'
        assert during[ok] > before.get(ok, 0)  # REGISTERs and the INVITE answered
        assert 'callcenter_sip_responses_received_total{code="200"}' in during
        assert during["callcenter_rtp_packets_lost_total"] >= 0
        assert during["callcenter_rtp_jitter_seconds"] >= 0
        assert "callcenter_media_clock_max_lag_seconds" in during
        await caller.hangup()
        await caller.wait_event("CALL_CLOSED", timeout=5)
        answered = 'callcenter_calls_total{outcome="answered"}'
        after = await _until(
            engine, lambda m: m["callcenter_active_calls"] == 0 and m.get(answered, 0) >= 1
        )
    assert after[answered] == before.get(answered, 0) + 1
    # Counters of ended calls stay counted after their ports are released.
    assert after["callcenter_rtp_ports_in_use"] == 0
    assert (
        after["callcenter_rtp_packets_received_total"]
        >= during["callcenter_rtp_packets_received_total"]
    )


async def test_metrics_auth(engine: Engine, pg_url: str, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(api_url(engine, "/metrics")) as response:
            assert response.status == 401
        async with http.get(api_url(engine, "/metrics"), headers=bearer(AGENT_KEY)) as response:
            assert response.status == 403
    public = await start_engine(
        engine_config(extra="metrics_public = true\n"), database_url=pg_url, data_dir=tmp_path
    )
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(api_url(public, "/metrics")) as response:
                assert response.status == 200  # from 127.0.0.1, no key
                assert parse(await response.text())["callcenter_active_calls"] == 0
            async with http.get(api_url(public, "/calls")) as response:
                assert response.status == 401  # only /metrics is open
            async with http.get(api_url(public, "/metrics"), headers=bearer(AGENT_KEY)) as response:
                assert response.status == 403  # a key that is presented still counts
    finally:
        await public.stop()
