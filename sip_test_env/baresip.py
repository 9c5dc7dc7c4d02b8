"""A baresip 1.0.0 softphone driven over its ctrl_tcp socket, for tests.

One `baresip -f DIR` process per peer, with its own config dir under the test's tmp dir. The
microphone is a WAV file (module aufile), the speaker a paced null player (aubridge), and
module sndfile records what the peer hears as `dump-<time>-dec.wav` in the same dir. Commands
and events travel as netstring-framed JSON over ctrl_tcp; a background task reads the events.

    async with BaresipPeer("101", workdir=tmp_path, registrar=f"127.0.0.1:{port}",
                           password="pass101", audio_source=tone_wav) as agent:
        await agent.wait_registered()
        await agent.dial("sip:102@127.0.0.1:%d" % port)
        await agent.wait_event("CALL_ESTABLISHED")

baresip quirks this relies on (see docs/peers.md): the call hangs up when the source
WAV ends, so sources are padded with silence; events sent before the control connection opens
are lost, so registration is also checked by polling `reginfo`; the callee's account user must
match the Request-URI user; TLS takes SIP port + 1, so that port is reserved too. When it
registers, the Contact user is not the account user but `<user>-0x<hex>` (e.g.
`sip:101-0x55f279775db0@127.0.0.1:PORT`); calls to it must use that Contact as Request-URI.
On quit it un-registers, which takes stop()'s first `timeout` when the registrar is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import shutil
import signal
import tempfile
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sip_test_env.audio import read_wav, write_silence_wav, write_wav
from sip_test_env.ports import free_port, free_port_range
from telephony.aio.tasks import Started

logger = logging.getLogger(__name__)

__all__ = ["BaresipError", "BaresipPeer", "CallInfo"]

BARESIP = "baresip"
MODULE_PATH = "/usr/lib/baresip/modules"
# The call ends when the microphone file ends; keep sources at least this long.
MIN_SOURCE_SECONDS = 120.0
DTMF_SPACING = 0.25

Event = dict[str, Any]


class BaresipError(RuntimeError):
    """baresip failed to start, answer a command, or produce an expected event."""


@dataclass
class CallInfo:
    """A call as baresip's events describe it."""

    call_id: str
    """baresip's own call id (`id` of the events)."""
    peer_uri: str
    """The remote party's URI."""
    direction: str
    """"incoming" or "outgoing"."""
    events: list[Event] = field(default_factory=list)


def _netstring(payload: bytes) -> bytes:
    return str(len(payload)).encode("ascii") + b":" + payload + b","


class BaresipPeer(Started):
    """One baresip softphone process (asyncio; use as `async with`).

    `registrar` "127.0.0.1:PORT" makes it register there as `user` with `password`;
    `registrar=None` makes it a static (non-registering) extension reachable at
    sip:`user`@127.0.0.1:`sip_port`.
    """

    def __init__(
        self,
        user: str,
        *,
        workdir: str | Path,
        registrar: str | None = None,
        password: str | None = None,
        sip_port: int | None = None,
        rtp_ports: tuple[int, int] | None = None,
        audio_source: str | Path | None = None,
        answermode: Literal["manual", "auto"] = "manual",
        transport: Literal["udp", "tcp", "tls"] = "udp",
        record: bool = True,
        regint: int = 600,
        name: str | None = None,
        extra_account_params: str = "",
        binary: str = BARESIP,
        host: str = "127.0.0.1",
        tls_ca: str | Path | None = None,
        mediaenc: Literal["srtp", "srtp-mand"] | None = None,
        netns: str | None = None,
    ) -> None:
        self.user = user
        self.host = host
        """Address the phone's SIP and RTP use (127.0.0.2 plays another machine; ::1 IPv6)."""
        self.netns = netns
        """A network namespace to run in (`ip netns exec`, root only); its control port then
        listens on `host`, which the test must be able to reach."""
        self.name = name or f"baresip-{user}"
        self.dir = Path(workdir) / self.name
        self.registrar = registrar
        self.password = password
        # Ports are checked free on the address the phone binds (a socket on 127.0.0.2 does not
        # keep 127.0.0.1's port busy); an IPv6 or namespace address is checked on 127.0.0.1.
        check = host if host.startswith("127.") and netns is None else "127.0.0.1"
        self.sip_port = sip_port if sip_port is not None else _sip_port_pair(check)
        self.rtp_ports = rtp_ports if rtp_ports is not None else free_port_range(20, "udp", check)
        self.ctrl_port = free_port("tcp")
        self.answermode = answermode
        self.transport = transport
        self.record = record
        self.regint = regint if registrar else 0
        self.extra_account_params = extra_account_params
        self.binary = binary
        self.tls_ca = Path(tls_ca) if tls_ca is not None else None
        """CA file (PEM) the phone trusts for SIP over TLS (`sip_cafile`)."""
        self.mediaenc = mediaenc
        """SDES SRTP with the srtp module: "srtp" best effort (RTP/AVP with a=crypto),
        "srtp-mand" mandatory (RTP/SAVP)."""
        self._audio_source_arg = Path(audio_source) if audio_source is not None else None
        self.audio_source: Path | None = None
        self.log_path = self.dir / "baresip.log"
        self.events: list[Event] = []
        self._consumed: set[int] = set()
        self._event_cond = asyncio.Condition()
        self._pending: dict[str, asyncio.Future[Event]] = {}
        self._tokens = itertools.count(1)
        self._source_seq = itertools.count(1)
        self._proc: asyncio.subprocess.Process | None = None
        self._log_file: Any = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._read_task: asyncio.Task[None] | None = None
        self._closed = False
        self._snd_link: Path | None = None
        """A short path to `dir` for sndfile when `dir` is too deep (_short_path_to)."""

    # -- addresses -------------------------------------------------------------------------

    @property
    def aor(self) -> str:
        """The account's address of record."""
        host = self.registrar if self.registrar else self._hostport(self.sip_port)
        return f"sip:{self.user}@{host}"

    def _hostport(self, port: int) -> str:
        return _join(self.host, port)

    @property
    def ctrl_host(self) -> str:
        """Where the control port listens: loopback, or `host` inside a namespace."""
        return self.host if self.netns else "127.0.0.1"

    @property
    def contact_uri(self) -> str:
        """Where this peer can be reached directly (static extensions are dialled here)."""
        suffix = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"sip:{self.user}@{self._hostport(self.sip_port)}{suffix}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    # -- lifecycle -------------------------------------------------------------------------

    def account_line(self) -> str:
        """The `accounts` line (format from PEERS.md)."""
        suffix = "" if self.transport == "udp" else f";transport={self.transport}"
        params = [f"regint={self.regint}", f"answermode={self.answermode}", "audio_codecs=pcmu"]
        if self.mediaenc:
            params.append(f"mediaenc={self.mediaenc}")
        if self.registrar:
            params.insert(0, f"auth_pass={self.password or ''}")
            uri = f"<sip:{self.user}@{self.registrar}{suffix}>"
        else:
            uri = f"<sip:{self.user}@{self._hostport(self.sip_port)}{suffix}>"
        line = uri + ";" + ";".join(params)
        if self.extra_account_params:
            line += ";" + self.extra_account_params.lstrip(";")
        return line

    def config_text(self) -> str:
        assert self.audio_source is not None
        lines = [
            "poll_method epoll",
            f"sip_listen {self._hostport(self.sip_port)}",
            f"net_interface {self.host}",
            "dns_server 127.0.0.1:53",
            f"audio_source aufile,{self.audio_source}",
            "audio_player aubridge,nil",
            "audio_alert aubridge,nil",
            f"rtp_ports {self.rtp_ports[0]}-{self.rtp_ports[1]}",
            "rtcp_mux no",
            "call_local_timeout 120",
            "call_max_calls 4",
            f"module_path {MODULE_PATH}",
            "module g711.so",
            "module aufile.so",
            "module aubridge.so",
        ]
        if self.record:
            lines += ["module sndfile.so", f"snd_path {self._snd_link or self.dir}"]
        if self.mediaenc:
            lines.append("module srtp.so")
        if self.tls_ca is not None:
            lines.append(f"sip_cafile {self.tls_ca}")
        lines += [
            "module_app account.so",
            "module_app menu.so",
            "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen {_join(self.ctrl_host, self.ctrl_port)}",
        ]
        return "\n".join(lines) + "\n"

    async def start(self, timeout: float = 5.0) -> None:
        if shutil.which(self.binary) is None:
            raise BaresipError(f"{self.binary} not installed (run sip_test_env/install-peers.sh)")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.audio_source = self._prepare_source(self._audio_source_arg)
        if self.record and self._snd_link is None:
            self._snd_link = _short_path_to(self.dir)
        (self.dir / "config").write_text(self.config_text())
        (self.dir / "accounts").write_text(self.account_line() + "\n")
        (self.dir / "contacts").write_text("")
        self._log_file = open(self.log_path, "wb")  # closed in stop()
        prefix = ("ip", "netns", "exec", self.netns) if self.netns else ()
        self._proc = await asyncio.create_subprocess_exec(
            *prefix,
            self.binary,
            "-f",
            str(self.dir),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        logger.info("%s started pid=%d sip=%d", self.name, self._proc.pid, self.sip_port)
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.returncode is not None:
                raise BaresipError(
                    f"{self.name} exited at start-up; see {self.log_path}:\n"
                    + self.log_text()[-2000:]
                )
            try:
                self._reader, self._writer = await asyncio.open_connection(
                    self.ctrl_host, self.ctrl_port
                )
                break
            except OSError:
                if time.monotonic() > deadline:
                    msg = f"{self.name}: ctrl_tcp not up; see {self.log_path}"
                    raise BaresipError(msg) from None
                await asyncio.sleep(0.02)
        self._read_task = asyncio.create_task(self._read_loop(), name=f"{self.name}-ctrl")

    async def stop(self, timeout: float = 1.5) -> None:
        """Quit baresip (command, then SIGTERM, then SIGKILL, `timeout` s apart); idempotent.
        baresip un-registers on quit, which takes the whole first `timeout` when the
        registrar is already gone."""
        if self._closed:
            return
        self._closed = True
        if self.running and self._writer is not None:
            with contextlib.suppress(Exception):
                await self.command("quit", timeout=1.0)
        await self._wait_exit(timeout)
        await self._close_ctrl()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._snd_link is not None:
            with contextlib.suppress(OSError):
                self._snd_link.unlink()
                self._snd_link.parent.rmdir()
            self._snd_link = None

    async def kill(self) -> None:
        """SIGKILL the process now (a peer vanishing mid-call); stop() still cleans up."""
        if self.running and self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGKILL)
            await self._proc.wait()

    async def _wait_exit(self, timeout: float) -> None:
        proc = self._proc
        if proc is None:
            return
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if proc.returncode is not None:
                break
            if sig is not None:
                logger.info("%s did not quit, sending %s", self.name, sig.name)
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), timeout)
        if proc.returncode is None:  # pragma: no cover - SIGKILL failed
            logger.error("%s pid %d did not exit", self.name, proc.pid)

    async def _close_ctrl(self) -> None:
        if self._read_task is not None:
            self._read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._read_task
            self._read_task = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
            self._writer = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(BaresipError(f"{self.name}: control connection closed"))
        self._pending.clear()

    def log_text(self) -> str:
        """baresip's stdout/stderr so far (for failure messages)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- control channel -------------------------------------------------------------------

    async def _read_loop(self) -> None:
        assert self._reader is not None
        reader = self._reader
        try:
            while True:
                head = await reader.readuntil(b":")
                length = int(head[:-1])
                payload = await reader.readexactly(length)
                if await reader.readexactly(1) != b",":
                    raise BaresipError(f"{self.name}: bad netstring from ctrl_tcp")
                msg: Event = json.loads(payload)
                if msg.get("response"):
                    fut = self._pending.pop(str(msg.get("token", "")), None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                    continue
                msg["_t"] = time.monotonic()
                logger.debug("%s event %s", self.name, msg)
                async with self._event_cond:
                    self.events.append(msg)
                    self._event_cond.notify_all()
        except (asyncio.IncompleteReadError, ConnectionError):
            logger.debug("%s: ctrl_tcp closed", self.name)
        finally:
            async with self._event_cond:
                self._event_cond.notify_all()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(BaresipError(f"{self.name}: control connection closed"))

    async def command(self, command: str, params: str | None = None, timeout: float = 5.0) -> Event:
        """Send one ctrl_tcp command; returns its response dict ({"ok": bool, "data": str})."""
        if self._writer is None:
            raise BaresipError(f"{self.name}: not started")
        token = str(next(self._tokens))
        body: dict[str, str] = {"command": command, "token": token}
        if params is not None:
            body["params"] = params
        fut: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._pending[token] = fut
        self._writer.write(_netstring(json.dumps(body).encode()))
        await self._writer.drain()
        try:
            reply = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self._pending.pop(token, None)
            raise BaresipError(f"{self.name}: no reply to {command!r}") from None
        logger.debug("%s %s %s -> %s", self.name, command, params or "", reply.get("data"))
        return reply

    async def wait_event(
        self,
        type: str | tuple[str, ...],
        timeout: float = 5.0,
        predicate: Callable[[Event], bool] | None = None,
    ) -> Event:
        """Return the oldest event of `type` (and matching `predicate`) that no earlier
        wait_event returned, waiting up to `timeout` s for it. Raises BaresipError on
        timeout, listing the events seen."""
        types = (type,) if isinstance(type, str) else type
        deadline = asyncio.get_running_loop().time() + timeout
        async with self._event_cond:
            while True:
                for i, ev in enumerate(self.events):
                    if i in self._consumed or ev.get("type") not in types:
                        continue
                    if predicate is None or predicate(ev):
                        self._consumed.add(i)
                        return ev
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    seen = [e.get("type") for e in self.events]
                    raise BaresipError(f"{self.name}: no {types} within {timeout}s; saw {seen}")
                if self._read_task is not None and self._read_task.done():
                    raise BaresipError(
                        f"{self.name}: control connection closed; saw "
                        f"{[e.get('type') for e in self.events]}"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._event_cond.wait(), remaining)

    def events_of(self, type: str) -> list[Event]:
        """All events of `type` received so far (consumed or not)."""
        return [e for e in self.events if e.get("type") == type]

    # -- phone actions ---------------------------------------------------------------------

    async def wait_registered(self, timeout: float = 5.0) -> None:
        """Until the registrar accepted the account (REGISTER_OK, or `reginfo` says OK)."""
        if not self.registrar:
            return
        deadline = time.monotonic() + timeout
        while True:
            if self.events_of("REGISTER_OK"):
                return
            fails = self.events_of("REGISTER_FAIL")
            reply = await self.command("reginfo")
            if re.search(r"\bOK\b", re.sub(r"\x1b\[[0-9;]*m", " ", str(reply.get("data", "")))):
                return
            if time.monotonic() > deadline:
                raise BaresipError(f"{self.name}: not registered: {reply.get('data')!r} {fails}")
            await asyncio.sleep(0.05)

    async def dial(self, uri: str) -> Event:
        """Place a call. A bare user ("102") is completed with the registrar's host."""
        if not uri.startswith(("sip:", "sips:")):
            host = self.registrar or "127.0.0.1"
            uri = f"sip:{uri}@{host}"
        reply = await self.command("dial", uri)
        if not reply.get("ok", False):
            raise BaresipError(f"{self.name}: dial {uri} failed: {reply}")
        return reply

    async def accept(self) -> Event:
        """Answer the ringing incoming call."""
        return await self.command("accept")

    async def hangup(self) -> Event:
        """Hang up the current call (486 on an unanswered incoming one)."""
        return await self.command("hangup")

    async def send_dtmf(self, digits: str, spacing: float = DTMF_SPACING) -> None:
        """Send `digits` as RFC 4733 events (baresip sends ~180 ms per digit)."""
        for i, digit in enumerate(digits):
            if i:
                await asyncio.sleep(spacing)
            await self.command("sndcode", digit)

    async def set_audio_source(self, wav: str | Path) -> Path:
        """Switch the microphone to `wav` now (mid-call too); returns the padded copy used."""
        path = self._prepare_source(Path(wav))
        reply = await self.command("ausrc", f"aufile,{path}")
        if not reply.get("ok", True):
            raise BaresipError(f"{self.name}: ausrc failed: {reply}")
        return path

    async def list_calls(self) -> str:
        return str((await self.command("listcalls")).get("data", ""))

    # -- recordings ------------------------------------------------------------------------

    def recorded_wavs(self) -> list[Path]:
        """Every `dump-*-dec.wav` (what this peer heard), oldest first."""
        return sorted(self.dir.glob("dump-*-dec.wav"), key=lambda p: (p.stat().st_mtime, p.name))

    def recorded_wav(self) -> Path:
        """The newest recording of what this peer heard (complete once the call closed)."""
        wavs = self.recorded_wavs()
        if not wavs:
            raise BaresipError(f"{self.name}: no recording in {self.dir} (record=True? call?)")
        return wavs[-1]

    def sent_wav(self) -> Path:
        """The newest recording of what this peer sent (`dump-*-enc.wav`)."""
        wavs = sorted(self.dir.glob("dump-*-enc.wav"), key=lambda p: (p.stat().st_mtime, p.name))
        if not wavs:
            raise BaresipError(f"{self.name}: no sent-audio recording in {self.dir}")
        return wavs[-1]

    # -- helpers ---------------------------------------------------------------------------

    def _prepare_source(self, wav: Path | None) -> Path:
        """Copy `wav` into the peer dir, padded with silence to MIN_SOURCE_SECONDS."""
        target = self.dir / f"source-{next(self._source_seq)}.wav"
        if wav is None:
            return write_silence_wav(target, MIN_SOURCE_SECONDS)
        rate, samples, channels = read_wav(wav)
        if rate != 8000 or channels != 1:
            raise BaresipError(f"{wav}: baresip's aufile needs mono 16-bit 8000 Hz WAV")
        pad = max(0, round(MIN_SOURCE_SECONDS * rate) - samples.size)
        return write_wav(target, np.concatenate([samples, np.zeros(pad, dtype=np.int16)]), rate)


def _join(host: str, port: int) -> str:
    """host:port, an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# sndfile names a recording in a 128-byte buffer: snd_path + "/dump-<time>-dec.wav". A longer
# name is cut short, losing ".wav" (seen under pytest-xdist, whose tmp dirs are a level deeper).
_SND_PATH_MAX = 127 - len("/dump-2026-01-01-00-00-00-dec.wav")


def _short_path_to(directory: Path) -> Path | None:
    """A short symlink to `directory` for sndfile (removed by stop()), or None when the path
    itself is short enough."""
    if len(str(directory.resolve())) <= _SND_PATH_MAX:
        return None
    link = Path(tempfile.mkdtemp(prefix="bsnd-")) / "d"
    link.symlink_to(directory.resolve(), target_is_directory=True)
    return link


def _sip_port_pair(host: str) -> int:
    """A SIP port on `host` whose successor (baresip's TLS port) is free and reserved too."""
    return free_port_range(2, "both", host, even=False)[0]


def wav_seconds(path: str | Path) -> float:
    """Duration of a WAV file in seconds."""
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / float(w.getframerate())
