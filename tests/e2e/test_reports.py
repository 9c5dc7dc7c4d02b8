"""The per-agent day report over the real engine and PostgreSQL (JSON and CSV), and on the
dashboard in headless Chromium with its CSV download."""

from __future__ import annotations

import csv
import io
import secrets
import shutil
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from callcenter.runtime import Engine
from crm_bridge import CallEnded, CallStarted
from recordings import CallRecorder
from sip_test_env import tools

from ..recordings._audio import voice
from .conftest import ADMIN_KEY, AGENT_KEY, api_url, bearer
from .test_dashboard import CHROMIUM, artifacts_dir, browser  # noqa: F401 (the fixture)


def _a_day() -> date:
    """A past day no other test writes calls on (the tests share one database)."""
    return date(2001, 1, 1) + timedelta(days=secrets.randbelow(3000))


def _recording(engine: Engine, name: str) -> str:
    """A 4 s stereo recording in the engine's format: the customer speaks 0-2 s, the agent
    2-4 s. Its path relative to the recordings root."""
    assert engine.recordings is not None
    root = engine.recordings.store.root
    root.mkdir(parents=True, exist_ok=True)
    quiet = np.zeros(16000, dtype=np.int16)
    customer = np.concatenate([voice(2.0, 120), quiet])
    agent = np.concatenate([quiet, voice(2.0, 210)])
    recorder = CallRecorder(root / name)
    for start in range(0, customer.size, 160):
        recorder.push("customer", customer[start : start + 160])
        recorder.push("agent", agent[start : start + 160])
        recorder.tick()
    recorder.close()
    return name


async def _call(
    engine: Engine, day: date, agent: str, *, direction: str = "inbound", talk: float | None,
    disposition: tuple[str, float] | None = None, recording: str | None = None,
) -> int:  # fmt: skip
    """A call `agent` had that day at 10:00 (answered for `talk` s, or missed), disposed
    `disposition[1]` s after its end."""
    assert engine.store is not None
    at = datetime.combine(day, time(10), UTC) + timedelta(minutes=secrets.randbelow(600))
    number = "+1212" + "".join(secrets.choice("23456789") for _ in range(7))
    started = CallStarted(
        call_id=f"report-{secrets.token_hex(6)}", direction=direction,
        from_number=number if direction == "inbound" else agent,
        to_number=agent if direction == "inbound" else number, started_at=at, agent=agent,
        customer_phone=number,
    )  # fmt: skip
    answered = at + timedelta(seconds=5) if talk is not None else None
    end = at + timedelta(seconds=5 + (talk or 15))
    ended = CallEnded(ended_at=end, outcome="answered" if talk is not None else "missed",
                      answered_at=answered, agent=agent, recording_path=recording)  # fmt: skip
    row = await engine.store.record_call(started, ended)
    if disposition is not None:
        kind, after = disposition
        await engine.store.set_disposition(row, kind, note=None,
                                           now=end + timedelta(seconds=after))  # fmt: skip
    return row


async def _seed(engine: Engine, day: date) -> int:
    """The day's calls; returns the one with a recording."""
    name = _recording(engine, f"report-{day.isoformat()}.wav")
    recorded = await _call(engine, day, "101", talk=60, disposition=("sale", 30), recording=name)
    await _call(engine, day, "101", talk=120, disposition=("callback", 10))
    await _call(engine, day, "101", talk=None)
    await _call(engine, day, "102", direction="outbound", talk=30)
    await _call(engine, day + timedelta(days=1), "101", talk=600)  # another day
    return recorded


async def test_agent_day_report_as_json_and_csv(engine: Engine) -> None:
    day = _a_day()
    recorded = await _seed(engine, day)
    async with aiohttp.ClientSession() as http:
        async with http.get(api_url(engine, f"/calls/{recorded}/timeline"),
                            headers=bearer(ADMIN_KEY)) as r:  # fmt: skip
            assert r.status == 200
            timeline = await r.json()
        url = api_url(engine, f"/reports/agents?date={day.isoformat()}")
        async with http.get(url, headers=bearer(AGENT_KEY)) as r:
            assert r.status == 403  # a supervisor's report
        async with http.get(url, headers=bearer(ADMIN_KEY)) as r:
            assert r.status == 200
            report = await r.json()
        async with http.get(api_url(engine, "/reports/agents?date=yesterday"),
                            headers=bearer(ADMIN_KEY)) as r:  # fmt: skip
            assert r.status == 400
        async with http.get(url + "&tz=Mars/Olympus", headers=bearer(ADMIN_KEY)) as r:
            assert r.status == 400
        # Kiribati's day (UTC+14) ends at 10:00 UTC, before any of the day's calls: they are
        # its next day's.
        zoned = {}
        for when in (day, day + timedelta(days=1)):
            query = f"/reports/agents?date={when.isoformat()}&tz=Pacific/Kiritimati"
            async with http.get(api_url(engine, query), headers=bearer(ADMIN_KEY)) as r:
                zoned[when] = (await r.json())["agents"]
        async with http.get(api_url(engine, f"/reports/agents.csv?date={day.isoformat()}"),
                            headers=bearer(ADMIN_KEY)) as r:  # fmt: skip
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
            assert f"agents-{day.isoformat()}.csv" in r.headers["Content-Disposition"]
            table = list(csv.DictReader(io.StringIO(await r.text())))
    runs = [(t["who"], round(t["start"]), round(t["end"])) for t in timeline["segments"]]
    assert runs == [("customer", 0, 2), ("agent", 2, 4)]
    assert timeline["duration_seconds"] == pytest.approx(4.0, abs=0.05)
    assert report["date"] == day.isoformat()
    first, second = report["agents"]
    assert first == {
        "agent": "101", "calls": 3, "answered": 2, "inbound": 3, "outbound": 0,
        "talk_seconds": 180.0, "average_talk_seconds": 90.0, "average_wrap_seconds": 20.0,
        "average_handle_seconds": 110.0, "dispositions": {"callback": 1, "sale": 1},
    }  # fmt: skip
    assert (second["agent"], second["outbound"], second["average_wrap_seconds"]) == ("102", 1, 0)
    assert zoned[day] == [] and zoned[day + timedelta(days=1)] == report["agents"]
    assert [row["agent"] for row in table] == ["101", "102"]
    assert table[0]["average_handle_seconds"] == "110.0"
    assert (table[0]["sale"], table[0]["callback"], table[0]["dnc"]) == ("1", "1", "0")


@tools.needs("chromium")
async def test_the_dashboard_shows_the_report_and_downloads_its_csv(
    engine: Engine,
    tmp_path: Path,
    browser: Any,  # noqa: F811
) -> None:
    day = _a_day()
    recorded = await _seed(engine, day)
    page = await browser.new_page(viewport={"width": 1280, "height": 1400}, accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(api_url(engine, f"/?key={ADMIN_KEY}"))
    await page.wait_for_selector('#status[data-status="live"]', timeout=10_000)
    await page.fill('#report-form input[name="date"]', day.isoformat())
    await page.click('#report-form button[type="submit"]')
    row = '#report tr[data-agent="101"]'
    await page.wait_for_selector(row, timeout=5000)
    cells = await page.eval_on_selector_all(f"{row} td", "tds => tds.map(td => td.textContent)")
    assert cells == ["101", "3", "2", "3", "0", "3:00", "1:30", "0:20", "1:50",
                     "callback 1, sale 1"]  # fmt: skip
    async with page.expect_download() as waiting:
        await page.click("#report-csv")
    download = await waiting.value
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    assert saved.name == f"agents-{day.isoformat()}.csv"
    assert saved.read_text().splitlines()[1].startswith("101,3,2,3,0,180.0,90.0,20.0,110.0,")
    # The agent's calls of the day; the recorded one plays with its talk/silence timeline.
    await page.click(row)
    await page.click(f'#agent-calls tr[data-call="{recorded}"] button.play')
    await page.wait_for_selector(f'#player[data-call="{recorded}"]:not([hidden])', timeout=5000)
    lanes = await page.eval_on_selector_all(
        "#timeline .segment",
        "bars => bars.map(b => [b.parentElement.dataset.who, parseFloat(b.style.left)])",
    )
    assert [who for who, _ in lanes] == ["customer", "agent"]
    assert lanes[0][1] == 0 and abs(lanes[1][1] - 50) < 2
    await page.wait_for_function(
        "() => document.querySelector('#player-audio').duration > 3.9", timeout=5000
    )
    box = await page.query_selector("#timeline")
    assert box is not None
    size = await box.bounding_box()
    assert size is not None
    await box.click(position={"x": size["width"] * 0.75, "y": 5})  # scrolled into view
    await page.wait_for_function(
        "() => Math.abs(document.querySelector('#player-audio').currentTime - 3) < 0.2",
        timeout=2000,
    )
    await page.screenshot(path=str(tmp_path / "dashboard-report.png"), full_page=True)
    shutil.copy(tmp_path / "dashboard-report.png", artifacts_dir() / "dashboard-report.png")
    assert errors == []
    await page.close()
