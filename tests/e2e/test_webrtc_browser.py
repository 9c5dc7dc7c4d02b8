"""Acceptance of the browser phone's telephony (issue 15): JsSIP from the npm registry, in
headless Debian Chromium with a fake microphone playing a tone file, registers over SIP over
WebSocket at /sip and calls an extension held by baresip, and the other way round; the engine
terminates ICE (lite) and DTLS-SRTP and bridges the leg like any other. Tones both ways, by
frequency analysis of what baresip heard, of the engine's recording, and of what the page's
WebAudio analyser hears on the remote track."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright import async_api as playwright_api

from callcenter.runtime import Engine
from pbx import BridgedCall
from sip_test_env import tools
from sip_test_env.audio import (
    band_energy_db,
    first_tone_time,
    read_wav,
    tone_present,
    write_tone_wav,
)
from sip_test_env.baresip import BaresipPeer

from .callfloor import bridged_call, call_in, customer, floor_engine, idle, phone, wait_for
from .conftest import api_url, assert_no_state_left, bearer, registrar_of

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium")
JSSIP = ROOT / ".web-phones" / "jssip-3.13.8.js"
"""Made by sip_test_env/install-web-phones.sh (scripts/test runs it)."""
BROWSER_TONE, PHONE_TONE, SUPERVISOR_TONE = 1000, 600, 1500

pytestmark = [pytest.mark.peers, tools.needs("chromium", "baresip")]


def _need_jssip() -> None:
    if JSSIP.exists():
        return
    message = f"missing {JSSIP.name}: run sip_test_env/install-web-phones.sh"
    if tools.in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("ARTIFACTS_DIR") or ROOT / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.asynccontextmanager
async def chromium_with_microphone(tone: Path, *flags: str) -> AsyncIterator[Any]:
    """Headless Chromium whose fake microphone plays `tone` (a 48 kHz WAV), granting media
    permission and autoplay without asking; `flags`: more command-line switches."""
    async with playwright_api.async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={tone}",
                "--autoplay-policy=no-user-gesture-required",
                *flags,
            ],
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def chromium(tmp_path: Path) -> AsyncIterator[Any]:
    _need_jssip()
    tone = write_tone_wav(tmp_path / "browser-tone.wav", BROWSER_TONE, 30.0, rate=48000)
    async with chromium_with_microphone(tone) as launched:
        yield launched


# The page's phone: JsSIP over /sip, and a WebAudio analyser on whatever the far end sends.
PHONE_JS = """
async ({wsUrl, user, password, domain}) => {
  window.phone = {events: [], peak: null, stats: null};
  const log = (what) => window.phone.events.push(what);
  const listen = (pc) => pc.addEventListener('track', (ev) => {
    const stream = new MediaStream([ev.track]);
    const audio = new Audio(); audio.srcObject = stream; audio.muted = true; audio.play();
    const ctx = new AudioContext();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 8192;
    ctx.createMediaStreamSource(stream).connect(analyser);
    const bins = new Float32Array(analyser.frequencyBinCount);
    window.phone.peak = () => {
      analyser.getFloatFrequencyData(bins);
      let best = 1;
      for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
      return {hz: best * ctx.sampleRate / analyser.fftSize, db: bins[best]};
    };
    window.phone.level = (hz) => {
      analyser.getFloatFrequencyData(bins);
      return bins[Math.round(hz * analyser.fftSize / ctx.sampleRate)];
    };
    log('track');
  });
  window.phone.watch = (session) => {
    window.phone.session = session;
    session.on('peerconnection', (e) => listen(e.peerconnection));
    if (session.connection) listen(session.connection);
    for (const name of ['progress', 'accepted', 'confirmed', 'ended', 'failed'])
      session.on(name, (e) => log(name + (e && e.cause ? ':' + e.cause : '')));
  };
  window.phone.readStats = async () => {
    const found = {};
    (await window.phone.session.connection.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') found.packetsReceived = s.packetsReceived;
      if (s.type === 'outbound-rtp' && s.kind === 'audio') found.packetsSent = s.packetsSent;
      if (s.type === 'transport') {
        found.dtlsState = s.dtlsState; found.srtpCipher = s.srtpCipher;
      }
      if (s.type === 'codec') found.codecs = (found.codecs || []).concat(s.mimeType);
    });
    return found;
  };
  const socket = new JsSIP.WebSocketInterface(wsUrl);
  const ua = new JsSIP.UA({sockets: [socket], uri: `sip:${user}@${domain}`,
                           password: password || undefined, register: true,
                           session_timers: false});
  window.phone.ua = ua;
  ua.on('newRTCSession', (e) => {
    if (e.originator !== 'remote') return;
    log('incoming');
    window.phone.watch(e.session);
    e.session.answer({mediaConstraints: {audio: true, video: false},
                      pcConfig: {iceServers: []}});
  });
  await new Promise((resolve, reject) => {
    ua.on('registered', resolve);
    ua.on('registrationFailed', (e) => reject(new Error('registration failed: ' + e.cause)));
    ua.start();
  });
  log('registered');
}
"""

CALL_JS = """
(target) => {
  const session = window.phone.ua.call(target, {
    mediaConstraints: {audio: true, video: false}, pcConfig: {iceServers: []}});
  window.phone.watch(session);
}
"""


async def _open_phone(chromium: Any, engine: Engine, user: str, *, token: bool = False) -> Any:
    """A page with JsSIP registered as `user` over /sip: with the SIP password (digest), or
    with a login token from POST /sip/token (what a page holding an API key does)."""
    page = await chromium.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Any page of the engine's origin: 127.0.0.1 is a secure context, where getUserMedia works.
    await page.goto(api_url(engine, "/health"))
    await page.add_script_tag(path=str(JSSIP))
    listen = engine.config.http_listen
    path, password = "/sip", f"pass{user}"
    if token:
        async with aiohttp.ClientSession() as session:
            response = await session.post(
                api_url(engine, "/sip/token"), headers=bearer(), json={"extension": user}
            )
            assert response.status == 201
            path, password = (await response.json())["path"], None
    await page.evaluate(
        PHONE_JS,
        {
            "wsUrl": f"ws://{listen.host}:{listen.port}{path}",
            "user": user,
            "password": password,
            "domain": listen.host,
        },
    )
    assert not errors, errors
    return page


async def _hears(page: Any, hz: float, timeout_ms: int = 10_000) -> dict[str, float]:
    """Wait until the page's analyser has its loudest bin at `hz` (within a few bins)."""
    await page.wait_for_function(
        f"window.phone.peak && Math.abs(window.phone.peak().hz - {hz}) < 30"
        " && window.phone.peak().db > -70",
        timeout=timeout_ms,
    )
    peak: dict[str, float] = await page.evaluate("window.phone.peak()")
    return peak


async def _concluded(engine: Engine, bridged: BridgedCall) -> Path:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while engine.switchboard.active or bridged.summary.recording is None:
        assert loop.time() < deadline, "the call's recording was not concluded"
        await asyncio.sleep(0.05)
    assert bridged.summary.recording is not None
    return Path(bridged.summary.recording)


async def _check_browser_leg(leg: Any) -> None:
    assert leg.peer[0] == "ws"
    media = leg.media
    assert media is not None and media.webrtc is not None and media.secure
    # Media flows from the first valid check; the browser nominates a moment later.
    ice = media.webrtc.ice
    await wait_for(lambda: ice.selected is not None, what="the browser's nomination")
    assert media.webrtc.dtls.keys is not None
    assert media.rtp.srtp is not None and media.rtp.srtp.rejected == 0
    assert media.rtp.packets_in > 50


async def _talk(
    page: Any, phone: BaresipPeer, engine: Engine
) -> tuple[BridgedCall, dict[str, Any]]:
    """Both sides up: let audio flow, check what the page hears, read its stats."""
    bridged = next(iter(engine.switchboard.active.values()))
    peak = await _hears(page, PHONE_TONE)
    await asyncio.sleep(2.0)  # two more seconds of tone both ways for the recordings
    stats: dict[str, Any] = await page.evaluate("window.phone.readStats()")
    stats["peak"] = peak
    for leg in (bridged.a, bridged.b):
        assert leg is not None and leg.media is not None
        if leg.peer[0] == "ws":
            await _check_browser_leg(leg)
            stats["ice_selected"] = leg.media.webrtc.ice.selected
    return bridged, stats


def _check_audio(recording: Path, heard_by_phone: Path, browser_is_left: bool) -> None:
    rate, stereo, channels = read_wav(recording)
    assert channels == 2
    left, right = stereo[:, 0].copy(), stereo[:, 1].copy()
    browser, phone = (left, right) if browser_is_left else (right, left)
    assert tone_present(browser, BROWSER_TONE, rate) and not tone_present(browser, PHONE_TONE, rate)
    assert tone_present(phone, PHONE_TONE, rate) and not tone_present(phone, BROWSER_TONE, rate)
    rate, heard, _ = read_wav(heard_by_phone)
    at = first_tone_time(heard, BROWSER_TONE, rate)
    assert at is not None, "baresip never heard the browser's tone"


@contextlib.asynccontextmanager
async def _browser_and_phone(
    engine: Engine, chromium: Any, tmp_path: Path
) -> AsyncIterator[tuple[Any, BaresipPeer]]:
    """JsSIP as 101 in a page, registered over /sip; baresip as 102 playing its tone."""
    tone = write_tone_wav(tmp_path / "phone.wav", PHONE_TONE, 20.0)
    async with BaresipPeer(
        "102", workdir=tmp_path, registrar=registrar_of(engine), password="pass102",
        audio_source=tone,
    ) as phone:  # fmt: skip
        await phone.wait_registered()
        page = await _open_phone(chromium, engine, "101")
        try:
            yield page, phone
        finally:
            await page.close()


async def _browser_calls(page: Any, phone: BaresipPeer, engine: Engine) -> None:
    """The page dials 102 on baresip, which picks up; both see the call up."""
    await page.evaluate(CALL_JS, f"sip:102@{engine.config.http_listen.host}")
    await phone.wait_event("CALL_INCOMING", timeout=10)
    await phone.accept()
    await page.wait_for_function("window.phone.events.includes('confirmed')", timeout=10_000)


async def test_jssip_in_chromium_calls_a_baresip_extension(
    engine: Engine, chromium: Any, tmp_path: Path
) -> None:
    async with _browser_and_phone(engine, chromium, tmp_path) as (page, phone):
        (binding,) = engine.switchboard.registrar.lookup("101", now=engine.ua.loop.time())
        assert binding.peer[0] == "ws"
        await _browser_calls(page, phone, engine)
        bridged, stats = await _talk(page, phone, engine)
        await page.screenshot(path=str(artifacts_dir() / "webrtc-jssip-calls-baresip.png"))
        await page.evaluate("window.phone.session.terminate()")
        await phone.wait_event("CALL_CLOSED", timeout=5)
        heard = phone.recorded_wav()
    recording = await _concluded(engine, bridged)
    _check_audio(recording, heard, browser_is_left=True)
    assert stats["dtlsState"] == "connected" and stats["packetsReceived"] > 50
    assert stats["packetsSent"] > 50
    print("browser stats:", json.dumps(stats))
    assert_no_state_left(engine)


async def test_a_baresip_call_rings_the_browser_which_answers(
    engine: Engine, chromium: Any, tmp_path: Path
) -> None:
    async with _browser_and_phone(engine, chromium, tmp_path) as (page, phone):
        await phone.dial("101")
        await page.wait_for_function("window.phone.events.includes('confirmed')", timeout=10_000)
        await phone.wait_event("CALL_ESTABLISHED", timeout=10)
        bridged, stats = await _talk(page, phone, engine)
        await phone.hangup()
        await page.wait_for_function(
            "window.phone.events.some((e) => e.startsWith('ended'))", timeout=5_000
        )
        heard = phone.recorded_wav()
    recording = await _concluded(engine, bridged)
    _check_audio(recording, heard, browser_is_left=False)
    assert stats["dtlsState"] == "connected" and stats["packetsReceived"] > 50
    print("browser stats:", json.dumps(stats))
    assert_no_state_left(engine)


async def _packets_received(page: Any, timeout: float = 5.0) -> int:
    """The browser's audio packets received, once its stats list an inbound stream."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while "packetsReceived" not in (stats := await page.evaluate("window.phone.readStats()")):
        assert loop.time() < deadline, f"no inbound audio stream in the browser's stats: {stats}"
        await asyncio.sleep(0.05)
    return int(stats["packetsReceived"])


async def test_the_browser_holds_and_resumes_on_the_same_dtls_association(
    engine: Engine, chromium: Any, tmp_path: Path
) -> None:
    async with _browser_and_phone(engine, chromium, tmp_path) as (page, phone):
        await _browser_calls(page, phone, engine)
        await _hears(page, PHONE_TONE)
        bridged = next(iter(engine.switchboard.active.values()))
        leg = bridged.a if bridged.a.peer[0] == "ws" else bridged.b
        assert leg is not None and leg.media is not None
        transport = leg.media.webrtc
        assert transport is not None
        # JsSIP's hold is a re-INVITE with a=sendonly: the engine answers recvonly on the
        # association it has, and the phone hears the music on hold instead of the browser.
        await page.evaluate(
            "new Promise((ok) => { window.phone.session.on('hold', ok);"
            " window.phone.session.hold(); })"
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while not leg.media.held:
            assert loop.time() < deadline, "the engine did not take the hold"
            await asyncio.sleep(0.05)
        await page.evaluate(
            "new Promise((ok) => { window.phone.session.on('unhold', ok);"
            " window.phone.session.unhold(); })"
        )
        deadline = loop.time() + 5
        while leg.media.held:
            assert loop.time() < deadline, "the engine did not take the resume"
            await asyncio.sleep(0.05)
        assert leg.media.webrtc is transport and transport.dtls.failed is None
        before = leg.media.rtp.packets_in
        # Chrome lists a stream's inbound-rtp stats only once a packet of it has arrived, and
        # after the renegotiation that can be a moment after the resume: wait for it.
        received_before = await _packets_received(page)
        await asyncio.sleep(1.0)  # a second of audio after the resume
        received_after = await _packets_received(page)
        assert leg.media.rtp.packets_in - before > 30  # the browser's audio flows again
        assert received_after - received_before > 30
        await _hears(page, PHONE_TONE)
        await page.evaluate("window.phone.session.terminate()")
        await phone.wait_event("CALL_CLOSED", timeout=5)
    await _concluded(engine, bridged)
    assert_no_state_left(engine)


async def test_a_supervisor_whispers_to_a_browser_agent_and_the_customer_never_hears(
    pg_url: str, chromium: Any, tmp_path: Path
) -> None:
    customer_tone = write_tone_wav(tmp_path / "customer.wav", PHONE_TONE, 30.0)
    supervisor_tone = write_tone_wav(tmp_path / "supervisor.wav", SUPERVISOR_TONE, 30.0)
    async with (
        floor_engine(pg_url, tmp_path) as engine,
        customer(tmp_path, customer_tone) as caller,
        phone("191", engine, tmp_path, supervisor_tone) as supervisor,
    ):
        await supervisor.wait_registered()
        # The agent's page holds an API key, not the SIP password: a login token opens /sip.
        page = await _open_phone(chromium, engine, "103", token=True)  # answers what rings it
        (binding,) = engine.switchboard.registrar.lookup("103", now=engine.ua.loop.time())
        assert engine.ua.endpoint.flow_identity(binding.peer) == "103"
        await call_in(engine, caller)
        await caller.wait_event("CALL_ESTABLISHED", timeout=10)
        await _hears(page, PHONE_TONE)
        quiet = await page.evaluate(f"window.phone.level({SUPERVISOR_TONE})")
        print(f"{SUPERVISOR_TONE} Hz at the browser before the whisper: {quiet:.1f} dB")
        bridged = bridged_call(engine)
        await supervisor.dial("*2103")
        await supervisor.wait_event("CALL_ESTABLISHED", timeout=5)
        await wait_for(lambda: bool(engine.switchboard.monitors), what="the whisper")
        # The browser agent hears the supervisor beside the customer...
        # (20 dB above what that bin held before: the supervisor's tone, not codec noise.)
        louder = max(-75.0, quiet + 20)
        both = (
            f"window.phone.level({SUPERVISOR_TONE}) > {louder}"
            f" && window.phone.level({PHONE_TONE}) > -75"
        )
        await page.wait_for_function(both, timeout=10_000)
        print(f"during: {await page.evaluate(f'window.phone.level({SUPERVISOR_TONE})'):.1f} dB")
        await asyncio.sleep(2.0)  # two seconds of whisper in the customer's recording
        await supervisor.hangup()
        await wait_for(lambda: not engine.switchboard.monitors, what="the whisper's end")
        await page.evaluate("window.phone.session.terminate()")
        await caller.wait_event("CALL_CLOSED", timeout=5)
        await page.close()
        await idle(engine)
    # ...the customer never did: what it heard is the browser's tone, no supervisor in it.
    rate, heard, _ = read_wav(caller.recorded_wav())
    assert band_energy_db(heard, BROWSER_TONE, rate) > -30
    assert band_energy_db(heard, SUPERVISOR_TONE, rate, relative_to=BROWSER_TONE) < -40
    rate, stereo, _ = read_wav(Path(bridged.summary.recording or ""))
    agent_side = stereo[:, 1].copy()
    assert band_energy_db(agent_side, SUPERVISOR_TONE, rate, relative_to=BROWSER_TONE) < -40


async def test_a_closed_tab_ends_its_call_at_once(
    engine: Engine, chromium: Any, tmp_path: Path
) -> None:
    async with _browser_and_phone(engine, chromium, tmp_path) as (page, phone):
        await _browser_calls(page, phone, engine)
        bridged = next(iter(engine.switchboard.active.values()))
        # The tab goes without a BYE: its WebSocket closes, and with it the only way to reach
        # the browser. The phone hears the end at once, not after the RTP timeout (30 s).
        await page.close()
        await phone.wait_event("CALL_CLOSED", timeout=5)
    await _concluded(engine, bridged)
    assert not engine.switchboard.registrar.lookup("101", now=engine.ua.loop.time())
    assert_no_state_left(engine)


async def test_a_customer_is_transferred_to_a_browser_agent(
    pg_url: str, chromium: Any, tmp_path: Path
) -> None:
    customer_tone = write_tone_wav(tmp_path / "customer.wav", PHONE_TONE, 30.0)
    agent_tone = write_tone_wav(tmp_path / "agent.wav", SUPERVISOR_TONE, 30.0)
    async with (
        floor_engine(pg_url, tmp_path) as engine,
        customer(tmp_path, customer_tone) as caller,
        phone("103", engine, tmp_path, agent_tone) as desk,
        aiohttp.ClientSession(headers=bearer()) as http,
    ):
        await desk.wait_registered()
        page = await _open_phone(chromium, engine, "104", token=True)  # answers what rings it
        await call_in(engine, caller)
        await desk.wait_event("CALL_INCOMING", timeout=10)
        await desk.accept()
        await caller.wait_event("CALL_ESTABLISHED", timeout=10)
        bridged = bridged_call(engine)
        await asyncio.sleep(1.0)  # a second of the desk phone's tone at the customer
        url = api_url(engine, f"/calls/{bridged.a.call_id}/transfer")
        async with http.post(url, json={"to": "104"}) as response:
            assert response.status == 202, await response.text()
        # The engine offers the browser WebRTC; it answers and the customer is with it.
        await page.wait_for_function("window.phone.events.includes('confirmed')", timeout=10_000)
        await desk.wait_event("CALL_CLOSED", timeout=5)
        await wait_for(lambda: bridged.callee == "104" and not bridged.transferring,
                       what="the transfer")  # fmt: skip
        await _hears(page, PHONE_TONE)
        assert bridged.b is not None
        await _check_browser_leg(bridged.b)
        await asyncio.sleep(1.0)  # a second of the browser's tone at the customer
        await page.evaluate("window.phone.session.terminate()")
        await caller.wait_event("CALL_CLOSED", timeout=5)
        await page.close()
        await idle(engine)
    # The customer heard the desk phone, then the browser; one call, one recording.
    rate, heard, _ = read_wav(caller.recorded_wav())
    desk_at = first_tone_time(heard, SUPERVISOR_TONE, rate)
    browser_at = first_tone_time(heard, BROWSER_TONE, rate)
    assert desk_at is not None and browser_at is not None and desk_at < browser_at
    assert bridged.summary.transfers and bridged.summary.transfers[-1]["result"] == "completed"
