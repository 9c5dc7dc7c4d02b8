"""Speech analytics of a two-party call: who talked, how long, over whom, and the silences.

webrtcvad decides speech per channel and per 20 ms frame; its decision is smoothed (an isolated
speech frame is ignored, a short hangover holds speech across the small dips between syllables)
and then counted by :class:`TalkCounter`, which knows nothing of audio so that the arithmetic
can be tested on exact speech patterns. The result, :class:`TalkAnalytics`, is a flat dataclass
of numbers meant for a JSONB column.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass
from typing import Final

import numpy as np
import webrtcvad

from telephony.media import FRAME_BYTES, FRAME_MS, SAMPLE_RATE

from .errors import RecordingError

logger = logging.getLogger(__name__)

__all__ = ["SpeechAnalytics", "TalkAnalytics", "TalkCounter", "TalkTimeline", "VadSmoother"]

_SILENT_FRAME: Final = bytes(FRAME_BYTES)
_FRAME_SECONDS: Final = FRAME_MS / 1000


@dataclass(frozen=True)
class TalkAnalytics:
    """Talk statistics of one call; every duration is in seconds, at 20 ms resolution.

    ``silence + (customer_talk - overtalk) + (agent_talk - overtalk) + overtalk == duration``.
    """

    duration_seconds: float
    """Audio analysed (one 20 ms frame per media-clock tick)."""
    customer_talk_seconds: float
    """Time the customer (left channel) was speaking, overtalk included."""
    agent_talk_seconds: float
    """Time the agent (right channel) was speaking, overtalk included."""
    silence_seconds: float
    """Time nobody was speaking."""
    overtalk_seconds: float
    """Time both were speaking at once."""
    customer_longest_monologue_seconds: float
    """Longest customer speech run, pauses up to ``monologue_gap_ms`` bridged."""
    agent_longest_monologue_seconds: float
    """Longest agent speech run, pauses up to ``monologue_gap_ms`` bridged."""
    agent_talk_ratio: float | None
    """Agent share of all talk: agent / (agent + customer); None when nobody spoke."""

    def to_dict(self) -> dict[str, float | None]:
        """Plain JSON-ready mapping (for the calls row's JSONB column)."""
        return asdict(self)


class VadSmoother:
    """Smooths one channel's per-frame VAD decisions, one frame late.

    A raw speech frame counts only when a neighbouring frame is speech too (a lone frame is a
    click, not a word), and speech is held for ``hangover_frames`` after the last counted frame
    so that the dips between syllables do not flicker. Deciding frame t needs frame t+1, hence
    :meth:`step` answers for the previous frame.
    """

    __slots__ = ("_before", "_hang", "_hangover", "_pending")

    def __init__(self, hangover_frames: int) -> None:
        self._hangover = hangover_frames
        self._hang = 0
        self._before = False  # raw decision of frame t-2
        self._pending: bool | None = None  # raw decision of frame t-1, not yet smoothed

    def step(self, raw: bool) -> bool | None:
        """Take frame t's raw decision; return frame t-1's smoothed one (None on the first)."""
        pending = self._pending
        self._pending = raw
        if pending is None:
            return None
        before = self._before
        self._before = pending
        if pending and (before or raw):
            self._hang = self._hangover
            return True
        if self._hang > 0:
            self._hang -= 1
            return True
        return False


class TalkCounter:
    """Adds up smoothed speech decisions of both sides, one 20 ms frame per :meth:`add`."""

    __slots__ = (
        "_agent",
        "_agent_run",
        "_both",
        "_customer",
        "_customer_run",
        "_frames",
        "_gap_frames",
        "_neither",
    )

    def __init__(self, *, monologue_gap_frames: int) -> None:
        self._gap_frames = monologue_gap_frames
        self._frames = 0
        self._customer = 0
        self._agent = 0
        self._both = 0
        self._neither = 0
        # Per side: [run start, end of last speech frame, longest run], all in frames.
        self._customer_run = [0, -(10**9), 0]
        self._agent_run = [0, -(10**9), 0]

    def add(self, customer: bool, agent: bool) -> None:
        t = self._frames
        self._frames = t + 1
        if customer:
            self._customer += 1
            self._extend(self._customer_run, t)
            if agent:
                self._both += 1
                self._agent += 1
                self._extend(self._agent_run, t)
        elif agent:
            self._agent += 1
            self._extend(self._agent_run, t)
        else:
            self._neither += 1

    def _extend(self, run: list[int], t: int) -> None:
        if t - run[1] > self._gap_frames:
            run[0] = t  # the pause was too long: a new run starts here
        run[1] = t + 1
        length = t + 1 - run[0]
        if length > run[2]:
            run[2] = length

    def result(self) -> TalkAnalytics:
        def sec(frames: int) -> float:
            return round(frames * _FRAME_SECONDS, 2)

        talk = self._customer + self._agent
        return TalkAnalytics(
            duration_seconds=sec(self._frames),
            customer_talk_seconds=sec(self._customer),
            agent_talk_seconds=sec(self._agent),
            silence_seconds=sec(self._neither),
            overtalk_seconds=sec(self._both),
            customer_longest_monologue_seconds=sec(self._customer_run[2]),
            agent_longest_monologue_seconds=sec(self._agent_run[2]),
            agent_talk_ratio=round(self._agent / talk, 3) if talk else None,
        )


class TalkTimeline:
    """Who spoke when, from the same smoothed decisions :class:`TalkCounter` adds up: each
    side's speech runs, pauses up to ``gap_frames`` bridged, as [start, end) in seconds."""

    __slots__ = ("_frames", "_gap_frames", "_open", "_runs")

    def __init__(self, *, gap_frames: int) -> None:
        self._gap_frames = gap_frames
        self._frames = 0
        self._runs: list[tuple[str, int, int]] = []
        self._open: dict[str, list[int]] = {}
        """Per side, the run still growing: [start frame, end frame]."""

    def add(self, customer: bool, agent: bool) -> None:
        t = self._frames
        self._frames = t + 1
        for side, speaking in (("customer", customer), ("agent", agent)):
            if not speaking:
                continue
            run = self._open.get(side)
            if run is not None and t - run[1] <= self._gap_frames:
                run[1] = t + 1
                continue
            if run is not None:
                self._runs.append((side, run[0], run[1]))
            self._open[side] = [t, t + 1]

    @property
    def duration_seconds(self) -> float:
        return round(self._frames * _FRAME_SECONDS, 2)

    def segments(self) -> list[dict[str, float | str]]:
        """Every run so far (the growing ones too), ordered by start."""
        runs = self._runs + [(side, run[0], run[1]) for side, run in self._open.items()]
        return [
            {
                "who": side,
                "start": round(a * _FRAME_SECONDS, 2),
                "end": round(b * _FRAME_SECONDS, 2),
            }
            for side, a, b in sorted(runs, key=lambda r: (r[1], r[0]))
        ]


class SpeechAnalytics:
    """webrtcvad on each channel of a call, fed one pair of 20 ms frames per media-clock tick.

    ``aggressiveness`` is webrtcvad's mode, 0 (least) to 3 (most eager to call audio
    non-speech). Frames are 160 samples of 8 kHz 16-bit PCM, as bytes (native byte order) or
    int16 arrays. Digital silence skips the VAD (a silent frame is never speech).
    """

    def __init__(
        self,
        aggressiveness: int = 2,
        *,
        hangover_ms: int = 60,
        monologue_gap_ms: int = 300,
        timeline: TalkTimeline | None = None,
    ) -> None:
        """`timeline`, when given, also gets every frame's smoothed decisions."""
        if not 0 <= aggressiveness <= 3:
            raise RecordingError(f"VAD aggressiveness is 0..3, not {aggressiveness}")
        if hangover_ms < 0 or monologue_gap_ms < 0:
            raise RecordingError("hangover and monologue gap cannot be negative")
        self.aggressiveness = aggressiveness
        # webrtcvad keeps adaptive noise state per stream: one instance per channel.
        self._customer_vad = webrtcvad.Vad(aggressiveness)
        self._agent_vad = webrtcvad.Vad(aggressiveness)
        self._customer = VadSmoother(hangover_ms // FRAME_MS)
        self._agent = VadSmoother(hangover_ms // FRAME_MS)
        self._counter = TalkCounter(monologue_gap_frames=monologue_gap_ms // FRAME_MS)
        self._timeline = timeline

    def feed(
        self, customer: bytes | bytearray | np.ndarray, agent: bytes | bytearray | np.ndarray
    ) -> None:
        """Analyse one tick: the customer's and the agent's 20 ms frames."""
        if isinstance(customer, np.ndarray):
            customer = customer.astype("<i2", copy=False).tobytes()
        if isinstance(agent, np.ndarray):
            agent = agent.astype("<i2", copy=False).tobytes()
        if len(customer) != FRAME_BYTES or len(agent) != FRAME_BYTES:
            raise RecordingError(f"analytics takes 20 ms frames ({FRAME_BYTES} bytes per side)")
        self.feed_frames(bytes(customer), bytes(agent))

    def feed_frames(self, customer: bytes, agent: bytes) -> None:
        """Analyse consecutive ticks at once: the two sides' 20 ms frames back to back, as
        bytes of equal length (a recorder's batch)."""
        if len(customer) != len(agent) or len(customer) % FRAME_BYTES:
            raise RecordingError(f"analytics takes whole 20 ms frames ({FRAME_BYTES} bytes)")
        c_vad, a_vad = self._customer_vad.is_speech, self._agent_vad.is_speech
        c_step, a_step = self._customer.step, self._agent.step
        counter, timeline = self._counter, self._timeline
        for start in range(0, len(customer), FRAME_BYTES):
            end = start + FRAME_BYTES
            left, right = customer[start:end], agent[start:end]
            c_smooth = c_step(left != _SILENT_FRAME and c_vad(left, SAMPLE_RATE))
            a_smooth = a_step(right != _SILENT_FRAME and a_vad(right, SAMPLE_RATE))
            if c_smooth is not None and a_smooth is not None:
                counter.add(c_smooth, a_smooth)
                if timeline is not None:
                    timeline.add(c_smooth, a_smooth)

    def result(self) -> TalkAnalytics:
        """Statistics so far, the last frame included; feeding may go on afterwards."""
        customer, agent, counter = (
            copy.copy(self._customer),
            copy.copy(self._agent),
            copy.deepcopy(self._counter),
        )
        c_last, a_last = customer.step(False), agent.step(False)
        if c_last is not None and a_last is not None:
            counter.add(c_last, a_last)
        return counter.result()
