"""REST call control on a live trunk call (baresip customer, baresip agent 103): hold (the
customer hears the music on hold instead of the agent) and resume, recording opt-out (the file
goes on with silence, then records again), a spoken prompt to the customer, hang-up."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from callcenter.runtime import start_engine
from sip_test_env.audio import first_tone_time, level_dbfs, read_wav, write_tone_wav
from sip_test_env.carrier import CARRIER_IP
from telephony.sip import SipRequest

from .callfloor import (
    CUSTOMER,
    DID_103,
    bridged_call,
    call_in,
    customer,
    floor_config,
    idle,
    phone,
)
from .conftest import ADMIN_KEY, api_url, engine_config
from .rawsip import RawSipClient

pytestmark = pytest.mark.peers

CUSTOMER_HZ, AGENT_HZ, MUSIC_HZ = 600, 1000, 800


async def test_hold_resume_recording_opt_out_prompt_and_hangup_over_the_api(
    pg_url: str, tmp_path: Path, db: Any
) -> None:
    music = write_tone_wav(tmp_path / "music.wav", MUSIC_HZ, 5.0)
    config = engine_config(extra_sip=f'music_on_hold = "{music}"\n', extra=floor_config())
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http,
            customer(tmp_path, write_tone_wav(tmp_path / "c.wav", CUSTOMER_HZ, 30.0)) as caller,
            phone("103", engine, tmp_path, write_tone_wav(tmp_path / "a.wav", AGENT_HZ, 30.0))
            as agent,
        ):  # fmt: skip
            await agent.wait_registered()
            await call_in(engine, caller, DID_103)
            await agent.wait_event("CALL_INCOMING", timeout=5)
            await agent.accept()
            await caller.wait_event("CALL_ESTABLISHED", timeout=5)
            bridged = bridged_call(engine)
            call = api_url(engine, f"/calls/{bridged.a.call_id}")

            async def post(path: str, body: Any = None, status: int = 200) -> Any:
                async with http.post(call + path, json=body) as response:
                    assert response.status == status, await response.text()
                    return await response.json()

            await asyncio.sleep(1.0)
            assert (await post("/hold"))["state"] == "held"
            await asyncio.sleep(1.5)  # the customer hears the music
            assert (await post("/resume"))["state"] == "talking"
            await asyncio.sleep(1.0)
            assert (await post("/recording", {"record": False}))["recording"] is False
            await asyncio.sleep(1.5)  # nothing of this goes into the file
            assert (await post("/recording", {"record": True}))["recording"] is True
            await asyncio.sleep(1.0)
            await post("/recording", {"record": "no"}, status=400)
            await post("/play", {"text": "Your call is important", "to": "sideways"}, status=400)
            await post("/play", {"text": "Your call is important to us"}, status=202)
            await asyncio.sleep(2.0)
            assert (await post("/hangup"))["state"] == "ending"
            await caller.wait_event("CALL_CLOSED", timeout=5)
            await agent.wait_event("CALL_CLOSED", timeout=5)
            heard = caller.recorded_wav()
            await idle(engine)
    finally:
        await engine.stop()
    rate, samples, _ = read_wav(heard)
    at_agent, at_music = (
        first_tone_time(samples, AGENT_HZ, rate),
        first_tone_time(samples, MUSIC_HZ, rate),
    )
    assert at_agent is not None and at_music is not None and at_agent < at_music
    # The recording: a second and more of silence on both channels where the customer opted out.
    rate, stereo, _ = read_wav(Path(bridged.summary.recording or ""))
    frame = rate // 10
    quiet = [
        all(level_dbfs(stereo[i : i + frame, ch].astype(np.float64)) < -50 for ch in (0, 1))
        for i in range(0, len(stereo) - frame, frame)
    ]
    longest = run = 0
    for q in quiet:
        run = run + 1 if q else 0
        longest = max(longest, run)
    assert longest >= 10, quiet  # >= 1 s of silence
    assert first_tone_time(stereo[:, 0].copy(), CUSTOMER_HZ, rate) is not None
    row = await db.fetchrow("SELECT * FROM calls WHERE call_id = $1", bridged.a.call_id)
    assert row["hangup_cause"] == "caller-api-hangup"


async def test_a_live_call_whose_call_id_is_all_digits_is_found_by_it(
    pg_url: str, tmp_path: Path
) -> None:
    # Some phones' Call-IDs are all digits (baresip's 16 hex digits, now and then): the API
    # must not take a live call's Call-ID for a calls row id.
    call_id = "0479677278439844"
    engine = await start_engine(engine_config(extra=floor_config()), database_url=pg_url,
                                data_dir=tmp_path)  # fmt: skip
    carrier_side = await RawSipClient.open(CARRIER_IP)
    try:
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http,
            phone("103", engine, tmp_path) as agent,
        ):
            await agent.wait_registered()
            server = ("127.0.0.1", engine.sip_port)
            carrier_side.send(carrier_side.invite(CUSTOMER, DID_103, server, call_id=call_id),
                              server)  # fmt: skip
            await agent.wait_event("CALL_INCOMING", timeout=5)
            await agent.accept()
            ok = None
            while ok is None:
                response = await carrier_side.response(timeout=5)
                assert response is not None, "no 200 for the carrier's INVITE"
                if response.status == 200:
                    ok = response
            to = ok.headers.get("To")
            ack = (
                f"ACK sip:{DID_103}@127.0.0.1:{engine.sip_port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {carrier_side.host}:{carrier_side.port};branch=z9hG4bKack1\r\n"
                f"Max-Forwards: 70\r\nFrom: {ok.headers.get('From')}\r\nTo: {to}\r\n"
                f"Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
            )
            carrier_side.send(ack.encode(), server)
            assert bridged_call(engine).a.call_id == call_id
            async with http.post(api_url(engine, f"/calls/{call_id}/hangup")) as response:
                assert response.status == 200, await response.text()
            bye = await carrier_side.receive(timeout=5)
            assert isinstance(bye, SipRequest) and bye.method == "BYE", bye
            await agent.wait_event("CALL_CLOSED", timeout=5)
            await idle(engine)
    finally:
        carrier_side.close()
        await engine.stop()
