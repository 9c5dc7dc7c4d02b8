"""Recording every answered call: the glue between the PBX's bridged calls, the media clock and
the recordings package (which knows nothing of calls or SIP)."""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pbx import BridgedCall
from recordings import (
    CallRecorder,
    RecordingError,
    RecordingResult,
    RecordingStore,
    WriterThread,
)
from recordings.recorder import Side
from telephony.aio import Call, MediaClock, MediaSession

logger = logging.getLogger(__name__)


TICK_BATCH = 5
"""Media-clock frames handed to the recorders at once (100 ms): one slice of each side's
audio and one call per recorder for five frames; the recorders' buffers hold the audio that
arrives meanwhile."""
RECORDER_BUFFER_MS = 100 + TICK_BATCH * 20
"""Audio a recorder holds per side before it drops the oldest: the 100 ms a recorder ticked
frame by frame holds (late and 30 ms packets), plus a batch."""


@dataclass
class _Live:
    recorder: CallRecorder
    ticked: int
    """The recordings' tick count up to which this recorder has been advanced."""
    bridged: BridgedCall
    stops: list[Callable[[], None]]
    """Detach the recorder from the legs' audio (customer's first, then the agent's)."""
    legs: list[Call]
    """The legs each channel hears now (customer's, agent's): a transfer changes one."""
    paused: bool = False
    """An opt-out stopped the audio (silence is written meanwhile)."""


class Recordings:
    """Starts a stereo recording when a call is bridged (customer left, agent right) and
    finishes it when the call ends."""

    def __init__(self, store: RecordingStore, clock: MediaClock) -> None:
        self.store = store
        self.clock = clock
        self._live: dict[str, _Live] = {}
        self._ticks = 0
        """Media-clock frames since the first recording (they stop when none is live)."""
        self._clock_token: int | None = None
        self.writer = WriterThread()
        """Creates, appends and closes every recording's file off the event loop."""

    def __len__(self) -> int:
        return len(self._live)

    def start(self, bridged: BridgedCall) -> None:
        if bridged.b is None or bridged.a.media is None or bridged.b.media is None:
            return
        call_id = bridged.call_id
        live = self._live.get(call_id)
        if live is not None:
            # Answered again after a hand-off (a live call transferred into a queue): the
            # same file goes on, the agent channel follows the new agent.
            live.bridged = bridged
            self.follow(bridged)
            return
        try:
            path = self.store.path_for(call_id, bridged.summary.started_at)
            recorder = CallRecorder(path, writer=self.writer, max_buffered_ms=RECORDER_BUFFER_MS)
        except (RecordingError, OSError) as exc:
            # A full disk must not cost the customer the call: record nothing, say so loudly.
            logger.error("call %s: cannot record: %s", call_id, exc)
            return
        legs = _channels(bridged)
        stops = _listen(legs, recorder)
        assert stops is not None
        if self._clock_token is None:
            self._clock_token = self.clock.subscribe(self._tick)
        self._live[call_id] = _Live(recorder, self._ticks, bridged, stops, legs)
        bridged.summary.recording = str(recorder.path)

    def recording(self, call_id: str) -> bool | None:
        """Whether the call's audio goes into its file now (False: paused by an opt-out),
        None when the call has no recording."""
        live = self._live.get(call_id)
        return None if live is None else not live.paused

    def set_paused(self, bridged: BridgedCall, paused: bool) -> bool:
        """Opt-out: stop writing the parties' audio (the file goes on with silence, so its
        timeline stays the call's) or start again. Starts a recording for a call that has
        none (a DID with record = false) when asked to record. False when it cannot."""
        live = self._live.get(bridged.call_id)
        if live is None:
            if paused:
                return True
            self.start(bridged)
            return bridged.call_id in self._live
        if live.paused == paused:
            return True
        if paused:
            for stop in live.stops:
                stop()
            live.paused = True
            return True
        self._follow_legs(live, bridged)
        stops = _listen(live.legs, live.recorder)
        if stops is None:
            return False
        live.stops, live.paused = stops, False
        return True

    def follow(self, bridged: BridgedCall) -> None:
        """The call was transferred: the channel of the party who left follows whoever took
        its place (the agent channel, or the customer's when the customer's side handed the
        call on); the other channel and the file go on unchanged."""
        live = self._live.get(bridged.call_id)
        if live is None or bridged.b is None or bridged.b.media is None:
            return
        changed = self._follow_legs(live, bridged)
        if live.paused:
            return  # resuming listens to whoever is bridged then
        recorder = live.recorder
        for channel in changed:
            media = live.legs[channel].media
            if media is None:
                continue
            live.stops[channel]()
            live.stops[channel] = feed_recorder(media, recorder, _CHANNELS[channel])

    @staticmethod
    def _follow_legs(live: _Live, bridged: BridgedCall) -> list[int]:
        """Point the channels whose leg left the call at the legs that joined it; the
        channels changed."""
        now = [bridged.a, bridged.b]
        joined = [leg for leg in now if leg is not None and leg not in live.legs]
        changed = []
        for channel, leg in enumerate(live.legs):
            if leg not in now and joined:
                live.legs[channel] = joined.pop(0)
                changed.append(channel)
        return changed

    def finish(self, call_id: str) -> RecordingResult | None:
        live = self._live.pop(call_id, None)
        if live is None:
            return None
        if not self._live and self._clock_token is not None:
            self.clock.unsubscribe(self._clock_token)
            self._clock_token = None
        for stop in live.stops:
            stop()
        self._advance(live)  # the frames of the batch under way
        result = live.recorder.close()
        summary = live.bridged.summary
        summary.recording = str(result.path)
        summary.analytics = result.analytics.to_dict() if result.analytics is not None else None
        return result

    def _tick(self, _frame: int) -> None:
        self._ticks += 1
        if self._ticks % TICK_BATCH:
            return
        for live in list(self._live.values()):
            self._advance(live)

    def _advance(self, live: _Live) -> None:
        frames, live.ticked = self._ticks - live.ticked, self._ticks
        try:
            live.recorder.advance(frames)
        except RecordingError as exc:  # closed under us: say so, never stop the others
            logger.error("recording %s: %s", live.recorder.path, exc)

    async def close(self) -> None:
        """Once every call is finished: the writer's thread writes what it holds and ends."""
        await asyncio.to_thread(self.writer.stop)

    async def purge_forever(self, every: float = 3600.0) -> None:
        """Delete recordings past the retention time, once an hour."""
        while True:
            try:
                removed = await asyncio.to_thread(self.store.purge, datetime.now(UTC))
                if removed:
                    logger.info("recordings: purged %d files past retention", len(removed))
            except OSError as exc:
                logger.error("recordings: purge failed: %s", exc)
            await asyncio.sleep(every)


_CHANNELS: tuple[Side, Side] = ("customer", "agent")


def _channels(bridged: BridgedCall) -> list[Call]:
    """The legs of the customer and agent channels: the customer is the party whose number
    is the call's customer (the callee of an agent's call out, the caller of an inbound or
    dialer call); between agents, the caller."""
    assert bridged.b is not None
    customer = bridged.summary.customer
    if customer is not None and bridged.callee == customer and bridged.caller != customer:
        return [bridged.b, bridged.a]
    return [bridged.a, bridged.b]


def _listen(legs: list[Call], recorder: CallRecorder) -> list[Callable[[], None]] | None:
    """Feed the recorder both parties' audio (customer left, agent right); the undos, or None
    when a party has no media."""
    medias = [leg.media for leg in legs]
    if any(media is None for media in medias):
        return None
    return [
        feed_recorder(media, recorder, channel)
        for media, channel in zip(medias, _CHANNELS, strict=True)
        if media is not None
    ]


def feed_recorder(media: MediaSession, recorder: CallRecorder, side: Side) -> Callable[[], None]:
    """Feed a leg's audio into one channel of the recorder; the undo. The recorder takes
    little-endian PCM bytes: on such a machine the leg appends its decoded bytes to the
    channel's buffer itself (natively, once its relay is), elsewhere it pushes frames."""
    if sys.byteorder == "little":
        buffer, max_bytes = recorder.buffer(side)
        return media.record_into(buffer, max_bytes)
    return media.listen(functools.partial(recorder.push, side))
