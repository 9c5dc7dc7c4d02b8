"""One audio source heard by many legs at once (music on hold for a queue's callers).

Each tick of the media clock takes one frame from the source and encodes it once per codec in
use, then sends the same payload to every listening leg under that leg's own RTP header: a
hundred callers hearing the same music cost one decode of the source and one or two G.711
encodes per frame, not a hundred (bench/bench_queue.py measures it).
"""

from __future__ import annotations

import logging

from telephony.media import CODECS, FrameSource

from .clock import MediaClock
from .media_session import MediaSession

logger = logging.getLogger(__name__)


class Playout:
    """Plays `source` to every leg added, from the frame it is at when the leg joins."""

    def __init__(self, source: FrameSource, clock: MediaClock) -> None:
        self.source = source
        self._clock = clock
        self._legs: dict[MediaSession, bool] = {}
        """The listening legs, True until their first packet (which carries the marker)."""
        self._token: int | None = None
        self.frames = 0
        """Frames taken from the source."""
        self.encodes = 0
        """Frames encoded (once per codec per frame)."""

    def __len__(self) -> int:
        return len(self._legs)

    def __contains__(self, leg: object) -> bool:
        return leg in self._legs

    def add(self, leg: MediaSession) -> None:
        """`leg` hears the source from now on (its own stream continues the relayed one)."""
        if leg in self._legs:
            return
        leg.continue_relayed_stream()
        self._legs[leg] = True
        if self._token is None:
            self._token = self._clock.subscribe(self._tick)

    def remove(self, leg: MediaSession) -> None:
        if self._legs.pop(leg, None) is not None and not self._legs and self._token is not None:
            self._clock.unsubscribe(self._token)
            self._token = None

    def close(self) -> None:
        self._legs.clear()
        if self._token is not None:
            self._clock.unsubscribe(self._token)
            self._token = None

    def _tick(self, _frame: int) -> None:
        samples = self.source.next_frame()
        if samples is None:
            self.close()
            return
        self.frames += 1
        encoded: dict[str, bytes] = {}
        for leg, first in list(self._legs.items()):
            codec = leg.codec_name
            payload = encoded.get(codec)
            if payload is None:
                payload = encoded[codec] = CODECS[codec].encode(samples)
                self.encodes += 1
            try:
                leg.send_payload(payload, len(samples), marker=first)
            except OSError as exc:  # the leg's socket is gone: it stops listening
                logger.info("playout: leg dropped: %s", exc)
                self.remove(leg)
                continue
            if first:
                self._legs[leg] = False


__all__ = ["Playout"]
