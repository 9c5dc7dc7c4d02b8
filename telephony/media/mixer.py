"""Mixing: saturating sums of int16 frames, and the per-call matrix of who hears whom.

A bridged call is a small matrix: ``routes[speaker, listener]`` says whether a party's audio
reaches another's ear. Plain bridge: the two parties hear each other. Monitor: the supervisor
hears both, nobody hears the supervisor. Whisper: the supervisor's row reaches the agent's column
only. Barge: the supervisor's row reaches everyone. Mixing all outputs of a call (or of a batch
of calls with the same party count) is one integer matrix product.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from ._compat import AUDIOOP
from .frames import FRAME_SAMPLES, Frame

logger = logging.getLogger(__name__)

__all__ = ["MixMatrix", "mix", "mix_bytes"]


_audioop: Final = AUDIOOP


def mix(frames: Sequence[Frame], samples: int = FRAME_SAMPLES) -> Frame:
    """Sum frames in int32 and clip to int16; silence when there are none."""
    if not frames:
        return np.zeros(samples, dtype=np.int16)
    if len(frames) == 1:
        return np.array(frames[0], dtype=np.int16)
    acc = np.asarray(frames[0], dtype=np.int32).copy()
    for frame in frames[1:]:
        acc += frame
    return np.clip(acc, -32768, 32767).astype(np.int16)


def mix_bytes(a: bytes, b: bytes) -> bytes:
    """Saturating sum of two native-endian 16-bit PCM buffers of equal length (per-packet path;
    stdlib audioop when available)."""
    if _audioop is not None:
        out: bytes = _audioop.add(a, b, 2)
        return out
    return mix([np.frombuffer(a, dtype=np.int16), np.frombuffer(b, dtype=np.int16)]).tobytes()


class MixMatrix:
    """Who hears whom among ``parties`` parties of one call."""

    def __init__(self, parties: int, *, conference: bool = True) -> None:
        """Start as a conference (everyone hears everyone else) or, with ``conference=False``,
        with every path closed."""
        if parties < 1:
            raise ValueError("a mix needs at least one party")
        self.parties = parties
        self._routes = np.full((parties, parties), conference, dtype=bool)
        np.fill_diagonal(self._routes, False)
        self._gains: npt.NDArray[np.int32] | None = None

    @property
    def routes(self) -> npt.NDArray[np.bool_]:
        """A copy of ``routes[speaker, listener]``."""
        return self._routes.copy()

    def hears(self, listener: int, speaker: int) -> bool:
        return bool(self._routes[speaker, listener])

    def connect(self, speaker: int, listener: int) -> None:
        """Let ``listener`` hear ``speaker`` (a party never hears itself)."""
        if speaker != listener:
            self._routes[speaker, listener] = True
            self._gains = None

    def disconnect(self, speaker: int, listener: int) -> None:
        self._routes[speaker, listener] = False
        self._gains = None

    def isolate(self, party: int) -> None:
        """Nobody hears ``party`` and it hears nobody."""
        self._routes[party, :] = False
        self._routes[:, party] = False
        self._gains = None

    def mix(self, inputs: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        """Each party's output frame from everyone's input frame.

        ``inputs`` has shape (parties, samples), or (calls, parties, samples) for a batch of calls
        sharing this matrix; the result has the same shape, row i being what party i hears.
        """
        if self._gains is None:
            # listener x speaker, so that output = gains @ inputs.
            self._gains = self._routes.T.astype(np.int32)
        summed = np.matmul(self._gains, np.asarray(inputs, dtype=np.int32))
        out: npt.NDArray[np.int16] = np.clip(summed, -32768, 32767).astype(np.int16)
        return out
