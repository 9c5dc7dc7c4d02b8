"""SIPp 3.6.1 (Debian sip-tester) runs for tests: scripted UACs and background UASes.

    users = extension_csv(tmp_path / "users.csv", [("101", "103", "pass101")])
    result = await run_sipp("uac_auth.xml", f"127.0.0.1:{engine_port}", calls=200, rate=20,
                            inf_csv=users, workdir=tmp_path)
    assert result.ok, result.summary()

    async with start_sipp_uas("uas.xml", service="103", workdir=tmp_path) as uas:
        ...                                   # uas.port takes calls
    assert uas.result.successful == 200

Scenario names without a slash are looked up in sip_test_env/scenarios/. The injection CSV of
the UAC scenarios (write it with `extension_csv`) has one call per line:
`caller;callee;password;[authentication username=caller password=password]` - [field0] is the
user that authenticates, [field1] the dialled user, [field3] the digest keyword (SIPp 3.6 does
not expand [fieldN] inside [authentication ...], so the whole keyword lives in the CSV).
Every run gets its own working directory (stats CSV, error log, copied `files`), its own SIP
port and its own media port (-mp).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import itertools
import logging
import shutil
import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from sip_test_env.ports import free_port, free_port_range

logger = logging.getLogger(__name__)

__all__ = [
    "SCENARIOS",
    "SippError",
    "SippResult",
    "SippUas",
    "extension_csv",
    "run_sipp",
    "scenario_path",
    "start_sipp_uas",
    "write_inf_csv",
]

SIPP = "sipp"
SCENARIOS = Path(__file__).with_name("scenarios")
_run_ids = itertools.count(1)


class SippError(RuntimeError):
    """SIPp is missing or could not be started."""


@dataclass
class SippResult:
    """How one SIPp run ended."""

    returncode: int
    """SIPp's exit code: 0 every call succeeded, 1 some failed, 97/99/255 see sipp(1)."""
    successful: int
    """SuccessfulCall(C) from the final statistics dump (-1 when there was none)."""
    failed: int
    """FailedCall(C) from the final statistics dump (-1 when there was none)."""
    created: int
    """TotalCallCreated from the final statistics dump."""
    stdout: str
    stderr: str
    errors: str
    """Contents of the -trace_err log (unexpected messages, retransmission failures)."""
    workdir: Path
    stats: dict[str, str]
    """The last row of the -trace_stat CSV, column name -> value."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.failed == 0

    def summary(self) -> str:
        """A few lines for assertion messages."""
        return (
            f"sipp rc={self.returncode} ok={self.successful} failed={self.failed} "
            f"created={self.created} dir={self.workdir}\n"
            f"stderr: {self.stderr[-1500:]}\nerrors: {self.errors[-3000:]}"
        )


def scenario_path(scenario: str | Path) -> Path:
    """A bundled scenario by file name, or any path."""
    path = Path(scenario)
    if path.parent == Path(".") and not path.exists():
        path = SCENARIOS / path
    if not path.is_file():
        raise SippError(f"no SIPp scenario {scenario}")
    return path


def write_inf_csv(
    path: str | Path, rows: Iterable[Sequence[str]], order: str = "SEQUENTIAL"
) -> Path:
    """An injection file: first line `order`, then one `;`-separated row per call."""
    out = Path(path)
    with out.open("w", newline="") as f:
        f.write(order + "\n")
        writer = csv.writer(f, delimiter=";", lineterminator="\n")
        for row in rows:
            writer.writerow(row)
    return out


def extension_csv(
    path: str | Path, calls: Iterable[tuple[str, str, str]], order: str = "SEQUENTIAL"
) -> Path:
    """Injection file for the UAC scenarios from (caller, callee, password) rows."""
    rows = [
        (caller, callee, password, f"[authentication username={caller} password={password}]")
        for caller, callee, password in calls
    ]
    return write_inf_csv(path, rows, order)


def _command(
    scenario: Path,
    target: str | None,
    *,
    local_port: int,
    media_port: int,
    transport: str,
    calls: int | None,
    rate: float | None,
    inf_csv: Path | None,
    service: str | None,
    duration_ms: int | None,
    timeout: float | None,
    extra_args: Sequence[str],
    stat_file: Path,
    error_file: Path,
) -> list[str]:
    cmd = [
        SIPP,
        "-sf",
        str(scenario),
        "-i",
        "127.0.0.1",
        "-p",
        str(local_port),
        "-mp",
        str(media_port),
        "-t",
        transport,
        "-nostdin",
        "-trace_err",
        "-error_file",
        str(error_file),
        "-trace_stat",
        "-stf",
        str(stat_file),
        "-fd",
        "1",
    ]
    if calls is not None:
        cmd += ["-m", str(calls)]
    if rate is not None:
        cmd += ["-r", f"{rate:g}"]
    if inf_csv is not None:
        cmd += ["-inf", str(inf_csv)]
    if service is not None:
        cmd += ["-s", service]
    if duration_ms is not None:
        cmd += ["-d", str(duration_ms)]
    if timeout is not None:
        cmd += ["-timeout", f"{max(1, round(timeout))}s", "-timeout_error"]
    cmd += list(extra_args)
    if target is not None:
        cmd.append(target)
    return cmd


def _read_stats(path: Path) -> dict[str, str]:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    header = lines[0].rstrip(";").split(";")
    values = lines[-1].rstrip(";").split(";")
    return dict(zip(header, values, strict=False))


def _stat_int(stats: dict[str, str], name: str) -> int:
    try:
        return int(stats[name])
    except (KeyError, ValueError):
        return -1


def _result(
    returncode: int, stdout: bytes, stderr: bytes, workdir: Path, stat_file: Path, error_file: Path
) -> SippResult:
    stats = _read_stats(stat_file)
    try:
        errors = error_file.read_text(errors="replace")
    except OSError:
        errors = ""
    return SippResult(
        returncode=returncode,
        successful=_stat_int(stats, "SuccessfulCall(C)"),
        failed=_stat_int(stats, "FailedCall(C)"),
        created=_stat_int(stats, "TotalCallCreated"),
        stdout=stdout.decode(errors="replace"),
        stderr=stderr.decode(errors="replace"),
        errors=errors,
        workdir=workdir,
        stats=stats,
    )


def _prepare(
    workdir: str | Path | None, scenario: str | Path, files: Mapping[str, str | Path] | None
) -> tuple[Path, Path, Path, Path]:
    if shutil.which(SIPP) is None:
        raise SippError("sipp not installed (run sip_test_env/install-peers.sh)")
    path = scenario_path(scenario)
    base = Path(workdir) if workdir is not None else Path.cwd()
    run_dir = base / f"sipp-{path.stem}-{next(_run_ids)}"
    run_dir.mkdir(parents=True, exist_ok=True)
    # Scenario <exec rtp_stream/play_pcap_audio> paths are relative to SIPp's cwd.
    for name, source in (files or {}).items():
        shutil.copyfile(source, run_dir / name)
    return path, run_dir, run_dir / "stats.csv", run_dir / "errors.log"


async def _terminate(proc: asyncio.subprocess.Process, grace: float) -> None:
    # SIGUSR1 asks SIPp to stop placing calls and quit once the current ones end.
    for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGKILL):
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), grace)


async def run_sipp(
    scenario: str | Path,
    target: str,
    *,
    calls: int = 1,
    rate: float = 10.0,
    local_port: int | None = None,
    inf_csv: str | Path | None = None,
    service: str | None = None,
    duration_ms: int | None = 1000,
    transport: str = "u1",
    extra_args: Sequence[str] = (),
    timeout: float = 60.0,
    workdir: str | Path | None = None,
    files: Mapping[str, str | Path] | None = None,
) -> SippResult:
    """Run a SIPp client scenario against `target` ("127.0.0.1:PORT") until `calls` calls
    are done (`-m calls -r rate`). `duration_ms` is `-d` (the scenarios' `<pause/>`).
    `transport` is SIPp's -t ("u1" one UDP socket, "t1" one TCP connection). SIPp gets
    `-timeout` a little under `timeout`; past `timeout` it is killed."""
    path, run_dir, stat_file, error_file = _prepare(workdir, scenario, files)
    port = local_port if local_port is not None else free_port("both")
    media_port = free_port_range(4, "udp")[0]
    cmd = _command(
        path,
        target,
        local_port=port,
        media_port=media_port,
        transport=transport,
        calls=calls,
        rate=rate,
        inf_csv=Path(inf_csv) if inf_csv is not None else None,
        service=service,
        duration_ms=duration_ms,
        timeout=max(1.0, timeout - 2.0),
        extra_args=extra_args,
        stat_file=stat_file,
        error_file=error_file,
    )
    logger.info("run %s", " ".join(cmd))
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=run_dir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        await _terminate(proc, 2.0)
        stdout, stderr = b"", b"killed after timeout"
    finally:
        if proc.returncode is None:
            await _terminate(proc, 2.0)
    assert proc.returncode is not None
    result = _result(proc.returncode, stdout, stderr, run_dir, stat_file, error_file)
    logger.info("sipp %s: %s", path.name, result.summary().splitlines()[0])
    return result


class SippUas:
    """A SIPp server scenario running in the background; `async with` or start()/stop()."""

    def __init__(
        self,
        scenario: str | Path = "uas.xml",
        *,
        port: int | None = None,
        service: str | None = None,
        calls: int | None = None,
        transport: str = "u1",
        inf_csv: str | Path | None = None,
        extra_args: Sequence[str] = (),
        workdir: str | Path | None = None,
        files: Mapping[str, str | Path] | None = None,
    ) -> None:
        self.scenario = scenario
        self.files = dict(files or {})
        self.port = port if port is not None else free_port("both")
        """The SIP port the UAS listens on (127.0.0.1)."""
        self.media_port = free_port_range(4, "udp")[0]
        self.service = service
        self.calls = calls
        self.transport = transport
        self.inf_csv = Path(inf_csv) if inf_csv is not None else None
        self.extra_args = list(extra_args)
        self.workdir = workdir
        self.result: SippResult | None = None
        """Set once stopped."""
        self._proc: asyncio.subprocess.Process | None = None
        self._out_task: asyncio.Task[tuple[bytes, bytes]] | None = None
        self._files: tuple[Path, Path, Path] | None = None

    @property
    def started(self) -> bool:
        return self._proc is not None

    @property
    def uri_host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def uri(self, user: str | None = None) -> str:
        """sip:user@127.0.0.1:port, the static extension's address."""
        return f"sip:{user or self.service or 'service'}@127.0.0.1:{self.port}"

    async def start(self) -> SippUas:
        path, run_dir, stat_file, error_file = _prepare(self.workdir, self.scenario, self.files)
        self._files = (run_dir, stat_file, error_file)
        cmd = _command(
            path,
            None,
            local_port=self.port,
            media_port=self.media_port,
            transport=self.transport,
            calls=self.calls,
            rate=None,
            inf_csv=self.inf_csv,
            service=self.service,
            duration_ms=None,
            timeout=None,
            extra_args=self.extra_args,
            stat_file=stat_file,
            error_file=error_file,
        )
        logger.info("start %s", " ".join(cmd))
        self._proc = await asyncio.create_subprocess_exec(
            *cmd,
            cwd=run_dir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self._out_task = asyncio.create_task(self._proc.communicate())
        await self._wait_listening()
        return self

    async def _wait_listening(self, timeout: float = 3.0) -> None:
        # SIPp binds its port right away; a second bind failing means it is up.
        import socket

        assert self._proc is not None
        kind = socket.SOCK_STREAM if self.transport.startswith("t") else socket.SOCK_DGRAM
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self._proc.returncode is not None:
                break
            with socket.socket(socket.AF_INET, kind) as s:
                try:
                    s.bind(("127.0.0.1", self.port))
                except OSError:
                    return
            await asyncio.sleep(0.02)
        result = await self.stop()
        raise SippError(f"SIPp UAS did not start on {self.port}: {result.summary()}")

    async def wait(self, timeout: float = 30.0) -> SippResult:
        """Until SIPp exits on its own (e.g. `calls` reached), then the result."""
        assert self._out_task is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._out_task), timeout)
        return await self.stop()

    async def stop(self, grace: float = 2.0) -> SippResult:
        """Stop SIPp (SIGUSR1, SIGTERM, SIGKILL) and collect its result; idempotent."""
        if self.result is not None:
            return self.result
        assert self._proc is not None and self._out_task is not None and self._files
        await _terminate(self._proc, grace)
        stdout, stderr = await self._out_task
        run_dir, stat_file, error_file = self._files
        assert self._proc.returncode is not None
        self.result = _result(self._proc.returncode, stdout, stderr, run_dir, stat_file, error_file)
        return self.result

    async def __aenter__(self) -> SippUas:
        try:
            return await self.start()
        except BaseException:
            if self._proc is not None:
                await self.stop()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def start_sipp_uas(
    scenario: str | Path = "uas.xml",
    *,
    port: int | None = None,
    service: str | None = None,
    calls: int | None = None,
    transport: str = "u1",
    inf_csv: str | Path | None = None,
    extra_args: Sequence[str] = (),
    workdir: str | Path | None = None,
    files: Mapping[str, str | Path] | None = None,
) -> SippUas:
    """A background SIPp UAS; use `async with start_sipp_uas(...) as uas:`."""
    return SippUas(
        scenario,
        port=port,
        service=service,
        calls=calls,
        transport=transport,
        inf_csv=inf_csv,
        extra_args=extra_args,
        workdir=workdir,
        files=files,
    )
