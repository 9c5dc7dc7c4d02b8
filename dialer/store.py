"""The dialer's store: campaigns, leads, attempts and the do-not-call list in PostgreSQL,
in the dialer's own types (Campaign, Lead, Attempt, Claim, CampaignProgress). The tables are
part of the engine's one schema (crm_bridge/migrations).

Several engine nodes may share the database. A lead is claimed with `SELECT ... FOR UPDATE SKIP
LOCKED` and its attempt is reserved in the same transaction, before any INVITE goes out; the
(lead, attempt number) pair is unique, so one attempt is dialled at most once even across
crashes: a node restarting closes its attempts in flight as outcome-unknown, and the lead's next
try is a new attempt number after the retry delay.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from telephony import numbers

from .amd import Verdict
from .errors import Conflict, InvalidInput, NotFound
from .model import (
    ATTEMPT_OUTCOMES,
    CAMPAIGN_TRANSITIONS,
    Attempt,
    Campaign,
    CampaignProgress,
    CampaignState,
    Claim,
    Lead,
)

logger = logging.getLogger(__name__)

_TRANSITIONS: Mapping[tuple[str, str], str] = {
    (state.value, command.value): new.value
    for (state, command), new in CAMPAIGN_TRANSITIONS.items()
}
"""CAMPAIGN_TRANSITIONS as the campaigns.state column spells them."""

_CAMPAIGN_SETTINGS = (
    "name",
    "caller_id",
    "trunk",
    "agents",
    "ring_group",
    "mode",
    "ratio",
    "abandon_cap",
    "abandon_window_days",
    "max_attempts",
    "retry_delays",
    "window_start",
    "window_end",
    "window_days",
    "tz_default",
    "max_ring_seconds",
    "machine_action",
    "voicemail_prompt",
    "amd",
    "amd_max_seconds",
    "amd_initial_silence_seconds",
    "amd_unsure",
    "connect_seconds",
    "safe_harbor_prompt",
    "flow",
    "lines",
    "require_consent",
)


@dataclass(frozen=True)
class LeadImportSummary:
    """What an import did to a campaign's leads."""

    inserted: list[str] = field(default_factory=list)
    """Numbers new to the campaign."""
    merged: list[str] = field(default_factory=list)
    """Numbers the campaign had (or the batch repeated): data merged into the existing lead."""
    dnc: list[str] = field(default_factory=list)
    """Numbers stored as dnc (on a DNC list or without consent): never dialled."""


@dataclass(frozen=True)
class DncEntry:
    """A number never to dial, everywhere (campaign_id None) or in one campaign."""

    phone: str
    campaign_id: int | None
    reason: str | None
    added_at: datetime


def _fields(cls: type, row: Mapping[str, Any]) -> dict[str, Any]:
    """The row's columns that `cls` (a dataclass) has, for `cls(**...)`."""
    return {f.name: row[f.name] for f in dataclasses.fields(cls) if f.name in row}


def _campaign(row: Mapping[str, Any]) -> Campaign:
    fields = _fields(Campaign, row)
    fields["retry_delays"] = json.loads(fields["retry_delays"])
    fields["state"] = CampaignState(fields["state"])
    return Campaign(**fields)


def _lead(row: Mapping[str, Any]) -> Lead:
    fields = _fields(Lead, row)
    fields["data"] = json.loads(fields["data"])
    return Lead(**fields)


def _attempt(row: Mapping[str, Any]) -> Attempt:
    return Attempt(**_fields(Attempt, row))


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


AMD_VERDICTS = tuple(v.value for v in Verdict)
"""The attempts.amd_verdict CHECK's values."""

CALLBACK_GRACE = timedelta(minutes=15)
"""How long a promised callback waits for its agent before any agent of the campaign may call."""

_DNC_MATCH = (
    "EXISTS (SELECT 1 FROM dnc d WHERE d.phone = l.phone"
    " AND (d.campaign_id IS NULL OR d.campaign_id = l.campaign_id))"
)


class PgLeadStore:
    """Campaigns, leads, attempts and DNC numbers over an asyncpg pool. Times are aware."""

    def __init__(self, pool: asyncpg.Pool, *, default_country_code: str = "1") -> None:
        """`default_country_code` completes national numbers given to the DNC methods."""
        self._pool = pool
        self.default_country_code = default_country_code
        self.normalize("+10000000")  # validates the code early

    def normalize(self, phone: str) -> str:
        """`phone` as E.164; InvalidInput saying what is wrong with junk."""
        try:
            return numbers.normalize_phone(phone, self.default_country_code)
        except numbers.PhoneNumberError as exc:
            raise InvalidInput(str(exc)) from None

    # -- campaigns -----------------------------------------------------------------------------

    async def create_campaign(self, settings: Any, *, now: datetime) -> Campaign:
        """Store a new campaign (draft) from `settings`: a dialer.Campaign, or any object or
        mapping with its field names (missing ones take the schema's defaults)."""
        values = {}
        for name in _CAMPAIGN_SETTINGS:
            value = _get(settings, name)
            if value is not None:
                values[name] = value
        if "retry_delays" in values:
            delays = {str(k): float(v) for k, v in dict(values["retry_delays"]).items()}
            unknown = set(delays) - set(ATTEMPT_OUTCOMES)
            if unknown:
                raise InvalidInput(f"retry delays for unknown outcomes {sorted(unknown)}")
            values["retry_delays"] = json.dumps(delays)
        for name in ("agents", "window_days"):
            if name in values:
                values[name] = list(values[name])
        columns = list(values)
        placeholders = [
            f"${i}::jsonb" if c == "retry_delays" else f"${i}" for i, c in enumerate(columns, 1)
        ]
        n = len(columns)
        sql = (
            f"INSERT INTO campaigns ({', '.join(columns)}, created_at, updated_at)"
            f" VALUES ({', '.join(placeholders)}, ${n + 1}, ${n + 1}) RETURNING *"
        )
        async with self._pool.acquire() as conn:
            if "tz_default" in values:
                await self._check_zones(conn, [values["tz_default"]])
            try:
                row = await conn.fetchrow(sql, *values.values(), now)
            except asyncpg.UniqueViolationError:
                raise Conflict(f"a campaign named {values.get('name')!r} exists") from None
            except (asyncpg.CheckViolationError, asyncpg.NotNullViolationError) as exc:
                raise InvalidInput(f"campaign settings refused: {exc}") from None
        campaign = _campaign(row)
        logger.info("campaign %s created (id %d)", campaign.name, campaign.id)
        return campaign

    async def get_campaign(self, campaign_id: int) -> Campaign:
        return await self._one_campaign("id", campaign_id, f"no campaign {campaign_id}")

    async def get_campaign_by_name(self, name: str) -> Campaign:
        return await self._one_campaign("name", name, f"no campaign named {name!r}")

    async def _one_campaign(self, column: str, value: object, missing: str) -> Campaign:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(f"SELECT * FROM campaigns WHERE {column} = $1", value)
        if row is None:
            raise NotFound(missing)
        return _campaign(row)

    async def list_campaigns(self) -> list[Campaign]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch("SELECT * FROM campaigns ORDER BY id")
        return [_campaign(r) for r in rows]

    async def set_state(self, campaign_id: int, command: str, *, now: datetime) -> Campaign:
        """Apply start / pause / resume / stop; Conflict when the campaign's state refuses it."""
        command = str(getattr(command, "value", command))
        async with self._pool.acquire() as conn, conn.transaction():
            state = await conn.fetchval(
                "SELECT state FROM campaigns WHERE id = $1 FOR UPDATE", campaign_id
            )
            if state is None:
                raise NotFound(f"no campaign {campaign_id}")
            new = _TRANSITIONS.get((state, command))
            if new is None:
                raise Conflict(f"cannot {command} a campaign that is {state}")
            row = await conn.fetchrow(
                "UPDATE campaigns SET state = $2, updated_at = $3,"
                " started_at = CASE WHEN $2 = 'running' THEN COALESCE(started_at, $3)"
                "  ELSE started_at END,"
                " finished_at = CASE WHEN $2 = 'finished' THEN $3 ELSE finished_at END"
                " WHERE id = $1 RETURNING *",
                campaign_id,
                new,
                now,
            )
        logger.info("campaign %d: %s -> %s (%s)", campaign_id, state, new, command)
        return _campaign(row)

    # -- leads ---------------------------------------------------------------------------------

    async def import_leads(
        self, campaign_id: int, leads: Iterable[Any], *, now: datetime
    ) -> LeadImportSummary:
        """Insert leads (dialer.NewLead, or objects / mappings with phone, tz, name, consent,
        responsible, data) in one batch. A number the campaign already has is merged: non-empty
        new values win and data is merged key by key; its status and attempts are kept. Leads
        on a DNC list or without consent are stored as dnc. All or nothing."""
        batch: dict[str, dict[str, Any]] = {}
        repeated: list[str] = []
        for lead in leads:
            raw = _get(lead, "phone")
            if not raw:
                raise InvalidInput("a lead without a phone number")
            phone = self.normalize(str(raw))
            item = {
                "name": _get(lead, "name"),
                "tz": _get(lead, "tz"),
                "consent": _get(lead, "consent"),
                "responsible": _get(lead, "responsible"),
                "data": dict(_get(lead, "data") or {}),
            }
            old = batch.get(phone)
            if old is not None:
                repeated.append(phone)
                item = {
                    **{k: v for k, v in old.items() if k != "data"},
                    **{k: v for k, v in item.items() if v is not None and k != "data"},
                    "data": {**old["data"], **item["data"]},
                }
            batch[phone] = item
        if not batch:
            return LeadImportSummary()
        async with self._pool.acquire() as conn, conn.transaction():
            tz_default = await conn.fetchval(
                "SELECT tz_default FROM campaigns WHERE id = $1", campaign_id
            )
            if tz_default is None:
                raise NotFound(f"no campaign {campaign_id}")
            for item in batch.values():
                item["tz"] = item["tz"] or tz_default
            await self._check_zones(conn, [item["tz"] for item in batch.values()])
            rows = await conn.fetch(
                "INSERT INTO leads AS l (campaign_id, phone, name, tz, data, consent, responsible,"
                "  status, next_attempt_at, created_at, updated_at)"
                " SELECT $1, u.phone, u.name, u.tz, u.data::jsonb, u.consent, u.responsible,"
                "  CASE WHEN u.consent IS FALSE OR EXISTS (SELECT 1 FROM dnc d"
                "   WHERE d.phone = u.phone AND (d.campaign_id IS NULL OR d.campaign_id = $1))"
                "   THEN 'dnc' ELSE 'pending' END, $8, $8, $8"
                " FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bool[],"
                "  $7::text[]) AS u (phone, name, tz, data, consent, responsible)"
                " ON CONFLICT (campaign_id, phone) DO UPDATE SET"
                "  name = COALESCE(EXCLUDED.name, l.name), tz = EXCLUDED.tz,"
                "  data = l.data || EXCLUDED.data,"
                "  consent = COALESCE(EXCLUDED.consent, l.consent),"
                "  responsible = COALESCE(EXCLUDED.responsible, l.responsible),"
                "  status = CASE WHEN EXCLUDED.status = 'dnc' AND l.status = 'pending'"
                "   THEN 'dnc' ELSE l.status END,"
                "  updated_at = EXCLUDED.updated_at"
                " RETURNING l.phone, l.status, (l.xmax = 0) AS inserted",
                campaign_id,
                list(batch),
                [i["name"] for i in batch.values()],
                [i["tz"] for i in batch.values()],
                [json.dumps(i["data"]) for i in batch.values()],
                [i["consent"] for i in batch.values()],
                [i["responsible"] for i in batch.values()],
                now,
            )
        inserted = [r["phone"] for r in rows if r["inserted"]]
        merged = [r["phone"] for r in rows if not r["inserted"]]
        merged += [p for p in dict.fromkeys(repeated) if p not in merged]
        dnc = [r["phone"] for r in rows if r["status"] == "dnc"]
        logger.info(
            "campaign %d: %d leads imported, %d merged, %d dnc",
            campaign_id,
            len(inserted),
            len(merged),
            len(dnc),
        )
        return LeadImportSummary(inserted, merged, dnc)

    async def get_lead(self, lead_id: int) -> Lead:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM leads WHERE id = $1", lead_id)
        if row is None:
            raise NotFound(f"no lead {lead_id}")
        return _lead(row)

    async def list_leads(self, campaign_id: int, *, status: str | None = None) -> list[Lead]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT * FROM leads WHERE campaign_id = $1 AND ($2::text IS NULL OR status = $2)"
                " ORDER BY id",
                campaign_id,
                status,
            )
        return [_lead(r) for r in rows]

    async def lead_attempts(self, lead_id: int) -> list[Attempt]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT * FROM attempts WHERE lead_id = $1 ORDER BY attempt_no", lead_id
            )
        return [_attempt(r) for r in rows]

    # -- attempts ------------------------------------------------------------------------------

    async def claim_next_leads(
        self,
        campaign_id: int,
        n: int,
        *,
        now: datetime,
        node: str,
        idle_agents: Sequence[str] | None = None,
    ) -> list[Claim]:
        """Up to `n` leads of a running campaign that are due (next_attempt_at <= now), within
        calling hours in their zone, not on a DNC list, with consent not refused and under the
        campaign's max attempts; each gets a NEW attempt reserved for `node` in this same
        transaction. Rows another node holds are skipped, never waited for or shared.
        With `idle_agents`, a callback promised by an agent is claimed only while that agent is
        idle, or once it is CALLBACK_GRACE overdue (then anyone may call)."""
        if n <= 0:
            return []
        promised = (
            "  AND (l.callback_agent IS NULL OR l.callback_agent = ANY($4::text[])"
            "   OR l.next_attempt_at <= $2 - $5::interval)"
            if idle_agents is not None
            else ""
        )
        extra: tuple[Any, ...] = (
            (list(idle_agents), CALLBACK_GRACE) if idle_agents is not None else ()
        )
        async with self._pool.acquire() as conn, conn.transaction():
            leads = await conn.fetch(
                "WITH due AS ("
                " SELECT l.id FROM leads l JOIN campaigns c ON c.id = l.campaign_id"
                " WHERE l.campaign_id = $1 AND c.state = 'running' AND l.status = 'pending'"
                "  AND l.next_attempt_at <= $2 AND l.attempts < c.max_attempts"
                f"  AND l.consent IS NOT FALSE AND NOT {_DNC_MATCH}"
                "  AND (NOT c.require_consent OR l.consent)"
                "  AND dialer_within_hours($2, l.tz, c.window_start, c.window_end, c.window_days)"
                f"{promised}"
                " ORDER BY l.next_attempt_at, l.id LIMIT $3"
                " FOR UPDATE OF l SKIP LOCKED)"
                " UPDATE leads l SET status = 'in-progress', attempts = l.attempts + 1,"
                "  updated_at = $2"
                " FROM due WHERE l.id = due.id RETURNING l.*",
                campaign_id,
                now,
                n,
                *extra,
            )
            if not leads:
                return []
            attempts = await conn.fetch(
                "INSERT INTO attempts (lead_id, campaign_id, attempt_no, reserved_at, node)"
                " SELECT u.lead_id, $1, u.attempt_no, $4, $5"
                " FROM unnest($2::bigint[], $3::int[]) AS u (lead_id, attempt_no)"
                " RETURNING *",
                campaign_id,
                [r["id"] for r in leads],
                [r["attempts"] for r in leads],
                now,
                node,
            )
        by_lead = {a["lead_id"]: _attempt(a) for a in attempts}
        claims = [
            Claim(_lead(r), by_lead[r["id"]])
            for r in sorted(leads, key=lambda r: (r["next_attempt_at"], r["id"]))
        ]
        logger.debug("node %s claimed %d leads of campaign %d", node, len(claims), campaign_id)
        return claims

    async def reserve_attempt(
        self, lead_id: int, attempt_no: int, *, now: datetime, node: str
    ) -> Attempt:
        """Reserve attempt `attempt_no` of a lead directly (the claim does this for the dialer);
        Conflict when that attempt exists: an attempt number is never used twice."""
        async with self._pool.acquire() as conn:
            try:
                row = await conn.fetchrow(
                    "INSERT INTO attempts (lead_id, campaign_id, attempt_no, reserved_at, node)"
                    " SELECT id, campaign_id, $2, $3, $4 FROM leads WHERE id = $1 RETURNING *",
                    lead_id,
                    attempt_no,
                    now,
                    node,
                )
            except asyncpg.UniqueViolationError:
                raise Conflict(f"attempt {attempt_no} of lead {lead_id} exists") from None
        if row is None:
            raise NotFound(f"no lead {lead_id}")
        return _attempt(row)

    async def attempt_dialled(self, attempt_id: int, call_id: str, *, now: datetime) -> None:
        """The attempt's INVITE went out; Conflict if it was dialled or closed already."""
        async with self._pool.acquire() as conn:
            status = await conn.execute(
                "UPDATE attempts SET call_id = $2, dialled_at = $3"
                " WHERE id = $1 AND dialled_at IS NULL AND ended_at IS NULL",
                attempt_id,
                call_id,
                now,
            )
            if status == "UPDATE 0":
                exists = await conn.fetchval("SELECT 1 FROM attempts WHERE id = $1", attempt_id)
                if not exists:
                    raise NotFound(f"no attempt {attempt_id}")
                raise Conflict(f"attempt {attempt_id} was dialled or closed already")

    async def attempt_finished(
        self,
        attempt_id: int,
        outcome: str,
        *,
        now: datetime,
        retry_at: datetime | None = None,
        agent: str | None = None,
    ) -> Lead:
        """Close the attempt with `outcome` and reschedule its lead: after the campaign's retry
        delay for that outcome (or at `retry_at`: a callback), unless it has had its max
        attempts or the outcome is final (then done; dnc for dnc). Returns the lead."""
        if outcome not in ATTEMPT_OUTCOMES:
            raise InvalidInput(f"unknown attempt outcome {outcome!r}")
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE attempts SET outcome = $2, ended_at = $3, agent = COALESCE($4, agent)"
                " WHERE id = $1 AND ended_at IS NULL RETURNING *",
                attempt_id,
                outcome,
                now,
                agent,
            )
            if row is None:
                exists = await conn.fetchval("SELECT 1 FROM attempts WHERE id = $1", attempt_id)
                if not exists:
                    raise NotFound(f"no attempt {attempt_id}")
                raise Conflict(f"attempt {attempt_id} has ended already")
            lead = await self._reschedule(conn, row, outcome, now=now, retry_at=retry_at)
        logger.info("attempt %d of lead %d: %s; lead %s", attempt_id, lead.id, outcome, lead.status)
        return lead

    async def attempt_amd(
        self, attempt_id: int, verdict: str, *, reason: str, confidence: float, seconds: float
    ) -> None:
        """Store the answering-machine verdict of an answered attempt (once: a second verdict
        for the same attempt is refused with Conflict)."""
        if verdict not in AMD_VERDICTS:
            raise InvalidInput(f"AMD verdict must be one of {', '.join(AMD_VERDICTS)}")
        try:
            status = await self._pool.execute(
                "UPDATE attempts SET amd_verdict = $2, amd_reason = $3, amd_confidence = $4,"
                " amd_seconds = $5 WHERE id = $1 AND amd_verdict IS NULL",
                attempt_id,
                verdict,
                reason,
                confidence,
                seconds,
            )
        except asyncpg.CheckViolationError as exc:
            raise InvalidInput(f"AMD verdict refused: {exc}") from None
        if status == "UPDATE 0":
            if not await self._pool.fetchval("SELECT 1 FROM attempts WHERE id = $1", attempt_id):
                raise NotFound(f"no attempt {attempt_id}")
            raise Conflict(f"attempt {attempt_id} has its AMD verdict already")

    async def release_attempt(self, attempt_id: int, *, now: datetime) -> None:
        """Undo the reservation of an attempt whose INVITE was never sent (the dialer refused it
        at the last moment): the attempt row goes, the lead is pending again, its count back."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "DELETE FROM attempts WHERE id = $1 AND dialled_at IS NULL AND ended_at IS NULL"
                " RETURNING *",
                attempt_id,
            )
            if row is None:
                raise Conflict(f"attempt {attempt_id} is not an undialled reservation")
            await conn.execute(
                "UPDATE leads SET status = 'pending', attempts = attempts - 1, updated_at = $3"
                " WHERE id = $1 AND status = 'in-progress' AND attempts = $2",
                row["lead_id"],
                row["attempt_no"],
                now,
            )

    async def close_interrupted_attempts(self, node: str, *, now: datetime) -> list[Attempt]:
        """After a crash or restart of `node`: its attempts still open are closed as
        outcome-unknown (the INVITE may or may not have gone out) and their leads rescheduled
        by the outcome-unknown retry delay; a retry is always a new attempt number."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "UPDATE attempts SET outcome = 'outcome-unknown', ended_at = $2"
                " WHERE node = $1 AND ended_at IS NULL RETURNING *",
                node,
                now,
            )
            for row in rows:
                await self._reschedule(conn, row, "outcome-unknown", now=now, retry_at=None)
        if rows:
            logger.warning(
                "node %s: %d attempts in flight closed as outcome-unknown", node, len(rows)
            )
        return [_attempt(r) for r in sorted(rows, key=lambda r: r["id"])]

    async def close_attempts_of_dead_nodes(self, *, now: datetime) -> list[Attempt]:
        """Attempts in flight of nodes whose liveness lease ran out (`cluster_nodes`: killed,
        or cut off from the database) are closed as outcome-unknown, as their own restart
        would, by whichever node gets there first (the row locks decide)."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "UPDATE attempts a SET outcome = 'outcome-unknown', ended_at = $1"
                " FROM cluster_nodes n WHERE a.node = n.node AND n.lease_until < now()"
                " AND a.ended_at IS NULL RETURNING a.*",
                now,
            )
            for row in rows:
                await self._reschedule(conn, row, "outcome-unknown", now=now, retry_at=None)
        if rows:
            logger.warning(
                "%d attempts in flight of dead node(s) %s closed as outcome-unknown",
                len(rows),
                ", ".join(sorted({r["node"] for r in rows})),
            )
        return [_attempt(r) for r in sorted(rows, key=lambda r: r["id"])]

    async def _reschedule(
        self,
        conn: asyncpg.Connection,
        attempt: Mapping[str, Any],
        outcome: str,
        *,
        now: datetime,
        retry_at: datetime | None,
    ) -> Lead:
        lead = await conn.fetchrow(
            "SELECT l.*, c.max_attempts, c.retry_delays, "
            f" {_DNC_MATCH} AS on_dnc"
            " FROM leads l JOIN campaigns c ON c.id = l.campaign_id"
            " WHERE l.id = $1 FOR UPDATE OF l",
            attempt["lead_id"],
        )
        if lead["attempts"] != attempt["attempt_no"] or lead["status"] != "in-progress":
            # An older attempt closing late: the lead has moved on; only note the outcome.
            return _lead(lead)
        delay = json.loads(lead["retry_delays"]).get(outcome)
        next_at = lead["next_attempt_at"]
        if outcome == "dnc" or lead["on_dnc"]:
            status = "dnc"
        elif lead["attempts"] >= lead["max_attempts"]:
            status = "done"
        elif retry_at is not None:
            status, next_at = "pending", retry_at
        elif delay is None:
            status = "done"
        else:
            status, next_at = "pending", now + timedelta(seconds=float(delay))
        row = await conn.fetchrow(
            "UPDATE leads SET status = $2, next_attempt_at = $3, last_outcome = $4,"
            " updated_at = $5 WHERE id = $1 RETURNING *",
            lead["id"],
            status,
            next_at,
            outcome,
            now,
        )
        return _lead(row)

    async def campaign_progress(self, campaign_id: int) -> CampaignProgress:
        async with self._pool.acquire() as conn:
            leads = await conn.fetchrow(
                "SELECT count(*) AS total,"
                " count(*) FILTER (WHERE status IN ('pending', 'in-progress')) AS remaining,"
                " count(*) FILTER (WHERE status = 'done') AS done,"
                " count(*) FILTER (WHERE status = 'dnc') AS dnc,"
                " (SELECT 1 FROM campaigns WHERE id = $1) AS found"
                " FROM leads WHERE campaign_id = $1",
                campaign_id,
            )
            if leads["found"] is None:
                raise NotFound(f"no campaign {campaign_id}")
            attempts = await conn.fetchrow(
                "SELECT count(*) FILTER (WHERE dialled_at IS NOT NULL) AS dialled,"
                " count(*) FILTER (WHERE outcome IN ('answered-human', 'abandoned'))"
                "  AS answered_human,"
                " count(*) FILTER (WHERE outcome = 'answered-machine') AS answered_machine,"
                " count(*) FILTER (WHERE outcome = 'answered-human') AS connected,"
                " count(*) FILTER (WHERE outcome = 'abandoned') AS abandoned,"
                " count(*) FILTER (WHERE ended_at IS NULL) AS in_flight"
                " FROM attempts WHERE campaign_id = $1",
                campaign_id,
            )
        return CampaignProgress(
            total=leads["total"],
            dialled=attempts["dialled"],
            answered_human=attempts["answered_human"],
            answered_machine=attempts["answered_machine"],
            connected=attempts["connected"],
            abandoned=attempts["abandoned"],
            remaining=leads["remaining"],
            done=leads["done"],
            dnc=leads["dnc"],
            in_flight=attempts["in_flight"],
        )

    # -- answering-machine detection -------------------------------------------------------------

    async def amd_summary(self, campaign_id: int) -> dict[str, Any]:
        """A campaign's AMD verdicts (counts, median decision time and confidence) and their
        quality as its agents measured it: of the attempts an agent heard and disposed, those
        AMD called a person that the agent marked answering-machine (false person) and those
        AMD called a machine that the agent said was a person (false machine)."""
        row = await self._pool.fetchrow(
            "SELECT count(a.amd_verdict) AS verdicts,"
            " count(*) FILTER (WHERE a.amd_verdict = 'human') AS human,"
            " count(*) FILTER (WHERE a.amd_verdict = 'machine') AS machine,"
            " count(*) FILTER (WHERE a.amd_verdict = 'unsure') AS unsure,"
            " count(*) FILTER (WHERE a.amd_verdict = 'sit') AS sit,"
            " count(*) FILTER (WHERE a.amd_verdict = 'fax') AS fax,"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY a.amd_seconds) AS median_seconds,"
            " avg(a.amd_confidence) AS mean_confidence"
            " FROM attempts a WHERE a.campaign_id = $1",
            campaign_id,
        )
        judged = await self._pool.fetch(
            "SELECT a.amd_verdict AS verdict, d.machine, count(*) AS n FROM attempts a"
            " JOIN LATERAL (SELECT bool_or(c.disposition = 'answering-machine') AS machine"
            "  FROM calls c WHERE c.call_id = a.call_id AND c.disposition IS NOT NULL) d"
            "  ON d.machine IS NOT NULL"
            " WHERE a.campaign_id = $1 AND a.amd_verdict IN ('human', 'machine', 'unsure')"
            " GROUP BY 1, 2",
            campaign_id,
        )
        counts = {(r["verdict"], r["machine"]): r["n"] for r in judged}
        said_person = counts.get(("human", False), 0) + counts.get(("human", True), 0)
        said_machine = counts.get(("machine", False), 0) + counts.get(("machine", True), 0)
        false_person = counts.get(("human", True), 0)
        false_machine = counts.get(("machine", False), 0)
        summary = dict(row)
        for key in ("median_seconds", "mean_confidence"):
            summary[key] = None if summary[key] is None else round(float(summary[key]), 3)
        summary["quality"] = {
            "judged": sum(counts.values()),
            "false_person": false_person,
            "false_machine": false_machine,
            "false_person_rate": false_person / said_person if said_person else None,
            "false_machine_rate": false_machine / said_machine if said_machine else None,
        }
        return summary

    async def amd_results(self, campaign_id: int) -> list[dict[str, Any]]:
        """Per answered attempt: the AMD verdict, why, how sure, when, and what came of it."""
        rows = await self._pool.fetch(
            "SELECT a.id AS attempt_id, l.phone, a.attempt_no, a.outcome, a.agent,"
            " a.amd_verdict, a.amd_reason, a.amd_confidence, a.amd_seconds,"
            " (SELECT c.disposition FROM calls c WHERE c.call_id = a.call_id"
            "   AND c.disposition IS NOT NULL ORDER BY c.id DESC LIMIT 1) AS disposition"
            " FROM attempts a JOIN leads l ON l.id = a.lead_id"
            " WHERE a.campaign_id = $1 AND a.amd_verdict IS NOT NULL ORDER BY a.id",
            campaign_id,
        )
        return [dict(r) for r in rows]

    # -- broadcasts ----------------------------------------------------------------------------

    async def save_broadcast_result(
        self, attempt_id: int, result: Mapping[str, Any], *, now: datetime
    ) -> None:
        """What an answered broadcast call did in its flow (`result`: the fields of the
        broadcast_results table, as ivr.FlowResult names them, plus `agent`)."""
        async with self._pool.acquire() as conn:
            inserted = await conn.fetchval(
                "INSERT INTO broadcast_results (attempt_id, campaign_id, lead_id, flow, path,"
                " digits, listened_to_end, outcome, transferred_to, agent, callback_created,"
                " opted_out, voicemail_left, events, created_at)"
                " SELECT a.id, a.campaign_id, a.lead_id, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
                "  $11, $12::jsonb, $13 FROM attempts a WHERE a.id = $1"
                " ON CONFLICT (attempt_id) DO NOTHING RETURNING attempt_id",
                attempt_id,
                str(result.get("flow", "")),
                [str(node) for node in result.get("path", ())],
                str(result.get("digits", "")),
                bool(result.get("listened_to_end")),
                str(result.get("outcome", "completed")),
                result.get("transferred_to"),
                result.get("agent"),
                bool(result.get("callback_created")),
                bool(result.get("opted_out")),
                bool(result.get("voicemail_left")),
                json.dumps([list(e) for e in result.get("events", ())]),
                now,
            )
        if inserted is None and not await self._pool.fetchval(
            "SELECT 1 FROM broadcast_results WHERE attempt_id = $1", attempt_id
        ):
            raise NotFound(f"no attempt {attempt_id}")

    async def broadcast_progress(self, campaign_id: int) -> dict[str, int]:
        """A broadcast's results: people reached, who heard the message to the end, pressed 1,
        were connected to an agent, got a callback task (and how many of those were done),
        opted out; voicemails left on machines."""
        row = await self._pool.fetchrow(
            "SELECT count(*) FILTER (WHERE outcome <> 'voicemail') AS reached,"
            " count(*) FILTER (WHERE listened_to_end AND outcome <> 'voicemail')"
            "  AS listened_to_end,"
            " count(*) FILTER (WHERE position('1' in digits) > 0) AS pressed_1,"
            " count(*) FILTER (WHERE outcome = 'transferred') AS connected,"
            " count(*) FILTER (WHERE callback_created) AS callbacks_created,"
            " count(*) FILTER (WHERE opted_out) AS opted_out,"
            " count(*) FILTER (WHERE voicemail_left) AS voicemails_left"
            " FROM broadcast_results WHERE campaign_id = $1",
            campaign_id,
        )
        done = await self._pool.fetchval(
            "SELECT count(*) FROM tasks t JOIN calls c ON c.id = t.created_from_call"
            " WHERE c.campaign_id = $1 AND t.type = 'callback' AND t.status = 'done'",
            campaign_id,
        )
        return {**dict(row), "callbacks_completed": done}

    async def broadcast_results(self, campaign_id: int) -> list[dict[str, Any]]:
        """Per lead: the node path, digits, listened-to-end flag and what came of the call."""
        rows = await self._pool.fetch(
            "SELECT r.*, l.phone, a.attempt_no FROM broadcast_results r"
            " JOIN leads l ON l.id = r.lead_id JOIN attempts a ON a.id = r.attempt_id"
            " WHERE r.campaign_id = $1 ORDER BY r.attempt_id",
            campaign_id,
        )
        results = []
        for row in rows:
            item = dict(row)
            item["events"] = json.loads(item["events"])
            item["created_at"] = item["created_at"].isoformat()
            results.append(item)
        return results

    # -- do not call ---------------------------------------------------------------------------

    async def schedule_callback(
        self, lead_id: int, at: datetime, *, agent: str | None = None
    ) -> bool:
        """An agent promised to call back: the lead is due again at `at` (within its campaign's
        calling hours and attempts), for `agent` when given. False when the lead has no attempt
        left or is barred."""
        if at.tzinfo is None:
            raise InvalidInput("a callback time needs a time zone")
        async with self._pool.acquire() as conn:
            updated = await conn.fetchval(
                "UPDATE leads l SET status = 'pending', next_attempt_at = $2,"
                " callback_agent = coalesce($3, l.callback_agent)"
                " FROM campaigns c WHERE l.id = $1 AND c.id = l.campaign_id"
                " AND l.status <> 'dnc' AND l.attempts < c.max_attempts"
                f" AND NOT {_DNC_MATCH}"
                " RETURNING l.id",
                lead_id,
                at,
                agent,
            )
        return updated is not None

    async def load_ledger(self, campaign_id: int, *, node: str) -> dict[str, Any] | None:
        """This node's saved abandon ledger of a campaign, or None."""
        async with self._pool.acquire() as conn:
            state = await conn.fetchval(
                "SELECT state FROM abandon_ledgers WHERE campaign_id = $1 AND node = $2",
                campaign_id,
                node,
            )
        return None if state is None else dict(json.loads(state))

    async def peer_ledgers(self, campaign_id: int, *, node: str) -> list[dict[str, Any]]:
        """The campaign's saved abandon ledgers of every node but `node`."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT state FROM abandon_ledgers WHERE campaign_id = $1 AND node <> $2",
                campaign_id,
                node,
            )
        return [dict(json.loads(r["state"])) for r in rows]

    async def save_ledger(self, campaign_id: int, state: dict[str, Any], *, node: str) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO abandon_ledgers (campaign_id, node, state) VALUES ($1, $2, $3::jsonb)"
                " ON CONFLICT (campaign_id, node) DO UPDATE SET state = EXCLUDED.state,"
                " updated_at = now()",
                campaign_id,
                node,
                json.dumps(state),
            )

    async def dnc_add(
        self,
        phones: Iterable[str],
        *,
        now: datetime,
        campaign_id: int | None = None,
        reason: str | None = None,
    ) -> int:
        """Bar numbers everywhere (campaign_id None) or in one campaign; their pending leads
        become dnc. Returns how many entries are new."""
        numbers = list(dict.fromkeys(self.normalize(p) for p in phones))
        if not numbers:
            return 0
        async with self._pool.acquire() as conn, conn.transaction():
            try:
                added = await conn.fetch(
                    "INSERT INTO dnc (phone, campaign_id, reason, added_at)"
                    " SELECT p, $2, $3, $4 FROM unnest($1::text[]) AS p"
                    " ON CONFLICT (phone, campaign_id) DO NOTHING RETURNING phone",
                    numbers,
                    campaign_id,
                    reason,
                    now,
                )
            except asyncpg.ForeignKeyViolationError:
                raise NotFound(f"no campaign {campaign_id}") from None
            await conn.execute(
                "UPDATE leads SET status = 'dnc', updated_at = $3"
                " WHERE phone = ANY ($1::text[]) AND status = 'pending'"
                " AND ($2::bigint IS NULL OR campaign_id = $2)",
                numbers,
                campaign_id,
                now,
            )
        return len(added)

    async def dnc_remove(self, phones: Iterable[str], *, campaign_id: int | None = None) -> int:
        """Lift bars (of that scope only); leads already marked dnc stay so. Returns how many
        entries went."""
        numbers = [self.normalize(p) for p in phones]
        async with self._pool.acquire() as conn:
            status = await conn.execute(
                "DELETE FROM dnc WHERE phone = ANY ($1::text[])"
                " AND campaign_id IS NOT DISTINCT FROM $2",
                numbers,
                campaign_id,
            )
        return int(status.split()[-1])

    async def dnc_list(self, *, campaign_id: int | None = None) -> list[DncEntry]:
        """The entries of one scope: global (campaign_id None) or one campaign's own."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT * FROM dnc WHERE campaign_id IS NOT DISTINCT FROM $1 ORDER BY phone",
                campaign_id,
            )
        return [DncEntry(**_fields(DncEntry, r)) for r in rows]

    async def dnc_contains(self, phone: str, *, campaign_id: int | None = None) -> bool:
        """Whether `phone` is barred globally or (given a campaign) in that campaign."""
        async with self._pool.acquire() as conn:
            found = await conn.fetchval(
                "SELECT 1 FROM dnc WHERE phone = $1"
                " AND (campaign_id IS NULL OR campaign_id = $2::bigint) LIMIT 1",
                self.normalize(phone),
                campaign_id,
            )
        return found is not None

    async def dnc_import(
        self, phones: Iterable[str], *, now: datetime, campaign_id: int | None = None
    ) -> int:
        """Bulk add from a file (read with dialer.read_dnc_csv); returns the new entries."""
        return await self.dnc_add(phones, now=now, campaign_id=campaign_id, reason="import")

    async def dnc_export(self, *, campaign_id: int | None = None) -> list[str]:
        """The numbers of one scope, sorted (write them with dialer.write_dnc_csv)."""
        return [e.phone for e in await self.dnc_list(campaign_id=campaign_id)]

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    async def _check_zones(conn: asyncpg.Connection, zones: Sequence[str]) -> None:
        """Refuse zones PostgreSQL does not know: one would break every claim of the campaign.
        A lead's tz may list several zones joined with ","."""
        wanted = sorted({name.strip() for tz in zones for name in tz.split(",")})
        known = await conn.fetch(
            "SELECT name FROM pg_timezone_names WHERE name = ANY ($1::text[])", wanted
        )
        unknown = set(wanted) - {r["name"] for r in known} - {"UTC"}
        if unknown:
            raise InvalidInput(f"unknown time zones {sorted(unknown)}")


class PgTokenBucket:
    """A trunk's calls-per-second cap shared by every node on the database (dialer.Bucket):
    one row per trunk (`trunk_buckets`), refilled and spent under its row lock by
    trunk_bucket_take, so the trunk's `rate` holds for the sum of the nodes. Each take is one
    round trip, made only when the pacer wants lines."""

    def __init__(
        self, pool: asyncpg.Pool, trunk: str, rate: float, burst: float | None = None
    ) -> None:
        if rate <= 0:
            raise ValueError(f"calls per second must be positive, got {rate}")
        self._pool = pool
        self.trunk = trunk
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)

    async def acquire(self, wanted: int, *, now: float) -> int:
        if wanted <= 0:
            return 0
        granted = await self._pool.fetchval(
            "SELECT trunk_bucket_take($1, $2, $3, $4)", self.trunk, self.rate, self.burst, wanted
        )
        return int(granted)

    async def give_back(self, unused: int) -> None:
        if unused > 0:
            await self._pool.execute(
                "UPDATE trunk_buckets SET tokens = least($2, tokens + $3) WHERE trunk = $1",
                self.trunk,
                self.burst,
                float(unused),
            )
