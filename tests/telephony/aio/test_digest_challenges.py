"""A far end that challenges like a provider (the real DigestServer behind our own UserAgent):
the Call facade sends the INVITE again in a new transaction (so CANCEL and timeouts follow
it), and the BYE of a leg that has ended already still gets its challenge answered."""

from __future__ import annotations

import asyncio
import secrets

from telephony.aio import Call, UserAgent
from telephony.call import Answered, Ended
from telephony.sip import (
    AuthResult,
    DigestConfig,
    DigestServer,
    NameAddr,
    RequestReceived,
    SipRequest,
    TransactionEvent,
    make_response,
)

from .conftest import sip_uri

REALM = "provider.test"
USER, PASSWORD = "15550100", "trunk-secret"


class Provider:
    """Checks Proxy-Authorization on INVITEs and Authorization on BYEs of the callee's UA."""

    def __init__(self, ua: UserAgent, *, challenge_bye: bool = False) -> None:
        self.ua = ua
        self.server = DigestServer(secrets.token_bytes(32), DigestConfig(algorithms=("SHA-256",)))
        self.challenge_bye = challenge_bye
        self.seen: list[tuple[str, int, bool]] = []
        """(method, CSeq, had credentials) of the requests that reached the far end."""
        self._passed = ua.endpoint.handler
        ua.endpoint.handler = self._handle

    def _ok(self, value: str | None, method: str) -> bool:
        if value is None:
            return False
        result = self.server.verify(
            value,
            method=method,
            realm=REALM,
            now=0.0,
            password_lookup=lambda user: PASSWORD if user == USER else None,
        )
        return result is AuthResult.OK

    def _handle(self, event: TransactionEvent) -> None:
        if isinstance(event, RequestReceived) and event.request.method in ("INVITE", "BYE"):
            request = event.request
            status, header, answer = (
                (407, "Proxy-Authenticate", "Proxy-Authorization")
                if request.method == "INVITE"
                else (401, "WWW-Authenticate", "Authorization")
            )
            credentials = request.headers.get(answer)
            self.seen.append((request.method, request.cseq.seq, credentials is not None))
            wanted = request.method == "INVITE" or self.challenge_bye
            if wanted and not self._ok(credentials, request.method):
                values = self.server.challenge(REALM, now=0.0)
                response = make_response(request, status, extra=[(header, values[0])])
                self.ua.endpoint.send_response(event.transaction, response)
                return
        self._passed(event)


async def _dial(caller_ua: UserAgent, callee_ua: UserAgent, password: str = PASSWORD) -> Call:
    port = callee_ua.endpoint.port
    return await caller_ua.dial(
        sip_uri("15551230001", port),
        ("udp", "127.0.0.1", port),
        from_=NameAddr(None, sip_uri(USER, caller_ua.endpoint.port), {}),
        credentials=(USER, password),
    )


async def test_challenged_call_connects_and_its_challenged_bye_ends_it(
    user_agents: tuple[UserAgent, UserAgent],
) -> None:
    caller_ua, callee_ua = user_agents
    provider = Provider(callee_ua, challenge_bye=True)
    incoming: asyncio.Future[Call] = asyncio.get_running_loop().create_future()

    async def answer(call: Call) -> None:
        await call.answer()
        incoming.set_result(call)

    callee_ua.on_incoming = answer
    leg = await _dial(caller_ua, callee_ua)
    first = leg.transaction
    callee = await asyncio.wait_for(incoming, 5)
    assert await asyncio.wait_for(leg.next_event(), 5) == Answered(leg.call_id)
    assert leg.transaction is not first  # the INVITE with credentials, in its own transaction
    assert leg.invite.cseq.seq == 2 and callee.invite.headers.get("Proxy-Authorization")
    await leg.hangup()
    # Our leg has ended (and been forgotten); its BYE is challenged and sent again.
    assert isinstance(await asyncio.wait_for(callee.next_event(), 5), Answered)
    ended = await asyncio.wait_for(callee.next_event(), 5)
    assert isinstance(ended, Ended) and ended.reason == "remote-bye"
    assert provider.seen == [
        ("INVITE", 1, False),
        ("INVITE", 2, True),
        ("BYE", 3, False),
        ("BYE", 4, True),
    ]
    assert not caller_ua.calls


async def test_wrong_password_is_answered_once_then_the_leg_ends(
    user_agents: tuple[UserAgent, UserAgent],
) -> None:
    caller_ua, callee_ua = user_agents
    provider = Provider(callee_ua)
    leg = await _dial(caller_ua, callee_ua, password="wrong-secret")
    ended = await asyncio.wait_for(leg.next_event(), 5)
    assert ended == Ended(leg.call_id, "rejected", 407)
    assert provider.seen == [("INVITE", 1, False), ("INVITE", 2, True)]


async def test_cancel_after_a_challenge_cancels_the_invite_with_credentials(
    user_agents: tuple[UserAgent, UserAgent],
) -> None:
    caller_ua, callee_ua = user_agents
    Provider(callee_ua)
    ringing: asyncio.Future[Call] = asyncio.get_running_loop().create_future()

    def ring(call: Call) -> None:
        call.ring()
        ringing.set_result(call)

    callee_ua.on_incoming = ring
    leg = await _dial(caller_ua, callee_ua)
    callee = await asyncio.wait_for(ringing, 5)
    await asyncio.wait_for(leg.next_event(), 5)  # Ringing
    await leg.hangup(reason="ring-timeout")
    assert await asyncio.wait_for(leg.next_event(), 5) == Ended(leg.call_id, "ring-timeout", 487)
    ended = await asyncio.wait_for(callee.next_event(), 5)
    assert isinstance(ended, Ended) and ended.reason == "cancelled"


async def test_a_stateless_challenge_makes_no_transaction_and_swallows_its_ack(
    user_agents: tuple[UserAgent, UserAgent],
) -> None:
    """The callee's endpoint answers a new INVITE without credentials with a stateless 401
    (RFC 3261 8.2.7, what the switchboard does for phones): no server transaction, no call; the
    caller's ACK to it is dropped, not taken for a request of the call that follows (same
    Call-ID); the INVITE with credentials comes in and connects."""
    caller_ua, callee_ua = user_agents
    server = DigestServer(secrets.token_bytes(32), DigestConfig(algorithms=("SHA-256",)))
    endpoint = callee_ua.endpoint
    opened: list[int] = []

    def challenge(request: object, peer: object) -> list[tuple[str, str]] | None:
        assert isinstance(request, SipRequest)
        opened.append(endpoint.layer.active_count)
        if request.headers.get("Authorization") is not None:
            return None
        return [("WWW-Authenticate", value) for value in server.challenge(REALM, now=0.0)]

    endpoint.challenge = challenge
    incoming: asyncio.Future[Call] = asyncio.get_running_loop().create_future()
    acks: list[str] = []
    passed = endpoint.handler

    def handle(event: TransactionEvent) -> None:
        if isinstance(event, RequestReceived) and event.request.method == "ACK":
            acks.append(event.request.to.tag or "")
        passed(event)

    endpoint.handler = handle

    async def answer(call: Call) -> None:
        await call.answer()
        incoming.set_result(call)

    callee_ua.on_incoming = answer
    port = endpoint.port
    leg = await caller_ua.dial(
        sip_uri("101", port),
        ("udp", "127.0.0.1", port),
        from_=NameAddr(None, sip_uri("101", caller_ua.endpoint.port), {}),
        credentials=("101", PASSWORD),
    )
    callee = await asyncio.wait_for(incoming, 5)
    assert await asyncio.wait_for(leg.next_event(), 5) == Answered(leg.call_id)
    await asyncio.wait_for(callee.next_event(), 5)  # Answered: the 200's ACK came in
    assert endpoint.challenged == 1 and endpoint.responses_sent.get(401) == 1
    assert opened[0] == 0  # the first INVITE made no transaction before its 401
    assert acks == [callee.dialog.local_tag]  # only the 200's ACK reached the layer above
    assert callee.invite.cseq.seq == 2 and callee.invite.headers.get("Authorization")
    await leg.hangup()
    ended = await asyncio.wait_for(callee.next_event(), 5)
    assert isinstance(ended, Ended)
