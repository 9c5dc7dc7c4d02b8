"""The flow runner over a scripted caller: paths, digits, retries, barge-in, actions."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr import FlowContext, FlowResult, FlowRunner, load_flow
from ivr.flow import successors
from sip_test_env.audio import write_tone_wav
from telephony.media import tone_samples

from .fakes import FakeActions, FakeCall, frames_of

MENU_FLOW = """\
start = "welcome"

[nodes.welcome]
kind = "menu"
prompts = ["menu.wav"]
choices = { "1" = "sales", "9" = "optout" }
timeout = 3
retries = 1
invalid_prompts = ["invalid.wav"]
timeout_prompts = ["timeout.wav"]
fallback = "later"

[nodes.sales]
kind = "transfer"
target = "agent:101"
timeout = 12
fallback = "later"

[nodes.later]
kind = "callback"
due_minutes = 30
text = "IVR caller wants a call back"
prompts = ["callback.wav"]
next = "bye"

[nodes.optout]
kind = "opt-out"
prompts = ["removed.wav"]

[nodes.bye]
kind = "hangup"
prompts = ["bye.wav"]
"""


@pytest.fixture
def flow_dir(tmp_path: Path) -> Path:
    for i, name in enumerate(["menu", "invalid", "timeout", "callback", "removed", "bye", "msg"]):
        write_tone_wav(tmp_path / f"{name}.wav", 400 + 100 * i, 0.1)
    return tmp_path


def runner(
    flow_dir: Path, text: str = MENU_FLOW, **kwargs: object
) -> tuple[FlowRunner, FakeActions]:
    (flow_dir / "flow.toml").write_text(text)
    actions = FakeActions(**kwargs)  # type: ignore[arg-type]
    return FlowRunner(load_flow(flow_dir / "flow.toml"), actions), actions


CONTEXT = FlowContext(caller="+12125551234", call_id="fake-call")


async def test_press_1_transfers(flow_dir: Path) -> None:
    flow, actions = runner(flow_dir)
    call = FakeCall(answers=["1"])
    result = await flow.run(call, CONTEXT)
    assert result.path == ["welcome", "sales"] and result.digits == "1"
    assert (result.outcome, result.transferred_to) == ("transferred", "agent:101")
    assert actions.transfers == [("agent:101", 12.0)]
    assert call.heard == ["menu"] and not call.hung_up and result.listened_to_end
    assert call.inband_on == 0  # in-band detection stops before the bridge


async def test_wrong_digit_plays_invalid_prompt_then_retries(flow_dir: Path) -> None:
    flow, _actions = runner(flow_dir)
    call = FakeCall(answers=["5", "1"])
    result = await flow.run(call, CONTEXT)
    assert call.heard == ["menu", "invalid", "menu"]
    assert result.events == [("welcome", "invalid:5"), ("welcome", "choice:1")]
    assert result.digits == "51" and result.outcome == "transferred"


async def test_timeouts_use_up_the_retries_then_fallback(flow_dir: Path) -> None:
    flow, actions = runner(flow_dir)
    call = FakeCall(answers=[None, None])
    result = await flow.run(call, CONTEXT)
    assert call.heard == ["menu", "timeout", "menu", "timeout", "callback", "bye"]
    assert result.path == ["welcome", "later", "bye"]
    assert result.events[-1] == ("welcome", "retries-exhausted")
    assert call.waits == [3.0, 3.0]
    assert actions.callbacks == [(None, timedelta(minutes=30), "IVR caller wants a call back")]
    assert result.callback_created and result.outcome == "completed" and call.hung_up
    assert result.listened_to_end


async def test_a_digit_stops_the_prompt_and_is_the_choice(flow_dir: Path) -> None:
    flow, actions = runner(flow_dir)
    call = FakeCall(during=[("menu", "9")])
    result = await flow.run(call, CONTEXT)
    assert call.heard == ["menu!", "removed"]
    assert result.path == ["welcome", "optout"] and result.digits == "9"
    assert result.opted_out and actions.opt_outs == [("+12125551234", "global")]
    assert call.waits == []  # the barge-in digit answered the menu: no wait


async def test_no_agent_answers_falls_back_to_callback(flow_dir: Path) -> None:
    flow, _actions = runner(flow_dir, connect=False)
    call = FakeCall(answers=["1"])
    result = await flow.run(call, CONTEXT)
    assert result.path == ["welcome", "sales", "later", "bye"]
    assert ("sales", "no-answer") in result.events and result.callback_created
    assert call.inband_on == 0 and call.hung_up


async def test_caller_hanging_up_mid_prompt(flow_dir: Path) -> None:
    flow, _ = runner(flow_dir)
    call = FakeCall(during=[("menu", "hangup")])
    result = await flow.run(call, CONTEXT)
    assert result.outcome == "caller-hangup" and not result.listened_to_end
    assert result.path == ["welcome"]


async def test_caller_hanging_up_while_the_menu_waits(flow_dir: Path) -> None:
    flow, _ = runner(flow_dir)
    result = await flow.run(FakeCall(answers=["hangup"]), CONTEXT)
    assert result.outcome == "caller-hangup" and result.listened_to_end


COLLECT_FLOW = """\
start = "ask"

[nodes.ask]
kind = "collect"
prompts = ["msg.wav"]
variable = "order"
digits = 4
terminator = "#"
fallback = "bye"
next = "check"

[nodes.check]
kind = "branch"
field = "order"
one_of = ["123", "456"]
then = "vip"
else = "bye"

[nodes.vip]
kind = "branch"
agents_available = "ringgroup:sales"
then = "sales"
else = "bye"

[nodes.sales]
kind = "transfer"
target = "ringgroup:sales"

[nodes.bye]
kind = "hangup"
"""


async def test_collect_with_terminator_and_branches(flow_dir: Path) -> None:
    flow, _ = runner(flow_dir, COLLECT_FLOW, available={"ringgroup:sales"})
    call = FakeCall(answers=["1", "2", "3", "#"])
    result = await flow.run(call, CONTEXT)
    assert result.variables == {"order": "123"} and result.digits == "123#"
    assert result.path == ["ask", "check", "vip", "sales"]
    flow, _actions = runner(flow_dir, COLLECT_FLOW, available=set())
    result = await flow.run(FakeCall(answers=["4", "5", "6", "7"]), CONTEXT)
    assert result.variables == {"order": "4567"}
    assert result.path == ["ask", "check", "bye"]
    result = await flow.run(FakeCall(answers=[None]), CONTEXT)
    assert result.path == ["ask", "bye"] and ("ask", "nothing-entered") in result.events


HOURS_FLOW = """\
start = "open"

[nodes.open]
kind = "branch"
hours = "mon-fri 09:00-17:00"
timezone = "Europe/Berlin"
then = "msg"
else = "bye"

[nodes.msg]
kind = "play"
prompts = ["msg.wav"]
next = "lead"

[nodes.lead]
kind = "branch"
field = "tier"
equals = "gold"
then = "bye"
else = "bye2"

[nodes.bye]
kind = "hangup"

[nodes.bye2]
kind = "hangup"
prompts = ["bye.wav"]
"""


@pytest.mark.parametrize(
    ("when", "tier", "path"),
    [
        (datetime(2026, 11, 23, 8, 30, tzinfo=UTC), "gold", ["open", "msg", "lead", "bye"]),
        (datetime(2026, 11, 23, 7, 30, tzinfo=UTC), "gold", ["open", "bye"]),  # 08:30 Berlin
        (datetime(2026, 11, 22, 12, 0, tzinfo=UTC), "gold", ["open", "bye"]),  # Sunday
        (datetime(2026, 11, 23, 12, 0, tzinfo=UTC), "iron", ["open", "msg", "lead", "bye2"]),
    ],
)
async def test_branch_on_hours_and_lead_data(
    flow_dir: Path, when: datetime, tier: str, path: list[str]
) -> None:
    (flow_dir / "flow.toml").write_text(HOURS_FLOW)
    flow = FlowRunner(load_flow(flow_dir / "flow.toml"), FakeActions(), clock=lambda: when)
    context = FlowContext(caller="+1", data={"tier": tier})
    result = await flow.run(FakeCall(), context)
    assert result.path == path


VOICEMAIL_FLOW = """\
start = "drop"

[nodes.drop]
kind = "voicemail-drop"
prompts = ["msg.wav"]
beep_timeout = 20
"""


async def test_voicemail_drop_waits_for_the_beep(flow_dir: Path) -> None:
    flow, _ = runner(flow_dir, VOICEMAIL_FLOW)
    rng = np.random.default_rng(1)
    greeting = (rng.normal(0, 3000, 8000)).astype(np.int16)  # noise: not a beep
    beep = tone_samples([1000.0], 0.4, level_dbfs=-10.0)
    after = np.zeros(1600, dtype=np.int16)
    call = FakeCall(heard_by_machine=frames_of(np.concatenate([greeting, beep, after])))
    result = await flow.run(call, CONTEXT)
    assert result.events == [("drop", "beep")] and result.voicemail_left
    assert call.heard == ["msg"] and call.hung_up


async def test_voicemail_drop_plays_anyway_without_a_beep(flow_dir: Path) -> None:
    text = VOICEMAIL_FLOW.replace("beep_timeout = 20", "beep_timeout = 0")
    flow, _ = runner(flow_dir, text)
    call = FakeCall(heard_by_machine=[])
    result = await flow.run(call, CONTEXT)
    assert result.events == [("drop", "no-beep")] and call.heard == ["msg"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    answers=st.lists(st.sampled_from(["1", "5", "9", "#", None, "hangup"]), max_size=8),
    barge=st.lists(
        st.tuples(
            st.sampled_from(["menu", "invalid", "timeout", "callback"]),
            st.sampled_from(["1", "9", "5", "hangup"]),
        ),
        max_size=3,
    ),
    connect=st.booleans(),
)
def test_any_caller_walks_a_valid_path(
    flow_dir: Path,
    answers: list[str | None],
    barge: list[tuple[str, str]],
    connect: bool,
) -> None:
    """Whatever the caller does, the walk follows the flow's edges, ends, and hangs up unless
    transferred; the digits recorded are exactly the ones pressed and read."""
    flow, _ = runner(flow_dir, connect=connect)

    async def walk() -> tuple[FlowResult, FakeCall]:
        call = FakeCall(answers=list(answers), during=list(barge))
        return await flow.run(call, CONTEXT), call

    result, call = asyncio.run(walk())
    nodes = flow.flow.nodes
    assert result.path[0] == "welcome"
    for here, there in itertools.pairwise(result.path):
        assert there in {name for _, name in successors(nodes[here])}
    assert result.outcome in ("completed", "transferred", "caller-hangup")
    assert call.hung_up == (result.outcome != "transferred")
    assert set(result.digits) <= set("159#")


PRESS_1_FLOW = """\
start = "message"

[nodes.message]
kind = "menu"
prompts = ["msg.wav"]
choices = { "1" = "manager_free", "9" = "optout" }
retries = 0
fallback = "bye"

[nodes.manager_free]
kind = "branch"
agents_available = "agent:{manager}"
then = "to_manager"
else = "group_free"

[nodes.to_manager]
kind = "transfer"
target = "agent:{manager}"
fallback = "group_free"

[nodes.group_free]
kind = "branch"
agents_available = "ringgroup:sales"
then = "to_group"
else = "later"

[nodes.to_group]
kind = "transfer"
target = "ringgroup:sales"
fallback = "later"

[nodes.later]
kind = "callback"
assignee = "{manager}"
due_minutes = 60
prompts = ["callback.wav"]

[nodes.optout]
kind = "opt-out"
scope = "campaign"

[nodes.bye]
kind = "hangup"
"""


@pytest.mark.parametrize(
    ("manager", "available", "path", "assignee"),
    [
        ("102", {"agent:102", "ringgroup:sales"}, ["to_manager"], None),
        ("102", {"ringgroup:sales"}, ["group_free", "to_group"], None),
        ("102", set(), ["group_free", "later"], "102"),
        (None, {"ringgroup:sales"}, ["group_free", "to_group"], None),  # no manager: skip
    ],
)
async def test_press_1_routing_by_lead_data(
    flow_dir: Path,
    manager: str | None,
    available: set[str],
    path: list[str],
    assignee: str | None,
) -> None:
    """The broadcast's press 1: the lead's manager if free, else the group, else a callback
    task for the manager; `{manager}` comes from the lead's data."""
    flow, actions = runner(flow_dir, PRESS_1_FLOW, available=available)
    data = {"manager": manager} if manager else {}
    context = FlowContext(caller="+15550001", campaign_id=7, lead_id=3, data=data)
    result = await flow.run(FakeCall(answers=["1"]), context)
    assert result.path == ["message", "manager_free", *path]
    if "later" in path:
        assert actions.callbacks == [(assignee, timedelta(hours=1), "")]
    else:
        assert result.transferred_to == actions.transfers[-1][0]


async def test_opt_out_scoped_to_the_campaign(flow_dir: Path) -> None:
    flow, actions = runner(flow_dir, PRESS_1_FLOW)
    context = FlowContext(caller="+15550001", campaign_id=7)
    result = await flow.run(FakeCall(answers=["9"]), context)
    assert result.opted_out and actions.opt_outs == [("+15550001", "campaign")]
