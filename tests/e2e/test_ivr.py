"""Inbound IVR: a DID routed to a flow. A customer behind the carrier (baresip) hears the menu,
presses 1 and talks to an agent (baresip), or presses a wrong key, lets it time out and ends in
the flow's fallback; digits arrive as RFC 4733 (baresip), SIP INFO and in-band tones (an
in-process caller on our own UserAgent), each press recognised once. Prompts are tones of their
own frequency, so what the caller heard tells which prompts played in which order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from callcenter.config import ConfigError, parse_config
from callcenter.runtime import Engine, start_engine
from ivr import FlowResult
from pbx.b2bua import RINGBACK
from sip_test_env import carrier
from sip_test_env.audio import first_tone_time, read_wav, tone_frames, write_tone_wav, write_wav
from sip_test_env.baresip import BaresipPeer
from sip_test_env.ports import free_port
from sip_test_env.scripted_carrier import CARRIER_RTP_PORTS
from sip_test_env.sipp import run_sipp
from telephony.aio import EndpointConfig, UserAgent, UserAgentConfig
from telephony.media import dtmf_sequence
from telephony.sip import NameAddr, SipUri

from .conftest import (
    calls_settled,
    engine_config,
    engine_config_text,
    registrar_of,
)

pytestmark = pytest.mark.peers

SCENARIOS = Path(__file__).resolve().parent / "scenarios"

MENU_DID = "+12025550300"
DIGITS_DID = "+12025550301"
EXTERNAL_DID = "+12025550302"
MANAGER_DID = "+12025550303"
OUTSIDE_NUMBER = "15557654321"
CUSTOMER = "+12125557777"
# Prompt tones: far from DTMF frequencies and from the peers' own tones (600, 1000 Hz).
MENU_HZ, INVALID_HZ, TIMEOUT_HZ, BYE_HZ = 500, 2200, 2600, 300

MENU_FLOW = """\
start = "menu"

[nodes.menu]
kind = "menu"
prompts = ["menu.wav"]
choices = { "1" = "sales", "9" = "optout" }
timeout = 2
retries = 1
invalid_prompts = ["invalid.wav"]
timeout_prompts = ["timeout.wav"]
fallback = "later"

[nodes.sales]
kind = "transfer"
target = "agent:101"
timeout = 3
fallback = "later"

[nodes.later]
kind = "callback"
due_minutes = 30
text = "Asked for a call back in the phone menu"
next = "bye"

[nodes.optout]
kind = "opt-out"
next = "bye"

[nodes.bye]
kind = "hangup"
prompts = ["bye.wav"]
"""

DIGITS_FLOW = """\
start = "code"

[nodes.code]
kind = "collect"
prompts = ["menu.wav"]
variable = "code"
digits = 3
timeout = 4
next = "bye"

[nodes.bye]
kind = "hangup"
"""


EXTERNAL_FLOW = f"""\
start = "out"

[nodes.out]
kind = "transfer"
target = "number:{OUTSIDE_NUMBER}"
timeout = 5
"""


@pytest.fixture
def carrier_port() -> int:
    return free_port("both")


# "Press 1 for your manager": the caller's responsible manager from the CRM contact.
MANAGER_FLOW = """\
start = "manager"

[nodes.manager]
kind = "transfer"
target = "agent:{responsible}"
timeout = 5
fallback = "bye"

[nodes.bye]
kind = "hangup"
prompts = ["bye.wav"]
"""


def flows(tmp_path: Path) -> Path:
    folder = tmp_path / "flows"
    folder.mkdir()
    write_tone_wav(folder / "menu.wav", MENU_HZ, 1.5)
    write_tone_wav(folder / "invalid.wav", INVALID_HZ, 0.6)
    write_tone_wav(folder / "timeout.wav", TIMEOUT_HZ, 0.6)
    write_tone_wav(folder / "bye.wav", BYE_HZ, 0.6)
    (folder / "main.toml").write_text(MENU_FLOW)
    (folder / "digits.toml").write_text(DIGITS_FLOW)
    (folder / "external.toml").write_text(EXTERNAL_FLOW)
    (folder / "manager.toml").write_text(MANAGER_FLOW)
    return folder


def ivr_config(folder: Path, cache: Path, carrier_port: int = 9) -> str:
    return f"""
[ivr]
flows_dir = "{folder}"
prompt_cache = "{cache}"

[[trunks]]
name = "carrier"
allow_from = ["{carrier.CARRIER_IP}"]
outbound = "127.0.0.1:{carrier_port}"

[[dids]]
number = "{EXTERNAL_DID}"
trunk = "carrier"
route = "ivr:external"

[[dids]]
number = "{MENU_DID}"
trunk = "carrier"
route = "ivr:main"

[[dids]]
number = "{DIGITS_DID}"
trunk = "carrier"
route = "ivr:digits"

[[dids]]
number = "{MANAGER_DID}"
trunk = "carrier"
route = "ivr:manager"
"""


@pytest.fixture
async def ivr_engine(pg_url: str, tmp_path: Path, carrier_port: int) -> AsyncIterator[Engine]:
    folder, cache = flows(tmp_path), tmp_path / "prompt-cache"
    config = engine_config(extra=ivr_config(folder, cache, carrier_port))
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        yield engine
    finally:
        await engine.stop()


def agent(ext: str, engine: Engine, tmp_path: Path, tone: Path) -> BaresipPeer:
    return BaresipPeer(
        ext, workdir=tmp_path, registrar=registrar_of(engine), password=f"pass{ext}",
        audio_source=tone,
    )  # fmt: skip


async def result_of(engine: Engine, call_id: str | None = None) -> FlowResult:
    """The flow result of `call_id` (or of the only call) once its flow has ended."""
    assert engine.ivr is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        for cid, result in engine.ivr.results:
            if call_id is None or cid == call_id:
                return result
        assert loop.time() < deadline, "the flow did not end"
        await asyncio.sleep(0.05)


def heard_sequence(samples: np.ndarray, rate: int, freqs: dict[int, str]) -> list[str]:
    """Which prompt tones the caller heard, in order (runs of at least 100 ms)."""
    flags = {name: tone_frames(samples, hz, rate) for hz, name in freqs.items()}
    frames = len(next(iter(flags.values())))
    labels = [next((n for n, f in flags.items() if f[i]), None) for i in range(frames)]
    sequence: list[str] = []
    i = 0
    while i < frames:
        j = i
        while j < frames and labels[j] == labels[i]:
            j += 1
        label = labels[i]
        if label is not None and j - i >= 5 and (not sequence or sequence[-1] != label):
            sequence.append(label)
        i = j
    return sequence


PROMPTS = {MENU_HZ: "menu", INVALID_HZ: "invalid", TIMEOUT_HZ: "timeout", BYE_HZ: "bye"}


async def test_press_1_reaches_an_agent(ivr_engine: Engine, tmp_path: Path, db) -> None:
    customer_tone = write_tone_wav(tmp_path / "600.wav", 600, 20.0)
    agent_tone = write_tone_wav(tmp_path / "1000.wav", 1000, 20.0)
    async with (
        carrier.customer(CUSTOMER, workdir=tmp_path, audio_source=customer_tone) as caller,
        agent("101", ivr_engine, tmp_path, agent_tone) as a101,
    ):
        await a101.wait_registered()
        await caller.dial(carrier.did_uri(MENU_DID, ivr_engine.sip_port))
        await caller.wait_event("CALL_ESTABLISHED", timeout=5)
        await asyncio.sleep(0.8)  # into the menu prompt: the key stops it (barge-in)
        await caller.send_dtmf("1")
        await a101.wait_event("CALL_INCOMING", timeout=5)
        await asyncio.sleep(1.0)  # the caller hears ringback meanwhile, never silence
        await a101.accept()
        result = await result_of(ivr_engine)
        await asyncio.sleep(2.0)
        await caller.hangup()
        await a101.wait_event("CALL_CLOSED", timeout=5)
        rate, heard_by_customer, _ = read_wav(caller.recorded_wav())
        rate2, heard_by_agent, _ = read_wav(a101.recorded_wav())
    assert result.path == ["menu", "sales"] and result.digits == "1"
    assert (result.outcome, result.transferred_to) == ("transferred", "agent:101")
    menu_at = first_tone_time(heard_by_customer, MENU_HZ, rate)
    ring_at = first_tone_time(heard_by_customer, RINGBACK[0], rate, min_ratio=0.3)
    agent_at = first_tone_time(heard_by_customer, 1000, rate, min_duration=1.0)
    assert menu_at is not None and ring_at is not None and agent_at is not None
    assert menu_at < ring_at < agent_at
    # Barge-in: the 1.5 s menu prompt was cut short by the key.
    assert tone_frames(heard_by_customer, MENU_HZ, rate).sum() * 0.02 < 1.3
    assert first_tone_time(heard_by_agent, 600, rate2, min_duration=1.0) is not None
    await calls_settled(ivr_engine)
    row = await _last_closed_row(db, CUSTOMER)
    assert (row["direction"], row["did"], row["agent"], row["outcome"]) == (
        "inbound", MENU_DID, "101", "answered",
    )  # fmt: skip


async def test_the_flow_rings_the_callers_own_manager(ivr_engine: Engine, tmp_path: Path) -> None:
    """`agent:{responsible}` in an inbound flow is the CRM contact's responsible manager (the
    user amoCRM or Bitrix24 names, through user_map): the known customer reaches 102."""
    assert ivr_engine.store is not None
    await ivr_engine.store.upsert_contact(CUSTOMER, responsible="102")
    async with (
        carrier.customer(CUSTOMER, workdir=tmp_path) as caller,
        agent("102", ivr_engine, tmp_path, write_tone_wav(tmp_path / "1k.wav", 1000, 20.0)) as a102,
    ):
        await a102.wait_registered()
        await caller.dial(carrier.did_uri(MANAGER_DID, ivr_engine.sip_port))
        await caller.wait_event("CALL_ESTABLISHED", timeout=5)
        await a102.wait_event("CALL_INCOMING", timeout=5)
        await a102.accept()
        result = await result_of(ivr_engine)
        await caller.hangup()
        await a102.wait_event("CALL_CLOSED", timeout=5)
    assert (result.outcome, result.transferred_to) == ("transferred", "agent:102")
    await calls_settled(ivr_engine)


async def test_agent_not_answering_sends_the_caller_to_the_fallback(
    ivr_engine: Engine, tmp_path: Path, db
) -> None:
    """The agent's phone rings out: the caller, still in the flow, gets the fallback (callback
    task, goodbye) instead of being dropped."""
    agent_tone = write_tone_wav(tmp_path / "1000.wav", 1000, 20.0)
    async with (
        carrier.customer(CUSTOMER, workdir=tmp_path) as caller,
        agent("101", ivr_engine, tmp_path, agent_tone) as a101,
    ):
        await a101.wait_registered()
        await caller.dial(carrier.did_uri(MENU_DID, ivr_engine.sip_port))
        await caller.wait_event("CALL_ESTABLISHED", timeout=5)
        await asyncio.sleep(0.5)
        await caller.send_dtmf("1")
        await a101.wait_event("CALL_INCOMING", timeout=5)
        await a101.wait_event("CALL_CLOSED", timeout=6)  # rang out after the flow's 3 s
        result = await result_of(ivr_engine)
        await caller.wait_event("CALL_CLOSED", timeout=5)
        rate, heard, _ = read_wav(caller.recorded_wav())
    assert result.path == ["menu", "sales", "later", "bye"]
    assert ("sales", "no-answer") in result.events and result.callback_created
    assert result.outcome == "completed"
    ring_at = first_tone_time(heard, RINGBACK[0], rate, min_ratio=0.3)
    bye_at = first_tone_time(heard, BYE_HZ, rate)
    assert ring_at is not None and bye_at is not None and ring_at < bye_at  # rang, then bye
    assert first_tone_time(heard, 1000, rate) is None  # never connected to the agent
    await calls_settled(ivr_engine)
    row = await _last_closed_row(db, CUSTOMER)
    assert (row["outcome"], row["hangup_cause"], row["agent"]) == (
        "answered", "ivr-completed", None,
    )  # fmt: skip


async def test_wrong_key_then_timeouts_end_in_the_fallback(
    ivr_engine: Engine, tmp_path: Path, db
) -> None:
    """Wrong key: the invalid prompt, the menu again; then silence: the timeout prompt; the
    tries used up, the fallback makes a callback task and says goodbye."""
    phone = CUSTOMER
    await db.execute(
        "DELETE FROM tasks WHERE contact_id IN (SELECT id FROM contacts WHERE phone = $1)", phone
    )
    async with carrier.customer(CUSTOMER, workdir=tmp_path) as caller:
        await caller.dial(carrier.did_uri(MENU_DID, ivr_engine.sip_port))
        await caller.wait_event("CALL_ESTABLISHED", timeout=5)
        await asyncio.sleep(1.8)  # the whole menu prompt
        await caller.send_dtmf("5")
        result = await result_of(ivr_engine)
        await caller.wait_event("CALL_CLOSED", timeout=5)  # the flow hung up
        rate, heard, _ = read_wav(caller.recorded_wav())
    assert result.path == ["menu", "later", "bye"] and result.digits == "5"
    assert result.events == [
        ("menu", "invalid:5"), ("menu", "timeout"), ("menu", "retries-exhausted"),
    ]  # fmt: skip
    assert result.outcome == "completed" and result.listened_to_end and result.callback_created
    assert heard_sequence(heard, rate, PROMPTS) == ["menu", "invalid", "menu", "timeout", "bye"]
    await calls_settled(ivr_engine)
    row = await _last_closed_row(db, CUSTOMER)
    assert (row["did"], row["outcome"], row["hangup_cause"], row["agent"]) == (
        MENU_DID, "answered", "ivr-completed", None,
    )  # fmt: skip
    task = await db.fetchrow(
        "SELECT t.* FROM tasks t JOIN contacts c ON c.id = t.contact_id"
        " WHERE c.phone = $1 AND t.status = 'open'",
        phone,
    )
    assert task["type"] == "callback" and task["text"] == "Asked for a call back in the phone menu"
    assert task["created_from_call"] == row["id"]
    due = (task["due_at"] - row["started_at"]).total_seconds()
    assert 29 * 60 < due < 31 * 60


async def test_press_9_puts_the_number_on_the_dnc_list(
    ivr_engine: Engine, tmp_path: Path, db
) -> None:
    phone = CUSTOMER
    await db.execute("DELETE FROM dnc WHERE phone = $1", phone)
    async with carrier.customer(CUSTOMER, workdir=tmp_path) as caller:
        await caller.dial(carrier.did_uri(MENU_DID, ivr_engine.sip_port))
        await caller.wait_event("CALL_ESTABLISHED", timeout=5)
        await asyncio.sleep(0.5)
        await caller.send_dtmf("9")
        result = await result_of(ivr_engine)
        await caller.wait_event("CALL_CLOSED", timeout=5)
    assert result.path == ["menu", "optout", "bye"] and result.opted_out
    entry = await db.fetchrow("SELECT * FROM dnc WHERE phone = $1", phone)
    assert entry["campaign_id"] is None and entry["reason"] == "ivr opt-out"
    await calls_settled(ivr_engine)


async def test_rfc4733_digits_from_baresip(ivr_engine: Engine, tmp_path: Path) -> None:
    async with carrier.customer(CUSTOMER, workdir=tmp_path) as caller:
        await caller.dial(carrier.did_uri(DIGITS_DID, ivr_engine.sip_port))
        await caller.wait_event("CALL_ESTABLISHED", timeout=5)
        await asyncio.sleep(0.5)
        await caller.send_dtmf("123")
        result = await result_of(ivr_engine)
        await caller.wait_event("CALL_CLOSED", timeout=5)
    assert result.variables == {"code": "123"} and result.digits == "123"
    await calls_settled(ivr_engine)


def _uri(user: str, host: str, port: int) -> SipUri:
    return SipUri(
        scheme="sip", user=user, password=None, host=host, port=port, params={}, headers={}
    )


@pytest.mark.parametrize("how", ["info", "inband", "inband+info"])
async def test_info_and_inband_digits_once_each(ivr_engine: Engine, how: str) -> None:
    """A caller behind the carrier on our own UserAgent: digits as SIP INFO, as tones in the
    audio, or both for every press (one press must still be one digit)."""
    port = free_port("both")
    ua = UserAgent(
        UserAgentConfig(
            endpoint=EndpointConfig(host=carrier.CARRIER_IP, port=port),
            rtp_ports=CARRIER_RTP_PORTS,
        )
    )
    await ua.start()
    try:
        engine_port = ivr_engine.sip_port
        call = await ua.dial(
            _uri(DIGITS_DID, "127.0.0.1", engine_port),
            ("udp", "127.0.0.1", engine_port),
            from_=NameAddr(None, _uri(CUSTOMER, carrier.CARRIER_IP, port), {}),
        )
        await call.next_event(timeout=5)  # Answered
        await asyncio.sleep(0.3)
        for digit in "123":
            if "inband" in how:
                tone = asyncio.ensure_future(call.play(dtmf_sequence(digit, tone=0.1, gap=0.2)))
            if "info" in how:
                await call.send_dtmf(digit, method="info")
            if "inband" in how:
                await tone
            else:
                await asyncio.sleep(0.3)
        result = await result_of(ivr_engine, call.call_id)
        await asyncio.wait_for(call.ended, 5)
    finally:
        await ua.close()
    assert result.variables == {"code": "123"} and result.digits == "123", result
    await calls_settled(ivr_engine)


def test_bad_flow_file_is_refused_with_line_and_reason(tmp_path: Path) -> None:
    folder = flows(tmp_path)
    (folder / "main.toml").write_text(MENU_FLOW.replace('"1" = "sales"', '"1" = "salse"'))
    text = engine_config_text(extra=ivr_config(folder, tmp_path / "cache"))
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="test.toml")
    assert info.value.path == str(folder / "main.toml")
    assert info.value.line == 6 and "unknown node 'salse'" in info.value.reason
    (folder / "main.toml").write_text(MENU_FLOW.replace("bye.wav", "goodbye.wav"))
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="test.toml")
    assert info.value.line == MENU_FLOW.splitlines().index('prompts = ["bye.wav"]') + 1
    assert "prompt file goodbye.wav does not exist" in info.value.reason
    (folder / "main.toml").write_text(MENU_FLOW)
    missing = text.replace('route = "ivr:digits"', 'route = "ivr:nothing"')
    with pytest.raises(ConfigError, match="no IVR flow 'nothing'"):
        parse_config(missing, source="test.toml")


async def _last_closed_row(db: Any, caller: str) -> Any:
    """The caller's latest calls row once the journal has closed it (the write follows the
    call's end)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while True:
        row = await db.fetchrow(
            "SELECT * FROM calls WHERE from_number = $1 ORDER BY id DESC LIMIT 1", caller
        )
        if row is not None and row["ended_at"] is not None:
            return row
        assert loop.time() < deadline, row
        await asyncio.sleep(0.05)


async def test_info_digits_from_sipp(ivr_engine: Engine, tmp_path: Path) -> None:
    """SIPp, an independent SIP stack, sends its key presses only as SIP INFO."""
    result = await run_sipp(
        SCENARIOS / "uac_ivr_info.xml",
        f"127.0.0.1:{ivr_engine.sip_port}",
        service=DIGITS_DID,
        duration_ms=None,
        extra_args=["-i", carrier.CARRIER_IP],
        workdir=tmp_path / "sipp",
        timeout=20,
    )
    assert result.ok, result.summary()
    flow = await result_of(ivr_engine)
    assert flow.variables == {"code": "123"} and flow.digits == "123"
    assert flow.outcome == "completed"
    await calls_settled(ivr_engine)


async def test_inband_digits_from_baresip(ivr_engine: Engine, tmp_path: Path) -> None:
    """baresip's microphone plays key tones: a carrier that sends only in-band DTMF."""
    lead = np.zeros(8000, dtype=np.int16)  # 1 s: the call is answered, the prompt starts
    keys = np.concatenate([lead, dtmf_samples("123", tone=0.12, gap=0.2)])
    source = write_wav(tmp_path / "keys.wav", keys)
    async with carrier.customer(CUSTOMER, workdir=tmp_path, audio_source=source) as caller:
        await caller.dial(carrier.did_uri(DIGITS_DID, ivr_engine.sip_port))
        await caller.wait_event("CALL_ESTABLISHED", timeout=5)
        result = await result_of(ivr_engine)
        await caller.wait_event("CALL_CLOSED", timeout=5)
        assert not caller.events_of("CALL_DTMF_START")  # nothing but tones came from it
    assert result.variables == {"code": "123"} and result.digits == "123"
    await calls_settled(ivr_engine)


def dtmf_samples(digits: str, *, tone: float, gap: float) -> np.ndarray:
    return dtmf_sequence(digits, tone=tone, gap=gap, level_dbfs=-12.0).samples


async def test_transfer_to_an_external_number_through_the_trunk(
    ivr_engine: Engine, tmp_path: Path, carrier_port: int
) -> None:
    async with (
        carrier.outbound_carrier(carrier_port, calls=1, workdir=tmp_path / "carrier") as uas,
        carrier.customer(CUSTOMER, workdir=tmp_path) as caller,
    ):
        await caller.dial(carrier.did_uri(EXTERNAL_DID, ivr_engine.sip_port))
        await caller.wait_event("CALL_ESTABLISHED", timeout=5)
        result = await result_of(ivr_engine)
        bridged = next(iter(ivr_engine.switchboard.active.values()))
        assert bridged.b is not None
        # The flow's number, read as a US one, goes in the trunk's format (E.164 by default).
        assert str(bridged.b.invite.uri) == f"sip:+{OUTSIDE_NUMBER}@127.0.0.1:{carrier_port}"
        await asyncio.sleep(0.5)
        await caller.hangup()
        served = await uas.wait(timeout=10)
    assert (result.outcome, result.transferred_to) == ("transferred", f"number:{OUTSIDE_NUMBER}")
    assert served.successful == 1, served.summary()
    await calls_settled(ivr_engine)
