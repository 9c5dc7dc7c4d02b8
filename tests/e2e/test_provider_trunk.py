"""Provider trunks against a real Kamailio (registrar with digest auth, usrloc, a proxy that
asks 407 for every new INVITE): the engine registers and refreshes; a customer registered at
the provider calls the engine's account and reaches an agent; an agent and the dialer call a
customer through the provider with proxy auth; a killed provider goes down by qualify and the
next trunk carries the call. Failover by status with SIPp carriers: 503 moves to the next
trunk, 486 does not."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from callcenter.runtime import Engine, start_engine
from pbx.trunks import TrunkState
from sip_test_env.baresip import BaresipPeer
from sip_test_env.kamailio import KamailioProvider, kamailio_missing
from sip_test_env.ports import free_port
from sip_test_env.sipp import start_sipp_uas
from telephony.call import Answered, Ended
from telephony.sip.registration import RegistrationState

from .conftest import api_url, bearer, engine_config, registrar_of
from .test_metrics import parse

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(kamailio_missing() is not None, reason=str(kamailio_missing())),
]

ACCOUNT, SECRET = "12025550100", "trunk-secret-1"
CUSTOMER, CUSTOMER_PASS = "12025550123", "customer-pass"


def provider_trunk(provider: KamailioProvider, *, expires: int = 3600, qualify: float = 0) -> str:
    return f"""
[[trunks]]
name = "provider"
register = true
username = "{ACCOUNT}"
secret = "{SECRET}"
realm = "provider.test"
registrar = "{provider.address}"
expires = {expires}
qualify = {qualify}
caller_id = "{ACCOUNT}"
outbound_format = "e164_no_plus"  # the provider's users are digits without "+"
priority = 1

[[dids]]
number = "{ACCOUNT}"
trunk = "provider"
route = "agent:101"
"""


class Watch:
    """The trunk manager's change notices, awaited instead of polled."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._changed = asyncio.Condition()
        engine.switchboard.providers.listeners.append(self._on_change)

    def _on_change(self, state: TrunkState) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        asyncio.get_running_loop().create_task(notify())

    async def until(self, name: str, test: Callable[[TrunkState], bool], timeout: float) -> None:
        state = self.engine.switchboard.providers.states[name]
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: test(state)), timeout)


def registered(state: TrunkState) -> bool:
    return (
        state.registration is not None and state.registration.state is RegistrationState.REGISTERED
    )


@pytest.fixture
async def provider(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[KamailioProvider]:
    users = {ACCOUNT: SECRET, CUSTOMER: CUSTOMER_PASS}
    algorithm = getattr(request, "param", "MD5")
    async with KamailioProvider(tmp_path, users=users, algorithm=algorithm) as running:
        yield running


@pytest.fixture
async def provider_engine(
    pg_url: str, tmp_path: Path, provider: KamailioProvider
) -> AsyncIterator[Engine]:
    config = engine_config(extra=provider_trunk(provider, expires=6))
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        yield engine
    finally:
        await engine.stop()


def agent(ext: str, engine: Engine, tmp_path: Path) -> BaresipPeer:
    return BaresipPeer(ext, workdir=tmp_path, registrar=registrar_of(engine), password=f"pass{ext}")


def customer(provider: KamailioProvider, tmp_path: Path) -> BaresipPeer:
    """A customer's phone registered at the provider (on 127.0.0.2, another machine)."""
    return BaresipPeer(
        CUSTOMER,
        workdir=tmp_path,
        registrar=provider.address,
        password=CUSTOMER_PASS,
        host="127.0.0.2",
        name="customer",
    )


@pytest.mark.parametrize("provider", ["MD5", "SHA-256"], indirect=True)
async def test_registers_with_digest_auth_and_refreshes(
    provider_engine: Engine, provider: KamailioProvider
) -> None:
    watch = Watch(provider_engine)
    state = provider_engine.switchboard.providers.states["provider"]
    await watch.until("provider", registered, timeout=10)
    reg = state.registration
    assert reg is not None and reg.last_status == 200
    first = state.registrations
    # Granted 6 s: refreshed before it lapses, twice, and registered throughout.
    await watch.until("provider", lambda s: s.registrations >= first + 2, timeout=15)
    assert registered(state) and reg.failures == 0
    async with aiohttp.ClientSession() as http:
        async with http.get(api_url(provider_engine, "/trunks"), headers=bearer()) as response:
            assert response.status == 200
            (trunk,) = (await response.json())["trunks"]
        async with http.get(api_url(provider_engine, "/metrics"), headers=bearer()) as response:
            metrics = parse(await response.text())
    assert trunk["name"] == "provider" and trunk["available"] is True
    assert trunk["registration"]["state"] == "registered"
    assert trunk["registration"]["last_status"] == 200
    assert 0 < trunk["registration"]["expires_in"] <= 6
    assert metrics['callcenter_trunk_registration_state{state="registered",trunk="provider"}'] == 1
    assert metrics['callcenter_trunk_available{trunk="provider"}'] == 1
    # A clean stop removes our binding (Engine.stop does this): Kamailio answers the
    # un-REGISTER after its 401.
    await provider_engine.switchboard.providers.stop()
    assert reg.state is RegistrationState.UNREGISTERED and reg.last_status == 200
    assert reg.expires_at is None and reg.next_at is None


async def test_wrong_secret_is_failing_with_the_status_and_next_try(
    pg_url: str, tmp_path: Path, provider: KamailioProvider
) -> None:
    text = provider_trunk(provider).replace(SECRET, "not-the-secret")
    engine = await start_engine(engine_config(extra=text), database_url=pg_url, data_dir=tmp_path)
    try:
        watch = Watch(engine)
        await watch.until(
            "provider",
            lambda s: (
                s.registration is not None and s.registration.state is RegistrationState.FAILING
            ),
            timeout=10,
        )
        (trunk,) = engine.switchboard.providers.snapshot()
        assert trunk["registration"]["last_status"] == 401
        assert trunk["registration"]["next_try_in"] is not None
        assert trunk["available"] is False
        assert not engine.switchboard.can_reach(CUSTOMER)
    finally:
        await engine.stop()


async def test_customer_call_from_the_provider_reaches_an_agent(
    provider_engine: Engine, provider: KamailioProvider, tmp_path: Path
) -> None:
    watch = Watch(provider_engine)
    await watch.until("provider", registered, timeout=10)
    async with (
        customer(provider, tmp_path) as caller,
        agent("101", provider_engine, tmp_path) as a101,
    ):
        await caller.wait_registered()
        await a101.wait_registered()
        # The customer dials our number at the provider: 407, then the location of our account.
        await caller.dial(f"sip:{ACCOUNT}@{provider.address}")
        await a101.wait_event("CALL_INCOMING", timeout=10)
        await a101.accept()
        await caller.wait_event("CALL_ESTABLISHED", timeout=10)
        bridged = next(iter(provider_engine.switchboard.active.values()))
        # The provider writes numbers without "+": inside the engine they are E.164.
        assert bridged.summary.direction == "inbound" and bridged.summary.did == f"+{ACCOUNT}"
        assert bridged.summary.customer == f"+{CUSTOMER}"
        await caller.hangup()
        await a101.wait_event("CALL_CLOSED", timeout=10)


async def test_agent_and_dialer_call_out_through_the_provider_with_proxy_auth(
    provider_engine: Engine, provider: KamailioProvider, tmp_path: Path
) -> None:
    watch = Watch(provider_engine)
    await watch.until("provider", registered, timeout=10)
    async with (
        customer(provider, tmp_path) as phone,
        agent("101", provider_engine, tmp_path) as a101,
    ):
        await phone.wait_registered()
        await a101.wait_registered()
        # The agent dials the customer's number: the engine answers the provider's 407.
        await a101.dial(CUSTOMER)
        await phone.wait_event("CALL_INCOMING", timeout=10)
        await phone.accept()
        await a101.wait_event("CALL_ESTABLISHED", timeout=10)
        bridged = next(iter(provider_engine.switchboard.active.values()))
        leg = bridged.b
        assert leg is not None and bridged.summary.direction == "outbound"
        assert leg.invite.cseq.seq == 2 and leg.invite.headers.get("Proxy-Authorization")
        assert provider_engine.switchboard.providers.snapshot()[0]["channels_in_use"] == 1
        await a101.hangup()  # our BYE goes along Kamailio's Record-Route
        await phone.wait_event("CALL_CLOSED", timeout=10)
        # The dialer's line: originate through the same trunk.
        call = await provider_engine.switchboard.originate(CUSTOMER)
        await phone.wait_event("CALL_INCOMING", timeout=10)
        await phone.accept()
        while not isinstance(event := await call.next_event(10), Answered):
            assert not isinstance(event, Ended), event
        assert call.invite.headers.get("Proxy-Authorization")
        await phone.hangup()
        while not isinstance(await call.next_event(10), Ended):
            pass


async def test_killed_provider_goes_down_and_the_next_trunk_carries_the_call(
    pg_url: str, tmp_path: Path, provider: KamailioProvider
) -> None:
    backup_port = free_port("both")
    backup = f"""
[[trunks]]
name = "backup"
outbound = "127.0.0.1:{backup_port}"
priority = 2
"""
    config = engine_config(extra=provider_trunk(provider, qualify=1) + backup)
    engine = await start_engine(config, database_url=pg_url, data_dir=tmp_path)
    try:
        watch = Watch(engine)
        providers = engine.switchboard.providers
        await watch.until("provider", lambda s: registered(s) and s.up is True, timeout=10)
        assert [s.trunk.name for s in providers.candidates()] == ["provider", "backup"]
        async with (
            aiohttp.ClientSession() as http,
            http.get(api_url(engine, "/api/live"), headers=bearer()) as live,
        ):
            kind, snapshot = await _sse(live)
            assert kind == "snapshot"
            shown = {t["name"]: t for t in snapshot["trunks"]}
            assert shown["provider"]["qualify"]["status"] == "up"
            await provider.kill()
            await watch.until("provider", lambda s: s.up is False, timeout=10)
            # The dashboard hears it: the provider's row, down.
            while True:
                kind, row = await asyncio.wait_for(_sse(live), 5)
                if kind == "trunk" and row["name"] == "provider":
                    if row["qualify"]["status"] == "down":
                        assert row["available"] is False
                        break
        assert [s.trunk.name for s in providers.candidates()] == ["backup"]
        async with (
            start_sipp_uas("uas.xml", port=backup_port, calls=1, workdir=tmp_path / "b") as uas,
            agent("101", engine, tmp_path) as a101,
        ):
            await a101.wait_registered()
            await a101.dial(CUSTOMER)
            await a101.wait_event("CALL_ESTABLISHED", timeout=10)
            bridged = next(iter(engine.switchboard.active.values()))
            assert bridged.b is not None
            assert bridged.b.peer[1:] == ("127.0.0.1", backup_port)
            await a101.hangup()
            await a101.wait_event("CALL_CLOSED", timeout=10)
            assert (await uas.wait(timeout=10)).ok
        async with aiohttp.ClientSession() as http:
            async with http.get(api_url(engine, "/metrics"), headers=bearer()) as response:
                metrics = parse(await response.text())
        assert metrics['callcenter_trunk_up{trunk="provider"}'] == 0
        # The provider comes back (its bindings lost): up by qualify, registered again, first.
        before = providers.states["provider"].registrations
        await provider.start()
        await watch.until(
            "provider",
            lambda s: s.up is True and s.registrations > before and registered(s),
            timeout=10,
        )
        assert [s.trunk.name for s in providers.candidates()] == ["provider", "backup"]
    finally:
        await engine.stop()


async def _sse(response: aiohttp.ClientResponse) -> tuple[str, dict[str, object]]:
    """The next event of a live stream (comments and keep-alives skipped)."""
    while True:
        block = (await response.content.readuntil(b"\n\n")).decode()
        fields = dict(line.split(": ", 1) for line in block.strip().splitlines() if ": " in line)
        if "event" in fields:
            return fields["event"], json.loads(fields.get("data", "{}"))


@pytest.mark.parametrize(
    ("first", "fails_over"), [("uas_unavailable.xml", True), ("uas_busy.xml", False)]
)
async def test_failover_on_5xx_not_on_busy(
    pg_url: str, tmp_path: Path, first: str, fails_over: bool
) -> None:
    ports = [free_port("both"), free_port("both")]
    trunks = "".join(
        f'[[trunks]]\nname = "t{i}"\noutbound = "127.0.0.1:{port}"\npriority = {i}\n\n'
        for i, port in enumerate(ports)
    )
    engine = await start_engine(engine_config(extra=trunks), database_url=pg_url, data_dir=tmp_path)
    try:
        async with (
            start_sipp_uas(first, port=ports[0], calls=1, workdir=tmp_path / "t0") as t0,
            start_sipp_uas("uas.xml", port=ports[1], calls=1, workdir=tmp_path / "t1") as t1,
            agent("101", engine, tmp_path) as a101,
        ):
            await a101.wait_registered()
            await a101.dial(CUSTOMER)
            if fails_over:
                await a101.wait_event("CALL_ESTABLISHED", timeout=10)
                await a101.hangup()
                assert (await t1.wait(timeout=10)).ok
            else:
                # The called party is busy: another trunk would only ring the same busy line.
                closed = await a101.wait_event("CALL_CLOSED", timeout=10)
                assert "486" in str(closed), closed
            assert (await t0.wait(timeout=10)).ok
            if not fails_over:
                assert (await t1.stop()).created == 0
    finally:
        await engine.stop()


async def test_a_trunk_with_every_channel_busy_is_skipped(pg_url: str, tmp_path: Path) -> None:
    ports = [free_port("both"), free_port("both")]
    trunks = (
        f'[[trunks]]\nname = "small"\noutbound = "127.0.0.1:{ports[0]}"\nchannels = 1\n\n'
        f'[[trunks]]\nname = "big"\noutbound = "127.0.0.1:{ports[1]}"\npriority = 1\n\n'
    )
    engine = await start_engine(engine_config(extra=trunks), database_url=pg_url, data_dir=tmp_path)
    try:
        async with (
            start_sipp_uas("uas.xml", port=ports[0], calls=1, workdir=tmp_path / "s") as small,
            start_sipp_uas("uas.xml", port=ports[1], calls=1, workdir=tmp_path / "b") as big,
            agent("101", engine, tmp_path) as a101,
            agent("102", engine, tmp_path) as a102,
        ):
            await a101.wait_registered()
            await a102.wait_registered()
            await a101.dial(CUSTOMER)
            await a101.wait_event("CALL_ESTABLISHED", timeout=10)
            rows = {t["name"]: t for t in engine.switchboard.providers.snapshot()}
            assert (rows["small"]["channels_in_use"], rows["small"]["available"]) == (1, False)
            await a102.dial("12025550124")
            await a102.wait_event("CALL_ESTABLISHED", timeout=10)
            legs = {b.callee: b.b for b in engine.switchboard.active.values()}
            assert {n: leg.peer[2] for n, leg in legs.items() if leg is not None} == {
                f"+{CUSTOMER}": ports[0],  # the journal's E.164
                "+12025550124": ports[1],
            }
            await a101.hangup()
            await a102.hangup()
            assert (await small.wait(timeout=10)).ok and (await big.wait(timeout=10)).ok
    finally:
        await engine.stop()


async def test_the_dialers_call_fails_over_on_5xx(pg_url: str, tmp_path: Path) -> None:
    """The dialer's line (Switchboard.originate) takes the next trunk when the first refuses
    the call with 503 before ringing: the leg it hands the dialer is the one that rang."""
    ports = [free_port("both"), free_port("both")]
    trunks = "".join(
        f'[[trunks]]\nname = "t{i}"\noutbound = "127.0.0.1:{port}"\npriority = {i}\n\n'
        for i, port in enumerate(ports)
    )
    engine = await start_engine(engine_config(extra=trunks), database_url=pg_url, data_dir=tmp_path)
    try:
        async with (
            start_sipp_uas(
                "uas_unavailable.xml", port=ports[0], calls=1, workdir=tmp_path / "t0"
            ) as t0,
            start_sipp_uas("uas.xml", port=ports[1], calls=1, workdir=tmp_path / "t1") as t1,
        ):
            call = await engine.switchboard.originate(CUSTOMER)
            assert call.peer[2] == ports[1]  # the second trunk's leg
            while not isinstance(event := await call.next_event(10), Answered):
                assert not isinstance(event, Ended), event
            await call.hangup()
            assert (await t0.wait(timeout=10)).ok
            assert (await t1.wait(timeout=10)).ok
    finally:
        await engine.stop()
