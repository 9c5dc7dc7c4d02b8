"""Ring-group strategies and agent presence, pure and with a virtual clock."""

from __future__ import annotations

from pbx.hunt import STRATEGIES, Hunt
from pbx.presence import AgentState, Presence
from pbx.registrar import Binding
from telephony.sip import NameAddr, SipUri

MEMBERS = ["101", "102", "103"]


def _binding(ext: str) -> Binding:
    uri = SipUri.parse(f"sip:{ext}@127.0.0.1:50{ext}")
    return Binding(ext, NameAddr(None, uri, {}), ("udp", "127.0.0.1", 5000), 1e9, "c", 1)


def _order(
    strategy: object, reachable: list[str], presence: Presence, now: float
) -> list[list[str]]:
    hunt = Hunt(MEMBERS, {m: [_binding(m)] for m in reachable}, presence, 5, 30, now)
    steps = strategy.steps(hunt)  # type: ignore[attr-defined]
    return [[t.extension for t in step.targets] for step in steps]


def test_ringall_rings_every_reachable_member_at_once() -> None:
    presence = Presence(MEMBERS, wrap_up_seconds=10, now=0)
    assert _order(STRATEGIES["ringall"](), ["101", "103"], presence, 0) == [["101", "103"]]
    assert _order(STRATEGIES["ringall"](), [], presence, 0) == []


def test_round_robin_rotates_the_first_member() -> None:
    presence = Presence(MEMBERS, wrap_up_seconds=10, now=0)
    rr = STRATEGIES["round-robin"]()
    assert _order(rr, MEMBERS, presence, 0) == [["101"], ["102"], ["103"]]
    assert _order(rr, MEMBERS, presence, 1) == [["102"], ["103"], ["101"]]
    assert _order(rr, ["101", "103"], presence, 2) == [["103"], ["101"]]


def test_longest_idle_first() -> None:
    presence = Presence(MEMBERS, wrap_up_seconds=0, now=0)
    for ext, ended in (("101", 50), ("102", 10), ("103", 30)):
        presence.call_started(ext, now=ended - 5)
        presence.call_ended(ext, now=ended)
    assert _order(STRATEGIES["longest-idle"](), MEMBERS, presence, 100) == [
        ["102"],
        ["103"],
        ["101"],
    ]


def test_presence_states_and_wrap_up_expiry() -> None:
    presence = Presence(["101"], wrap_up_seconds=10, now=0)
    changes: list[tuple[str, AgentState]] = []
    presence.on_change = lambda ext, state: changes.append((ext, state))
    assert presence.available("101", now=0)
    presence.call_started("101", now=5)
    assert presence.state("101", now=6) is AgentState.ON_CALL
    presence.call_ended("101", now=20)
    assert presence.state("101", now=25) is AgentState.WRAP_UP
    assert presence.state("101", now=30) is AgentState.AVAILABLE  # wrap-up ends by itself
    presence.call_started("101", now=40)
    presence.call_ended("101", now=50, wrap_up=False)  # internal call: no wrap-up
    assert presence.available("101", now=50)
    presence.set_away("101", True, now=60)
    assert presence.state("101", now=61) is AgentState.AWAY and not presence.available(
        "101", now=61
    )
    presence.set_away("101", False, now=70)
    assert presence.available("101", now=70)
    assert [s for _, s in changes] == [
        AgentState.ON_CALL, AgentState.WRAP_UP, AgentState.ON_CALL, AgentState.AVAILABLE,
        AgentState.AWAY, AgentState.AVAILABLE,
    ]  # fmt: skip
    assert not presence.available("999", now=0)


def test_presence_tells_pacing_how_long_calls_and_wrap_ups_run() -> None:
    presence = Presence(MEMBERS, wrap_up_seconds=10, now=0)
    assert presence.on_call_for("101", now=5) is None
    presence.call_started("101", now=5)
    presence.call_started("101", now=7)  # a second call does not restart the clock
    assert presence.on_call_for("101", now=12) == 7
    presence.call_ended("101", now=13)
    presence.call_ended("101", now=20)
    assert presence.on_call_for("101", now=21) is None
    assert presence.wrap_up_left("101", now=24) == 6
    assert presence.wrap_up_left("101", now=31) == 0


def test_presence_shares_away_and_wrap_up_and_shows_calls_of_other_nodes() -> None:
    """A cluster's nodes each keep a Presence: what one changes (away, wrap-up) is told to
    `on_share` and applied on the others by `apply_shared`; another node's call is
    `set_elsewhere`."""
    here = Presence(["101"], wrap_up_seconds=10, now=0)
    there = Presence(["101"], wrap_up_seconds=10, now=0)
    shared: list[str] = []
    seen: list[AgentState] = []
    here.on_share = shared.append
    there.on_change = lambda _ext, state: seen.append(state)

    def copy(now: float) -> None:
        there.apply_shared("101", *here.shared("101"), now=now)

    here.set_away("101", True, now=1)
    copy(1)
    assert there.state("101", now=2) is AgentState.AWAY
    here.set_away("101", False, now=3)
    copy(3)
    assert there.available("101", now=3)
    here.call_started("101", now=4)  # a call is the bookings' to share, not presence's
    there.set_elsewhere("101", True, now=4)
    assert there.state("101", now=5) is AgentState.ON_CALL and not there.available("101", now=5)
    assert there.on_call_for("101", now=6) == 2
    here.call_ended("101", now=8)
    copy(8)  # the wrap-up arrives before the booking's release (either may come first)
    assert there.state("101", now=8) is AgentState.ON_CALL
    there.set_elsewhere("101", False, now=8)
    assert there.state("101", now=9) is AgentState.WRAP_UP  # the wrap-up began over there
    assert there.wrap_up_left("101", now=9) == 9
    here.end_wrap_up("101", now=12)
    copy(12)
    assert there.available("101", now=12)
    assert shared == ["101"] * 4  # away, available, wrap-up begun, wrap-up ended
    assert seen == [
        AgentState.AWAY, AgentState.AVAILABLE, AgentState.ON_CALL, AgentState.WRAP_UP,
        AgentState.AVAILABLE,
    ]  # fmt: skip
    there.apply_shared("999", True, 0.0, now=0)  # not an agent here: nothing
    there.set_elsewhere("999", True, now=0)
