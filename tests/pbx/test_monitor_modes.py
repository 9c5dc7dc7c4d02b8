"""Monitor modes as mix matrices: who hears whom in listen, whisper and barge."""

from __future__ import annotations

import numpy as np
import pytest

from pbx import MonitorMode, mode_matrix, parse_monitor
from pbx.monitor import AGENT, CUSTOMER, MODE_BY_DIGIT, SUPERVISOR

C, A, S = CUSTOMER, AGENT, SUPERVISOR
# (listener, speaker) pairs that must be open; every other pair must be closed.
HEARS = {
    MonitorMode.LISTEN: {(C, A), (A, C), (S, C), (S, A)},
    MonitorMode.WHISPER: {(C, A), (A, C), (S, C), (S, A), (A, S)},
    MonitorMode.BARGE: {(x, y) for x in range(3) for y in range(3) if x != y},
}


@pytest.mark.parametrize("mode", list(MonitorMode))
def test_matrix_of_each_mode(mode: MonitorMode) -> None:
    matrix = mode_matrix(mode)
    for listener in range(3):
        for speaker in range(3):
            assert matrix.hears(listener, speaker) == ((listener, speaker) in HEARS[mode])


def test_whisper_mix_keeps_the_supervisor_from_the_customer() -> None:
    t = np.arange(160) / 8000
    inputs = np.stack(
        [(8000 * np.sin(2 * np.pi * f * t)).astype(np.int16) for f in (600.0, 1000.0, 1500.0)]
    )
    out = mode_matrix(MonitorMode.WHISPER).mix(inputs)
    assert np.array_equal(out[C], inputs[A])
    assert np.array_equal(out[A], inputs[C] + inputs[S])
    assert np.array_equal(out[S], inputs[C] + inputs[A])


def test_barge_mix_saturates() -> None:
    loud = np.full((3, 160), 30000, dtype=np.int16)
    out = mode_matrix(MonitorMode.BARGE).mix(loud)
    assert (out == 32767).all()


def test_codes_and_digits() -> None:
    assert parse_monitor("*1103") == (MonitorMode.LISTEN, "103")
    assert parse_monitor("*2103") == (MonitorMode.WHISPER, "103")
    assert parse_monitor("*3103") == (MonitorMode.BARGE, "103")
    for other in ("*4103", "*2", "*21", "*8", "**103", "2103"):
        assert parse_monitor(other) is None
    assert [MODE_BY_DIGIT[d] for d in "456"] == list(MonitorMode)
