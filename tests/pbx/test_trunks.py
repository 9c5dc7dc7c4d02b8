"""The failover order and availability of trunks (pbx.trunks), on a real UserAgent that is never
started: no network, only the bookkeeping."""

from __future__ import annotations

import pytest

from pbx.routing import Trunk
from pbx.trunks import TrunkManager, fails_over
from telephony.aio import UserAgent, UserAgentConfig
from telephony.sip.registration import RegistrationState


@pytest.mark.parametrize(
    ("status", "expected"),
    [(503, True), (500, True), (502, True), (504, True), (599, True), (408, True),
     (486, False), (404, False), (403, False), (480, False), (487, False), (603, False)],
)  # fmt: skip
def test_which_statuses_fail_over(status: int, expected: bool) -> None:
    assert fails_over(status) is expected


async def test_order_is_priority_then_file_order_and_unusable_trunks_are_skipped() -> None:
    ua = UserAgent(UserAgentConfig())
    trunks = [
        Trunk("c", outbound=("192.0.2.3", 5060), priority=5),
        Trunk("a", outbound=("192.0.2.1", 5060)),
        Trunk("b", outbound=("192.0.2.2", 5060)),
        Trunk("inbound-only", allow_from=("192.0.2.9",)),
        Trunk("named", outbound=("carrier.example", 5060), priority=-1),
    ]
    manager = TrunkManager(ua, trunks)
    # The host name resolves at start(); the inbound-only trunk places no calls.
    assert [s.trunk.name for s in manager.candidates()] == ["a", "b", "c"]
    assert [s.trunk.name for s in manager.candidates("b")] == ["b"]
    manager.states["a"].up = False  # qualify found it down
    assert [s.trunk.name for s in manager.candidates()] == ["b", "c"]
    snapshot = {row["name"]: row for row in manager.snapshot()}
    assert snapshot["a"]["available"] is False and snapshot["a"]["qualify"] is None
    assert snapshot["named"]["address"] is None and snapshot["named"]["available"] is False


async def test_a_registering_trunk_is_usable_only_while_registered() -> None:
    ua = UserAgent(UserAgentConfig())
    trunk = Trunk(
        "provider",
        register=True,
        username="4951234567",
        secret="s3cret-pass",
        registrar=("192.0.2.10", 5060),
        channels=2,
    )
    manager = TrunkManager(ua, [trunk])
    state = manager.states["provider"]
    state.registration = manager._registration(state)
    assert manager.candidates() == []  # not registered yet
    assert state.registration.config.contact.uri.user == "4951234567"  # type: ignore[union-attr]
    state.registration.state = RegistrationState.REGISTERED
    assert manager.candidates() == [state]
    assert state.credentials == ("4951234567", "s3cret-pass")
    row = manager.describe(state)
    assert row["registration"]["state"] == "registered" and row["channels"] == 2
    assert str(manager.route_uri(state, "15551230001")) == "sip:15551230001@192.0.2.10"
