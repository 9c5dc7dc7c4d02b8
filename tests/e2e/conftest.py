"""The real engine on loopback for end-to-end tests, on a real (embedded) PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time
from pathlib import Path

import pytest

from callcenter.config import Config, parse_config
from callcenter.runtime import Engine, start_engine
from dialer import Campaign, NewLead, PgLeadStore
from sip_test_env.baresip import BaresipPeer
from sip_test_env.ports import free_port, worker_share

ACCOUNTS = (
    "".join(
        f'[[accounts]]\nextension = "{n}"\npassword = "pass{n}"\ndisplay_name = "Agent {n}"\n\n'
        for n in range(101, 106)
    )
    + '[[accounts]]\nextension = "190"\npassword = "pass190"\nrole = "supervisor"\n\n'
)


async def power_campaign(
    store: PgLeadStore, name: str, numbers: list[str], *, max_ring_seconds: int = 15
) -> int:
    """A power campaign (ratio 1, one attempt per lead, no AMD, any hour) through the
    "carrier" trunk staffed by agent 101, with `numbers` as its leads; still a draft."""
    now = datetime.now(UTC)
    campaign = await store.create_campaign(
        Campaign(
            name=f"{name}-{secrets.token_hex(3)}", caller_id="12125550100", trunk="carrier",
            agents=("101",), mode="power", ratio=1.0, max_attempts=1, window_start=time(0, 0),
            window_end=time(23, 59), tz_default="UTC", max_ring_seconds=max_ring_seconds,
            amd=False,
        ),
        now=now,
    )  # fmt: skip
    assert campaign.id is not None
    await store.import_leads(campaign.id, [NewLead(n, "UTC") for n in numbers], now=now)
    return campaign.id


# The test engines' RTP range; under pytest-xdist each worker's engines take their own share of it.
ENGINE_RTP_PORTS = worker_share(16000, 17999)
ADMIN_KEY = "test-admin-key-0001"
AGENT_KEY = "test-agent-key-0001"
AGENT_101_KEY = "test-agent-101-key-01"
"""An agent key bound to extension 101: it acts for 101 only."""
API_KEYS = (
    f'[[api_keys]]\nname = "admin"\nkey = "{ADMIN_KEY}"\nrole = "admin"\n\n'
    f'[[api_keys]]\nname = "agent"\nkey = "{AGENT_KEY}"\nrole = "agent"\n\n'
    f'[[api_keys]]\nname = "agent-101"\nkey = "{AGENT_101_KEY}"\nrole = "agent"\n'
    'extension = "101"\n\n'
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files with the most tests marked slow (20 s or more) first, the rest in their order.

    scripts/test runs this suite on pytest-xdist workers, each taking whole files in this order
    (--dist loadfile --no-loadscope-reorder): a long file started last would keep one worker
    busy while the others idle."""
    slow: dict[Path, int] = {}
    for item in items:
        if item.get_closest_marker("slow") is not None:
            slow[item.path] = slow.get(item.path, 0) + 1
    items.sort(key=lambda item: -slow.get(item.path, 0))


def engine_config(
    *,
    extra_sip: str = "",
    extra_http: str = "",
    extra: str = "",
    static: dict[str, str] | None = None,
    crm: str = "",
) -> Config:
    """The parsed engine_config_text()."""
    text = engine_config_text(
        extra_sip=extra_sip, extra_http=extra_http, extra=extra, static=static, crm=crm
    )
    return parse_config(text, source="test.toml")


def crm_taking(*events: str) -> str:
    """[crm] lines (engine_config's `crm`) of an endpoint taking `events`, for a test that reads
    them from the outbox: an event is written only when an endpoint takes it. Nobody serves its
    URL; its deliveries wait, retried, and stay in the outbox to read."""
    listed = ", ".join(f'"{event}"' for event in events)
    return (
        f'[[crm.endpoints]]\nname = "outbox-reader"\nkind = "webhook"\n'
        f'url = "http://127.0.0.1:{free_port("tcp")}/hook"\nsecret = "s"\nevents = [{listed}]\n'
    )


def engine_config_text(
    *,
    extra_sip: str = "",
    extra_http: str = "",
    extra: str = "",
    static: dict[str, str] | None = None,
    crm: str = "",
) -> str:
    """A test config on free loopback ports; `static` maps extensions to fixed contact URIs."""
    port = free_port("both")
    # One RTP range for every test engine of this process (they run one after another): the pool
    # skips ports someone else holds. It lies below sip_test_env's peer pool (20000-29999) and
    # below the kernel's ephemeral range, so neither the peers nor port-0 sockets land in it.
    low, high = ENGINE_RTP_PORTS
    # Manual calls outside calling hours would depend on the wall clock: warn, unless the test
    # sets its own policy.
    policy = "" if "manual_policy" in crm else 'manual_policy = {agent = "warn"}\n'
    statics = "".join(
        f'[[accounts]]\nextension = "{ext}"\npassword = "pass{ext}"\nstatic_contact = "{uri}"\n'
        "max_calls = 1000\n\n"
        for ext, uri in (static or {}).items()
    )
    # A starved test box is no overload: the functional tests must not get 503s because the
    # CPU went to another lane (overload control has its tests on a virtual clock in
    # tests/telephony, and bench_call_setup.py measures it for real).
    if "overload_" not in extra_sip:
        extra_sip += "\noverload_shed_ms = 2000\noverload_drop_ms = 5000\n"
    text = (
        f'[sip]\nlisten = "127.0.0.1:{port}"\nrtp_ports = "{low}-{high}"\n{extra_sip}\n'
        f'[http]\nlisten = "127.0.0.1:{free_port("tcp")}"\n{extra_http}\n'
        f"{extra}\n{ACCOUNTS}{statics}{API_KEYS}"
        # Engines share one database: each is its own node, so a start-up closes only its calls.
        f'[crm]\nnode = "test-{secrets.token_hex(4)}"\n{policy}{crm}\n'
    )
    return text


@contextlib.asynccontextmanager
async def running_engine(database_url: str, data_dir: Path) -> AsyncIterator[Engine]:
    """The default test engine on `database_url`, stopped at the end."""
    running = await start_engine(engine_config(), database_url=database_url, data_dir=data_dir)
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def engine(pg_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    async with running_engine(pg_url, tmp_path) as running:
        yield running


@pytest.fixture
async def lone_engine(crm_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    """An engine on a database of this test's own: for a test that counts what the whole
    database holds (contacts, tasks), which other tests on the same worker's shared database
    would change whatever order the run takes."""
    async with running_engine(crm_url, tmp_path) as running:
        yield running


def registrar_of(engine: Engine) -> str:
    return f"127.0.0.1:{engine.sip_port}"


def assert_no_state_left(engine: Engine) -> None:
    """No leg, bridged call, RTP port or transaction outlives the calls.

    Transactions end by their own timers (Timer J, K, D... up to 32 s); the layer is sans-IO, so
    we hand it a clock a minute ahead instead of waiting for them.
    """
    assert not engine.ua.calls, engine.ua.calls
    assert not engine.switchboard.active
    assert engine.ua.ports.in_use == 0
    layer = engine.ua.endpoint.layer
    layer.handle_timer(now=engine.ua.loop.time() + 60)
    assert layer.active_count == 0, list(layer.transactions())


async def calls_settled(engine: Engine, timeout: float = 5.0) -> None:
    """Until every call is over and journaled (no leg, bridged or IVR call live, every ended
    call's row written: the switchboard's call tasks done), then nothing may be left behind.
    A test reading the calls rows after its calls waits here, not on the live tables alone."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    def busy() -> bool:
        ivr = engine.ivr
        return not engine.switchboard.settled or bool(engine.ua.calls or (ivr and ivr.calls))

    while busy():
        assert loop.time() < deadline, (
            f"calls left behind: {engine.ua.calls}, {engine.switchboard.active}"
        )
        await asyncio.sleep(0.02)
    assert_no_state_left(engine)


def api_url(engine: Engine, path: str) -> str:
    listen = engine.config.http_listen
    scheme = "http" if engine.config.http_tls is None else "https"
    return f"{scheme}://{listen.host}:{listen.port}{path}"


def bearer(key: str = ADMIN_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def connect(caller: BaresipPeer, callee: BaresipPeer) -> None:
    """Two registered agents' phones in a call: the caller dials, the callee picks up."""
    await caller.wait_registered()
    await callee.wait_registered()
    await caller.dial(callee.user)
    await callee.wait_event("CALL_INCOMING", timeout=5)
    await callee.accept()
    await caller.wait_event("CALL_ESTABLISHED", timeout=5)


@contextlib.asynccontextmanager
async def agents_in_call(
    engine: Engine, workdir: Path, audio: Path
) -> AsyncIterator[tuple[BaresipPeer, BaresipPeer]]:
    """Agents 101 and 102 on baresip, both playing `audio`, in a call through the engine."""
    async with (
        BaresipPeer("101", workdir=workdir / "a", registrar=registrar_of(engine),
                    password="pass101", audio_source=audio) as caller,
        BaresipPeer("102", workdir=workdir / "b", registrar=registrar_of(engine),
                    password="pass102", audio_source=audio) as callee,
    ):  # fmt: skip
        await connect(caller, callee)
        yield caller, callee
