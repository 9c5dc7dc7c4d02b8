"""kill -9 of the engine in the middle of a recorded call: the WAV on disk is valid and holds all
but the last second; after a restart the interrupted call is closed in the database with its
recording and the recording's analytics, and both phones are hung up with BYE."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import wave
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from callcenter.config import parse_config
from callcenter.runtime import Engine, start_engine
from crm_bridge import DialogStore, StoredDialog, apply_migrations
from sip_test_env import tools
from sip_test_env.audio import write_silence_wav
from sip_test_env.baresip import BaresipPeer
from sip_test_env.crm import WebhookReceiver
from sip_test_env.voices import speak
from telephony.sip import DialogRecord, SipRequest, make_response, parse_message

from .conftest import connect, engine_config, engine_config_text
from .rawsip import RawSipClient

pytestmark = pytest.mark.peers

ROOT = Path(__file__).resolve().parents[2]


class EngineProcess:
    """`callcenter serve` as its own process, the way an operator runs it."""

    def __init__(self, config: Path, pg_url: str, data_dir: Path, sip_port: int) -> None:
        self.args = [
            sys.executable, "-m", "callcenter.cli", "serve", "--config", str(config),
            "--database-url", pg_url, "--data-dir", str(data_dir),
        ]  # fmt: skip
        self.sip_port = sip_port
        self.node = parse_config(config.read_text(), source=str(config)).crm.node
        """The engine's node name: its rows in calls and sip_dialogs."""
        self.proc: asyncio.subprocess.Process | None = None
        self.log = data_dir / "engine.log"

    async def start(self) -> None:
        seen = (
            self.log.read_text(errors="replace").count("callcenter serving")
            if self.log.exists()
            else 0
        )
        log = self.log.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            *self.args, stderr=log, stdout=log, cwd=ROOT,
        )  # fmt: skip
        log.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while self.log.read_text(errors="replace").count("callcenter serving") == seen:
            assert self.proc.returncode is None, self.log.read_text()
            assert loop.time() < deadline, self.log.read_text()
            await asyncio.sleep(0.1)

    async def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@pytest.fixture
async def crm() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver(secret="s3cret", fail_first=3)  # the CRM stumbles at first
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


@pytest.fixture
async def engine_process(
    pg_url: str, tmp_path: Path, crm: WebhookReceiver
) -> AsyncIterator[EngineProcess]:
    text = engine_config_text(crm=crm.config() + "[crm.retry]\nbase_delay = 0.2\nmax_delay = 1\n")
    config = tmp_path / "engine.toml"
    config.write_text(text)
    sip_port = int(text.split('listen = "127.0.0.1:', 1)[1].split('"', 1)[0])
    process = EngineProcess(config, pg_url, tmp_path / "var", sip_port)
    (tmp_path / "var").mkdir()
    try:
        yield process
    finally:
        await process.stop()


SPEECH = (
    "Good morning, this is a call about your order. It left our warehouse on Monday and the"
    " courier says it will reach you before the end of the week. Please keep your phone at hand"
    " on the day of delivery, the driver will call you half an hour before he arrives."
)


async def wait_for(what: str, check: Any, timeout: float = 10.0) -> Any:
    """Poll `check` (a coroutine function) until it returns something true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (result := await check()):
        assert loop.time() < deadline, f"no {what} within {timeout} s"
        await asyncio.sleep(0.1)
    return result


async def test_kill9_mid_call_keeps_the_recording_and_closes_the_call(
    engine_process: EngineProcess, tmp_path: Path, crm: WebhookReceiver, db
) -> None:
    tools.require("espeak-ng", "sox")
    await engine_process.start()
    registrar = f"127.0.0.1:{engine_process.sip_port}"
    speech = speak(SPEECH, tmp_path / "speech.wav")  # the caller talks, the callee listens
    quiet = write_silence_wav(tmp_path / "quiet.wav", 30.0)
    node = engine_process.node
    async with (
        BaresipPeer(
            "101", workdir=tmp_path, registrar=registrar, password="pass101", audio_source=speech
        ) as a,
        BaresipPeer(
            "102", workdir=tmp_path, registrar=registrar, password="pass102", audio_source=quiet
        ) as b,
    ):
        await connect(a, b)
        # From the start of the recording the row points at it, and both legs' dialogs are kept.
        await wait_for(
            "recording path on the open row",
            lambda: db.fetchval(
                "SELECT recording_path FROM calls WHERE node = $1 AND from_number = '101'", node
            ),
        )
        stored = await wait_for(
            "dialogs of both legs",
            lambda: _two(db.fetch("SELECT * FROM sip_dialogs WHERE node = $1", node)),
        )
        assert sorted(d["is_uac"] for d in stored) == [False, True]
        await asyncio.sleep(10.0)  # the call goes on for 10 s
        await engine_process.kill9()
        wavs = sorted((tmp_path / "var" / "recordings").rglob("*.wav"))
        assert len(wavs) == 1, wavs
        with wave.open(str(wavs[0]), "rb") as recording:
            assert recording.getnchannels() == 2 and recording.getframerate() == 8000
            seconds = recording.getnframes() / recording.getframerate()
        assert seconds >= 9.0, f"only {seconds:.2f} s survived the kill"
        # The header may lag the data by one flush (sizes are written after the audio), never lead.
        assert os.path.getsize(wavs[0]) >= 44 + recording.getnframes() * 4
        assert not a.events_of("CALL_CLOSED") and not b.events_of("CALL_CLOSED")

        # The engine comes back and hangs up both phones, which would otherwise wait forever.
        await engine_process.start()
        await a.wait_event("CALL_CLOSED", timeout=10)
        await b.wait_event("CALL_CLOSED", timeout=10)
        await wait_for(
            "the stored dialogs dropped",
            lambda: _none(db.fetchval("SELECT count(*) FROM sip_dialogs WHERE node = $1", node)),
        )

    # The call the crash cut off is closed as failed, with its recording and its analytics.
    row = await db.fetchrow(
        "SELECT * FROM calls WHERE from_number = '101' AND node = $1 ORDER BY id DESC LIMIT 1", node
    )
    assert (row["outcome"], row["hangup_cause"]) == ("failed", "engine-restart")
    root = tmp_path / "var" / "recordings"
    assert root / row["recording_path"] == wavs[0]
    with wave.open(str(wavs[0]), "rb") as recording:  # the header now counts all the audio
        assert recording.getnframes() / recording.getframerate() >= seconds
        assert os.path.getsize(wavs[0]) - 44 - recording.getnframes() * 4 < 640
        recovered = recording.getnframes() / recording.getframerate()
    analytics = json.loads(row["analytics"])
    assert analytics["duration_seconds"] == pytest.approx(recovered, abs=0.05)
    # The caller spoke for most of the call, the callee sent digital silence.
    assert 3.0 < analytics["customer_talk_seconds"] < recovered
    assert analytics["agent_talk_seconds"] == 0.0 and analytics["agent_talk_ratio"] == 0.0
    assert analytics["silence_seconds"] == pytest.approx(
        recovered - analytics["customer_talk_seconds"], abs=0.05
    )

    # ... and the CRM hears of it as of any call: recording and analytics in call.ended.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while not any(d.event == "call.ended" and d.data["id"] == row["id"] for d in crm.received):
        assert loop.time() < deadline, [(d.event, d.data.get("id")) for d in crm.received]
        await asyncio.sleep(0.1)
    events = [d.event for d in crm.unique() if d.data.get("id") == row["id"]]
    assert events == ["call.started", "call.ringing", "call.answered", "call.ended"]
    ended = next(d.data for d in crm.unique() if d.event == "call.ended")
    assert ended["recording_path"] == row["recording_path"]
    assert ended["analytics"] == analytics
    assert crm.refused == 3 and crm.bad_signatures == 0
    log = engine_process.log.read_text(errors="replace")
    assert "dialogs left by the last run ended with BYE: 2 200" in log, log
    assert "Task exception was never retrieved" not in log


async def _two(rows: Any) -> Any:
    found = await rows
    return found if len(found) == 2 else None


async def _none(count: Any) -> bool:
    return await count == 0


class _TcpPhone:
    """A phone listening on TCP at its Contact: answers each request read with `status`."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.requests: asyncio.Queue[SipRequest] = asyncio.Queue()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request = parse_message(head)
        assert isinstance(request, SipRequest)
        self.requests.put_nowait(request)
        writer.write(bytes(make_response(request, self.status)))
        await writer.drain()
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def _stored(
    call_id: str, peer: tuple[str, str, int], *, seq: int = 4, target: str | None = None
) -> StoredDialog:
    transport, host, port = peer
    record = DialogRecord(
        call_id=call_id,
        local_tag="engine-tag",
        remote_tag="phone-tag",
        local_seq=seq,
        local_uri="<sip:102@127.0.0.1>",
        remote_uri='"Agent 101" <sip:101@127.0.0.1>',
        remote_target=target or f"sip:101@{host}:{port}",
        route_set=("<sip:127.0.0.1:9;lr>",),
        is_uac=False,
    )
    return StoredDialog(record, transport, host, port, datetime.now(UTC))


async def test_after_a_restart_every_stored_dialog_gets_a_bye_and_is_dropped_whatever_the_answer(
    pg_url: str, tmp_path: Path, db, caplog: pytest.LogCaptureFixture
) -> None:
    """Dialogs a crash left (written as the engine writes them): a phone that answers 200, one
    that forgot the call (481), one that is gone (no answer: retransmissions, then Timer F), one
    on TCP (the old connection is dead: a new one to its Contact), and a damaged row. Each is
    tried once and dropped; nothing is left for the next start."""
    config = engine_config(extra_sip="t1 = 0.05\n")  # Timer F = 64 * T1 = 3.2 s
    await apply_migrations(db)
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=2)
    store = DialogStore(pool, node=config.crm.node)
    ok, forgot, gone = [await RawSipClient.open() for _ in range(3)]
    tcp = _TcpPhone(200)
    tcp_port = await tcp.start()
    rows = [
        _stored("ok@x", ("udp", "127.0.0.1", ok.port), seq=41),
        _stored("forgot@x", ("udp", "127.0.0.1", forgot.port)),
        _stored("gone@x", ("udp", "127.0.0.1", gone.port)),
        # Over TCP the stored peer is the phone's old ephemeral port: the BYE goes to its Contact.
        _stored("tcp@x", ("tcp", "127.0.0.1", 9), target=f"sip:101@127.0.0.1:{tcp_port}"),
        _stored("junk@x", ("udp", "127.0.0.1", ok.port), target="tel:+15550100"),
    ]
    await store.apply(rows, [])
    caplog.set_level(logging.INFO, logger="callcenter.dialogs")
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        server = ("127.0.0.1", engine.sip_port)
        bye = await ok.receive(5)
        assert isinstance(bye, SipRequest) and bye.method == "BYE"
        assert str(bye.uri) == f"sip:101@127.0.0.1:{ok.port}"
        assert (bye.call_id, bye.from_.tag, bye.to.tag) == ("ok@x", "engine-tag", "phone-tag")
        assert (bye.cseq.seq, bye.cseq.method) == (42, "BYE")
        assert [str(r.uri) for r in bye.routes] == ["sip:127.0.0.1:9;lr"]
        assert bye.headers.get("Reason") == 'Q.850;cause=41;text="engine restart"'
        ok.send(bytes(make_response(bye, 200)), server)
        refused = await forgot.receive(5)
        assert isinstance(refused, SipRequest) and refused.call_id == "forgot@x"
        forgot.send(bytes(make_response(refused, 481)), server)
        over_tcp = await asyncio.wait_for(tcp.requests.get(), 5)
        assert (over_tcp.method, over_tcp.call_id) == ("BYE", "tcp@x")
        assert over_tcp.top_via.transport == "TCP"
        # The BYE nobody answers is retransmitted (T1, 2*T1, ...) until Timer F.
        first = await gone.receive(5)
        again = await gone.receive(1)
        assert isinstance(first, SipRequest) and isinstance(again, SipRequest)
        assert again.top_via.branch == first.top_via.branch and again.cseq == first.cseq
        await wait_for("every stored dialog dropped", lambda: _empty(store), timeout=10)
        summary = "dialogs left by the last run ended with BYE: 2 200, 1 481, 1 timeout, 1 unusable"
        await wait_for("the summary", lambda: _logged(caplog, summary))
        assert await ok.receive(0.3) is None  # answered: no retransmission
    finally:
        await engine.stop()
        await tcp.stop()
        await pool.close()
        for phone in (ok, forgot, gone):
            phone.close()


async def _empty(store: DialogStore) -> bool:
    return await store.load() == []


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records)


async def test_a_call_keeps_both_dialogs_while_it_lasts_and_none_after(
    engine: Engine, tmp_path: Path, db
) -> None:
    """What a restart would need is in the database while the call lasts (both legs, with
    their peers), and gone once the call ended normally."""
    registrar = f"127.0.0.1:{engine.sip_port}"
    node = engine.config.crm.node
    assert engine.dialogs is not None
    async with (
        BaresipPeer("101", workdir=tmp_path, registrar=registrar, password="pass101") as a,
        BaresipPeer("102", workdir=tmp_path, registrar=registrar, password="pass102") as b,
    ):
        await connect(a, b)
        await engine.dialogs.flush()
        rows = await db.fetch("SELECT * FROM sip_dialogs WHERE node = $1 ORDER BY is_uac", node)
        legs = {leg.call_id: leg for leg in engine.ua.calls.values()}
        assert len(rows) == 2 and set(legs) == {r["call_id"] for r in rows}
        caller_leg, callee_leg = rows
        assert not caller_leg["is_uac"] and caller_leg["local_seq"] == 0
        assert callee_leg["is_uac"] and callee_leg["local_seq"] == 1
        for row in rows:
            leg = legs[row["call_id"]]
            assert (row["transport"], row["peer_host"], row["peer_port"]) == leg.peer
            assert (row["local_tag"], row["remote_tag"]) == leg.dialog.dialog_id[1:]
            assert row["remote_target"] == str(leg.dialog.remote_target)
        assert f":{a.sip_port}" in caller_leg["remote_target"]
        assert f":{b.sip_port}" in callee_leg["remote_target"]
        await a.hangup()
        await b.wait_event("CALL_CLOSED", timeout=5)
        await wait_for("the legs to end", lambda: _no_legs(engine))
        await engine.dialogs.flush()
        assert await db.fetchval("SELECT count(*) FROM sip_dialogs WHERE node = $1", node) == 0


async def _no_legs(engine: Engine) -> bool:
    return not engine.ua.calls


async def test_a_dialog_write_the_database_refuses_is_retried(
    engine: Engine, tmp_path: Path, db, caplog: pytest.LogCaptureFixture
) -> None:
    """The database refuses the writes for a while (here: the table is away): the calls go on,
    the error is logged, and the dialogs are written once it accepts them again."""
    registrar = f"127.0.0.1:{engine.sip_port}"
    node = engine.config.crm.node
    assert engine.dialogs is not None
    engine.dialogs.retry_delay = 0.2
    await db.execute("ALTER TABLE sip_dialogs RENAME TO sip_dialogs_away")
    try:
        async with (
            BaresipPeer("101", workdir=tmp_path, registrar=registrar, password="pass101") as a,
            BaresipPeer("102", workdir=tmp_path, registrar=registrar, password="pass102") as b,
        ):
            with caplog.at_level(logging.ERROR, logger="callcenter.dialogs"):
                await connect(a, b)
                await wait_for("a refused write", lambda: _logged(caplog, "not written, retrying"))
            await db.execute("ALTER TABLE sip_dialogs_away RENAME TO sip_dialogs")
            await engine.dialogs.flush()
            count = "SELECT count(*) FROM sip_dialogs WHERE node = $1"
            assert await db.fetchval(count, node) == 2
            await a.hangup()
            await b.wait_event("CALL_CLOSED", timeout=5)
            await wait_for("the legs to end", lambda: _no_legs(engine))
            await engine.dialogs.flush()
            assert await db.fetchval(count, node) == 0
    finally:
        await db.execute("ALTER TABLE IF EXISTS sip_dialogs_away RENAME TO sip_dialogs")
