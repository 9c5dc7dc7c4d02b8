"""A carrier whose customers follow a script per number, for dialer and broadcast tests.

Each dialled number behaves as its `Customer` script says: answer after N seconds and speak like
a person ("Hello?" then silence, then talk), answer as a voicemail box (a long greeting, a beep,
then record the message), be busy, never answer, or reject. Every answered call records what
the customer heard to a WAV, so a test can check the agent's voice or the voicemail message
reached them. It runs on the project's own telephony.aio UserAgent, bound to the carrier's
loopback address, as a SIP UAS that answers the engine's outbound INVITEs.
"""

from __future__ import annotations

import asyncio
import logging
import math
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from telephony.aio import Call, EndpointConfig, UserAgent, UserAgentConfig
from telephony.call import Ended
from telephony.media import FRAME_SAMPLES, WavSource, tone_samples
from telephony.sip import SipUri

from .carrier import CARRIER_IP
from .ports import free_port, free_port_range, worker_share

logger = logging.getLogger(__name__)

# Above the peers' pool (sip_test_env.ports); each pytest-xdist worker takes its own share.
CARRIER_RTP_PORTS = worker_share(30000, 31999)


@dataclass(frozen=True)
class Customer:
    """How one number behaves when the engine calls it."""

    behaviour: str
    """human, machine, busy, no-answer or reject."""
    answer_after: float = 1.0
    """Seconds of ringing before answering (human, machine)."""
    speech: Path | None = None
    """What a human says on answer / the greeting a machine plays (8 kHz mono WAV)."""
    beep_hz: float = 1000.0
    """The voicemail beep after the greeting (machine)."""
    beep_after: float = 0.0
    """Seconds of silence between the greeting and its beep (machine)."""
    hang_up_after: float = 20.0
    """Seconds after answer when the customer hangs up if the engine has not."""
    press: str = ""
    """Keys the customer presses (IVR and broadcast tests), `press_after` s after answer."""
    press_after: float = 3.0
    dtmf: str = "rfc4733"
    """How the keys travel: rfc4733, info or inband."""


@dataclass
class CallRecord:
    number: str
    invites: int = 0
    """INVITEs received for this number (a crash test counts duplicates here)."""
    answered: bool = False
    spans: list[list[float]] = field(default_factory=list)
    """[INVITE time, end time] of each call (loop time; inf while it lasts)."""
    heard: list[np.ndarray] = field(default_factory=list)
    """What the customer heard, 20 ms frames in arrival order."""
    heard_at: list[float] = field(default_factory=list)
    """Loop time each frame of `heard` arrived."""
    beep_ended_at: float | None = None
    """Loop time the voicemail box sent the last frame of its beep."""
    answered_at: float | None = None
    """Loop time the customer's 200 OK was acknowledged (the audio clock starts)."""
    ended: str | None = None

    def heard_samples(self) -> np.ndarray:
        return np.concatenate(self.heard) if self.heard else np.zeros(0, dtype=np.int16)

    def save(self, path: Path) -> Path:
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(self.heard_samples().astype("<i2").tobytes())
        return path


class _Frames:
    """A WAV's frames, then (for voicemail greetings) `beep_after` seconds of silence and a
    beep, then silence for as long as the call lasts: phones and voicemail boxes keep sending
    RTP while they listen. `on_beep_end` is called as the beep's last frame goes out."""

    def __init__(
        self,
        speech: Path | None,
        beep_hz: float | None,
        *,
        beep_after: float = 0.0,
        on_beep_end: Callable[[], None] | None = None,
    ) -> None:
        self._frames: Iterator[np.ndarray] = iter(())
        if speech is not None:
            self._frames = _wav_frames(speech)
        self._beep = beep_hz
        self._beep_after = beep_after
        self._beep_left = 0
        self._on_beep_end = on_beep_end

    def next_frame(self) -> np.ndarray:
        frame = next(self._frames, None)
        if frame is None and self._beep is not None:
            gap = np.zeros(round(self._beep_after * 8000) // FRAME_SAMPLES * FRAME_SAMPLES)
            beep = tone_samples([self._beep], 0.4, level_dbfs=-10.0)
            frames = np.concatenate([gap, beep]).astype(np.int16).reshape(-1, FRAME_SAMPLES)
            self._frames = iter(frames)
            self._beep_left = len(frames)
            self._beep = None
            frame = next(self._frames, None)
        if frame is not None and self._beep_left:
            self._beep_left -= 1
            if self._beep_left == 0 and self._on_beep_end is not None:
                self._on_beep_end()
        return frame if frame is not None else np.zeros(FRAME_SAMPLES, dtype=np.int16)


def _wav_frames(path: Path) -> Iterator[np.ndarray]:
    source = WavSource(path)
    while (frame := source.next_frame()) is not None:
        yield frame


class ScriptedCarrier:
    """`async with ScriptedCarrier({"+12125550001": Customer("human", ...)}) as carrier:`;
    point the engine's trunk `outbound` at `carrier.address`."""

    def __init__(self, customers: dict[str, Customer], *, host: str = CARRIER_IP) -> None:
        self.customers = customers
        port = free_port("both", host)
        self.address = (host, port)
        # On its own address the carrier's RTP ports cannot collide with the agents' and the
        # engine's (127.0.0.1); the pool skips any that are taken anyway.
        low, high = CARRIER_RTP_PORTS if host != "127.0.0.1" else free_port_range(100, "udp")
        self.ua = UserAgent(
            UserAgentConfig(endpoint=EndpointConfig(host=host, port=port), rtp_ports=(low, high))
        )
        self.calls: dict[str, CallRecord] = {}
        """By dialled number (digits as in the Request-URI user part)."""
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> ScriptedCarrier:
        self.ua.on_incoming = self._incoming
        await self.ua.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in list(self._tasks):
            task.cancel()
        for call in list(self.ua.calls.values()):
            await call.hangup(reason="shutdown")
        await asyncio.sleep(0.05)
        await self.ua.close()

    def record(self, number: str) -> CallRecord:
        return self.calls.setdefault(number, CallRecord(number))

    @staticmethod
    async def _press(call: Call, script: Customer) -> None:
        await asyncio.sleep(script.press_after)
        for key in script.press:
            if call.ended.done():
                return
            if script.dtmf == "inband" and call.media is not None:
                call.media.stop_playing()  # one stream of audio: the keys, not the speech
            await call.send_dtmf(key, method=script.dtmf)
            await asyncio.sleep(0.2)

    def most_at_once(self, *, since: float = 0.0) -> int:
        """The most calls that were up at the same moment (from their INVITE to their end),
        among calls that started at or after `since` (loop time)."""
        edges = sorted(
            (t, step)
            for record in self.calls.values()
            for start, end in record.spans
            if start >= since
            for t, step in ((start, 1), (end, -1))
        )
        most = current = 0
        for _, step in edges:
            current += step
            most = max(most, current)
        return most

    def _incoming(self, call: Call) -> None:
        uri = call.invite.uri
        number = uri.user if isinstance(uri, SipUri) and uri.user else ""
        record = self.record(number.lstrip("+"))
        record.invites += 1
        loop = asyncio.get_running_loop()
        span = [loop.time(), math.inf]
        record.spans.append(span)
        call.ended.add_done_callback(lambda _: span.__setitem__(1, loop.time()))
        script = self.customers.get(number) or self.customers.get(number.lstrip("+"))
        if script is None:
            call.reject(404)
            return
        task = asyncio.get_running_loop().create_task(self._play(call, script, record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _play(self, call: Call, script: Customer, record: CallRecord) -> None:
        if script.behaviour == "busy":
            call.reject(486)
            return
        if script.behaviour == "reject":
            call.reject(603)
            return
        call.ring()
        if script.behaviour == "no-answer":
            return  # rings until the engine gives up (CANCEL)
        try:
            await asyncio.wait_for(asyncio.shield(call.ended), script.answer_after)
            return  # the engine gave up first
        except TimeoutError:
            pass
        await call.answer()
        try:
            await call.next_event(timeout=5)  # Answered: the ACK is in
        except TimeoutError:
            return  # the engine went away (a crash test): nothing more to play
        record.answered = True
        assert call.media is not None
        loop = asyncio.get_running_loop()
        record.answered_at = loop.time()

        def heard(frame: np.ndarray) -> None:
            record.heard.append(frame)
            record.heard_at.append(loop.time())

        def beep_ended() -> None:
            record.beep_ended_at = loop.time()

        call.media.listen(heard)
        source = _Frames(
            script.speech,
            script.beep_hz if script.behaviour == "machine" else None,
            beep_after=script.beep_after,
            on_beep_end=beep_ended,
        )
        player = loop.create_task(call.play(source))
        presser = loop.create_task(self._press(call, script)) if script.press else None
        try:
            await asyncio.wait_for(asyncio.shield(call.ended), script.hang_up_after)
        except TimeoutError:
            await call.hangup(reason="customer-bye")
        player.cancel()
        if presser is not None:
            presser.cancel()
        async for event in call.events():
            if isinstance(event, Ended):
                record.ended = event.reason
