"""GET /metrics: the engine's counters and gauges in the Prometheus text format (0.0.4).

Auth: an admin key; or, when the config says `[http] metrics_public = true`, no key from
loopback only (a local Prometheus or node agent), so no key sits in a scrape config.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry

from .crm import ENGINE
from .openapi import operation
from .security import API_KEY, ApiError

if TYPE_CHECKING:
    from callcenter.engine import Engine

logger = logging.getLogger(__name__)

LOOPBACK = frozenset({"127.0.0.1", "::1"})


def is_public_scrape(request: web.Request) -> bool:
    """True for a keyless GET /metrics the config allows (loopback only)."""
    return (
        request.path == "/metrics"
        and request.app[ENGINE].config.metrics_public
        and request.remote in LOOPBACK
    )


class Exposition(Collector):
    """The families of one scrape, gathered from the engine's state at request time and written
    out by prometheus_client (its text format 0.0.4, or OpenMetrics when the scraper asks):
    a collector over live objects, since the counts already live in the PBX, SIP and RTP
    layers and copying them into registered metrics on every change would cost the hot path."""

    def __init__(self) -> None:
        self._families: list[Metric] = []

    def family(
        self, name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, Any], float]]
    ) -> None:
        rows = [(labels, value) for labels, value in samples]
        names = list(rows[0][0]) if rows else []
        make = _FAMILIES[kind]
        family = make(name, help_text, labels=names)
        for labels, value in rows:
            if list(labels) != names:
                raise ValueError(f"{name}: samples with labels {list(labels)} and {names}")
            family.add_metric([str(v) for v in labels.values()], float(value))
        self._families.append(family)

    def one(self, name: str, kind: str, help_text: str, value: float) -> None:
        self.family(name, kind, help_text, [({}, value)])

    def collect(self) -> Iterable[Metric]:
        return self._families

    def encode(self, accept: str) -> tuple[bytes, str]:
        """(the body, its Content-Type) for a scraper's Accept header."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        encoder, content_type = choose_encoder(accept)
        return encoder(registry), content_type


_FAMILIES: dict[str, Callable[..., GaugeMetricFamily | CounterMetricFamily]] = {
    "gauge": GaugeMetricFamily,
    "counter": CounterMetricFamily,
}


_REGISTRATION_STATES = ("unregistered", "registering", "registered", "failing")


def _trunks(trunks: list[dict[str, Any]], out: Exposition) -> None:
    registering = [t for t in trunks if t["registration"] is not None]
    out.family(
        "callcenter_trunk_registration_state",
        "gauge",
        "1 for the state each registering trunk is in (unregistered, registering, registered, "
        "failing).",
        [
            ({"trunk": t["name"], "state": state}, int(t["registration"]["state"] == state))
            for t in registering
            for state in _REGISTRATION_STATES
        ],
    )
    out.family(
        "callcenter_trunk_registration_failures",
        "gauge",
        "Failed registration attempts in a row, per trunk.",
        [({"trunk": t["name"]}, t["registration"]["failures"]) for t in registering],
    )
    qualified = [t for t in trunks if t["qualify"] is not None]
    out.family(
        "callcenter_trunk_up",
        "gauge",
        "1 when the trunk's last OPTIONS ping was answered, 0 when down (qualified trunks).",
        [({"trunk": t["name"]}, int(t["qualify"]["status"] != "down")) for t in qualified],
    )
    out.family(
        "callcenter_trunk_channels_in_use",
        "gauge",
        "Calls on each trunk now.",
        [({"trunk": t["name"]}, t["channels_in_use"]) for t in trunks],
    )
    out.family(
        "callcenter_trunk_available",
        "gauge",
        "1 when the trunk can carry a call now (up, registered, a channel free).",
        [({"trunk": t["name"]}, int(t["available"])) for t in trunks],
    )


async def render(engine: Engine) -> Exposition:
    """The whole exposition; reads memory, plus the outbox and running campaigns' progress."""
    out = Exposition()
    ua, board = engine.ua, engine.switchboard
    now = ua.loop.time()
    out.one(
        "callcenter_active_calls",
        "gauge",
        "Calls in progress (bridged or ringing).",
        len(board.active),
    )
    out.one("callcenter_call_legs", "gauge", "SIP call legs the engine holds.", len(ua.calls))
    out.family(
        "callcenter_calls_total",
        "counter",
        "Calls ended since start, by outcome (as journaled).",
        [({"outcome": k}, v) for k, v in sorted(engine.call_outcomes.items())],
    )
    registered = bindings = unreachable = 0
    for number in board.extensions:
        found = board.registrar.lookup(number, now=now, include_unreachable=True)
        bindings += len(found)
        registered += bool(found)
        unreachable += sum(not b.reachable for b in found)
    out.one(
        "callcenter_registered_extensions",
        "gauge",
        "Extensions with a live registration.",
        registered,
    )
    out.one("callcenter_registrations", "gauge", "Live registration bindings (contacts).", bindings)
    out.one(
        "callcenter_registrations_unreachable",
        "gauge",
        "Bindings whose keepalive OPTIONS went unanswered (kept, not rung).",
        unreachable,
    )
    if engine.keepalives is not None:
        out.one(
            "callcenter_keepalives_sent_total",
            "counter",
            "Keepalive OPTIONS sent to registered phones.",
            engine.keepalives.sent,
        )
        out.one(
            "callcenter_keepalives_unanswered_total",
            "counter",
            "Keepalive OPTIONS that timed out or could not be sent.",
            engine.keepalives.unanswered,
        )
    endpoint = ua.endpoint
    out.family(
        "callcenter_sip_responses_sent_total",
        "counter",
        "SIP responses sent, by status code (retransmissions not counted).",
        [({"code": c}, n) for c, n in sorted(endpoint.responses_sent.items())],
    )
    out.family(
        "callcenter_sip_responses_received_total",
        "counter",
        "SIP responses received, by status code.",
        [({"code": c}, n) for c, n in sorted(endpoint.responses_received.items())],
    )
    out.one(
        "callcenter_sip_dropped_total",
        "counter",
        "SIP messages refused as malformed.",
        endpoint.dropped,
    )
    overload = endpoint.overload
    out.one(
        "callcenter_sip_overload_level",
        "gauge",
        "SIP overload control: 0 normal, 1 new INVITEs get 503, 2 new INVITEs are dropped.",
        int(overload.level),
    )
    out.one(
        "callcenter_sip_loop_lag_seconds",
        "gauge",
        "The event loop's smoothed lag, as overload control measures it.",
        round(overload.lag, 6),
    )
    out.one(
        "callcenter_sip_invites_shed_total",
        "counter",
        "New INVITEs answered 503 with Retry-After because the engine ran behind.",
        overload.shed,
    )
    out.one(
        "callcenter_sip_invites_dropped_total",
        "counter",
        "New INVITEs dropped unread because the engine ran far behind.",
        overload.dropped,
    )
    out.one(
        "callcenter_sip_transactions",
        "gauge",
        "Live SIP transactions.",
        endpoint.layer.active_count,
    )
    rtp = ua.ports.totals()
    out.one(
        "callcenter_rtp_packets_received_total", "counter", "RTP packets received.", rtp.packets_in
    )
    out.one("callcenter_rtp_packets_sent_total", "counter", "RTP packets sent.", rtp.packets_out)
    out.one(
        "callcenter_rtp_packets_lost_total",
        "counter",
        "RTP packets lost on the way in (sequence gaps, RFC 3550 A.3).",
        rtp.packets_lost,
    )
    out.one(
        "callcenter_rtp_jitter_seconds",
        "gauge",
        "Highest interarrival jitter of a live RTP stream (RFC 3550 A.8).",
        rtp.max_jitter,
    )
    out.one("callcenter_rtcp_reports_sent_total", "counter", "RTCP reports sent.", rtp.rtcp_sent)
    out.one(
        "callcenter_rtcp_reports_received_total",
        "counter",
        "RTCP reports received from the far ends.",
        rtp.rtcp_received,
    )
    out.one(
        "callcenter_rtcp_malformed_total",
        "counter",
        "RTCP datagrams dropped as malformed.",
        rtp.rtcp_malformed,
    )
    out.one(
        "callcenter_srtp_dropped_total",
        "counter",
        "SRTP/SRTCP packets dropped: failed authentication or replay, or before the keys.",
        rtp.srtp_dropped,
    )
    out.one(
        "callcenter_rtp_remote_packets_lost_total",
        "counter",
        "Packets of our streams the far ends reported lost (RTCP report blocks).",
        rtp.remote_packets_lost,
    )
    out.one(
        "callcenter_rtp_remote_fraction_lost",
        "gauge",
        "Worst loss fraction a far end reported for a live leg's stream (RTCP, 0..1).",
        rtp.max_remote_fraction_lost,
    )
    out.one(
        "callcenter_rtp_remote_jitter_seconds",
        "gauge",
        "Worst interarrival jitter a far end reported for a live leg's stream (RTCP).",
        rtp.max_remote_jitter,
    )
    out.one(
        "callcenter_rtp_round_trip_seconds",
        "gauge",
        "Longest round trip of a live leg, from RTCP sender/receiver reports (RFC 3550 6.4.1).",
        rtp.max_round_trip,
    )
    _trunks(board.providers.snapshot(), out)
    out.one("callcenter_rtp_ports_in_use", "gauge", "RTP ports held by calls.", ua.ports.in_use)
    out.one(
        "callcenter_media_clock_max_lag_seconds",
        "gauge",
        "Largest lateness of a 20 ms media tick since start.",
        ua.clock.max_lag,
    )
    out.one(
        "callcenter_media_clock_skipped_frames_total",
        "counter",
        "Media ticks skipped because the loop was late.",
        ua.clock.skipped,
    )
    _queues(engine, out)
    await _outbox(engine, out)
    await _campaigns(engine, out)
    return out


def _queues(engine: Engine, out: Exposition) -> None:
    """Per queue: callers waiting, the counts behind service level, speed of answer and
    abandon rate (rates come from the counters: rate(answered_within_sla) / rate(answered)),
    and the longest wait now."""
    queues = list(engine.switchboard.queues.queues.values())
    if not queues:
        return
    now = engine.ua.loop.time()

    def per(pick: Any) -> list[tuple[dict[str, Any], float]]:
        return [({"queue": q.name}, pick(q)) for q in queues]

    out.family("callcenter_queue_waiting", "gauge", "Callers waiting in the queue now.",
               per(lambda q: len(q.callers)))  # fmt: skip
    out.family("callcenter_queue_longest_wait_seconds", "gauge",
               "Seconds the longest-waiting caller has waited.",
               per(lambda q: q.longest_wait(now=now)))  # fmt: skip
    out.family("callcenter_queue_members_logged_in", "gauge", "Members logged in to the queue.",
               per(lambda q: len(q.logged_in())))  # fmt: skip
    for name, help_text, field in (
        ("entered", "Callers that joined the queue.", "entered"),
        ("answered", "Queue callers answered by an agent.", "answered"),
        ("answered_within_sla", "Queue callers answered within the service level.",
         "answered_in_sla"),
        ("abandoned", "Queue callers that hung up while waiting.", "abandoned"),
        ("overflowed", "Queue callers sent to the overflow (max wait or length).", "overflowed"),
        ("callbacks", "Queue callers that asked to be called back (virtual hold).", "callbacks"),
    ):  # fmt: skip
        out.family(f"callcenter_queue_{name}_total", "counter", help_text,
                   per(lambda q, f=field: getattr(q.stats, f)))  # fmt: skip
    out.family("callcenter_queue_answer_wait_seconds_total", "counter",
               "Summed waits of answered queue callers (ASA = this / answered).",
               per(lambda q: q.stats.wait_answered))  # fmt: skip
    out.family("callcenter_queue_service_level_seconds", "gauge",
               "The queue's service level target: answered within this many seconds.",
               per(lambda q: q.config.service_level))  # fmt: skip
    out.family("callcenter_queue_service_level_ratio", "gauge",
               "Share of answered callers answered within the target (since start).",
               per(lambda q: q.service_level or 0.0))  # fmt: skip
    out.family("callcenter_queue_average_speed_of_answer_seconds", "gauge",
               "Mean wait of answered queue callers (since start).",
               per(lambda q: q.average_speed_of_answer or 0.0))  # fmt: skip
    out.family("callcenter_queue_abandon_ratio", "gauge",
               "Abandoned / (answered + abandoned) since start.",
               per(lambda q: q.abandon_rate or 0.0))  # fmt: skip


async def _outbox(engine: Engine, out: Exposition) -> None:
    if engine.store is None:
        return
    try:
        status = await engine.store.outbox_status()
    except Exception as exc:  # a scrape must still show the rest
        logger.warning("metrics: outbox status unavailable: %s", exc)
        return
    try:
        orphans = len(await engine.store.contacts_without_open_task())
    except Exception as exc:
        logger.warning("metrics: contacts without a task unavailable: %s", exc)
    else:
        out.one(
            "callcenter_contacts_without_open_task",
            "gauge",
            "Contacts waiting for us (latest call missed) with no open task; should be 0.",
            orphans,
        )
    wall = time.time()
    names = sorted(status)
    out.family(
        "callcenter_outbox_pending",
        "gauge",
        "CRM deliveries waiting, per endpoint.",
        [({"endpoint": n}, status[n]["pending"]) for n in names],
    )
    out.family(
        "callcenter_outbox_dead",
        "gauge",
        "CRM deliveries given up, per endpoint.",
        [({"endpoint": n}, status[n]["dead"]) for n in names],
    )
    out.family(
        "callcenter_outbox_oldest_pending_seconds",
        "gauge",
        "Age of the oldest waiting CRM delivery, per endpoint.",
        [
            ({"endpoint": n}, max(0.0, wall - status[n]["oldest_pending"].timestamp()))
            for n in names
            if status[n]["oldest_pending"] is not None
        ],
    )


PROGRESS_FIELDS = (
    "total",
    "remaining",
    "done",
    "dnc",
    "dialled",
    "connected",
    "abandoned",
    "in_flight",
)


AMD_VERDICTS = ("human", "machine", "unsure", "sit", "fax")
AMD_QUALITY_HELP = {
    "false_person_rate": "Of the calls AMD called a person that an agent disposed, the share "
    "the agent marked answering-machine.",
    "false_machine_rate": "Of the calls AMD called a machine that an agent disposed, the share "
    "the agent said was a person.",
    "judged": "Calls with an AMD verdict that an agent disposed (the quality rates' sample).",
}


async def _campaigns(engine: Engine, out: Exposition) -> None:
    campaigns, leads = engine.campaigns, engine.leads
    if campaigns is None or leads is None:
        return
    wall = time.time()
    rates: list[tuple[dict[str, Any], float]] = []
    caps: list[tuple[dict[str, Any], float]] = []
    progress: dict[str, list[tuple[dict[str, Any], float]]] = {f: [] for f in PROGRESS_FIELDS}
    verdicts: list[tuple[dict[str, Any], float]] = []
    quality: dict[str, list[tuple[dict[str, Any], float]]] = {k: [] for k in AMD_QUALITY_HELP}
    for runner in list(campaigns.runners.values()):
        labels = {"campaign": runner.campaign.name, "id": runner.campaign.id}
        rates.append((labels, runner.ledger.rate(wall)))
        caps.append((labels, runner.campaign.abandon_cap))
        try:
            done = await leads.campaign_progress(runner.campaign_id)
            amd = await leads.amd_summary(runner.campaign_id)
        except Exception as exc:
            logger.warning("metrics: campaign %s progress unavailable: %s", labels, exc)
            continue
        for name in PROGRESS_FIELDS:
            progress[name].append((labels, getattr(done, name)))
        for verdict in AMD_VERDICTS:
            verdicts.append(({**labels, "verdict": verdict}, amd[verdict]))
        for name, samples in quality.items():
            if amd["quality"][name] is not None:
                samples.append((labels, amd["quality"][name]))
    out.family(
        "callcenter_campaign_abandon_rate",
        "gauge",
        "Abandon rate of each running campaign (the higher of window and day).",
        rates,
    )
    out.family(
        "callcenter_campaign_abandon_cap", "gauge", "Abandon rate cap of each campaign.", caps
    )
    out.family(
        "callcenter_campaign_amd_verdicts",
        "gauge",
        "Answering-machine verdicts of each running campaign's attempts, by verdict.",
        verdicts,
    )
    for name, samples in quality.items():
        out.family(f"callcenter_campaign_amd_{name}", "gauge", AMD_QUALITY_HELP[name], samples)
    for name, samples in progress.items():
        out.family(
            f"callcenter_campaign_leads_{name}"
            if name in ("total", "remaining", "done", "dnc")
            else f"callcenter_campaign_attempts_{name}",
            "gauge",
            f"Running campaign progress: {name.replace('_', ' ')}.",
            samples,
        )


@operation(
    summary="Prometheus metrics",
    description="Text format 0.0.4 (OpenMetrics when the Accept header asks for it): active "
    "calls, calls by outcome, registrations, SIP "
    "responses by code, RTP packets / loss / jitter, media clock lag, CRM outbox backlog, "
    "campaign abandon rates, progress, AMD verdicts and AMD quality.",
    tag="meta",
    responses={200: None},
    produces="text/plain",
    errors=(403,),
    extra_auth="With `[http] metrics_public = true` also without a key from 127.0.0.1 / ::1.",
)
async def metrics(request: web.Request) -> web.Response:
    key = request.get(API_KEY)
    if key is not None and key.role != "admin":
        raise ApiError(403, f"role {key.role} may not read metrics (admin only)")
    exposition = await render(request.app[ENGINE])
    body, content_type = exposition.encode(request.headers.get("Accept", ""))
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


metrics.roles = ("admin",)  # type: ignore[attr-defined]


def add_routes(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
