"""DND and call forwarding: the codes an agent dials, the API's settings, and what a call to
the extension does with them (pbx.forwarding, pure)."""

from __future__ import annotations

import pytest

from pbx.forwarding import (
    Forward,
    ForwardCode,
    Forwarding,
    ForwardingError,
    Refuse,
    Ring,
    apply_code,
    decide,
    parse_forward_code,
)
from pbx.monitor import parse_monitor
from pbx.pickup import parse_pickup
from pbx.presence import AgentState, Presence
from pbx.queue import parse_queue_code
from pbx.switchboard import FEATURE_CODES


@pytest.mark.parametrize(
    ("dialled", "code"),
    [
        ("*78", ForwardCode("dnd", True)),
        ("*79", ForwardCode("dnd", False)),
        ("*72103", ForwardCode("always", "103")),
        ("*72+74951234567", ForwardCode("always", "+74951234567")),
        ("*73", ForwardCode("always", None)),
        ("*90104", ForwardCode("busy", "104")),
        ("*91", ForwardCode("busy", None)),
        ("*9289161234567", ForwardCode("no_answer", "89161234567")),
        ("*93", ForwardCode("no_answer", None)),
    ],
)
def test_codes_parse_and_clash_with_no_other_feature(dialled: str, code: ForwardCode) -> None:
    assert parse_forward_code(dialled) == code
    assert dialled not in FEATURE_CODES
    assert parse_queue_code(dialled) is None
    assert parse_pickup(dialled) is None
    assert parse_monitor(dialled) is None


@pytest.mark.parametrize("dialled", ["*72", "*72abc", "*7", "*74", "*90x", "101", "*50", "**101"])
def test_other_strings_are_no_forwarding_code(dialled: str) -> None:
    assert parse_forward_code(dialled) is None


def test_codes_change_one_setting_each() -> None:
    settings = apply_code(Forwarding(), ForwardCode("busy", "104"))
    settings = apply_code(settings, ForwardCode("dnd", True))
    assert (settings.dnd, settings.busy, settings.always) == (True, "104", None)
    assert apply_code(settings, ForwardCode("busy", None)).busy is None


def test_api_updates_are_checked_and_keep_what_they_leave_out() -> None:
    settings = Forwarding(busy="104").updated({"no_answer": "103", "no_answer_after": 5})
    assert settings.to_json() == {
        "dnd": False, "always": None, "busy": "104", "no_answer": "103", "no_answer_after": 5.0,
    }  # fmt: skip
    assert settings.updated({"busy": None}).busy is None
    assert settings.updated({"busy": ""}).busy is None
    for bad, reason in [
        ({"dnd": "yes"}, "dnd must be true or false"),
        ({"always": "sip:x@y"}, "always must be an extension or a phone number"),
        ({"busy": 104}, "busy must be"),
        ({"no_answer_after": 0}, "from 1 to 300"),
        ({"no_answer_after": True}, "from 1 to 300"),
        ({"forward": "103"}, "unknown field 'forward'"),
        (["dnd"], "JSON object"),
    ]:
        with pytest.raises(ForwardingError, match=reason):
            settings.updated(bad)


def test_a_call_to_an_extension_honours_dnd_and_each_forward() -> None:
    free = {"busy": False, "registered": True}
    assert decide(Forwarding(), **free) == Ring(None, 20.0)
    assert decide(Forwarding(), busy=True, registered=True) == Refuse(486, "busy")
    assert decide(Forwarding(), busy=False, registered=False) == Refuse(480, "unavailable")
    assert decide(Forwarding(dnd=True), **free) == Refuse(486, "dnd")
    assert decide(Forwarding(dnd=True, busy="104"), **free) == Forward("104", "do-not-disturb")
    assert decide(Forwarding(always="105", dnd=True), **free) == Forward("105", "unconditional")
    assert decide(Forwarding(busy="104"), busy=True, registered=True) == Forward("104", "user-busy")
    no_answer = Forwarding(no_answer="103", no_answer_after=4)
    assert decide(no_answer, **free) == Ring("103", 4)
    assert decide(no_answer, busy=False, registered=False) == Forward("103", "unavailable")


def test_dnd_shows_as_away_apart_from_the_away_flag() -> None:
    changes: list[tuple[str, AgentState]] = []
    presence = Presence(["101"], wrap_up_seconds=0, now=0)
    presence.on_change = lambda ext, state: changes.append((ext, state))
    presence.set_dnd("101", True, now=1)
    assert presence.state("101", now=1) is AgentState.AWAY and presence.dnd("101")
    assert not presence.available("101", now=1)
    presence.set_away("101", True, now=2)  # *50 while in DND: still away, no change shown
    presence.set_away("101", False, now=3)  # *51 does not end DND
    assert presence.state("101", now=3) is AgentState.AWAY
    presence.set_dnd("101", False, now=4)
    assert presence.available("101", now=4)
    assert [state for _, state in changes] == [
        AgentState.AWAY, AgentState.AWAY, AgentState.AWAY, AgentState.AVAILABLE,
    ]  # fmt: skip
