"""The outbox worker: delivers outbox events to CRM endpoints, at least once, in order per
aggregate, surviving restarts and sharing the database with other engine nodes.

All delivery state is in the database (outbox_deliveries). A round claims due deliveries with
`SELECT ... FOR UPDATE SKIP LOCKED`, sends them concurrently and records the results in the same
transaction, so a crash mid-round (kill -9 included) releases the row locks and the deliveries
are sent again later with the same idempotency key; two workers never hold the same delivery.
Only the head of each (endpoint, aggregate) chain is claimable: event 2 of a call is not sent
before event 1 of that call is delivered (or dead-lettered).

Each endpoint's adapter renders the request(s) for an event and classifies each answer
(status and body): delivered, retry, dead, or "next" (a further request for the same event, such
as posting a call after looking its contact up). The remote ids an adapter learns are stored
with the delivery (JSON in `remote_ref`) whatever the verdict, and handed to later attempts and
later events of the same aggregate; a task's deliveries also see its call's ids (`related`).

Answers, unless the adapter reads more into the body: 2xx delivered. 408, 429, 5xx, timeouts
and refused connections are retried with exponential backoff and jitter until the event is
`max_age` old, then dead-lettered. 401/403 are retried too: they say our credentials are
wrong, not the event, and fixing the config must let the backlog through. Any other 4xx (and
3xx) is permanent: the receiver understood and refused this event, so it is dead-lettered at
once instead of blocking its aggregate for days; the events after it then proceed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg

from .adapters import (
    Attempt,
    CrmAdapter,
    HttpRequest,
    OutboxEvent,
    Outcome,
    Verdict,
    classify_status,
)
from .config import CrmEndpoint, RetryPolicy
from .kinds import DEFAULT_ADAPTERS, DEFAULT_RATES, check_endpoints
from .oauth import OAuthError, TokenStore
from .ratelimit import RateLimiter, shared_limiter

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "crm_outbox"
_MAX_ERROR = 500
_MAX_BODY = 1 << 20
_THROTTLE_PAUSE = 1.0
"""Seconds an account's requests pause after a "too many requests" without Retry-After."""
MAX_BATCH = 50
"""Items per batched request (amoCRM takes up to 50 per call or task batch)."""
_MAX_STEPS = 8
"""Requests one attempt may make for one event (lookup, create, link...)."""

_PENDING = "d.delivered_at IS NULL AND d.dead_at IS NULL"
# Head of its chain: nothing earlier for the same endpoint and aggregate is still pending, nor
# for the call a task came from (the CRM files the task under what the call created).
_HEAD = (
    "NOT EXISTS (SELECT 1 FROM outbox_deliveries p WHERE p.endpoint = d.endpoint"
    " AND p.aggregate IN (d.aggregate, 'call/' || (e.payload->>'created_from_call'))"
    " AND p.event_id < d.event_id AND p.delivered_at IS NULL AND p.dead_at IS NULL)"
)
_CLAIM = (
    "SELECT d.event_id, d.endpoint, d.attempts, e.aggregate, e.event_type, e.payload,"
    " e.idempotency_key, e.occurred_at, e.created_at,"
    " (SELECT r.remote_ref FROM outbox_deliveries r WHERE r.endpoint = d.endpoint"
    "  AND r.aggregate = d.aggregate AND r.event_id <= d.event_id AND r.remote_ref IS NOT NULL"
    "  ORDER BY r.event_id DESC LIMIT 1) AS remote_ref,"
    " (SELECT r.remote_ref FROM outbox_deliveries r WHERE r.endpoint = d.endpoint"
    "  AND r.aggregate = 'call/' || (e.payload->>'created_from_call')"
    "  AND r.remote_ref IS NOT NULL ORDER BY r.event_id DESC LIMIT 1) AS related_ref"
    " FROM outbox_deliveries d JOIN outbox e ON e.id = d.event_id"
    f" WHERE d.endpoint = ANY($1::text[]) AND {_PENDING} AND d.next_attempt_at <= $2"
    f" AND {_HEAD}"
    " ORDER BY d.next_attempt_at, d.event_id LIMIT $3"
    " FOR UPDATE OF d SKIP LOCKED"
)
_NEXT_DUE = (
    "SELECT min(d.next_attempt_at) FROM outbox_deliveries d JOIN outbox e ON e.id = d.event_id"
    f" WHERE d.endpoint = ANY($1::text[]) AND {_PENDING} AND d.next_attempt_at > $2 AND {_HEAD}"
)
_RECORD = (
    "UPDATE outbox_deliveries SET attempts = attempts + $3, last_error = $4,"
    " next_attempt_at = COALESCE($5, next_attempt_at), delivered_at = $6, dead_at = $7,"
    " remote_ref = COALESCE($8, remote_ref)"
    " WHERE event_id = $1 AND endpoint = $2"
)


def backoff_delay(attempts: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Seconds to wait after the `attempts`-th failed attempt (1 = the first)."""
    delay = min(policy.max_delay, policy.base_delay * policy.factor ** (attempts - 1))
    return delay * (1.0 - policy.jitter * rng.random())


@dataclass
class WorkerStats:
    """Counters since the worker was made."""

    attempts: int = 0
    """HTTP requests sent."""
    delivered: int = 0
    """Deliveries marked delivered (skipped ones included)."""
    skipped: int = 0
    """Events the endpoint's adapter had nothing to send for."""
    retried: int = 0
    """Failed attempts scheduled for retry."""
    dead: int = 0
    """Deliveries dead-lettered."""
    throttled: int = 0
    """Answers saying we sent too fast (429, QUERY_LIMIT_EXCEEDED)."""
    batched: int = 0
    """Requests that went out inside a batch with others."""


_Answer = tuple[int, bytes, float | None]
"""An HTTP answer: status, body, Retry-After seconds."""


@dataclass(frozen=True)
class _Claim:
    event: OutboxEvent
    endpoint: CrmEndpoint
    attempts: int
    created_at: datetime
    refs: dict[str, Any]


@dataclass(frozen=True)
class _Result:
    verdict: Verdict
    sent: bool
    error: str | None = None
    refs: dict[str, Any] | None = None
    """Every remote id known after the attempt, when it learned any."""
    retry_after: float | None = None


class OutboxWorker:
    """Delivers pending outbox events to `endpoints` until stopped.

    `now` returns the time as seconds since the epoch (time.time); tests pass a fake clock and
    drive rounds with `run_once()` instead of `start()`.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        endpoints: Sequence[CrmEndpoint],
        *,
        policy: RetryPolicy | None = None,
        now: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        adapters: Mapping[str, CrmAdapter] = DEFAULT_ADAPTERS,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._pool = pool
        endpoint_list = tuple(endpoints)
        check_endpoints(endpoint_list, adapters)
        self._endpoints = {e.name: e for e in endpoint_list}
        self._names = list(self._endpoints)
        self.policy = policy or RetryPolicy()
        self._now = now
        self._rng = rng or random.Random()
        self._adapters = adapters
        self._session = session
        self._own_session = session is None
        self._wake = asyncio.Event()
        self._lanes: list[asyncio.Task[None]] = []
        self._listener: Any = None
        self._stopping = False
        self.stats = WorkerStats()
        self._tokens: TokenStore | None = None
        self._buckets: dict[tuple[str, str], RateLimiter] = {}
        self._open_batches: dict[
            tuple[str, str], list[tuple[HttpRequest, asyncio.Future[_Answer | str] | None]]
        ] = {}
        for endpoint in endpoint_list:
            self._bucket(endpoint)

    def _bucket(self, endpoint: CrmEndpoint) -> RateLimiter | None:
        """The rate limiter of the endpoint's account (shared by endpoints of one account)."""
        rate, burst = DEFAULT_RATES.get(endpoint.kind, (None, None))
        rate = endpoint.rate_limit or rate
        if rate is None:
            return None
        key = (endpoint.kind, endpoint.account)
        if key not in self._buckets:
            size = endpoint.burst or burst or max(1, int(rate))
            # Counted in PostgreSQL: the nodes delivering to one account keep within its
            # limit together, not each on its own.
            self._buckets[key] = shared_limiter(self._pool, ":".join(key), rate, size)
        return self._buckets[key]

    @property
    def tokens(self) -> TokenStore:
        """The OAuth token store (made with the worker's HTTP session)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        if self._tokens is None:
            self._tokens = TokenStore(self._pool, self._session, now=self._now)
        return self._tokens

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the claim loops (and LISTEN for new events)."""
        if self._lanes:
            raise RuntimeError("worker already started")
        self._stopping = False
        if not self._names:
            logger.info("no CRM endpoints configured: outbox events stay in the database")
            return
        await self._warn_orphans()
        try:
            self._listener = await self._pool.acquire()
            await self._listener.add_listener(NOTIFY_CHANNEL, self._notified)
        except (OSError, asyncpg.PostgresError):
            # Polling alone still delivers everything, only later.
            logger.exception("cannot LISTEN %s; falling back to polling", NOTIFY_CHANNEL)
            await self._release_listener()
        self._lanes = [
            asyncio.create_task(self._lane(i), name=f"outbox-lane-{i}")
            for i in range(self.policy.lanes)
        ]
        logger.info(
            "outbox worker delivering to %s (%d lanes)", ", ".join(self._names), len(self._lanes)
        )

    async def _warn_orphans(self) -> None:
        try:
            orphans = await self._pool.fetch(
                "SELECT endpoint, count(*) AS n FROM outbox_deliveries d"
                f" WHERE {_PENDING} AND NOT (endpoint = ANY($1::text[])) GROUP BY endpoint",
                self._names,
            )
        except (OSError, asyncpg.PostgresError):
            return
        for row in orphans:
            logger.warning(
                "%d pending outbox deliveries for CRM endpoint %r, which is not configured here",
                row["n"],
                row["endpoint"],
            )

    async def stop(self, *, grace: float | None = None) -> None:
        """Stop: in-flight rounds get `grace` seconds (policy.stop_grace by default) to finish,
        then are cancelled and rolled back (their events go out again later)."""
        self._stopping = True
        self._wake.set()
        lanes, self._lanes = self._lanes, []
        if lanes:
            wait = self.policy.stop_grace if grace is None else grace
            _, pending = await asyncio.wait(lanes, timeout=wait) if wait > 0 else ((), set(lanes))
            for task in pending:
                task.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)
        await self._release_listener()
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def wake(self) -> None:
        """Look at the outbox now (new events also wake the worker through NOTIFY)."""
        self._wake.set()

    def _notified(self, *args: Any) -> None:
        self._wake.set()

    async def _release_listener(self) -> None:
        conn, self._listener = self._listener, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            await conn.remove_listener(NOTIFY_CHANNEL, self._notified)
        with contextlib.suppress(Exception):
            await self._pool.release(conn)

    async def _lane(self, index: int) -> None:
        while not self._stopped():
            try:
                claimed = await self.run_once()
            except Exception:
                # Database gone, a bug in an adapter...: the round rolled back; keep the lane.
                logger.exception("outbox lane %d: round failed; retrying", index)
                await self._idle(self.policy.poll_interval)
                continue
            if self._stopped():
                return
            if claimed:
                # Chains: delivering a head makes its successor claimable right away.
                if claimed >= self.policy.batch_size:
                    self._wake.set()  # a backlog: bring the other lanes in
                continue
            await self._idle(await self._seconds_to_next_due())

    def _stopped(self) -> bool:
        return self._stopping

    async def _seconds_to_next_due(self) -> float:
        try:
            due = await self._pool.fetchval(_NEXT_DUE, self._names, self._now_dt())
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return self.policy.poll_interval
        if due is None:
            return self.policy.poll_interval
        return max(0.0, min(self.policy.poll_interval, float(due.timestamp()) - self._now()))

    async def _idle(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    def _now_dt(self) -> datetime:
        return datetime.fromtimestamp(self._now(), UTC)

    # -- one round -----------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim the due heads (up to batch_size), attempt them concurrently and record the
        results, all in one transaction. Returns how many deliveries were claimed."""
        if not self._names:
            return 0
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_CLAIM, self._names, self._now_dt(), self.policy.batch_size)
            if not rows:
                return 0
            claims = [self._claim(row) for row in rows]
            results = await asyncio.gather(*(self._attempt(c) for c in claims))
            await conn.executemany(
                _RECORD, [self._record(c, r) for c, r in zip(claims, results, strict=True)]
            )
            owners = [_owner(c, r) for c, r in zip(claims, results, strict=True)]
            owners = [o for o in owners if o is not None]
            if owners:
                # The CRM says who is responsible for the contact: our inbound routing and
                # callback tasks follow it.
                await conn.executemany(_SET_RESPONSIBLE, owners)
        return len(rows)

    def _claim(self, row: Mapping[str, Any]) -> _Claim:
        event = OutboxEvent(
            id=row["event_id"],
            aggregate=row["aggregate"],
            event_type=row["event_type"],
            payload=json.loads(row["payload"]),
            idempotency_key=row["idempotency_key"],
            occurred_at=row["occurred_at"],
        )
        refs = _load_refs(row["remote_ref"])
        related = _load_refs(row["related_ref"])
        if related:
            refs.setdefault("related", related)
        return _Claim(
            event, self._endpoints[row["endpoint"]], row["attempts"], row["created_at"], refs
        )

    async def _attempt(self, claim: _Claim) -> _Result:
        endpoint, event = claim.endpoint, claim.event
        adapter = self._adapters[endpoint.kind]
        refs = dict(claim.refs)
        learned = False
        sent = False
        token = None
        refreshed = False
        if endpoint.oauth is not None:
            try:
                token = await self.tokens.access_token(endpoint)
            except OAuthError as exc:
                return _Result(Verdict.RETRY, False, f"oauth: {exc}"[:_MAX_ERROR])
        for _ in range(_MAX_STEPS):
            attempt = Attempt(self._now(), claim.attempts, refs, token)
            try:
                request = adapter.render(endpoint, event, attempt)
            except Exception as exc:
                # A payload this adapter cannot express will not get better by waiting.
                logger.exception(
                    "%s: cannot render %s %s",
                    endpoint.name,
                    event.event_type,
                    event.idempotency_key,
                )
                return _Result(Verdict.DEAD, sent, f"render: {exc!r}"[:_MAX_ERROR])
            if request is None:
                return _Result(Verdict.DELIVERED, sent, refs=_own(refs) if learned else None)
            sent = True
            outcome, status = await self._send(endpoint, event, request, adapter, attempt)
            if status == 401 and token is not None and not refreshed:
                # Revoked or expired early: refresh once (or take another node's refresh).
                refreshed = True
                try:
                    token = await self.tokens.access_token(endpoint, stale=token)
                except OAuthError as exc:
                    return _Result(Verdict.RETRY, sent, f"oauth: {exc}"[:_MAX_ERROR])
                continue
            if outcome.refs:
                refs.update(outcome.refs)
                learned = True
            if outcome.verdict is not Verdict.NEXT:
                error = None if outcome.error is None else outcome.error[:_MAX_ERROR]
                return _Result(
                    outcome.verdict,
                    sent,
                    error,
                    _own(refs) if learned else None,
                    outcome.retry_after,
                )
        return _Result(Verdict.DEAD, sent, f"more than {_MAX_STEPS} requests for one event")

    async def _send(
        self,
        endpoint: CrmEndpoint,
        event: OutboxEvent,
        request: HttpRequest,
        adapter: CrmAdapter,
        attempt: Attempt,
    ) -> tuple[Outcome, int | None]:
        bucket = self._bucket(endpoint)
        batch_key = getattr(adapter, "batch_key", None)
        # Retries go alone: a batch refused for one bad item must not refuse it again.
        key = None if batch_key is None or attempt.attempts else batch_key(endpoint, request)
        if key is None:
            answer = await self._limited(endpoint, request, bucket)
        else:
            answer = await self._batched(endpoint, adapter, key, request, bucket)
        if isinstance(answer, str):
            return Outcome(Verdict.RETRY, error=answer), None
        status, body, retry_after = answer
        try:
            outcome = adapter.classify(endpoint, event, attempt, status, body)
        except Exception as exc:
            logger.exception("%s: cannot read the answer to %s", endpoint.name, request.url)
            return Outcome(Verdict.RETRY, error=f"classify: {exc!r}"), status
        if outcome.retry_after is None and retry_after is not None:
            outcome = replace(outcome, retry_after=retry_after)
        if outcome.throttled:
            self.stats.throttled += 1
            if bucket is not None:
                bucket.pause(outcome.retry_after or _THROTTLE_PAUSE)
        return outcome, status

    async def _limited(
        self, endpoint: CrmEndpoint, request: HttpRequest, bucket: RateLimiter | None
    ) -> _Answer | str:
        """`request` in a slot of the account's rate limit, which counts from its answer."""
        if bucket is None:
            return await self._exchange(endpoint, request)
        stamp = await bucket.acquire()
        try:
            return await self._exchange(endpoint, request)
        finally:
            await bucket.answered(stamp)

    async def _exchange(self, endpoint: CrmEndpoint, request: HttpRequest) -> _Answer | str:
        """One HTTP request: (status, body, Retry-After), or why there was no answer."""
        assert self._session is not None
        self.stats.attempts += 1
        try:
            async with self._session.request(
                request.method,
                request.url,
                data=request.body,
                headers=dict(request.headers),
                timeout=aiohttp.ClientTimeout(total=endpoint.timeout),
                allow_redirects=False,
            ) as response:
                body = await response.content.read(_MAX_BODY)
                return response.status, body, _retry_after(response.headers.get("Retry-After"))
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"

    async def _batched(
        self,
        endpoint: CrmEndpoint,
        adapter: Any,
        key: str,
        request: HttpRequest,
        bucket: RateLimiter | None,
    ) -> _Answer | str:
        """Send `request` together with others of the same kind to the same account: the first
        one waits for the rate limiter, the ones rendered meanwhile join it (up to
        MAX_BATCH), and the adapter splits the answer back per request. Under no rate pressure
        a request goes alone, at once."""
        slot = (endpoint.name, key)
        group = self._open_batches.get(slot)
        if group is not None and len(group) < MAX_BATCH:
            future: asyncio.Future[_Answer | str] = asyncio.get_running_loop().create_future()
            group.append((request, future))
            return await future
        group = [(request, None)]
        self._open_batches[slot] = group
        try:
            return await self._lead_batch(endpoint, adapter, slot, group, bucket)
        except BaseException:
            for _, waiter in group[1:]:
                if waiter is not None and not waiter.done():
                    waiter.set_result("the batch was not sent (worker stopping)")
            raise

    async def _lead_batch(
        self,
        endpoint: CrmEndpoint,
        adapter: Any,
        slot: tuple[str, str],
        group: list[tuple[HttpRequest, asyncio.Future[_Answer | str] | None]],
        bucket: RateLimiter | None,
    ) -> _Answer | str:
        stamp = None
        try:
            if bucket is not None:
                stamp = await bucket.acquire()
        finally:
            if self._open_batches.get(slot) is group:
                del self._open_batches[slot]
        request = group[0][0]
        requests = [r for r, _ in group]
        if len(requests) > 1:
            self.stats.batched += len(requests)
            request = adapter.merge(endpoint, requests)
        try:
            merged = await self._exchange(endpoint, request)
        finally:
            if bucket is not None and stamp is not None:
                await bucket.answered(stamp)
        if len(requests) == 1:
            answers: list[_Answer | str] = [merged]
        else:
            if isinstance(merged, str):
                answers = [merged] * len(requests)
            elif classify_status(merged[0]) is Verdict.DEAD:
                # One bad item refuses the whole batch: each is retried alone (retries never
                # batch), so only the bad one is dead-lettered.
                refused = f"HTTP {merged[0]} for a batch of {len(requests)}: retried alone"
                answers = [refused] * len(requests)
            else:
                status, body, retry_after = merged
                try:
                    parts = adapter.split(endpoint, requests, status, body)
                except Exception as exc:
                    logger.exception("%s: cannot split a batched answer", endpoint.name)
                    parts = [f"split: {exc!r}"] * len(requests)
                answers = [p if isinstance(p, str) else (status, p, retry_after) for p in parts]
        for (_, waiter), answer in zip(group[1:], answers[1:], strict=True):
            if waiter is not None and not waiter.done():
                waiter.set_result(answer)
        return answers[0]

    def _record(self, claim: _Claim, result: _Result) -> tuple[Any, ...]:
        now = self._now()
        now_dt = datetime.fromtimestamp(now, UTC)
        attempts = claim.attempts + (1 if result.sent else 0)
        key, name = claim.event.idempotency_key, claim.endpoint.name
        verdict = result.verdict
        if verdict is Verdict.RETRY and now - claim.created_at.timestamp() >= self.policy.max_age:
            verdict = Verdict.DEAD
        next_at = delivered_at = dead_at = None
        if verdict is Verdict.DELIVERED:
            delivered_at = now_dt
            self.stats.delivered += 1
            if not result.sent:
                self.stats.skipped += 1
        elif verdict is Verdict.RETRY:
            delay = backoff_delay(attempts, self.policy, self._rng)
            if result.retry_after is not None:
                delay = max(delay, min(result.retry_after, self.policy.max_delay))
            next_at = now_dt + timedelta(seconds=delay)
            self.stats.retried += 1
            logger.info(
                "%s: %s attempt %d failed (%s); retry in %.1f s",
                name,
                key,
                attempts,
                result.error,
                delay,
            )
        else:
            dead_at = now_dt
            self.stats.dead += 1
            logger.warning(
                "%s: %s %s dead-lettered after %d attempt(s): %s",
                name,
                claim.event.event_type,
                key,
                attempts,
                result.error,
            )
        return (
            claim.event.id,
            name,
            attempts - claim.attempts,
            result.error,
            next_at,
            delivered_at,
            dead_at,
            None if result.refs is None else json.dumps(result.refs, sort_keys=True),
        )


_SET_RESPONSIBLE = (
    "UPDATE contacts SET responsible = $2 WHERE phone = $1 AND responsible IS DISTINCT FROM $2"
)


def _owner(claim: _Claim, result: _Result) -> tuple[str, str] | None:
    """(contact phone, extension) when the CRM named the contact's responsible user and the
    endpoint's user_map knows that user."""
    user = (result.refs or {}).get("responsible_user_id")
    phone = claim.event.payload.get("contact_phone")
    if user is None or not phone:
        return None
    by_user = {v: k for k, v in claim.endpoint.user_map.items() if k != "*"}
    extension = by_user.get(int(user))
    return None if extension is None else (str(phone), extension)


def _own(refs: dict[str, Any]) -> dict[str, Any]:
    """Refs to store with a delivery: its own, not the related call's."""
    return {k: v for k, v in refs.items() if k != "related"}


def _load_refs(text: str | None) -> dict[str, Any]:
    """Stored refs: a JSON object; older rows hold a bare id (the amoCRM task id)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {"ref": text}
    return value if isinstance(value, dict) else {"ref": str(value), "task_id": value}


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # the HTTP-date form: fall back to our own backoff
