"""The REST API over real PostgreSQL: calls, recordings (with Range), tasks, contacts, presence;
API keys and roles; bad requests get a 4xx with a JSON reason and change nothing."""

from __future__ import annotations

import wave
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from callcenter.runtime import Engine
from crm_bridge import CallbackRequest, CallEnded, CallStarted

from .conftest import AGENT_KEY, api_url, bearer

PHONE = "+12125550147"


async def _seed(engine: Engine) -> tuple[int, int]:
    """One missed inbound call with a callback task, one answered call with a recording."""
    assert engine.store is not None and engine.recordings is not None
    now = datetime.now(UTC)
    missed = CallStarted("api-missed", "inbound", PHONE, "15550100", now, did="15550100",
                         customer_phone=PHONE)  # fmt: skip
    task = await engine.store.call_ended(
        await engine.store.call_started(missed),
        CallEnded(now + timedelta(seconds=20), "missed", 480, "ring-timeout"),
        callback=CallbackRequest("103", now + timedelta(minutes=15), "call back"),
    )
    assert task is not None
    wav_path = engine.recordings.store.path_for("api-answered", now)
    with wave.open(str(wav_path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x01\x00\x02\x00" * 8000)
    answered = CallStarted("api-answered", "inbound", PHONE, "15550100", now, customer_phone=PHONE)
    row = await engine.store.call_started(answered)
    await engine.store.call_ended(
        row,
        CallEnded(now + timedelta(seconds=30), "answered", 200, "caller-bye",
                  answered_at=now + timedelta(seconds=5), agent="102",
                  recording_path=str(wav_path.relative_to(engine.recordings.store.root))),
    )  # fmt: skip
    return row, task.id


async def _get(http: aiohttp.ClientSession, engine: Engine, path: str, key: str | None = None,
               **kwargs: Any) -> tuple[int, Any]:  # fmt: skip
    headers = bearer(key) if key else bearer()
    async with http.get(api_url(engine, path), headers=headers, **kwargs) as response:
        body = await response.read()
        kind = response.headers.get("Content-Type", "")
        return response.status, (await response.json()) if "json" in kind else body


async def test_calls_recordings_tasks_contacts(engine: Engine) -> None:
    call_row, task_id = await _seed(engine)
    async with aiohttp.ClientSession() as http:
        status, body = await _get(http, engine, f"/calls?phone={PHONE.replace('+', '%2B')}")
        assert status == 200
        outcomes = {c["call_id"]: c["outcome"] for c in body["calls"]}
        assert outcomes == {"api-missed": "missed", "api-answered": "answered"}
        status, body = await _get(http, engine, "/calls?outcome=answered&agent=102")
        assert status == 200 and "api-answered" in [c["call_id"] for c in body["calls"]]
        status, call = await _get(http, engine, f"/calls/{call_row}")
        assert status == 200 and call["agent"] == "102" and call["talk_seconds"] == 25.0

        status, wav = await _get(http, engine, f"/calls/{call_row}/recording")
        assert status == 200 and wav[:4] == b"RIFF" and len(wav) == 44 + 32000
        async with http.get(api_url(engine, f"/calls/{call_row}/recording"),
                            headers={**bearer(), "Range": "bytes=44-143"}) as response:  # fmt: skip
            assert response.status == 206
            assert await response.read() == b"\x01\x00\x02\x00" * 25

        status, body = await _get(http, engine, "/tasks?status=open&assignee=103")
        assert status == 200 and task_id in [t["id"] for t in body["tasks"]]
        async with http.post(api_url(engine, f"/tasks/{task_id}/complete"),
                             headers=bearer(AGENT_KEY)) as response:  # fmt: skip
            assert response.status == 200 and (await response.json())["status"] == "done"
        status, contact = await _get(http, engine, f"/contacts/{PHONE.replace('+', '%2B')}")
        assert status == 200 and contact["phone"] == PHONE


@pytest.mark.parametrize(
    ("path", "status", "reason"),
    [
        ("/calls?outcome=exploded", 400, "unknown outcome"),
        ("/calls?date=yesterday", 400, "date"),
        ("/calls?limit=-1", 400, "limit"),
        ("/calls?colour=red", 400, "unknown filter"),
        ("/calls/abc", 400, "whole number"),
        ("/calls/999999999", 404, "no such call"),
        ("/tasks?status=finished", 400, "unknown task status"),
        ("/contacts/not-a-number", 400, ""),
        ("/contacts/%2B19995550000", 404, "no contact"),
        ("/agents/999/presence", 404, "no extension"),
        ("/nowhere", 404, "Not Found"),
    ],
)
async def test_bad_requests_get_a_reason(
    engine: Engine, path: str, status: int, reason: str
) -> None:
    async with aiohttp.ClientSession() as http:
        got, body = await _get(http, engine, path)
    assert got == status
    assert body["error"]["status"] == status and reason in body["error"]["reason"]


async def test_keys_and_roles(engine: Engine) -> None:
    async with aiohttp.ClientSession() as http:
        for headers in (
            {},
            {"Authorization": "Bearer wrong-key-123456"},
            {"Authorization": "Basic x"},
        ):
            async with http.get(api_url(engine, "/calls"), headers=headers) as response:
                assert response.status == 401
                assert "API key" in (await response.json())["error"]["reason"]
        async with http.get(api_url(engine, "/health")) as response:  # public
            assert response.status == 200


async def test_presence_over_the_api(engine: Engine) -> None:
    async with aiohttp.ClientSession() as http:
        url = api_url(engine, "/agents/101/presence")
        async with http.put(url, json={"state": "away"}, headers=bearer(AGENT_KEY)) as response:
            assert response.status == 200 and (await response.json())["state"] == "away"
        async with http.put(url, json={"state": "asleep"}, headers=bearer()) as response:
            assert response.status == 400
        async with http.put(url, data=b"{not json", headers=bearer()) as response:
            assert response.status == 400
        async with http.put(url, json={"state": "available"}, headers=bearer()) as response:
            assert (await response.json())["state"] == "available"
