"""The dashboard's call events as nodes announce them to each other (callcenter.live_share):
each kind comes back as it went, anything else is refused with a log line, not an error."""

from __future__ import annotations

import logging

import pytest

from callcenter.events import CallAnswered, CallEnded, CallRinging, CallStarted
from callcenter.live_share import decode, encode

EVENTS = [
    CallStarted("c1", "+12125551234", "+12025550100", "inbound", 1.5, campaign_id=3, lead_id=9),
    CallRinging("c1", ("101", "102")),
    CallAnswered("c1", "+12125551234", "101", 2.5),
    CallEnded("c1", "101", "answered", 12.0, 14.5),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_an_announced_event_comes_back_as_it_went(event: object) -> None:
    assert decode(encode("node-a", event)) == ("node-a", event)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "payload",
    ["not json", '{"node": "a"}', '{"node": "a", "kind": "TaskCreated"}',
     '{"node": "a", "kind": "CallRinging", "call_id": "c1"}'],
)  # fmt: skip
def test_a_payload_that_is_no_announcement_is_logged_and_ignored(
    payload: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        assert decode(payload) is None
    assert "unusable" in caplog.text
