"""The outbound registration in memory, on a virtual clock: a registrar built on the real
`DigestServer` answers what the client sends, as bytes on a wire; time only moves when the test
moves it."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from telephony.sip import (
    AuthResult,
    DigestConfig,
    DigestServer,
    NameAddr,
    SipRequest,
    SipResponse,
    SipUri,
    Via,
    make_response,
    parse_message,
)
from telephony.sip.registration import Registration, RegistrationConfig, RegistrationState

REALM = "provider.test"
_branches = itertools.count()


def _uri(user: str | None, host: str, port: int | None = None) -> SipUri:
    return SipUri(scheme="sip", user=user, host=host, port=port)


def _via() -> Via:
    return Via("SIP/2.0", "UDP", "10.0.0.1", 5060, {"branch": f"z9hG4bK{next(_branches)}"})


@dataclass
class Registrar:
    """A provider's registrar: digest auth against one password, bindings with a lifetime."""

    password: str = "s3cret-pass"
    algorithms: tuple[str, ...] = ("MD5",)
    max_expires: int = 3600
    min_expires: int = 0
    proxy: bool = False
    """Challenge with 407 (a proxy in front of the registrar) instead of 401."""
    refuse: list[tuple[int, list[tuple[str, str]]]] = field(default_factory=list)
    """Answers given (in order) before any other, e.g. (503, [("Retry-After", "120")])."""
    seen: list[SipRequest] = field(default_factory=list)
    binding_expires: int | None = None

    def __post_init__(self) -> None:
        self.server = DigestServer(b"k" * 32, DigestConfig(algorithms=self.algorithms))

    def handle(self, request: SipRequest, *, now: float) -> SipResponse:
        parsed = parse_message(bytes(request))
        assert isinstance(parsed, SipRequest)
        self.seen.append(parsed)
        if self.refuse:
            status, extra = self.refuse.pop(0)
            return make_response(parsed, status, extra=extra)
        name = "Proxy-Authorization" if self.proxy else "Authorization"
        credentials = parsed.headers.get(name)
        result = (
            self.server.verify(
                credentials,
                method="REGISTER",
                realm=REALM,
                now=now,
                password_lookup=lambda user: self.password if user == "4951234567" else None,
            )
            if credentials
            else None
        )
        if result is not AuthResult.OK:
            status, header = (
                (407, "Proxy-Authenticate") if self.proxy else (401, "WWW-Authenticate")
            )
            stale = result is not None and result.stale
            values = self.server.challenge(REALM, now=now, stale=stale)
            return make_response(parsed, status, extra=[(header, v) for v in values])
        expires = int(parsed.headers.get("Expires") or "3600")
        if 0 < expires < self.min_expires:
            return make_response(parsed, 423, extra=[("Min-Expires", str(self.min_expires))])
        granted = min(expires, self.max_expires)
        self.binding_expires = granted or None
        contact = parsed.headers.get("Contact") or ""
        extra = [("Contact", f"{contact};expires={granted}")] if granted else []
        return make_response(parsed, 200, to_tag="reg", extra=extra)


def _registration(**overrides: object) -> Registration:
    config = RegistrationConfig(
        registrar=_uri(None, "provider.test"),
        aor=_uri("4951234567", "provider.test"),
        contact=NameAddr(None, _uri("4951234567", "10.0.0.1", 5060), {}),
        username="4951234567",
        password="s3cret-pass",
        **overrides,  # type: ignore[arg-type]
    )
    return Registration(config, new_via=_via, call_id="reg-1@10.0.0.1", from_tag="ft")


def _exchange(reg: Registration, registrar: Registrar | None, *, now: float) -> int:
    """Send what is due now and carry every answer back (None from a silent registrar);
    returns how many REGISTERs went out."""
    sent = 0
    request = reg.due(now=now)
    while request is not None:
        sent += 1
        response = None if registrar is None else registrar.handle(request, now=now)
        if response is not None:
            response = parse_message(bytes(response))
            assert isinstance(response, SipResponse)
        request = reg.receive(response, now=now)
    return sent


@pytest.mark.parametrize("algorithms", [("MD5",), ("SHA-256",), ("SHA-256", "MD5")])
@pytest.mark.parametrize("proxy", [False, True])
def test_registers_answering_the_challenge(algorithms: tuple[str, ...], proxy: bool) -> None:
    registrar = Registrar(algorithms=algorithms, proxy=proxy)
    reg = _registration()
    assert reg.state is RegistrationState.UNREGISTERED
    reg.start(now=0.0)
    assert _exchange(reg, registrar, now=0.0) == 2
    assert reg.state is RegistrationState.REGISTERED
    assert reg.last_status == 200
    assert reg.expires_at == 3600.0
    first, second = registrar.seen
    # One dialog of REGISTERs: same Call-ID and From tag, CSeq counting up.
    assert first.call_id == second.call_id == "reg-1@10.0.0.1"
    assert first.from_.tag == second.from_.tag == "ft"
    assert (first.cseq.seq, second.cseq.seq) == (1, 2)
    assert first.top_via.branch != second.top_via.branch
    answer = second.headers.get("Proxy-Authorization" if proxy else "Authorization") or ""
    assert f"algorithm={algorithms[0]}" in answer or (algorithms[0] == "MD5")
    assert "qop=auth" in answer


def test_refreshes_before_expiry_and_keeps_the_dialog() -> None:
    registrar = Registrar(max_expires=60)
    reg = _registration(expires=600)
    reg.start(now=0.0)
    _exchange(reg, registrar, now=0.0)
    assert reg.expires_at == 60.0  # the registrar granted less than we asked
    refresh_at = reg.next_at
    assert refresh_at is not None and 50.0 <= refresh_at < 60.0
    assert reg.due(now=refresh_at - 0.1) is None  # nothing before its time
    _exchange(reg, registrar, now=refresh_at)
    assert reg.state is RegistrationState.REGISTERED
    assert reg.expires_at == refresh_at + 60
    assert [r.cseq.seq for r in registrar.seen] == [1, 2, 3, 4]
    assert {r.call_id for r in registrar.seen} == {"reg-1@10.0.0.1"}


def test_wrong_password_fails_once_then_backs_off_exponentially() -> None:
    registrar = Registrar(password="another-pass")
    reg = _registration(retry_min=2.0, retry_max=10.0)
    reg.start(now=0.0)
    # The challenge is answered once; the same nonce again means the password is wrong.
    assert _exchange(reg, registrar, now=0.0) == 2
    assert reg.state is RegistrationState.FAILING
    assert reg.last_status == 401
    delays, now = [], 0.0
    for _ in range(5):
        assert reg.next_at is not None
        delays.append(reg.next_at - now)
        now = reg.next_at
        _exchange(reg, registrar, now=now)
    assert delays == [2.0, 4.0, 8.0, 10.0, 10.0]
    # The password fixed at the provider: the next try succeeds and the back-off resets.
    registrar.password = "s3cret-pass"
    assert reg.next_at is not None
    _exchange(reg, registrar, now=reg.next_at)
    assert reg.state is RegistrationState.REGISTERED and reg.failures == 0


def test_retry_after_is_honoured() -> None:
    registrar = Registrar(refuse=[(503, [("Retry-After", "120 (maintenance)")])])
    reg = _registration()
    reg.start(now=10.0)
    _exchange(reg, registrar, now=10.0)
    assert reg.state is RegistrationState.FAILING
    assert (reg.last_status, reg.last_reason) == (503, "Service Unavailable")
    assert reg.next_at == 130.0
    _exchange(reg, registrar, now=130.0)
    assert reg.state is RegistrationState.REGISTERED


def test_no_response_is_a_timeout_and_retried() -> None:
    reg = _registration(retry_min=5.0)
    reg.start(now=0.0)
    assert _exchange(reg, None, now=0.0) == 1
    assert reg.state is RegistrationState.FAILING and reg.last_status == 408
    assert reg.next_at == 5.0
    assert reg.due(now=4.9) is None
    _exchange(reg, Registrar(), now=5.0)
    assert reg.state is RegistrationState.REGISTERED


def test_interval_too_brief_raises_the_expiry() -> None:
    registrar = Registrar(min_expires=1800)
    reg = _registration(expires=300)
    reg.start(now=0.0)
    _exchange(reg, registrar, now=0.0)
    assert reg.state is RegistrationState.REGISTERED
    assert reg.expires == 1800 and reg.expires_at == 1800.0
    assert registrar.seen[-1].headers.get("Expires") == "1800"


def test_stop_unregisters_with_expires_zero() -> None:
    registrar = Registrar()
    reg = _registration()
    reg.start(now=0.0)
    _exchange(reg, registrar, now=0.0)
    request = reg.stop(now=100.0)
    assert request is not None and request.headers.get("Expires") == "0"
    assert reg.state is RegistrationState.UNREGISTERED and reg.next_at is None
    while request is not None:  # the un-REGISTER is challenged too
        request = reg.receive(registrar.handle(request, now=100.0), now=100.0)
    assert registrar.binding_expires is None
    assert registrar.seen[-1].headers.get("Expires") == "0"
    assert reg.state is RegistrationState.UNREGISTERED and reg.next_at is None
    # Nothing registered: stopping again sends nothing.
    assert reg.stop(now=101.0) is None


def test_a_failing_refresh_reports_failing_and_the_binding_lapses() -> None:
    registrar = Registrar(max_expires=30)
    reg = _registration(retry_min=20.0)
    reg.start(now=0.0)
    _exchange(reg, registrar, now=0.0)
    assert reg.next_at is not None
    at = reg.next_at
    _exchange(reg, None, now=at)
    assert reg.state is RegistrationState.FAILING
    assert reg.expires_at == 30.0  # the old binding still stands until then
    assert reg.next_at is not None
    _exchange(reg, None, now=reg.next_at)
    assert reg.expires_at is None  # lapsed meanwhile


def test_refresh_now_brings_the_next_register_forward() -> None:
    registrar = Registrar()
    reg = _registration()
    reg.start(now=0.0)
    _exchange(reg, registrar, now=0.0)
    assert reg.next_at is not None and reg.next_at > 100
    reg.refresh(now=100.0)
    assert _exchange(reg, registrar, now=100.0) == 2
    assert reg.expires_at == 3700.0
    reg.stop(now=200.0)
    reg.refresh(now=200.0)  # stopped: stays stopped
    assert reg.next_at is None
