"""Shared pytest fixtures: real SIP peers (baresip, pyVoIP, SIPp) that clean up after themselves.

Also one embedded PostgreSQL for the run (`pg_url`, `db`) and a fresh migrated database per
test (`crm_url`, `pool`: cloned from a template, so no test sees another's rows); engine
fixtures live in
tests/e2e/conftest.py. A test whose programs are missing is skipped with the command that
installs them; under CI (CI=true) every skip is a failure instead (sip_test_env/tools.py).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import settings

from crm_bridge import apply_migrations
from sip_test_env import tools
from sip_test_env.baresip import BaresipPeer
from sip_test_env.pyvoip_phone import PyVoipPhone
from sip_test_env.sipp import SippUas, start_sipp_uas

logger = logging.getLogger(__name__)

# No timing limit on a Hypothesis example: a test asserts behaviour, never speed (bench/ does),
# and CI's box runs the unit lanes beside the end-to-end suite, where one example of
# test_bus took 277 ms against Hypothesis's default 200 ms deadline and failed the run.
settings.register_profile("callcenter", deadline=None)
settings.load_profile("callcenter")

PEER_BINARIES = ("baresip", "sipp")
_LOG_TAIL_LINES = 60


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = tools.missing(*PEER_BINARIES)
    if not missing:
        return
    skip = pytest.mark.skip(reason=tools.missing_message(missing))
    for item in items:
        if "peers" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Keep each phase's report on the item so fixtures can tell a failed test at teardown.
    report = yield
    if report.skipped and tools.in_ci() and not hasattr(report, "wasxfail"):
        # Under CI nothing may pass by being skipped: a missing tool is a broken install.
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under CI=true, which is a failure here: {reason}"
    setattr(item, f"rep_{report.when}", report)
    return report


def _utf8_safe(value: Any) -> Any:
    """`value` with every string that holds a lone surrogate backslash-escaped (`\\udcff`)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {key: _utf8_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_utf8_safe(item) for item in value)
    return value


@pytest.hookimpl(wrapper=True)
def pytest_report_to_serializable(
    config: pytest.Config, report: pytest.CollectReport | pytest.TestReport
) -> Generator[None, dict[str, Any] | None, dict[str, Any] | None]:
    # A pytest-xdist worker sends its reports to the controller as UTF-8. SIP text decoded with
    # surrogateescape (undecodable bytes of a torture message, say) reaches the captured log as
    # lone surrogates, which cannot be sent: the worker stopped with an internal error. Escaped,
    # the log still shows which bytes they were.
    data = yield
    return None if data is None else _utf8_safe(data)


def _test_failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "rep_call", None)
    return report is None or report.failed


def _print_tail(title: str, path: Path) -> None:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return
    print(f"----- {title}: {path} (last {_LOG_TAIL_LINES} lines) -----")
    print("\n".join(lines[-_LOG_TAIL_LINES:]))


@pytest.fixture
async def baresip_factory(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[..., Awaitable[BaresipPeer]]]:
    """`peer = await baresip_factory("101", registrar=..., password=..., audio_source=...)`:
    a started BaresipPeer (keyword arguments as BaresipPeer; workdir defaults to tmp_path).
    Every peer is stopped at teardown; on failure their logs are printed."""
    peers: list[BaresipPeer] = []

    async def make(user: str, **kwargs: Any) -> BaresipPeer:
        kwargs.setdefault("workdir", tmp_path)
        peer = BaresipPeer(user, **kwargs)
        peers.append(peer)
        await peer.start()
        return peer

    try:
        yield make
    finally:
        for peer in reversed(peers):
            await peer.stop()
        if _test_failed(request):
            for peer in peers:
                _print_tail(peer.name, peer.log_path)


@pytest.fixture
async def pyvoip_factory() -> AsyncIterator[Callable[..., Awaitable[PyVoipPhone]]]:
    """`phone = await pyvoip_factory("102", "pass102", server_port=PORT)`: a registered
    PyVoipPhone (keyword arguments as PyVoipPhone). Every phone is stopped at teardown."""
    phones: list[PyVoipPhone] = []

    async def make(user: str, password: str, **kwargs: Any) -> PyVoipPhone:
        phone = PyVoipPhone(user, password, **kwargs)
        phones.append(phone)
        await phone.start()
        return phone

    try:
        yield make
    finally:
        for phone in reversed(phones):
            await phone.stop()


@pytest.fixture
async def sipp_uas_factory(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[..., Awaitable[SippUas]]]:
    """`uas = await sipp_uas_factory("uas.xml", service="103")`: a running background SIPp
    server scenario (keyword arguments as start_sipp_uas; workdir defaults to tmp_path).
    Stopped at teardown; `uas.result` holds its statistics after `await uas.stop()`."""
    servers: list[SippUas] = []

    async def make(scenario: str | Path = "uas.xml", **kwargs: Any) -> SippUas:
        kwargs.setdefault("workdir", tmp_path)
        uas = start_sipp_uas(scenario, **kwargs)
        servers.append(uas)
        return await uas.start()

    try:
        yield make
    finally:
        for uas in reversed(servers):
            if uas.started:
                result = await uas.stop()
                if _test_failed(request):
                    print(f"----- SIPp {uas.scenario}: {result.summary()}")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """One embedded PostgreSQL for the whole run, in a temporary directory."""
    from callcenter import embedded_pg

    root = Path(tempfile.mkdtemp(prefix="cc-pg-"))
    server = embedded_pg.start(root)
    try:
        yield server.get_uri()
    finally:
        embedded_pg.stop(server)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    async with _connected(pg_url) as conn:
        yield conn


@contextlib.asynccontextmanager
async def _connected(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


_TEMPLATES: dict[str, str] = {}


def _url(pg_url: str, name: str) -> str:
    return pg_url.replace("/postgres?", f"/{name}?")


async def _template(pg_url: str) -> str:
    """A migrated database to clone (CREATE DATABASE ... TEMPLATE is much faster than
    migrating each time); made once per PostgreSQL server."""
    if pg_url not in _TEMPLATES:
        name = f"crm_tpl_{secrets.token_hex(4)}"
        admin = await asyncpg.connect(pg_url)
        try:
            await admin.execute(f"CREATE DATABASE {name}")
        finally:
            await admin.close()
        conn = await asyncpg.connect(_url(pg_url, name))
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()
        _TEMPLATES[pg_url] = name
    return _TEMPLATES[pg_url]


@pytest.fixture
async def crm_url(pg_url: str) -> AsyncIterator[str]:
    """URL of a fresh, migrated database of this test's own."""
    template = await _template(pg_url)
    name = f"crm_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        yield _url(pg_url, name)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


@pytest.fixture
async def crm_db(crm_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to this test's own database (crm_url)."""
    async with _connected(crm_url) as conn:
        yield conn


@pytest.fixture
async def pool(crm_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(crm_url, min_size=1, max_size=8)
    try:
        yield pool
    finally:
        await pool.close()
