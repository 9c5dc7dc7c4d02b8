"""How a failed transfer's attempt is named in the call's chain, by the status that ended it."""

from __future__ import annotations

import pytest

from pbx.b2bua import transfer_outcome


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (486, "busy"),
        (600, "busy"),
        (480, "no-answer"),  # also what a ring timeout gives
        (408, "no-answer"),
        (487, "no-answer"),  # we cancelled it: it rang out
        (603, "rejected"),
        (403, "rejected"),
        (500, "rejected"),
        (404, "unavailable"),
        (410, "unavailable"),
    ],
)
def test_the_status_names_the_outcome(status: int, outcome: str) -> None:
    assert transfer_outcome(status) == outcome
