"""Mixed media for calls with more than two ears (monitor, whisper, barge).

A plain bridge relays packets between two legs without decoding them. When a third party joins,
the legs leave the packet relay and each media-clock tick does: take the oldest unmixed frame
each party sent, mix them all with the call's MixMatrix (one saturating matrix product), send
every party the row it hears. A party's frames wait at most one tick, so the mix adds at most
one 20 ms frame of delay; a burst beyond `_DEPTH` frames drops the oldest rather than grow it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from telephony.media import FRAME_SAMPLES, Frame, FrameSource, MixMatrix

from .clock import MediaClock
from .media_session import MediaSession

logger = logging.getLogger(__name__)

# Frames a party may have waiting: two absorb the phase between packet arrival and the tick.
_DEPTH = 2


class Conference:
    """Mixes the audio of `sessions` (party i = sessions[i]) on the media clock while open.

    Opening takes the sessions off the packet relay (their `peer` links are cleared); closing
    stops the mix and leaves re-bridging to the owner, who knows which legs are still alive.
    """

    def __init__(
        self, clock: MediaClock, sessions: Sequence[MediaSession], matrix: MixMatrix
    ) -> None:
        if len(sessions) != matrix.parties:
            raise ValueError(f"{len(sessions)} sessions for a {matrix.parties}-party mix")
        self.sessions = tuple(sessions)
        self.matrix = matrix
        self._clock = clock
        self._queues: list[deque[Frame]] = [deque(maxlen=_DEPTH) for _ in sessions]
        self._inputs: npt.NDArray[np.int16] = np.zeros(
            (len(sessions), FRAME_SAMPLES), dtype=np.int16
        )
        self._extra: dict[int, FrameSource] = {}
        self._undo: list[Callable[[], None]] = []
        self._token: int | None = None
        self.ticks = 0
        """Mixes done (each sends one frame to every party that hears someone)."""

    @property
    def open(self) -> bool:
        return self._token is not None

    def start(self) -> None:
        for session in self.sessions:
            session.unbridge()
            session.continue_relayed_stream()
        for queue, session in zip(self._queues, self.sessions, strict=True):
            self._undo.append(session.listen(queue.append))
        self._token = self._clock.subscribe(self._tick)

    def set_matrix(self, matrix: MixMatrix) -> None:
        """Switch who hears whom from the next tick on."""
        if matrix.parties != self.matrix.parties:
            raise ValueError("a new matrix must keep the party count")
        self.matrix = matrix

    def play_to(self, party: int, source: FrameSource) -> None:
        """Add `source` to what `party` hears (a beep, a notice) until it ends."""
        self._extra[party] = source

    def close(self) -> None:
        if self._token is not None:
            self._clock.unsubscribe(self._token)
            self._token = None
        for undo in self._undo:
            undo()
        self._undo.clear()

    def _tick(self, _frame: int) -> None:
        inputs = self._inputs
        for i, queue in enumerate(self._queues):
            if queue:
                frame = queue.popleft()
                if frame.shape[0] == FRAME_SAMPLES:
                    inputs[i] = frame
                else:  # a phone sending 30 ms packets: fit to the frame, rarely taken
                    inputs[i] = np.resize(frame, FRAME_SAMPLES)
            else:
                inputs[i] = 0
        out = self.matrix.mix(inputs)
        for party, source in list(self._extra.items()):
            extra = source.next_frame()
            if extra is None:
                del self._extra[party]
                continue
            summed = out[party].astype(np.int32) + extra
            out[party] = np.clip(summed, -32768, 32767).astype(np.int16)
        routes = self.matrix.routes
        for party, session in enumerate(self.sessions):
            if routes[:, party].any() or party in self._extra:
                session.send_frame(out[party])
        self.ticks += 1
