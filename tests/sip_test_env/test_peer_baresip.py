"""baresip fixtures without the engine: two softphones call each other directly."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from sip_test_env.audio import first_tone_time, read_wav, write_tone_wav
from sip_test_env.baresip import BaresipError, BaresipPeer
from sip_test_env.sipp import SippUas

pytestmark = pytest.mark.peers

BaresipFactory = Callable[..., Awaitable[BaresipPeer]]

DIGITS = "1234567890*#"


def _heard(peer: BaresipPeer, freq: float) -> float | None:
    rate, samples, _ = read_wav(peer.recorded_wav())
    return first_tone_time(samples, freq, rate)


async def test_direct_call_carries_tones_both_ways_and_dtmf(
    baresip_factory: BaresipFactory, tmp_path: Path
) -> None:
    alice = await baresip_factory(
        "alice", audio_source=write_tone_wav(tmp_path / "a.wav", 1000, 4.0)
    )
    bob = await baresip_factory("bob", audio_source=write_tone_wav(tmp_path / "b.wav", 600, 4.0))

    await alice.dial(bob.contact_uri)
    incoming = await bob.wait_event("CALL_INCOMING")
    assert incoming["peeruri"] == f"sip:alice@127.0.0.1:{alice.sip_port}"
    await bob.accept()
    await alice.wait_event("CALL_ESTABLISHED")
    await bob.wait_event("CALL_ESTABLISHED")

    await asyncio.sleep(0.5)
    await alice.send_dtmf(DIGITS)
    received = ""
    for _ in DIGITS:
        received += (await bob.wait_event("CALL_DTMF_START", timeout=3.0))["param"]
    assert received == DIGITS

    await alice.hangup()
    await alice.wait_event("CALL_CLOSED")
    await bob.wait_event("CALL_CLOSED")

    # Each side heard the other's tone from (nearly) the start of its recording, not its own.
    for listener, other_freq, own_freq in ((bob, 1000, 600), (alice, 600, 1000)):
        onset = _heard(listener, other_freq)
        assert onset is not None and onset < 1.0, (listener.name, onset)
        assert _heard(listener, own_freq) is None


async def test_a_peer_in_a_deep_directory_still_records_what_it_heard(
    baresip_factory: BaresipFactory, tmp_path: Path
) -> None:
    # sndfile's file names fit 127 bytes: deeper than that, the peer records through a short link.
    # (A peer dir of 110 characters, as under pytest-xdist's tmp dirs.)
    deep = tmp_path / ("d" * max(1, 110 - len(str(tmp_path / "baresip-alice")) - 1))
    alice = await baresip_factory("alice", workdir=deep, audio_source=write_tone_wav(
        tmp_path / "a.wav", 1000, 3.0))  # fmt: skip
    bob = await baresip_factory("bob", workdir=deep, answermode="auto")
    await alice.dial(bob.contact_uri)
    await alice.wait_event("CALL_ESTABLISHED")
    await asyncio.sleep(1.0)
    await alice.hangup()
    await bob.wait_event("CALL_CLOSED")
    assert bob.recorded_wav().name.endswith("-dec.wav")
    onset = _heard(bob, 1000)
    assert onset is not None and onset < 1.0, onset
    link = bob._snd_link
    assert link is not None and link.resolve() == bob.dir.resolve()
    await bob.stop()
    assert not link.exists() and not link.parent.exists()


async def test_switching_audio_source_mid_call(
    baresip_factory: BaresipFactory, tmp_path: Path
) -> None:
    alice = await baresip_factory("alice")
    bob = await baresip_factory("bob", answermode="auto")
    await alice.dial(bob.contact_uri)
    await alice.wait_event("CALL_ESTABLISHED")
    await asyncio.sleep(0.5)
    await alice.set_audio_source(write_tone_wav(tmp_path / "late.wav", 1500, 1.0))
    await asyncio.sleep(1.0)
    await alice.hangup()
    await bob.wait_event("CALL_CLOSED")
    onset = _heard(bob, 1500)
    assert onset is not None and 0.3 < onset < 1.5


async def test_busy_hangup_and_closed_reason(baresip_factory: BaresipFactory) -> None:
    alice = await baresip_factory("alice")
    bob = await baresip_factory("bob")
    await alice.dial(bob.contact_uri)
    await bob.wait_event("CALL_INCOMING")
    await bob.hangup()  # unanswered: 486
    closed = await alice.wait_event("CALL_CLOSED")
    assert "486" in closed["param"] or "Busy" in closed["param"], closed


async def test_direct_call_over_tcp(baresip_factory: BaresipFactory, tmp_path: Path) -> None:
    alice = await baresip_factory(
        "alice", transport="tcp", audio_source=write_tone_wav(tmp_path / "a.wav", 1000, 2.0)
    )
    bob = await baresip_factory("bob", transport="tcp", answermode="auto")
    assert bob.contact_uri.endswith(";transport=tcp")
    await alice.dial(bob.contact_uri)
    await alice.wait_event("CALL_ESTABLISHED")
    await asyncio.sleep(0.5)
    await alice.hangup()
    await bob.wait_event("CALL_CLOSED")
    onset = _heard(bob, 1000)
    assert onset is not None and onset < 1.0


async def test_registers_with_a_registrar(
    baresip_factory: BaresipFactory, sipp_uas_factory: Callable[..., Awaitable[SippUas]]
) -> None:
    registrar = await sipp_uas_factory("selftest_registrar.xml")
    agent = await baresip_factory("101", registrar=registrar.uri_host, password="pass101")
    await agent.wait_registered(timeout=5.0)
    assert agent.account_line().startswith(
        f"<sip:101@{registrar.uri_host}>;auth_pass=pass101;regint=600"
    )
    await agent.stop()
    result = await registrar.stop()
    assert result.successful >= 1, result.summary()


async def test_kill_and_stop_leave_no_process(baresip_factory: BaresipFactory) -> None:
    peer = await baresip_factory("carol")
    pid = peer.pid
    assert pid is not None and peer.running
    await peer.kill()
    assert not peer.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    await peer.stop()  # after a kill: no error, nothing left

    other = await baresip_factory("dave")
    other_pid = other.pid
    assert other_pid is not None
    await other.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(other_pid, 0)
    with pytest.raises(BaresipError):
        await other.command("reginfo")


async def test_wait_event_times_out_with_what_it_saw(baresip_factory: BaresipFactory) -> None:
    peer = await baresip_factory("erin")
    with pytest.raises(BaresipError, match="CALL_INCOMING"):
        await peer.wait_event("CALL_INCOMING", timeout=0.2)


async def test_rejects_source_wav_in_wrong_format(tmp_path: Path) -> None:
    wrong = write_tone_wav(tmp_path / "16k.wav", 1000, 0.2, rate=16000)
    peer = BaresipPeer("frank", workdir=tmp_path, audio_source=wrong)
    with pytest.raises(BaresipError, match="8000"):
        async with peer:
            pass
    assert not peer.running
