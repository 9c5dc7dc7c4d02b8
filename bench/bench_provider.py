"""What provider registration and digest answers cost: CPU per challenged exchange (sans-IO,
no network), and REGISTER round trips against a real Kamailio on loopback.

Run: .venv/bin/python bench/bench_provider.py [--smoke]

Prints figures only (never pass/fail):
- CPU per challenged REGISTER (REGISTER, 401, REGISTER with credentials, 200), client and
  registrar (the real DigestServer) together, MD5 and SHA-256;
- CPU to answer a 407 to an INVITE (the INVITE session's part only);
- against Kamailio (sip_test_env.kamailio, when installed): N accounts registering, 20 at a
  time, over UDP, each a full challenged exchange: registrations per second and the median and p90
  time of one exchange.
--smoke: a few hundred exchanges and 20 accounts (a couple of seconds, for CI).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sip_test_env.kamailio import KamailioProvider, kamailio_missing
from telephony.call.session import InviteSession, Role, SendInvite
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
from telephony.sip.challenge import DigestClient
from telephony.sip.registration import Registration, RegistrationConfig, RegistrationState

REALM = "provider.test"
PASSWORD = "bench-secret-1"
_branches = itertools.count()
CONCURRENCY = 20
"""Exchanges under way at once (UDP without retransmissions here: a burst must not overflow
Kamailio's socket)."""


def _via(port: int = 5060) -> Via:
    return Via("SIP/2.0", "UDP", "127.0.0.1", port, {"branch": f"z9hG4bKb{next(_branches)}"})


def _registration(user: str, registrar: SipUri, port: int = 5060) -> Registration:
    config = RegistrationConfig(
        registrar=registrar,
        aor=SipUri(scheme="sip", user=user, host=registrar.host),
        contact=NameAddr(None, SipUri(scheme="sip", user=user, host="127.0.0.1", port=port), {}),
        username=user,
        password=PASSWORD,
        expires=3600,
    )
    return Registration(
        config, new_via=lambda: _via(port), call_id=f"bench-{user}@127.0.0.1", from_tag="b"
    )


def _registrar(server: DigestServer, request: SipRequest) -> SipResponse:
    credentials = request.headers.get("Authorization")
    if credentials is not None:
        result = server.verify(
            credentials,
            method="REGISTER",
            realm=REALM,
            now=0.0,
            password_lookup=lambda _user: PASSWORD,
        )
        if result is AuthResult.OK:
            return make_response(request, 200, to_tag="r")
    values = server.challenge(REALM, now=0.0)
    return make_response(request, 401, extra=[("WWW-Authenticate", v) for v in values])


def cpu_register(algorithm: str, count: int) -> float:
    """Microseconds of CPU per challenged REGISTER exchange, through bytes on the wire."""
    server = DigestServer(b"k" * 32, DigestConfig(algorithms=(algorithm,)))
    registrar = SipUri(scheme="sip", host=REALM)
    started = time.process_time()
    for n in range(count):
        reg = _registration(f"u{n}", registrar)
        reg.start(now=0.0)
        request = reg.due(now=0.0)
        while request is not None:
            wire = parse_message(bytes(request))
            assert isinstance(wire, SipRequest)
            response = parse_message(bytes(_registrar(server, wire)))
            assert isinstance(response, SipResponse)
            request = reg.receive(response, now=0.0)
        assert reg.state is RegistrationState.REGISTERED
    return (time.process_time() - started) / count * 1e6


def cpu_invite_challenge(count: int) -> float:
    """Microseconds of CPU for the INVITE session to answer one 407 (building the new INVITE)."""
    server = DigestServer(b"k" * 32, DigestConfig(algorithms=("MD5",)))
    challenge = server.challenge(REALM, now=0.0)[0]
    invite = SipRequest(method="INVITE", uri=SipUri(scheme="sip", user="15551230001", host=REALM))
    for name, value in (
        ("Via", str(_via())),
        ("From", "<sip:15550100@127.0.0.1>;tag=f"),
        ("To", f"<sip:15551230001@{REALM}>"),
        ("Call-ID", "bench@127.0.0.1"),
        ("CSeq", "1 INVITE"),
        ("Max-Forwards", "70"),
    ):
        invite.headers.add(name, value)
    response = make_response(invite, 407, to_tag="p", extra=[("Proxy-Authenticate", challenge)])
    contact = NameAddr(None, SipUri(scheme="sip", host="127.0.0.1", port=5060), {})
    started = time.process_time()
    for _ in range(count):
        session = InviteSession(
            invite,
            Role.UAC,
            local_tag="f",
            contact=contact,
            new_via=_via,
            digest=DigestClient("15550100", PASSWORD),
        )
        (effect,) = session.receive_response(response)
        assert isinstance(effect, SendInvite)  # the INVITE again, with credentials
    return (time.process_time() - started) / count * 1e6


class _Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[SipResponse]] = {}

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        message = parse_message(data)
        if isinstance(message, SipResponse) and message.status >= 200:
            waiter = self.waiting.pop(message.call_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(message)


async def kamailio_register(accounts: int) -> tuple[float, float, float]:
    """(registrations/s, median ms, p90 ms) of `accounts` challenged exchanges, CONCURRENCY
    at a time."""
    users = {f"1555{n:07d}": PASSWORD for n in range(accounts)}
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory() as workdir:
        async with KamailioProvider(workdir, users=users) as provider:
            transport, protocol = await loop.create_datagram_endpoint(
                _Udp, local_addr=("127.0.0.1", 0)
            )
            port = transport.get_extra_info("sockname")[1]
            registrar = SipUri(scheme="sip", host=REALM)

            lanes = asyncio.Semaphore(CONCURRENCY)

            async def one(user: str) -> float:
                async with lanes:
                    return await exchange(user)

            async def exchange(user: str) -> float:
                reg = _registration(user, registrar, port)
                started = loop.time()
                reg.start(now=started)
                request = reg.due(now=started)
                while request is not None:
                    waiter = loop.create_future()
                    protocol.waiting[request.call_id] = waiter
                    transport.sendto(bytes(request), (provider.host, provider.port))
                    response = await asyncio.wait_for(waiter, 5)
                    request = reg.receive(response, now=loop.time())
                if reg.state is not RegistrationState.REGISTERED:
                    raise RuntimeError(f"{user}: {reg.last_status} {reg.last_reason}")
                return loop.time() - started

            try:
                started = loop.time()
                times = await asyncio.gather(*(one(u) for u in users))
                wall = loop.time() - started
            finally:
                transport.close()
    times = sorted(times)
    p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
    return accounts / wall, statistics.median(times) * 1000, p90 * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a couple of seconds, for CI")
    args = parser.parse_args()
    count, accounts = (300, 20) if args.smoke else (5000, 200)
    print(f"CPU per challenged REGISTER exchange (client + registrar), {count} exchanges:")
    for algorithm in ("MD5", "SHA-256"):
        print(f"  {algorithm:<8} {cpu_register(algorithm, count):10.1f} us")
    print(f"CPU to answer a 407 to an INVITE: {cpu_invite_challenge(count):.1f} us")
    reason = kamailio_missing()
    if reason is not None:
        print(f"Kamailio: skipped ({reason})")
        return
    rate, median, p90 = asyncio.run(kamailio_register(accounts))
    print(
        f"Kamailio, {accounts} accounts registering, {CONCURRENCY} at a time "
        "(401 answered, UDP loopback):"
    )
    print(f"  {rate:.0f} registrations/s, one exchange: median {median:.2f} ms, p90 {p90:.2f} ms")


if __name__ == "__main__":
    main()
