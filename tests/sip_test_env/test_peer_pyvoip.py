"""pyVoIP wrapper without the engine: SIPp scripts stand in for the registrar and far end."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest

from sip_test_env.audio import first_tone_time, read_wav, tone_samples, write_ulaw
from sip_test_env.pyvoip_phone import PyVoipError, PyVoipPhone, int16_to_u8, u8_to_int16
from sip_test_env.sipp import SippUas

UasFactory = Callable[..., Awaitable[SippUas]]
PhoneFactory = Callable[..., Awaitable[PyVoipPhone]]


def test_8bit_conversion_matches_pyvoip_convention() -> None:
    # pyVoIP: 8-bit unsigned, 0x80 = silence (audioop.bias(lin8, 1, 128)).
    assert int16_to_u8(np.array([0, 32767, -32768, 256, -256], np.int16)) == bytes(
        [0x80, 0xFF, 0x00, 0x81, 0x7F]
    )
    tone = tone_samples(1000, 0.2)
    back = u8_to_int16(int16_to_u8(tone))
    assert np.max(np.abs(back.astype(np.int32) - tone)) < 256


@pytest.mark.peers
async def test_receives_call_audio_and_rfc4733_dtmf(
    sipp_uas_factory: UasFactory, pyvoip_factory: PhoneFactory, tmp_path: Path
) -> None:
    tone = write_ulaw(tmp_path / "tone.ulaw", tone_samples(1000, 1.0))
    server = await sipp_uas_factory("selftest_pyvoip_callee.xml", files={"tone.ulaw": tone})
    phone = await pyvoip_factory("101", "pass101", server_port=server.port)
    assert phone.status == "REGISTERED"

    call = await phone.wait_incoming(timeout=5)
    assert call.state == "RINGING"
    await call.answer()
    await call.wait_ended(timeout=8)  # the far end sends BYE after tone + DTMF

    assert call.get_dtmf() == "15#"
    heard = call.recorded_samples()
    onset = first_tone_time(heard, 1000)
    assert onset is not None and onset < 0.5, onset
    _, saved, _ = read_wav(call.save_recording(tmp_path / "heard.wav"))
    assert np.array_equal(saved, heard)
    assert phone.reinvites == 0


@pytest.mark.peers
async def test_places_call_with_401_auth_and_sends_audio(
    sipp_uas_factory: UasFactory, pyvoip_factory: PhoneFactory
) -> None:
    # The far end echoes RTP (-rtp_echo): the phone must hear its own tone back.
    server = await sipp_uas_factory("selftest_pyvoip_caller.xml", extra_args=["-rtp_echo"])
    phone = await pyvoip_factory("102", "pass102", server_port=server.port)
    call = await phone.call("echo")
    await call.wait_answered(timeout=3)
    call.play_tone(600, 1.0)
    await call.wait_ended(timeout=6)
    onset = first_tone_time(call.recorded_samples(), 600)
    assert onset is not None and onset < 0.5, onset
    await phone.stop()
    result = await server.stop()
    # Register, de-register and the call: all as scripted.
    assert result.failed == 0 and result.successful >= 2, result.summary()


@pytest.mark.peers
async def test_stop_leaves_no_pyvoip_threads(sipp_uas_factory: UasFactory, tmp_path: Path) -> None:
    server = await sipp_uas_factory("selftest_registrar.xml")
    before = set(threading.enumerate())
    async with PyVoipPhone("103", "pass103", server_port=server.port) as phone:
        assert phone.status == "REGISTERED"
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert all(t.daemon for t in leftover), leftover
    assert not [t for t in leftover if t.name in ("SIP Recieve", "RTP Receiver")], leftover


@pytest.mark.peers
async def test_registration_failure_is_reported(tmp_path: Path) -> None:
    from sip_test_env.ports import free_port

    phone = PyVoipPhone("104", "x", server_port=free_port("udp"), register_timeout=0.3)
    with pytest.raises(PyVoipError):
        async with phone:
            pass
