"""The agent page in a real headless Chromium (Debian's, driven by playwright), with a baresip
customer calling a trunk DID that rings agent 101's baresip phone, and a scripted carrier that
answers the agent's call back.

The page logs in with a supervisor's login link, goes available, shows the screen pop (the
caller's contact, its manager, its last call with a playable recording link, its open tasks)
while the phone still rings, drives the answered call over REST (keypad, hold, resume, hang
up), takes a disposition with a note and a callback time (calls row, CRM outbox, a callback
task for the agent), and one click calls the customer back: the task is done when the customer
answers."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from callcenter.runtime import Engine, start_engine
from crm_bridge import CallEnded, CallStarted
from sip_test_env import carrier, tools
from sip_test_env.audio import write_tone_wav
from sip_test_env.baresip import BaresipPeer
from sip_test_env.scripted_carrier import Customer, ScriptedCarrier
from telephony.aio import Call

from .callfloor import wait_for
from .conftest import ADMIN_KEY, api_url, bearer, crm_taking, engine_config, registrar_of
from .test_dashboard import CHROMIUM, artifacts_dir, browser  # noqa: F401 (the fixture)
from .test_trunk import _poll

pytestmark = [pytest.mark.peers, tools.needs("chromium")]

DID = "+12025550100"
LINK_SECRET = "agent-page-link-secret-0001"


def _customer_number() -> str:
    """A number no earlier test used (the tests share one database)."""
    return "+1212" + "".join(secrets.choice("23456789") for _ in range(7))


async def _page_engine(pg_url: str, tmp_path: Path, outbound: tuple[str, int]) -> Engine:
    host, port = outbound
    extra = f"""
[presence]
wrap_up_seconds = 120

[[trunks]]
name = "carrier"
allow_from = ["{carrier.CARRIER_IP}"]
outbound = "{host}:{port}"

[[dids]]
number = "{DID}"
trunk = "carrier"
route = "agent:101"
"""
    crm = f'link_secret = "{LINK_SECRET}"\n' + crm_taking("call.disposition")
    music = write_tone_wav(tmp_path / "music.wav", 500, 2.0)
    config = engine_config(extra_sip=f'music_on_hold = "{music}"\n', extra=extra, crm=crm)
    return await start_engine(config, database_url=pg_url, data_dir=tmp_path)


async def _earlier_call(engine: Engine, number: str, tmp_path: Path) -> int:
    """A call the customer made yesterday, answered by 102, with its recording on disk."""
    assert engine.store is not None and engine.recordings is not None
    root = engine.recordings.store.root
    name = f"earlier-{number.lstrip('+')}.wav"
    root.mkdir(parents=True, exist_ok=True)
    write_tone_wav(root / name, 440, 0.5)
    yesterday = datetime.now(UTC) - timedelta(days=1)
    started = CallStarted(
        call_id=f"earlier-{secrets.token_hex(4)}", direction="inbound", from_number=number,
        to_number=DID, started_at=yesterday, did=DID, agent="102", customer_phone=number,
    )  # fmt: skip
    ended = CallEnded(
        ended_at=yesterday + timedelta(minutes=3), outcome="answered",
        answered_at=yesterday + timedelta(seconds=5), agent="102", recording_path=name,
    )  # fmt: skip
    return await engine.store.record_call(started, ended)


def _spy_calls(scripted: ScriptedCarrier) -> list[Call]:
    """The scripted carrier's incoming legs, to read the keys its customer heard."""
    legs: list[Call] = []
    incoming = scripted.ua.on_incoming
    assert incoming is not None

    def spy(call: Call) -> None:
        legs.append(call)
        incoming(call)

    scripted.ua.on_incoming = spy
    return legs


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[ScriptedCarrier, dict[str, Customer]]]:
    customers: dict[str, Customer] = {}
    async with ScriptedCarrier(customers) as running:
        yield running, customers


async def _shot(page: Any, tmp_path: Path, name: str) -> None:
    await page.screenshot(path=str(tmp_path / name), full_page=True)
    shutil.copy(tmp_path / name, artifacts_dir() / name)


async def test_agent_page_pop_controls_disposition_and_call_back(
    pg_url: str,
    tmp_path: Path,
    browser: Any,  # noqa: F811
    db: Any,
    scripted: tuple[ScriptedCarrier, dict[str, Customer]],
) -> None:
    carrier_ua, customers = scripted
    number = _customer_number()
    hello = write_tone_wav(tmp_path / "hello.wav", 700, 1.0)
    customers[number.lstrip("+")] = Customer("human", answer_after=0.3, speech=hello,
                                             hang_up_after=30)  # fmt: skip
    carrier_legs = _spy_calls(carrier_ua)
    engine = await _page_engine(pg_url, tmp_path, carrier_ua.address)
    try:
        assert engine.store is not None
        await engine.store.upsert_contact(number, name="Ada Lovelace", responsible="102")
        earlier = await _earlier_call(engine, number, tmp_path)
        # A supervisor's login link for 101 opens the page (the token is spent by it).
        async with aiohttp.ClientSession() as http:
            async with http.post(
                api_url(engine, "/agents/101/login-token"), headers=bearer(ADMIN_KEY)
            ) as r:
                assert r.status == 201, await r.text()
                login = await r.json()
        page = await browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(api_url(engine, login["url"]))
        await page.wait_for_selector('#status[data-status="live"]', timeout=10_000)
        assert "login=" not in page.url
        assert await page.text_content("#me") == "Agent 101 (101)"
        # 101 answers on a desk phone (baresip): the page's own phone is switched off, so
        # that click-to-call rings the desk phone (test_agent_phone.py has the browser's).
        await page.wait_for_selector('#phone[data-phone="registered"]', timeout=10_000)
        await page.uncheck("#phone-on")
        await page.wait_for_selector('#phone[data-phone="disabled"]', timeout=5000)
        await wait_for(
            lambda: not engine.switchboard.registrar.lookup("101", now=engine.ua.loop.time()),
            what="the page's phone to unregister",
        )
        await page.click("#go-away")
        await page.wait_for_selector('#state[data-state="away"]', timeout=5000)
        await page.click("#go-available")
        await page.wait_for_selector('#state[data-state="available"]', timeout=5000)
        await page.check("#dnd")  # do not disturb: away, and nothing rings
        await page.wait_for_selector('#state[data-state="away"]', timeout=5000)
        assert engine.switchboard.presence.dnd("101")
        await page.uncheck("#dnd")
        await page.wait_for_selector('#state[data-state="available"]', timeout=5000)
        assert not engine.switchboard.presence.dnd("101")

        registrar = registrar_of(engine)
        async with (
            BaresipPeer("101", workdir=tmp_path / "agent", registrar=registrar,
                        password="pass101") as agent,
            carrier.customer(number, workdir=tmp_path / "customer") as caller,
        ):  # fmt: skip
            await agent.wait_registered()
            await caller.dial(carrier.did_uri(DID, engine.sip_port))
            await agent.wait_event("CALL_INCOMING", timeout=5)
            # Before the answer: the pop shows who calls, the manager, the last call with
            # its recording, and the call is ringing on the page.
            await page.wait_for_selector('#pop-contact:text-is("Ada Lovelace")', timeout=5000)
            assert await page.text_content("#pop-number button.number") == number
            assert await page.text_content("#pop-responsible") == "Agent 102 (102)"
            last = f'#pop-calls tr[data-call="{earlier}"]'
            assert "answered" in (await page.text_content(last) or "")
            link = await page.get_attribute(f"{last} audio", "src")
            assert link is not None and "signature=" in link
            assert await page.get_attribute("#call", "data-state") == "ringing"
            assert not [b for b in engine.switchboard.active.values() if b.b is not None]
            await _shot(page, tmp_path, "agent-page-ringing.png")
            async with aiohttp.ClientSession() as http:
                async with http.get(api_url(engine, link)) as r:  # no key: the signed link
                    assert r.status == 200 and r.headers["Content-Type"] == "audio/wav"

            await agent.accept()
            await caller.wait_event("CALL_ESTABLISHED", timeout=5)
            await page.wait_for_selector('#call[data-state="talking"]', timeout=5000)
            await page.wait_for_selector('#state[data-state="on-call"]', timeout=5000)
            row = int(await page.get_attribute("#pop", "data-call") or 0)
            await page.click("#hold")
            await page.wait_for_selector('#call[data-state="held"]', timeout=5000)
            await page.click("#resume")
            await page.wait_for_selector('#call[data-state="talking"]', timeout=5000)
            await _shot(page, tmp_path, "agent-page-talking.png")
            await page.click("#hangup")
            await caller.wait_event("CALL_CLOSED", timeout=5)
            await agent.wait_event("CALL_CLOSED", timeout=5)

            # After the call: the wrap-up form for that call's row.
            await page.wait_for_selector(f'#wrap[data-call="{row}"]:not([hidden])', timeout=5000)
            await page.wait_for_selector('#state[data-state="wrap-up"]', timeout=5000)
            await page.select_option('#disposition-form select[name="disposition"]', "callback")
            await page.fill('#disposition-form textarea[name="note"]', "wants the blue plan")
            due = (datetime.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
            await page.fill('#disposition-form input[name="callback_at"]', due)
            await page.click('#disposition-form button[type="submit"]')
            await page.wait_for_selector("#wrap", state="hidden", timeout=5000)
            await page.wait_for_selector('#state[data-state="available"]', timeout=5000)
            stored = await db.fetchrow(
                "SELECT disposition, disposition_note, agent FROM calls WHERE id = $1", row
            )
            assert (stored["disposition"], stored["disposition_note"], stored["agent"]) == (
                "callback", "wants the blue plan", "101"
            )  # fmt: skip
            event = await db.fetchrow(
                "SELECT payload FROM outbox WHERE aggregate = $1 AND event_type = $2",
                f"call/{row}",
                "call.disposition",
            )
            assert event is not None
            assert '"disposition_note": "wants the blue plan"' in event["payload"]
            task = await db.fetchrow(
                "SELECT t.id, t.assignee, t.status, t.created_from_call FROM tasks t"
                " JOIN contacts c ON c.id = t.contact_id WHERE c.phone = $1",
                number,
            )
            assert (task["assignee"], task["status"], task["created_from_call"]) == (
                "101", "open", row
            )  # fmt: skip
            task_row = f'#tasks tr[data-task="{task["id"]}"]'
            await page.wait_for_selector(task_row, timeout=5000)
            await _shot(page, tmp_path, "agent-page-after-call.png")

            # One click calls the customer back: the agent's phone rings first; the task is
            # still open while only dialled, and done once the customer answers.
            await page.click(f"{task_row} button.call-back")
            await agent.wait_event("CALL_INCOMING", timeout=5)
            await page.wait_for_selector('#pop-contact:text-is("Ada Lovelace")', timeout=5000)
            assert (await db.fetchval("SELECT status FROM tasks WHERE id = $1", task["id"])) == (
                "open"
            )
            await agent.accept()
            await page.wait_for_selector('#call[data-state="talking"]', timeout=8000)
            assert carrier_ua.record(number.lstrip("+")).answered
            # Done once the customer answered: written beside the call, so read until it is.
            await _poll(db, "SELECT 1 FROM tasks WHERE id = $1 AND status = 'done'", task["id"],
                        timeout=5)  # fmt: skip
            # The keypad reaches the customer.
            await page.click('#keypad button[data-digit="5"]')
            assert await carrier_legs[-1].next_digit(timeout=5) == "5"
            await page.click("#hangup")
            await agent.wait_event("CALL_CLOSED", timeout=5)
            await page.wait_for_selector(task_row, state="detached", timeout=5000)
            await _shot(page, tmp_path, "agent-page-called-back.png")
        assert errors == []
        await page.close()
    finally:
        await engine.stop()
