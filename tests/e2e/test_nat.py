"""The engine behind a NAT the test builds, and over IPv6.

NAT: this host plays the cloud VM's LAN; a router namespace does 1:1 NAT (SIP and the RTP range
forwarded, everything leaving SNATed to its public address, nothing else let in); a remote
agent's phone sits in an "outside" namespace. The engine binds 0.0.0.0 with `external_address`
set to the router's public address: the remote phone must be told that address (Via, Contact,
SDP), the agent on loopback its local one, and audio must flow both ways, checked by analysis
of what each phone recorded.

IPv6: an agent calls out through a carrier on [::1]; two phones on ::1 register with an engine
listening on [::1] and talk; an engine on :: (dual-stack) bridges a phone on 127.0.0.1 and one
on ::1.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from callcenter.config import parse_config
from callcenter.runtime import Engine, start_engine
from sip_test_env.audio import first_tone_time, read_wav, write_tone_wav
from sip_test_env.baresip import BaresipPeer
from sip_test_env.netns import NatLab, nat_lab
from sip_test_env.ports import free_port
from sip_test_env.tools import needs, require, require_root

from .conftest import ENGINE_RTP_PORTS, assert_no_state_left, connect, engine_config_text

pytestmark = pytest.mark.peers

CALL_SECONDS = 3.0


def _listening_on(text: str, listen: str) -> str:
    """The test config with SIP listening on `listen` (the first listen= is [sip]'s)."""
    return re.sub(r'listen = "127\.0\.0\.1:\d+"', f'listen = "{listen}"', text, count=1)


async def _talk(caller: BaresipPeer, callee: BaresipPeer) -> None:
    """Caller dials callee, both play their tone for CALL_SECONDS, the caller hangs up."""
    await connect(caller, callee)
    await asyncio.sleep(CALL_SECONDS)  # the audio under test: a duration, not a wait for state


NUMBER = "+12025557654"
"""A customer's number out through a trunk (the carrier's baresip answers as this user)."""
TONES = {"101": 1000.0, "102": 600.0, NUMBER: 800.0}
"""What each phone plays."""


def _phone(user: str, workdir: Path, registrar: str, **options: str) -> BaresipPeer:
    tone = write_tone_wav(workdir / f"{user}.wav", TONES[user], 10.0)
    return BaresipPeer(
        user,
        workdir=workdir,
        registrar=registrar,
        password=f"pass{user}",
        audio_source=tone,
        **options,  # type: ignore[arg-type]
    )


def _carrier(workdir: Path, port: int, host: str, **options: str) -> BaresipPeer:
    """The far end of calls out through a trunk: answers calls for NUMBER at host:port."""
    return BaresipPeer(
        NUMBER,  # baresip takes calls for its own user only
        workdir=workdir,
        sip_port=port,
        host=host,
        answermode="auto",
        audio_source=write_tone_wav(workdir / "far-end.wav", TONES[NUMBER], 10.0),
        **options,  # type: ignore[arg-type]
    )


def _trunk(outbound: str, allow_from: str) -> str:
    return (
        f'[[trunks]]\nname = "carrier"\nallow_from = ["{allow_from}"]\n'
        f'outbound = "{outbound}"\ncaller_id = "+12025550100"\n'
    )


async def _call_out(engine: Engine, agent: BaresipPeer, far_end: BaresipPeer) -> str:
    """The agent dials NUMBER; once both ends are up, the INVITE the engine sent out."""
    await agent.wait_registered()
    await agent.dial(NUMBER)
    await agent.wait_event("CALL_ESTABLISHED", timeout=5)
    await far_end.wait_event("CALL_ESTABLISHED", timeout=5)
    (bridged,) = engine.switchboard.active.values()
    assert bridged.b is not None
    return bytes(bridged.b.invite).decode()


async def _hang_up_and_check_audio(
    engine: Engine, caller: BaresipPeer, callee: BaresipPeer
) -> None:
    """Caller hangs up; each phone must have heard the other's tone within a second; the
    engine is left with no call state."""
    await caller.hangup()
    await caller.wait_event("CALL_CLOSED", timeout=5)
    await callee.wait_event("CALL_CLOSED", timeout=5)
    for phone, other in ((caller, callee), (callee, caller)):
        rate, samples, _ = read_wav(phone.recorded_wav())
        at = first_tone_time(samples, TONES[other.user], rate)
        assert at is not None and at < 1.0, f"{other.user}'s tone reached {phone.user} at {at}"
    deadline = asyncio.get_running_loop().time() + 5
    while engine.ua.calls or engine.switchboard.active:
        assert asyncio.get_running_loop().time() < deadline, engine.ua.calls
        await asyncio.sleep(0.05)
    assert_no_state_left(engine)


@dataclass
class Natted:
    engine: Engine
    lab: NatLab
    port: int
    """The engine's SIP port (the same on the NAT's public address)."""
    carrier_port: int
    """Where the carrier outside takes the engine's outbound calls."""


@pytest.fixture
async def natted(pg_url: str, tmp_path: Path) -> AsyncIterator[Natted]:
    """The engine on 0.0.0.0 behind the NAT, its external address set; a trunk to a carrier
    in the outside namespace."""
    require("baresip", "ip", "iptables")
    require_root("network namespaces, veth links and iptables build the NAT")
    port, carrier_port = free_port("both"), free_port("both")
    with nat_lab(sip_port=port, rtp_ports=ENGINE_RTP_PORTS) as lab:
        text = engine_config_text(
            extra_sip=f'external_address = "{lab.public_address}"\n',
            extra=_trunk(f"{lab.phone_address}:{carrier_port}", lab.phone_address),
        )
        config = parse_config(_listening_on(text, f"0.0.0.0:{port}"), source="test.toml")
        engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
        try:
            yield Natted(engine, lab, port, carrier_port)
        finally:
            await engine.stop()


async def test_remote_agent_through_the_engines_nat_talks_both_ways(
    natted: Natted, tmp_path: Path
) -> None:
    engine, lab, port = natted.engine, natted.lab, natted.port
    async with (
        _phone("101", tmp_path, f"127.0.0.1:{port}") as inside,
        _phone(
            "102",
            tmp_path,
            f"{lab.public_address}:{port}",
            host=lab.phone_address,
            netns=lab.outside,
        ) as remote,
    ):
        await _talk(remote, inside)
        # What each leg was told: the remote phone the NAT's address, the local one its own.
        legs = {call.peer[1]: call for call in engine.ua.calls.values()}
        assert set(legs) == {lab.phone_address, "127.0.0.1"}, legs
        remote_leg, inside_leg = legs[lab.phone_address], legs["127.0.0.1"]
        assert remote_leg.media is not None and inside_leg.media is not None
        assert f"c=IN IP4 {lab.public_address}\r\n" in remote_leg.media.local_sdp().decode()
        assert "c=IN IP4 127.0.0.1\r\n" in inside_leg.media.local_sdp().decode()
        assert f"sip:{lab.public_address}:{port}" == str(remote_leg.session.contact.uri)
        # Its REGISTER came straight from the phone: the NAT rewrote only destinations.
        (binding,) = engine.switchboard.registrar.lookup("102", now=engine.ua.loop.time())
        assert binding.peer[1] == lab.phone_address
        await _hang_up_and_check_audio(engine, remote, inside)


async def test_an_agent_calls_out_to_a_carrier_beyond_the_nat(
    natted: Natted, tmp_path: Path
) -> None:
    engine, lab, port = natted.engine, natted.lab, natted.port
    async with (
        _carrier(tmp_path, natted.carrier_port, lab.phone_address, netns=lab.outside) as far_end,
        _phone("101", tmp_path, f"127.0.0.1:{port}") as agent,
    ):
        invite = await _call_out(engine, agent, far_end)
        public = lab.public_address
        assert f"Via: SIP/2.0/UDP {public}:{port};" in invite
        assert f"Contact: <sip:{public}:{port}>\r\n" in invite
        assert f"From: <sip:+12025550100@{public}>;" in invite  # the trunk's caller ID
        assert re.search(rf"^o=\S+ \d+ \d+ IN IP4 {re.escape(public)}\r$", invite, re.M)
        assert f"\r\nc=IN IP4 {public}\r\n" in invite
        assert "10.213." not in invite and "0.0.0.0" not in invite
        await asyncio.sleep(CALL_SECONDS)
        await _hang_up_and_check_audio(engine, agent, far_end)


@needs("baresip")
async def test_two_phones_talk_over_ipv6(pg_url: str, tmp_path: Path) -> None:
    port = free_port("both")
    config = parse_config(_listening_on(engine_config_text(), f"[::1]:{port}"), source="test.toml")
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        registrar = f"[::1]:{port}"
        async with (
            _phone("101", tmp_path, registrar, host="::1") as a,
            _phone("102", tmp_path, registrar, host="::1") as b,
        ):
            await _talk(a, b)
            for call in engine.ua.calls.values():
                assert call.peer[1] == "::1"
                assert call.media is not None
                assert "c=IN IP6 ::1\r\n" in call.media.local_sdp().decode()
                assert str(call.session.contact.uri) == f"sip:[::1]:{port}"
            await _hang_up_and_check_audio(engine, a, b)
    finally:
        await engine.stop()


@needs("baresip")
async def test_a_dual_stack_engine_bridges_an_ipv4_and_an_ipv6_phone(
    pg_url: str, tmp_path: Path
) -> None:
    port = free_port("both")
    config = parse_config(_listening_on(engine_config_text(), f"[::]:{port}"), source="test.toml")
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        async with (
            _phone("101", tmp_path, f"127.0.0.1:{port}") as v4,
            _phone("102", tmp_path, f"[::1]:{port}", host="::1") as v6,
        ):
            await _talk(v4, v6)
            sdp = {call.peer[1]: call.media.local_sdp() for call in engine.ua.calls.values()}
            assert b"c=IN IP4 127.0.0.1\r\n" in sdp["127.0.0.1"]  # never ::ffff:127.0.0.1
            assert b"c=IN IP6 ::1\r\n" in sdp["::1"]
            await _hang_up_and_check_audio(engine, v4, v6)
    finally:
        await engine.stop()


@needs("baresip")
async def test_an_agent_calls_out_through_an_ipv6_trunk(pg_url: str, tmp_path: Path) -> None:
    port, carrier_port = free_port("both"), free_port("both")
    text = _listening_on(
        engine_config_text(extra=_trunk(f"[::1]:{carrier_port}", "::1")), f"[::]:{port}"
    )
    engine = await start_engine(
        parse_config(text, source="test.toml"), database_url=pg_url, data_dir=tmp_path
    )
    try:
        async with (
            _carrier(tmp_path, carrier_port, "::1") as far_end,
            _phone("101", tmp_path, f"127.0.0.1:{port}") as agent,
        ):
            invite = await _call_out(engine, agent, far_end)
            assert f"INVITE sip:{NUMBER}@[::1]:{carrier_port} SIP/2.0\r\n" in invite
            assert f"Contact: <sip:[::1]:{port}>\r\n" in invite
            assert "From: <sip:+12025550100@[::1]>;" in invite  # the trunk's caller ID
            assert "c=IN IP6 ::1\r\n" in invite
            await asyncio.sleep(CALL_SECONDS)
            await _hang_up_and_check_audio(engine, agent, far_end)
    finally:
        await engine.stop()
