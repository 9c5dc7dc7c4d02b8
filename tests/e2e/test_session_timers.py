"""Session timers (RFC 4028) against real peers: SIPp callers that refresh, stop refreshing or
ask too little, a SIPp callee that makes the engine its refresher, and baresip, which knows
nothing of session timers.

The interval is 4 s so that a call lives past two intervals in seconds: the engine is run with
`min_se = 2` (RFC 4028 says no less than 90 s in real life; the config accepts less for tests)
and `session_expires = 4`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from callcenter.runtime import Engine, start_engine
from sip_test_env.audio import write_tone_wav
from sip_test_env.ports import free_port
from sip_test_env.sipp import (
    SippResult,
    SippUas,
    extension_csv,
    run_sipp,
    start_sipp_uas,
    write_inf_csv,
)
from telephony.call.session_timer import DISABLED
from telephony.sip import SipRequest, SipUri

from .conftest import agents_in_call, assert_no_state_left, engine_config
from .rawsip import RawSipClient

pytestmark = pytest.mark.peers

INTERVAL = 4
"""Session-Expires of every call here, seconds."""


@pytest.fixture
async def uas_port() -> int:
    return free_port("both")


@pytest.fixture
async def timer_engine(pg_url: str, tmp_path: Path, uas_port: int) -> AsyncIterator[Engine]:
    config = engine_config(
        extra_sip=f"session_expires = {INTERVAL}\nmin_se = 2",
        static={"150": f"sip:150@127.0.0.1:{uas_port}"},
        # A phone and a carrier that misbehave with session timers: off for them.
        extra=f'[[accounts]]\nextension = "151"\npassword = "pass151"\n'
        f'static_contact = "sip:151@127.0.0.1:{uas_port}"\nsession_timers = false\n\n'
        '[[trunks]]\nname = "quirky"\nallow_from = ["127.0.0.9"]\nsession_timers = false\n',
    )
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        yield engine
    finally:
        await engine.stop()


async def caller(
    engine: Engine, scenario: str, workdir: Path, *, interval: int = INTERVAL, timeout: float = 60
) -> SippResult:
    """One call of a uac_session_timer*.xml caller: 101 calls 150 asking for `interval`
    ([field4]); each pause of the scenario lasts half of it."""
    auth = "[authentication username=101 password=pass101]"
    rows = [("101", "150", "pass101", auth, str(interval))]
    return await run_sipp(
        scenario,
        f"127.0.0.1:{engine.sip_port}",
        calls=1,
        inf_csv=write_inf_csv(workdir / "calls.csv", rows),
        duration_ms=interval * 500,
        timeout=timeout,
        workdir=workdir / "uac",
    )


async def plain_caller(engine: Engine, extension: str, workdir: Path) -> SippResult:
    """101 calls `extension` for a second with uac_auth.xml, which names no session timer."""
    return await run_sipp(
        "uac_auth.xml",
        f"127.0.0.1:{engine.sip_port}",
        inf_csv=extension_csv(workdir / "calls.csv", [("101", extension, "pass101")]),
        duration_ms=1000,
        workdir=workdir / "uac",
    )


def callee(scenario: str, port: int, service: str, workdir: Path) -> tuple[SippUas, Path]:
    """A SIPp callee on `port` for one call (it exits once that is over) and the file where it
    logs every message it sees."""
    messages = workdir / "uas-messages.log"
    uas = start_sipp_uas(
        scenario,
        port=port,
        service=service,
        calls=1,
        workdir=workdir / "uas",
        extra_args=["-trace_msg", "-message_file", str(messages)],
    )
    return uas, messages


async def journal_row(db: Any, call_id: str | None = None) -> Any:
    """The finished calls row from 101 to 150 (the newest), once the journal wrote it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        row = await db.fetchrow(
            "SELECT outcome, hangup_cause, answered_at, ended_at FROM calls"
            " WHERE from_number = '101' AND to_number = '150' AND hangup_cause IS NOT NULL"
            " AND started_at > now() - interval '2 minutes' ORDER BY started_at DESC LIMIT 1"
        )
        if row is not None:
            return row
        assert loop.time() < deadline, "no journal row"
        await asyncio.sleep(0.1)


async def test_a_refreshed_call_survives_past_two_intervals_on_both_legs(
    timer_engine: Engine, uas_port: int, tmp_path: Path, db: Any
) -> None:
    """The caller refreshes its leg by re-INVITE (it is the refresher there); the callee makes
    the engine the refresher of the other leg, and the engine re-INVITEs it every half
    interval. The call lasts 10 s, two and a half intervals, and ends with the caller's BYE."""
    uas, messages = callee("uas_session_timer.xml", uas_port, "150", tmp_path)
    async with uas:
        result = await caller(timer_engine, "uac_session_timer.xml", tmp_path)
        assert result.ok, result.summary()
        await uas.wait(timeout=10)
    assert uas.result is not None and uas.result.failed == 0, uas.result.summary()
    # The callee saw the INVITE and the engine's refreshes: at 2, 4, 6 and 8 s at least.
    invites = messages.read_text(errors="replace").count("\nINVITE sip:")
    assert invites - 1 >= 4, invites
    row = await journal_row(db)
    assert row["outcome"] == "answered"
    assert row["hangup_cause"] == "caller-remote-bye"
    assert (row["ended_at"] - row["answered_at"]).total_seconds() > 2 * INTERVAL
    assert_no_state_left(timer_engine)


async def test_a_caller_that_stops_refreshing_is_hung_up(
    timer_engine: Engine, uas_port: int, tmp_path: Path, db: Any
) -> None:
    """The caller is the refresher and never refreshes: the engine BYEs both legs once the
    interval less a third has passed, and the journal says why."""
    uas, _ = callee("uas.xml", uas_port, "150", tmp_path)
    async with uas:
        result = await caller(timer_engine, "uac_session_timer_stop.xml", tmp_path, timeout=40)
        assert result.ok, result.summary()  # it got the BYE
        await uas.wait(timeout=10)
    assert uas.result is not None and uas.result.failed == 0, uas.result.summary()
    row = await journal_row(db)
    assert row["outcome"] == "answered"
    assert row["hangup_cause"] == "caller-session-expired"
    # Not before the expiry: the interval less min(32, interval / 3).
    lasted = (row["ended_at"] - row["answered_at"]).total_seconds()
    assert lasted >= INTERVAL - INTERVAL / 3 - 0.1, lasted
    assert_no_state_left(timer_engine)


async def test_a_callee_that_stops_refreshing_ends_the_whole_call(
    timer_engine: Engine, uas_port: int, tmp_path: Path, db: Any
) -> None:
    """The callee takes the refresher's part (refresher=uas) and never refreshes: the engine
    BYEs it at its leg's expiry, and the caller too (its own leg, at a 10 s interval, would
    have lasted longer)."""
    uas, _ = callee("uas_session_timer_stop.xml", uas_port, "150", tmp_path)
    async with uas:
        result = await caller(
            timer_engine, "uac_session_timer_stop.xml", tmp_path, interval=10, timeout=40
        )
        assert result.ok, result.summary()  # the caller got the BYE
        await uas.wait(timeout=10)
    assert uas.result is not None and uas.result.failed == 0, uas.result.summary()
    row = await journal_row(db)
    assert (row["outcome"], row["hangup_cause"]) == ("answered", "callee-session-expired")
    assert_no_state_left(timer_engine)


async def test_the_engine_asks_again_after_a_422(
    timer_engine: Engine, uas_port: int, tmp_path: Path, db: Any
) -> None:
    """The callee wants at least 6 s: its 422 makes the engine send the INVITE again (CSeq 2,
    Session-Expires 6), which it answers; the call then goes on as usual."""
    uas, messages = callee("uas_session_timer_422.xml", uas_port, "150", tmp_path)
    async with uas:
        result = await plain_caller(timer_engine, "150", tmp_path)
        assert result.ok, result.summary()
        await uas.wait(timeout=10)
    assert uas.result is not None and uas.result.failed == 0, uas.result.summary()
    assert "CSeq: 2 INVITE" in messages.read_text(errors="replace")
    row = await journal_row(db)
    assert (row["outcome"], row["hangup_cause"]) == ("answered", "caller-remote-bye")
    assert_no_state_left(timer_engine)


async def test_too_small_an_interval_gets_422_with_min_se(
    timer_engine: Engine, tmp_path: Path
) -> None:
    result = await caller(timer_engine, "uac_session_timer_422.xml", tmp_path, interval=1)
    assert result.ok, result.summary()
    assert timer_engine.ua.endpoint.responses_sent.get(422) == 1
    assert_no_state_left(timer_engine)


def invite(from_user: str, to_user: str) -> SipRequest:
    request = SipRequest(method="INVITE", uri=SipUri.parse(f"sip:{to_user}@127.0.0.1"))
    request.headers.add("From", f"<sip:{from_user}@127.0.0.1>;tag=1")
    request.headers.add("To", f"<sip:{to_user}@127.0.0.1>")
    return request


async def test_an_account_or_trunk_turns_session_timers_off(
    timer_engine: Engine, uas_port: int, tmp_path: Path
) -> None:
    ua = timer_engine.ua
    on = ua.config.session_timer
    assert on.enabled and on.session_expires == INTERVAL
    local, carrier = ("udp", "127.0.0.1", 5062), ("udp", "127.0.0.9", 5060)
    assert ua.session_timer_of(invite("15551234", "15550100"), carrier, incoming=True) == DISABLED
    assert ua.session_timer_of(invite("151", "101"), local, incoming=True) == DISABLED
    assert ua.session_timer_of(invite("101", "151"), local, incoming=False) == DISABLED
    assert ua.session_timer_of(invite("101", "150"), local, incoming=False) == on
    assert ua.session_timer_of(invite("101", "150"), local, incoming=True) == on
    # On the wire: the INVITE to 151 names no session timer.
    uas, messages = callee("uas.xml", uas_port, "151", tmp_path)
    async with uas:
        result = await plain_caller(timer_engine, "151", tmp_path)
        assert result.ok, result.summary()
        await uas.wait(timeout=10)
    received = messages.read_text(errors="replace")
    assert "\nINVITE sip:151@" in received
    assert "Session-Expires" not in received and "Min-SE" not in received


async def test_baresip_calls_get_no_session_timer(timer_engine: Engine, tmp_path: Path) -> None:
    """baresip names no `timer`: neither leg runs a session timer, so nothing will refresh or
    end the call however long it lasts."""
    tone = write_tone_wav(tmp_path / "tone.wav", 440, 5.0)
    async with agents_in_call(timer_engine, tmp_path, tone):
        legs = list(timer_engine.ua.calls.values())
        assert len(legs) == 2
        for leg in legs:
            assert not leg.session.timer.active and leg.session.get_timer() is None
        # The engine offered one to the callee, which ignored it.
        outgoing = next(leg for leg in legs if not leg.incoming)
        assert outgoing.invite.headers.get("Session-Expires") == str(INTERVAL)


async def test_require_timer_is_accepted_and_timer_advertised(timer_engine: Engine) -> None:
    """`Require: timer` no longer gets 420 Bad Extension; OPTIONS names timer in Supported."""
    client = await RawSipClient.open()
    try:
        server = ("127.0.0.1", timer_engine.sip_port)
        tag = secrets.token_hex(6)
        options = SipRequest(method="OPTIONS", uri=SipUri.parse(f"sip:{server[0]}:{server[1]}"))
        for name, value in (
            ("Via", f"SIP/2.0/UDP {client.host}:{client.port};branch=z9hG4bK{tag}"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:probe@{client.host}>;tag={tag}"),
            ("To", f"<sip:{server[0]}>"),
            ("Call-ID", tag),
            ("CSeq", "1 OPTIONS"),
            ("Require", "timer"),
        ):
            options.headers.add(name, value)
        client.send(bytes(options), server)
        answer = await client.response(timeout=2.0)
    finally:
        client.close()
    assert answer is not None and answer.status == 200, answer
    assert "timer" in answer.headers.get_all("Supported")
