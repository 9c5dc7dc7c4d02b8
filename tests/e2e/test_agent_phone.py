"""The agent page's own browser phone (web/phone.js) in a real headless Chromium with a fake
microphone playing a tone: it registers over /sip with a login token, rings with the screen pop
of a trunk call from a baresip customer, is answered by a click and talks both ways (checked by
frequency analysis of what the customer heard, of the engine's stereo recording and of what the
page plays), mutes, hangs up, and takes the disposition. Then two pages take seats in a power
campaign: every person is bridged to a browser within 300 ms of the AMD verdict, and no page
rang for any of them."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from callcenter.api import sip_ws
from callcenter.runtime import Engine, start_engine
from callcenter.tls import make_self_signed
from dialer import Campaign, NewLead
from sip_test_env import carrier, tools
from sip_test_env.audio import first_tone_time, read_wav, tone_frames, tone_present, write_tone_wav
from sip_test_env.baresip import BaresipPeer
from sip_test_env.scripted_carrier import Customer, ScriptedCarrier
from sip_test_env.voices import person_wav, speak

from .callfloor import wait_for
from .conftest import ADMIN_KEY, api_url, bearer, crm_taking, engine_config, registrar_of
from .test_agent_page import _earlier_call
from .test_campaign import calling_hours_around_now, engine_on_carrier, run_to_the_end
from .test_dashboard import artifacts_dir
from .test_seats import connect_delays
from .test_webrtc_browser import chromium_with_microphone

pytestmark = [pytest.mark.peers, tools.needs("chromium", "baresip", "espeak-ng", "sox")]

DID = "+12025550177"
BROWSER_TONE, CUSTOMER_TONE, MUSIC_TONE = 1000, 600, 400
ROOT = Path(__file__).resolve().parents[2]
PROMPT = ROOT / "callcenter" / "prompts" / "we-will-call-you-back.wav"
FRAME = 0.02


@pytest.fixture
async def chromium(tmp_path: Path) -> AsyncIterator[Any]:
    """Headless Chromium whose microphone plays BROWSER_TONE (no network beyond loopback)."""
    tone = write_tone_wav(tmp_path / "browser-tone.wav", BROWSER_TONE, 60.0, rate=48000)
    async with chromium_with_microphone(tone) as launched:
        yield launched


# What the page plays in #phone-audio, through a WebAudio analyser: the level at a frequency.
LISTEN_JS = """
() => {
  const audio = document.querySelector('#phone-audio');
  if (!audio.srcObject) return false;
  if (window.heard && window.heard.stream === audio.srcObject) return true;
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  ctx.createMediaStreamSource(audio.srcObject).connect(analyser);
  const bins = new Float32Array(analyser.frequencyBinCount);
  window.heard = {stream: audio.srcObject, level: (hz) => {
    analyser.getFloatFrequencyData(bins);
    return bins[Math.round(hz * analyser.fftSize / ctx.sampleRate)];
  }};
  return true;
}
"""


async def _hears(page: Any, hz: float, not_hz: float) -> float:
    """Waits until the page plays `hz` loud and 20 dB above `not_hz` (the browser's own tone,
    which must not come back); returns its level (dB)."""
    await page.wait_for_function(LISTEN_JS, timeout=10_000)
    await page.wait_for_function(
        f"window.heard.level({hz}) > -80"
        f" && window.heard.level({hz}) > window.heard.level({not_hz}) + 20",
        timeout=10_000,
    )
    level: float = await page.evaluate(f"window.heard.level({hz})")
    return level


async def _open_page(browser: Any, engine: Engine, ext: str) -> tuple[Any, list[str], list[str]]:
    """The agent page for `ext` from a supervisor's login link, its phone registered; with the
    page's errors and the SIP requests its phone received (from the WebSocket's frames)."""
    async with aiohttp.ClientSession() as http:
        async with http.post(
            api_url(engine, f"/agents/{ext}/login-token"), headers=bearer(ADMIN_KEY)
        ) as r:
            assert r.status == 201, await r.text()
            login = await r.json()
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    requests: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def frames(ws: Any) -> None:
        def received(payload: str | bytes) -> None:
            text = payload if isinstance(payload, str) else payload.decode()
            if not text.startswith("SIP/2.0"):
                requests.append(text.split(" ", 1)[0])

        ws.on("framereceived", received)

    page.on("websocket", frames)
    await page.goto(api_url(engine, login["url"]))
    await page.wait_for_selector('#status[data-status="live"]', timeout=10_000)
    await page.wait_for_selector('#phone[data-phone="registered"]', timeout=10_000)
    (binding,) = engine.switchboard.registrar.lookup(ext, now=engine.ua.loop.time())
    assert binding.peer[0] == "ws"
    assert engine.ua.endpoint.flow_identity(binding.peer) == ext
    return page, errors, requests


async def _shot(page: Any, tmp_path: Path, name: str) -> None:
    await page.screenshot(path=str(tmp_path / name), full_page=True)
    shutil.copy(tmp_path / name, artifacts_dir() / name)


async def _trunk_engine(pg_url: str, tmp_path: Path) -> Engine:
    extra = f"""
[presence]
wrap_up_seconds = 30

[[trunks]]
name = "carrier"
allow_from = ["{carrier.CARRIER_IP}"]

[[dids]]
number = "{DID}"
trunk = "carrier"
route = "agent:101"
"""
    music = write_tone_wav(tmp_path / "music.wav", MUSIC_TONE, 2.0)
    config = engine_config(
        extra_sip=f'music_on_hold = "{music}"\n', extra=extra, crm=crm_taking("call.disposition")
    )
    return await start_engine(config, database_url=pg_url, data_dir=tmp_path)


def _muted_gap(samples: np.ndarray, rate: int) -> float:
    """The longest stretch (s) without the browser's tone between two stretches with it."""
    flags = tone_frames(samples, BROWSER_TONE, rate, frame_seconds=0.05)
    hits = np.flatnonzero(flags)
    if hits.size < 2:
        return 0.0
    return float(np.max(np.diff(hits)) - 1) * 0.05


async def test_the_page_rings_answers_and_talks_in_the_browser(
    pg_url: str, tmp_path: Path, chromium: Any, db: Any
) -> None:
    number = "+1212" + "".join(secrets.choice("23456789") for _ in range(7))
    customer_tone = write_tone_wav(tmp_path / "customer.wav", CUSTOMER_TONE, 30.0)
    engine = await _trunk_engine(pg_url, tmp_path)
    try:
        assert engine.store is not None
        await engine.store.upsert_contact(number, name="Grace Hopper", responsible="102")
        earlier = await _earlier_call(engine, number, tmp_path)
        page, errors, requests = await _open_page(chromium, engine, "101")
        await page.click("#go-available")
        await page.wait_for_selector('#state[data-state="available"]', timeout=5000)
        async with carrier.customer(
            number, workdir=tmp_path / "customer", audio_source=customer_tone
        ) as caller:
            await caller.dial(carrier.did_uri(DID, engine.sip_port))
            # It rings in the page, with the pop, and waits for the agent (no answer-after).
            await page.wait_for_selector('#phone[data-phone="ringing"]', timeout=10_000)
            await page.wait_for_selector('#pop-contact:text-is("Grace Hopper")', timeout=5000)
            assert number in (await page.text_content("#phone-caller") or "")
            last = f'#pop-calls tr[data-call="{earlier}"]'
            assert "answered" in (await page.text_content(last) or "")
            assert await page.is_enabled("#phone-answer")
            assert not [b for b in engine.switchboard.active.values() if b.b is not None]
            await _shot(page, tmp_path, "agent-phone-ringing.png")

            await page.click("#phone-answer")
            await caller.wait_event("CALL_ESTABLISHED", timeout=10)
            await page.wait_for_selector('#phone[data-phone="in-call"]', timeout=5000)
            await page.wait_for_selector('#call[data-state="talking"]', timeout=5000)
            row = int(await page.get_attribute("#pop", "data-call") or 0)
            bridged = next(iter(engine.switchboard.active.values()))
            assert bridged.b is not None and bridged.b.media is not None
            assert bridged.b.peer[0] == "ws" and bridged.b.media.webrtc is not None
            level = await _hears(page, CUSTOMER_TONE, BROWSER_TONE)
            print(f"the page plays the customer's {CUSTOMER_TONE} Hz at {level:.1f} dB")
            await asyncio.sleep(1.0)  # a second of tone both ways for the recordings
            # Hold and resume stay on REST; the browser's leg stays up through them.
            await page.click("#hold")
            await page.wait_for_selector('#call[data-state="held"]', timeout=5000)
            await page.click("#resume")
            await page.wait_for_selector('#call[data-state="talking"]', timeout=5000)
            assert await page.get_attribute("#phone", "data-phone") == "in-call"
            await _hears(page, CUSTOMER_TONE, BROWSER_TONE)
            await asyncio.sleep(1.0)
            # Mute: the customer hears silence instead of the browser's tone, then the tone
            # again.
            await page.click("#phone-mute")
            await page.wait_for_selector('#phone[data-muted="true"]', timeout=2000)
            assert await page.text_content("#phone-mute") == "Unmute"
            await asyncio.sleep(1.5)  # a second and a half of the mute in the recordings
            await page.click("#phone-mute")
            await page.wait_for_selector('#phone[data-muted="false"]', timeout=2000)
            await asyncio.sleep(1.0)
            await _shot(page, tmp_path, "agent-phone-talking.png")
            await page.click("#phone-hangup")  # a BYE from the browser
            await caller.wait_event("CALL_CLOSED", timeout=5)
            await page.wait_for_selector('#phone[data-phone="registered"]', timeout=5000)
            heard = caller.recorded_wav()

        # The disposition typed in the page lands in the calls row and the CRM outbox.
        await page.wait_for_selector(f'#wrap[data-call="{row}"]:not([hidden])', timeout=5000)
        await page.select_option('#disposition-form select[name="disposition"]', "sale")
        await page.fill('#disposition-form textarea[name="note"]', "took the yearly plan")
        await page.click('#disposition-form button[type="submit"]')
        await page.wait_for_selector("#wrap", state="hidden", timeout=5000)
        stored = await db.fetchrow(
            "SELECT disposition, disposition_note, agent FROM calls WHERE id = $1", row
        )
        assert tuple(stored) == ("sale", "took the yearly plan", "101")
        event = await db.fetchval(
            "SELECT payload FROM outbox WHERE aggregate = $1 AND event_type = $2",
            f"call/{row}",
            "call.disposition",
        )
        assert event is not None and '"disposition_note": "took the yearly plan"' in event
        await _shot(page, tmp_path, "agent-phone-after-call.png")

        # The socket drops under the page (a proxy restarts, say): the phone opens a new one
        # with a new token and registers again by itself.
        registrar = engine.switchboard.registrar
        (before,) = registrar.lookup("101", now=engine.ua.loop.time())
        assert engine.http is not None
        for ws in list(engine.http.app[sip_ws.SOCKETS]):
            await ws.close()

        def registered_anew() -> bool:
            bindings = registrar.lookup("101", now=engine.ua.loop.time())
            return len(bindings) == 1 and bindings[0].peer != before.peer

        await wait_for(registered_anew, timeout=10, what="the phone to register again")
        await page.wait_for_selector('#phone[data-phone="registered"]', timeout=5000)
        assert requests.count("INVITE") == 1 and "BYE" not in requests  # the BYE was ours
        assert errors == []
        await page.close()
        recording = bridged.summary.recording
    finally:
        await engine.stop()
    # The customer heard the browser's tone; the engine's recording has the customer's tone on
    # the customer's side (left) and the browser's on the agent's, with the mute as a gap.
    rate, samples, _ = read_wav(heard)
    assert first_tone_time(samples, BROWSER_TONE, rate) is not None
    assert recording is not None
    rate, stereo, channels = read_wav(recording)
    assert channels == 2
    customer_side, agent_side = stereo[:, 0].copy(), stereo[:, 1].copy()
    assert tone_present(customer_side, CUSTOMER_TONE, rate)
    assert not tone_present(customer_side, BROWSER_TONE, rate)
    assert tone_present(agent_side, BROWSER_TONE, rate)
    assert not tone_present(agent_side, CUSTOMER_TONE, rate)
    gap = _muted_gap(agent_side, rate)
    print(f"the mute: {gap:.2f} s without the browser's tone in the recording")
    assert 1.0 <= gap <= 3.0


@pytest.mark.slow
async def test_two_browser_seats_take_a_power_campaign_with_no_ringing(
    pg_url: str, tmp_path: Path, chromium: Any
) -> None:
    hello = speak("Hello?", tmp_path / "hello.wav")
    person = person_wav(tmp_path / "person.wav", hello)
    numbers = [f"121255507{n:02d}" for n in range(1, 5)]
    customers = {
        n: Customer("human", answer_after=0.4 + i / 4, speech=person, hang_up_after=3)
        for i, n in enumerate(numbers)
    }
    opens, closes = calling_hours_around_now()
    agents = ("101", "102")
    async with ScriptedCarrier(customers) as scripted:
        engine, store = await engine_on_carrier(scripted, pg_url, tmp_path)
        try:
            pages = {ext: await _open_page(chromium, engine, ext) for ext in agents}
            for page, _, _ in pages.values():
                await page.click("#go-available")
                await page.click("#seat-take")  # rings the page, which answers by itself
            for page, _, _ in pages.values():
                await page.wait_for_selector('#seat[data-seated="yes"]', timeout=10_000)
                await page.wait_for_selector('#phone[data-phone="in-call"]', timeout=5000)
                assert await page.is_visible("#seat-leave")
            assert all(engine.switchboard.busy(ext) for ext in agents)
            now = datetime.now(UTC)
            campaign = await store.create_campaign(
                Campaign(
                    name=f"browser-seats-{now.timestamp():.0f}", caller_id="12125550100",
                    trunk="carrier", agents=agents, mode="power", ratio=1.0, max_attempts=1,
                    window_start=opens, window_end=closes, tz_default="UTC", max_ring_seconds=15,
                    voicemail_prompt=str(PROMPT), safe_harbor_prompt=str(PROMPT),
                ),
                now=now,
            )  # fmt: skip
            await store.import_leads(
                campaign.id, [NewLead(f"+{n}", "UTC") for n in numbers], now=now
            )
            await store.set_state(campaign.id, "start", now=datetime.now(UTC))
            progress = await run_to_the_end(store, campaign.id, left=0, timeout=60)
            await store.set_state(campaign.id, "stop", now=datetime.now(UTC))
            served = {}
            for ext in agents:
                seat = engine.switchboard.seats.get(ext)
                assert seat is not None and not seat.leg.ended.done()
                served[ext] = seat.calls
            first, _, _ = pages["101"]
            await first.wait_for_selector("#pop:not([hidden])", timeout=5000)
            await _shot(first, tmp_path, "agent-phone-seat.png")
            for ext, (page, errors, requests) in pages.items():
                calls = f"{served[ext]} call" + ("" if served[ext] == 1 else "s")
                await page.wait_for_selector(
                    f'#seat-state:text-is("On a seat ({calls})")', timeout=5000
                )
                await page.click("#seat-leave")  # the engine hangs the seat's call up
                await page.wait_for_selector('#seat[data-seated="no"]', timeout=5000)
                await page.wait_for_selector('#phone[data-phone="registered"]', timeout=5000)
                assert engine.switchboard.seats.get(ext) is None
                # One INVITE (the seat) and the engine's BYE when it was left: no ringing.
                assert requests.count("INVITE") == 1, (ext, requests)
                assert errors == [], errors
                await page.close()
        finally:
            await engine.stop()

    assert progress.connected == len(numbers) and progress.abandoned == 0, progress
    assert sum(served.values()) == len(numbers) and all(served.values()), served
    delays = await connect_delays(
        pg_url, scripted, campaign.id, dict.fromkeys(agents, BROWSER_TONE)
    )
    assert len(delays) == len(numbers)
    print("verdict -> the browser agent heard (ms):",
          {phone: round(d * 1000) for phone, d in sorted(delays.items())})  # fmt: skip
    print(f"max {max(delays.values()) * 1000:.0f} ms over {len(delays)} people; served {served}")
    # A figure, not an assert (bench/bench_seat_connect.py holds the 300 ms goal on a quiet box).


async def test_over_https_the_page_is_a_secure_context_and_its_phone_uses_wss(
    pg_url: str, tmp_path: Path
) -> None:
    """With [http] TLS the page is served over https (a secure context: the microphone), its
    phone registers over wss://, rings for a colleague's call and answers it."""
    cert, key = make_self_signed(tmp_path / "tls", ["127.0.0.1"])
    config = engine_config(extra_http=f'tls_certificate = "{cert}"\ntls_key = "{key}"\n')
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    trust = ssl.create_default_context(cafile=str(cert))
    tone = write_tone_wav(tmp_path / "browser-tone.wav", BROWSER_TONE, 30.0, rate=48000)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                api_url(engine, "/agents/101/login-token"), headers=bearer(ADMIN_KEY), ssl=trust
            ) as r:
                assert r.status == 201, await r.text()
                login = await r.json()
        async with chromium_with_microphone(tone, "--ignore-certificate-errors") as browser:
            page = await browser.new_page()
            await page.goto(api_url(engine, login["url"]))
            assert page.url.startswith("https://")
            assert await page.evaluate("window.isSecureContext")
            await page.wait_for_selector('#phone[data-phone="registered"]', timeout=10_000)
            (binding,) = engine.switchboard.registrar.lookup("101", now=engine.ua.loop.time())
            assert binding.peer[0] == "wss"
            async with BaresipPeer(
                "102", workdir=tmp_path, registrar=registrar_of(engine), password="pass102"
            ) as a102:
                await a102.wait_registered()
                await a102.dial("101")
                await page.wait_for_selector('#phone[data-phone="ringing"]', timeout=10_000)
                await page.click("#phone-answer")
                await a102.wait_event("CALL_ESTABLISHED", timeout=10)
                await page.wait_for_selector('#phone[data-phone="in-call"]', timeout=5000)
                await a102.hangup()
                await page.wait_for_selector('#phone[data-phone="registered"]', timeout=5000)
    finally:
        await engine.stop()
