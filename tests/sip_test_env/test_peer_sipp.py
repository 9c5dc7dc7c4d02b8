"""SIPp runner and scenarios without the engine: SIPp clients against SIPp servers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from sip_test_env.ports import free_port
from sip_test_env.sipp import (
    SippError,
    SippUas,
    extension_csv,
    run_sipp,
    scenario_path,
    write_inf_csv,
)

pytestmark = pytest.mark.peers

UasFactory = Callable[..., Awaitable[SippUas]]


async def test_uac_to_static_uas_20_calls_no_failures(
    sipp_uas_factory: UasFactory, tmp_path: Path
) -> None:
    # -m 20: the UAS exits by itself once its 20th call has left its 2 s timewait, so its
    # statistics are complete (stopping it earlier raced that last call).
    uas = await sipp_uas_factory("uas.xml", service="103", calls=20)
    users = write_inf_csv(tmp_path / "users.csv", [("101", "103", "")])
    result = await run_sipp(
        "uac_noauth.xml",
        uas.uri_host,
        calls=20,
        rate=10,
        inf_csv=users,
        duration_ms=300,
        workdir=tmp_path,
        timeout=20,
    )
    assert result.ok, result.summary()
    assert (result.successful, result.failed, result.created) == (20, 0, 20)
    served = await uas.wait(timeout=10)
    assert (served.successful, served.failed) == (20, 0), served.summary()


@pytest.mark.parametrize(
    ("scenario", "callee"),
    [("uac_auth.xml", "103"), ("uac_busy.xml", "busy"), ("uac_cancel.xml", "ring")],
)
async def test_authenticating_uac_scenarios(
    sipp_uas_factory: UasFactory, tmp_path: Path, scenario: str, callee: str
) -> None:
    # selftest_pbx challenges with 407 and fails the call unless credentials come back.
    pbx = await sipp_uas_factory("selftest_pbx.xml", calls=5)
    users = extension_csv(tmp_path / "users.csv", [("101", callee, "pass101")])
    result = await run_sipp(
        scenario,
        pbx.uri_host,
        calls=5,
        rate=10,
        inf_csv=users,
        duration_ms=200,
        workdir=tmp_path,
        timeout=20,
    )
    assert result.ok and result.successful == 5, result.summary()
    served = await pbx.wait(timeout=10)
    assert (served.successful, served.failed) == (5, 0), served.summary()


async def test_register_auth(sipp_uas_factory: UasFactory, tmp_path: Path) -> None:
    registrar = await sipp_uas_factory("selftest_registrar.xml")
    users = extension_csv(tmp_path / "users.csv", [("101", "", "pass101")])
    result = await run_sipp(
        "register_auth.xml", registrar.uri_host, calls=3, inf_csv=users, workdir=tmp_path
    )
    assert result.ok and result.successful == 3, result.summary()


@pytest.mark.parametrize(
    ("uac", "uas"),
    [
        ("uac_auth.xml", "uas.xml"),
        ("uac_busy.xml", "uas_busy.xml"),
        ("uac_cancel.xml", "uas_ring.xml"),
    ],
)
async def test_static_extensions_answer_busy_and_ring(
    sipp_uas_factory: UasFactory, tmp_path: Path, uac: str, uas: str
) -> None:
    # The callee scenarios as the engine will reach them; unchallenged, the callers skip auth.
    callee = await sipp_uas_factory(uas, service="104", calls=3)
    users = extension_csv(tmp_path / "users.csv", [("101", "104", "pass101")])
    result = await run_sipp(
        uac,
        callee.uri_host,
        calls=3,
        rate=10,
        inf_csv=users,
        duration_ms=200,
        workdir=tmp_path,
        timeout=15,
    )
    assert result.ok and result.successful == 3, result.summary()
    served = await callee.wait(timeout=10)
    assert (served.successful, served.failed) == (3, 0), served.summary()


async def test_failure_is_reported_not_hidden(tmp_path: Path) -> None:
    # Nobody listens on the target: the INVITE times out and SIPp reports a failed call.
    users = write_inf_csv(tmp_path / "users.csv", [("101", "103", "")])
    result = await run_sipp(
        "uac_noauth.xml",
        f"127.0.0.1:{free_port()}",
        calls=1,
        inf_csv=users,
        workdir=tmp_path,
        timeout=8,
        extra_args=["-recv_timeout", "1000"],
    )
    assert not result.ok
    assert result.returncode != 0 and result.failed == 1, result.summary()


def test_unknown_scenario() -> None:
    with pytest.raises(SippError):
        scenario_path("no_such_scenario.xml")
