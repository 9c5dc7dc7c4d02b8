"""The CRM store: calls, contacts and tasks in PostgreSQL, each change with its outbox event.

Every method that changes a call or a task writes the matching outbox event (and one delivery
row per subscribed CRM endpoint) in the same transaction, so a crash can never leave a call in
the database that the CRM will not hear about, nor an event about a change that was rolled back.
An event no endpoint takes is not written at all (nobody would ever be sent it). A call's
change and its event are one statement (`_call_change`: the UPDATE or INSERT of the calls row
feeds the outbox and delivery rows, the payload built in SQL as `Call.to_json()` writes it),
atomic by itself, so a step of a call's journal is one round trip, with or without CRMs
(bench/bench_call_writes.py counts); several statements (a call's end with its callback task)
still run in one transaction.
Several engine nodes may share the database: nothing here assumes it is the only writer.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from .adapters import CALL_EVENTS, TASK_EVENTS, CrmAdapter
from .config import CrmEndpoint
from .errors import Conflict, InvalidInput, NotFound, PhoneNumberError
from .kinds import DEFAULT_ADAPTERS, check_endpoints
from .kinds import subscribed as _subscribed
from .models import (
    DIRECTIONS,
    OUTCOMES,
    Call,
    CallbackRequest,
    CallEnded,
    CallFilter,
    CallStarted,
    Contact,
    Task,
    TaskFilter,
    row_fields,
)
from .phone import normalize_phone

logger = logging.getLogger(__name__)

_CALLS = (
    "SELECT c.*, ct.phone AS contact_phone FROM calls c"
    " LEFT JOIN contacts ct ON ct.id = c.contact_id"
)
_TASKS = (
    "SELECT t.*, ct.phone AS contact_phone FROM tasks t JOIN contacts ct ON ct.id = t.contact_id"
)


def _calls_from(change: str) -> str:
    """A call-changing statement (INSERT/UPDATE ... RETURNING *) whose rows come back with the
    contact's phone, as `_CALLS` rows do."""
    return (
        f"WITH c AS ({change}) SELECT c.*, ct.phone AS contact_phone FROM c"
        " LEFT JOIN contacts ct ON ct.id = c.contact_id"
    )


_DATETIMES = frozenset({"started_at", "ringing_at", "answered_at", "ended_at"})
"""The calls columns a payload carries as ISO 8601 text (the others are JSON as they are)."""


def _iso(column: str) -> str:
    """SQL: a timestamptz `column` as Python's `datetime.isoformat()` writes an asyncpg value
    (UTC, microseconds only when there are some)."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (
        f"to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE to_char({utc}, 'US')"
        f" WHEN '000000' THEN '' ELSE '.' || to_char({utc}, 'US') END || '+00:00'"
    )


_FLOATS = frozenset({"ring_seconds", "talk_seconds"})
"""The calls columns of double precision: JSON as Python writes a float (3.0, not 3)."""


def _float(column: str) -> str:
    """SQL: a double precision `column` as JSON the way Python's json writes a float."""
    return (
        f"({column}::text || CASE WHEN {column}::text ~ '^-?[0-9]+$' THEN '.0' ELSE '' END)::jsonb"
    )


def _json_of(name: str) -> str:
    column = f"r.{name}"
    return _iso(column) if name in _DATETIMES else _float(column) if name in _FLOATS else column


_CALL_JSON = (
    "jsonb_build_object("
    + ", ".join(f"'{name}', {_json_of(name)}" for name in Call.__dataclass_fields__)
    + ")"
)
"""SQL: the payload of a call event, `Call.to_json()` of the row `r` (calls.* and
contact_phone), built where the row is changed: the change and its event are one statement."""


def _call_change(change: str, n: int, *, event: bool, extra: bool = False, ct: str = "") -> str:
    """One statement: `change` (an INSERT or UPDATE of calls with `n` parameters, without its
    RETURNING) and, with `event`, the event's outbox row and one delivery row per endpoint
    (parameters n+1..: event type, occurred at, endpoints, with `extra` a JSON object merged
    into the payload). `ct`: a CTE giving the contact (id, phone) the change links. Returns
    the changed row with contact_phone (none when the change changed nothing)."""
    phone = "(SELECT phone FROM ct)" if ct else (
        "(SELECT phone FROM contacts WHERE id = c.contact_id)"
    )  # fmt: skip
    sql = f"WITH {ct + ', ' if ct else ''}c AS ({change} RETURNING *),"
    sql += f" r AS (SELECT c.*, {phone} AS contact_phone FROM c)"
    if event:
        payload = _CALL_JSON + (f" || ${n + 4}::jsonb" if extra else "")
        sql += (
            ", e AS (INSERT INTO outbox (aggregate, event_type, payload, occurred_at)"
            f" SELECT 'call/' || r.id, ${n + 1}, {payload}, ${n + 2} FROM r"
            " RETURNING id, aggregate),"
            " d AS (INSERT INTO outbox_deliveries (event_id, endpoint, aggregate)"
            f" SELECT e.id, name, e.aggregate FROM e, unnest(${n + 3}::text[]) AS name)"
        )
    return sql + " SELECT * FROM r"


def _tasks_from(change: str) -> str:
    return (
        f"WITH t AS ({change}) SELECT t.*, ct.phone AS contact_phone FROM t"
        " JOIN contacts ct ON ct.id = t.contact_id"
    )


def _call(row: Mapping[str, Any]) -> Call:
    fields = row_fields(Call, row)
    for name in ("analytics", "quality", "transfers"):
        if isinstance(fields[name], str):
            fields[name] = json.loads(fields[name])
    return Call(**fields)


def _task(row: Mapping[str, Any]) -> Task:
    return Task(**row_fields(Task, row))


def _contact(row: Mapping[str, Any]) -> Contact:
    return Contact(**row_fields(Contact, row))


class CrmStore:
    """Repository of calls, contacts and tasks over an asyncpg pool."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        endpoints: Sequence[CrmEndpoint] = (),
        adapters: Mapping[str, CrmAdapter] = DEFAULT_ADAPTERS,
        node: str = "",
        default_country_code: str = "1",
    ) -> None:
        """`endpoints`: the CRMs that get a delivery row for each event they subscribe to (the
        same list the OutboxWorker gets). `node`: this engine node's name; restart recovery
        closes only its own open calls. `default_country_code`: completes national numbers."""
        self._pool = pool
        self.node = node
        self.default_country_code = default_country_code
        normalize_phone("+10000000", default_country_code)  # validates the code early
        endpoint_list = tuple(endpoints)
        check_endpoints(endpoint_list, adapters)
        self._subscribers = {
            event: _subscribed(endpoint_list, adapters, event)
            for event in CALL_EVENTS | TASK_EVENTS
        }

    def normalize(self, phone: str) -> str:
        """`phone` as E.164 with this store's default country code (PhoneNumberError if junk)."""
        return normalize_phone(phone, self.default_country_code)

    # -- calls ---------------------------------------------------------------------------------

    async def call_started(self, call: CallStarted) -> int:
        """Write the call's row (no outcome yet); returns its id. Emits `call.started`."""
        _check_started(call)
        return (await self._insert_call(self._pool, call, event="call.started")).id

    async def record_call(
        self, call: CallStarted, ended: CallEnded, *, callback: CallbackRequest | None = None
    ) -> int:
        """A call written once it is over (refused calls, or code that logs at the end): row
        and `call.ended` (no call.started) in one transaction. Returns the row id."""
        _check_started(call)
        _check_ended(ended)
        async with self._change(alone=callback is None) as conn:
            record = await self._insert_call(conn, call, ended, event="call.ended")
            if callback is not None:
                await self._callback_for(conn, record, callback)
        return record.id

    async def _insert_call(
        self, conn: Any, call: CallStarted, ended: CallEnded | None = None, *, event: str
    ) -> Call:
        """The calls row, the customer's contact taken or made, and `event` (at the call's
        end, or its start), in one statement."""
        phone = None
        if call.customer_phone:
            try:
                phone = self.normalize(call.customer_phone)
            except PhoneNumberError as exc:
                # The call is stored regardless; it just is not linked to a contact.
                logger.warning("call %s: %s", call.call_id, exc)
        closing: tuple[Any, ...] = (None,) * 8
        if ended is not None:
            closing = (
                ended.ended_at,
                ended.outcome,
                ended.sip_status,
                ended.hangup_cause,
                ended.answered_at,
                ended.recording_path,
                None if ended.analytics is None else json.dumps(ended.analytics),
                None if ended.quality is None else json.dumps(ended.quality),
            )
        # DO UPDATE (to the same phone), not DO NOTHING: RETURNING then gives the contact's id
        # also when it exists, even one another node committed after this statement began.
        endpoints = self._subscribers[event]
        at = ended.ended_at if ended is not None else call.started_at
        written = (event, at, endpoints) if endpoints else ()
        row = await conn.fetchrow(
            _call_change(
                "INSERT INTO calls (call_id, direction, from_number, to_number,"
                " started_at, did, agent, ring_group, contact_id, campaign_id, lead_id, node,"
                " ended_at, outcome, sip_status, hangup_cause, answered_at, recording_path,"
                " analytics, quality) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,(SELECT id FROM ct),$10,"
                " $11,$12,$13,$14,$15,$16,$17,$18,$19::jsonb,$20::jsonb)",
                20,
                event=bool(endpoints),
                ct="ct AS (INSERT INTO contacts (phone) SELECT $9::text WHERE $9::text IS NOT NULL"
                " ON CONFLICT (phone) DO UPDATE SET phone = EXCLUDED.phone RETURNING id, phone)",
            ),
            call.call_id,
            call.direction,
            call.from_number,
            call.to_number,
            call.started_at,
            call.did,
            (ended.agent if ended is not None else None) or call.agent,
            call.ring_group,
            phone,
            call.campaign_id,
            call.lead_id,
            self.node,
            *closing,
            *written,
        )
        return _call(row)

    async def call_ringing(self, call_row_id: int, at: datetime) -> None:
        """First ringing of the call (later ringing of other phones changes nothing).
        Emits `call.ringing` once."""
        _require_tz(at, "at")
        await self._update_call(
            self._pool, call_row_id, "ringing_at = $2", "ringing_at IS NULL", at,
            event=("call.ringing", at),
        )  # fmt: skip

    async def call_answered(self, call_row_id: int, at: datetime, *, agent: str | None) -> None:
        """The call was answered (by `agent`, an extension). Emits `call.answered`."""
        _require_tz(at, "at")
        row = await self._update_call(
            self._pool,
            call_row_id,
            "answered_at = $2, agent = COALESCE($3, agent)",
            "answered_at IS NULL",
            at,
            agent,
            event=("call.answered", at),
        )
        if row is None:
            raise Conflict(f"call {call_row_id} was answered already")

    async def call_transferred(
        self, call_row_id: int, transfer: Mapping[str, Any], at: datetime
    ) -> None:
        """The customer was handed to another agent: the transfer joins the row's chain and the
        new agent becomes its `agent`. Emits `call.transferred` (the call, plus `transfer`)."""
        _require_tz(at, "at")
        await self._update_call(
            self._pool,
            call_row_id,
            "transfers = transfers || jsonb_build_array($2::jsonb), agent = $3",
            None,
            json.dumps(dict(transfer)),
            transfer.get("to"),
            event=("call.transferred", at),
            extra={"transfer": dict(transfer)},
        )

    async def call_ended(
        self, call_row_id: int, ended: CallEnded, *, callback: CallbackRequest | None = None
    ) -> Task | None:
        """Close the call's row. Emits `call.ended` with the whole record. With `callback`,
        also opens (or updates) the contact's callback task in the same transaction and
        returns it (None when the caller withheld the number: nobody to call back)."""
        _check_ended(ended)
        async with self._change(alone=callback is None) as conn:
            return await self._close_call(conn, call_row_id, ended, callback)

    async def _close_call(
        self, conn: Any, call_row_id: int, ended: CallEnded, callback: CallbackRequest | None
    ) -> Task | None:
        analytics = None if ended.analytics is None else json.dumps(ended.analytics)
        quality = None if ended.quality is None else json.dumps(ended.quality)
        row = await self._update_call(
            conn,
            call_row_id,
            "ended_at = $2, outcome = $3, sip_status = $4, hangup_cause = $5,"
            " answered_at = COALESCE(answered_at, $6), agent = COALESCE($7, agent),"
            " recording_path = COALESCE($8, recording_path),"
            " analytics = COALESCE($9::jsonb, analytics),"
            " quality = COALESCE($10::jsonb, quality),"
            " transfers = COALESCE($11::jsonb, transfers)",
            None,
            ended.ended_at,
            ended.outcome,
            ended.sip_status,
            ended.hangup_cause,
            ended.answered_at,
            ended.agent,
            ended.recording_path,
            analytics,
            quality,
            None if ended.transfers is None else json.dumps([dict(t) for t in ended.transfers]),
            event=("call.ended", ended.ended_at),
        )
        assert row is not None
        record = _call(row)
        if callback is None:
            return None
        return await self._callback_for(conn, record, callback)

    async def _callback_for(
        self, conn: Any, record: Call, callback: CallbackRequest
    ) -> Task | None:
        if record.contact_id is None:
            # A withheld or non-numeric caller ID: the call is journaled and its events go
            # out (supervisors see it among missed calls), but there is no one to call back.
            logger.info("call %d: caller ID withheld, no callback task", record.id)
            return None
        return await self._callback_task(
            conn,
            record.contact_id,
            callback.assignee,
            callback.due_at,
            record.id,
            callback.text,
            prefer_responsible=callback.prefer_responsible,
        )

    async def call_recording(self, call_row_id: int, recording_path: str) -> None:
        """Note where the call's recording is being written, from its first second: a call a
        crash cuts off still points at its WAV. No event of its own (`call.ended` carries the
        path); NotFound for an unknown row."""
        status = await self._pool.execute(
            "UPDATE calls SET recording_path = $2, updated_at = now()"
            " WHERE id = $1 AND recording_path IS DISTINCT FROM $2",
            call_row_id,
            recording_path,
        )
        if status == "UPDATE 0" and not await self._pool.fetchval(
            "SELECT true FROM calls WHERE id = $1", call_row_id
        ):
            raise NotFound(f"no call {call_row_id}")

    async def interrupted_calls(self) -> list[Call]:
        """This node's open calls. At start-up, before the node takes a call: the ones a crash
        cut off (to recover their recordings before close_interrupted_calls)."""
        rows = await self._pool.fetch(
            _CALLS + " WHERE c.node = $1 AND c.ended_at IS NULL ORDER BY c.id", self.node
        )
        return [_call(row) for row in rows]

    async def close_interrupted_calls(
        self, now: datetime, *, analytics: Mapping[int, Mapping[str, Any]] | None = None
    ) -> int:
        """At start-up: close this node's calls left open by a crash (outcome failed, cause
        engine-restart), each with its `call.ended` event. `analytics` (by row id) are the
        speech analytics of their recordings, computed from the files left on disk. Returns
        how many."""
        _require_tz(now, "now")
        by_row = json.dumps({str(row_id): dict(a) for row_id, a in (analytics or {}).items()})
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                _calls_from(
                    "UPDATE calls SET ended_at = GREATEST($1, started_at),"
                    " outcome = 'failed', hangup_cause = 'engine-restart',"
                    " analytics = COALESCE($3::jsonb -> id::text, analytics), updated_at = now()"
                    " WHERE node = $2 AND ended_at IS NULL RETURNING *"
                )
                + " ORDER BY c.id",
                now,
                self.node,
                by_row,
            )
            for row in rows:
                await self._emit(conn, _call(row), "call.ended", now)
        if rows:
            logger.warning("closed %d call(s) interrupted by an engine restart", len(rows))
        return len(rows)

    async def _update_call(
        self,
        conn: Any,
        call_row_id: int,
        assignments: str,
        guard: str | None,
        *args: Any,
        event: tuple[str, datetime] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Any:
        """UPDATE an open call; the new row, or None when `guard` excluded it. A missing or
        already ended call raises NotFound / Conflict. `event` (type, occurred at): the
        statement writes it too when an endpoint takes it (with `extra` in its payload)."""
        where = "id = $1 AND ended_at IS NULL" + (f" AND {guard}" if guard else "")
        endpoints = self._subscribers[event[0]] if event is not None else []
        written: tuple[Any, ...] = ()
        if event is not None and endpoints:
            written = (*event, endpoints, *(() if extra is None else (json.dumps(extra),)))
        row = await conn.fetchrow(
            _call_change(
                f"UPDATE calls SET {assignments}, updated_at = now() WHERE {where}",
                len(args) + 1,
                event=bool(written),
                extra=extra is not None,
            ),
            call_row_id,
            *args,
            *written,
        )
        if row is not None:
            return row
        ended = await conn.fetchval(
            "SELECT ended_at IS NOT NULL FROM calls WHERE id = $1", call_row_id
        )
        if ended is None:
            raise NotFound(f"no call {call_row_id}")
        if ended:
            raise Conflict(f"call {call_row_id} has ended already")
        return None

    async def set_disposition(
        self, call_row_id: int, disposition: str, *, note: str | None, now: datetime
    ) -> Call:
        """The agent's verdict on a call (during or after it); emits `call.disposition`."""
        _require_tz(now, "now")
        if disposition not in DISPOSITIONS:
            raise InvalidInput(f"disposition must be one of {', '.join(DISPOSITIONS)}")
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                _calls_from(
                    "UPDATE calls SET disposition = $2, disposition_note = $3, disposed_at = $4,"
                    " updated_at = now() WHERE id = $1 RETURNING *"
                ),
                call_row_id,
                disposition,
                note,
                now,
            )
            if row is None:
                raise NotFound(f"no call {call_row_id}")
            record = _call(row)
            await self._emit(conn, record, "call.disposition", now)
        return record

    async def screen_pop(
        self, call_row_id: int, agent: str, details: Mapping[str, Any], *, now: datetime
    ) -> Call:
        """An agent was connected to a dialer call: emits `call.screen-pop` with the lead data,
        campaign and attempt (`details`), so a CRM can open the lead's card for that agent."""
        _require_tz(now, "now")
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_CALLS + " WHERE c.id = $1", call_row_id)
            if row is None:
                raise NotFound(f"no call {call_row_id}")
            record = _call(row)
            await self._emit(
                conn, record, "call.screen-pop", now, extra={"agent": agent, "screen_pop": details}
            )
        return record

    async def get_call(self, call_row_id: int) -> Call | None:
        row = await self._pool.fetchrow(_CALLS + " WHERE c.id = $1", call_row_id)
        return None if row is None else _call(row)

    async def list_calls(self, query: CallFilter | None = None) -> list[Call]:
        """Calls matching `query`, newest first."""
        q = query or CallFilter()
        clauses: list[str] = []
        args: list[Any] = []

        def where(sql: str, value: Any) -> None:
            args.append(value)
            clauses.append(sql.replace("?", f"${len(args)}"))

        if q.since is not None:
            where("c.started_at >= ?", q.since)
        if q.until is not None:
            where("c.started_at < ?", q.until)
        if q.agent is not None:
            where("c.agent = ?", q.agent)
        if q.outcome is not None:
            where("c.outcome = ?", q.outcome)
        if q.direction is not None:
            where("c.direction = ?", q.direction)
        if q.phone is not None:
            where("(c.from_number = ? OR c.to_number = ? OR ct.phone = ?)", q.phone)
        sql = _CALLS
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        args += [q.limit, q.offset]
        sql += f" ORDER BY c.started_at DESC, c.id DESC LIMIT ${len(args) - 1} OFFSET ${len(args)}"
        return [_call(row) for row in await self._pool.fetch(sql, *args)]

    async def agent_day_report(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """Per agent, the calls started in [since, until) they handled: calls, answered,
        inbound, outbound, talk time, average talk, average after-call work (end to the
        disposition, for calls disposed after they ended, at most an hour), average handle
        time (talk + after-call work) and the count of each disposition. Sorted by agent."""
        _require_tz(since, "since")
        _require_tz(until, "until")
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT agent, count(*) AS calls,"
                " count(*) FILTER (WHERE answered_at IS NOT NULL) AS answered,"
                " count(*) FILTER (WHERE direction = 'inbound') AS inbound,"
                " count(*) FILTER (WHERE direction = 'outbound') AS outbound,"
                " coalesce(sum(talk_seconds), 0) AS talk_seconds,"
                " avg(talk_seconds) FILTER (WHERE answered_at IS NOT NULL) AS average_talk,"
                " avg(extract(epoch FROM least(disposed_at - ended_at, interval '1 hour')))"
                "   FILTER (WHERE answered_at IS NOT NULL AND disposed_at >= ended_at)"
                "   AS average_wrap"
                " FROM calls WHERE started_at >= $1 AND started_at < $2 AND agent IS NOT NULL"
                " GROUP BY agent ORDER BY agent",
                since,
                until,
            )
            dispositions = await conn.fetch(
                "SELECT agent, disposition, count(*) AS n FROM calls"
                " WHERE started_at >= $1 AND started_at < $2 AND agent IS NOT NULL"
                " AND disposition IS NOT NULL GROUP BY agent, disposition",
                since,
                until,
            )
        by_agent: dict[str, dict[str, int]] = {}
        for row in dispositions:
            by_agent.setdefault(row["agent"], {})[row["disposition"]] = row["n"]
        report = []
        for row in rows:
            talk = float(row["average_talk"] or 0.0)
            wrap = float(row["average_wrap"] or 0.0)
            report.append(
                {
                    "agent": row["agent"],
                    "calls": row["calls"],
                    "answered": row["answered"],
                    "inbound": row["inbound"],
                    "outbound": row["outbound"],
                    "talk_seconds": round(float(row["talk_seconds"]), 1),
                    "average_talk_seconds": round(talk, 1),
                    "average_wrap_seconds": round(wrap, 1),
                    "average_handle_seconds": round(talk + wrap, 1) if row["answered"] else 0.0,
                    "dispositions": dict(sorted(by_agent.get(row["agent"], {}).items())),
                }
            )
        return report

    # -- contacts ------------------------------------------------------------------------------

    async def upsert_contact(
        self, phone: str, *, name: str | None = None, responsible: str | None = None
    ) -> Contact:
        """The contact with this number, created if unknown; `name`/`responsible` when given
        replace the stored ones. PhoneNumberError (400) for junk."""
        e164 = self.normalize(phone)
        async with self._pool.acquire() as conn:
            if name is None and responsible is None:
                return _contact(await self._contact_row(conn, e164))
            row = await conn.fetchrow(
                "INSERT INTO contacts (phone, name, responsible) VALUES ($1, $2, $3)"
                " ON CONFLICT (phone) DO UPDATE SET"
                " name = COALESCE(EXCLUDED.name, contacts.name),"
                " responsible = COALESCE(EXCLUDED.responsible, contacts.responsible),"
                " updated_at = now() RETURNING *",
                e164,
                name,
                responsible,
            )
            return _contact(row)

    async def get_contact(self, phone: str) -> Contact | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM contacts WHERE phone = $1", self.normalize(phone)
        )
        return None if row is None else _contact(row)

    async def contact_card(
        self, phone: str, *, calls: int = 5, leave_out: int | None = None
    ) -> tuple[Contact | None, list[Call], list[Task]]:
        """What a screen pop shows about a number: its contact (None: never seen, and not
        created by asking), its latest `calls` calls newest first (`leave_out`, the call
        ringing now, not among them) and its open tasks. Three indexed reads on one connection.
        PhoneNumberError (400) for junk."""
        e164 = self.normalize(phone)
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM contacts WHERE phone = $1", e164)
            if row is None:
                return None, [], []
            contact = _contact(row)
            call_rows = await conn.fetch(
                _CALLS + " WHERE c.contact_id = $1 AND c.id IS DISTINCT FROM $2"
                " ORDER BY c.started_at DESC, c.id DESC LIMIT $3",
                contact.id,
                leave_out,
                calls,
            )
            task_rows = await conn.fetch(
                _TASKS + " WHERE t.contact_id = $1 AND t.status = 'open' ORDER BY t.due_at, t.id",
                contact.id,
            )
        return contact, [_call(r) for r in call_rows], [_task(r) for r in task_rows]

    async def contacts_without_open_task(self) -> list[Contact]:
        """Contacts waiting for us (latest inbound call missed, nothing answered since) with no
        open task: the rule says this list is empty."""
        rows = await self._pool.fetch("SELECT * FROM contacts_without_open_task ORDER BY id")
        return [_contact(row) for row in rows]

    async def _contact_row(self, conn: Any, phone: str) -> Any:
        e164 = self.normalize(phone)
        row = await conn.fetchrow(
            "INSERT INTO contacts (phone) VALUES ($1) ON CONFLICT (phone) DO NOTHING RETURNING *",
            e164,
        )
        if row is None:
            # A separate statement: its snapshot sees a row a concurrent node just committed.
            row = await conn.fetchrow("SELECT * FROM contacts WHERE phone = $1", e164)
        return row

    # -- tasks ---------------------------------------------------------------------------------

    async def open_callback_task(
        self,
        contact_phone: str,
        *,
        assignee: str | None,
        due_at: datetime,
        call_row_id: int | None,
        text: str = "",
    ) -> Task:
        """Open a callback task for the contact (created on first contact), or, if one is open
        already, update it: missed_calls + 1, the earlier of the two due times, the new text.
        `assignee` None means the contact's responsible manager. Emits task.created or
        task.updated."""
        async with self._pool.acquire() as conn, conn.transaction():
            contact = await self._contact_row(conn, contact_phone)
            return await self._callback_task(
                conn, contact["id"], assignee, due_at, call_row_id, text
            )

    async def _callback_task(
        self,
        conn: Any,
        contact_id: int,
        assignee: str | None,
        due_at: datetime,
        call_row_id: int | None,
        text: str,
        *,
        prefer_responsible: bool = False,
    ) -> Task:
        _require_tz(due_at, "due_at")
        row = await conn.fetchrow(
            _tasks_from(
                "INSERT INTO tasks AS cur (type, contact_id, assignee, due_at, text,"
                " created_from_call, last_call, missed_calls)"
                " SELECT 'callback', ct.id,"
                " CASE WHEN $6 THEN COALESCE(ct.responsible, $2)"
                " ELSE COALESCE($2, ct.responsible) END,"
                " $3, $4, $5, $5, 1"
                " FROM contacts ct WHERE ct.id = $1"
                " ON CONFLICT (contact_id) WHERE type = 'callback' AND status = 'open'"
                " DO UPDATE SET missed_calls = cur.missed_calls + 1,"
                " due_at = LEAST(cur.due_at, EXCLUDED.due_at),"
                " text = CASE WHEN EXCLUDED.text = '' THEN cur.text ELSE EXCLUDED.text END,"
                " assignee = COALESCE(cur.assignee, EXCLUDED.assignee),"
                " last_call = COALESCE(EXCLUDED.last_call, cur.last_call), updated_at = now()"
                # xmax is 0 on a freshly inserted row, set on one the conflict updated.
                " RETURNING cur.*, (cur.xmax = 0) AS inserted"
            ),
            contact_id,
            assignee,
            due_at,
            text,
            call_row_id,
            prefer_responsible,
        )
        task = _task(row)
        event = "task.created" if row["inserted"] else "task.updated"
        await self._emit(conn, task, event, task.updated_at)
        return task

    async def complete_task(self, task_id: int) -> Task:
        """Mark an open task done (task.done). NotFound / Conflict if missing or closed."""
        return await self._close_task(task_id, "done")

    async def cancel_task(self, task_id: int) -> Task:
        """Mark an open task cancelled (task.cancelled)."""
        return await self._close_task(task_id, "cancelled")

    async def _close_task(self, task_id: int, status: str) -> Task:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                _tasks_from(
                    "UPDATE tasks SET status = $2, closed_at = now(), updated_at = now()"
                    " WHERE id = $1 AND status = 'open' RETURNING *"
                ),
                task_id,
                status,
            )
            if row is None:
                current = await conn.fetchval("SELECT status FROM tasks WHERE id = $1", task_id)
                if current is None:
                    raise NotFound(f"no task {task_id}")
                raise Conflict(f"task {task_id} is {current} already")
            task = _task(row)
            await self._emit(conn, task, f"task.{status}", task.updated_at)
        return task

    async def get_task(self, task_id: int) -> Task | None:
        row = await self._pool.fetchrow(_TASKS + " WHERE t.id = $1", task_id)
        return None if row is None else _task(row)

    async def list_tasks(self, query: TaskFilter | None = None) -> list[Task]:
        """Tasks matching `query`, soonest due first."""
        q = query or TaskFilter()
        rows = await self._pool.fetch(
            _TASKS
            + " WHERE ($1::text IS NULL OR t.status = $1) AND ($2::text IS NULL OR t.assignee = $2)"
            " ORDER BY t.due_at, t.id LIMIT $3 OFFSET $4",
            q.status,
            q.assignee,
            q.limit,
            q.offset,
        )
        return [_task(row) for row in rows]

    # -- agents' plans -------------------------------------------------------------------------

    async def set_daily_plan(self, extension: str, daily_plan: int, *, now: datetime) -> None:
        """An agent's calls-a-working-day plan, as a manager set it (outlives restarts)."""
        if daily_plan < 0:
            raise InvalidInput("a daily plan is a whole number >= 0")
        await self._pool.execute(
            "INSERT INTO agent_plans (extension, daily_plan, updated_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (extension) DO UPDATE SET daily_plan = EXCLUDED.daily_plan,"
            " updated_at = EXCLUDED.updated_at",
            extension,
            daily_plan,
            now,
        )

    async def daily_plans(self) -> dict[str, int]:
        """Plans set over the API, by extension."""
        rows = await self._pool.fetch("SELECT extension, daily_plan FROM agent_plans")
        return {r["extension"]: r["daily_plan"] for r in rows}

    # -- outbox --------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _change(self, *, alone: bool) -> AsyncIterator[Any]:
        """Where a change is written: in one transaction when it is not `alone` (several
        statements, e.g. the call's end and its callback task); else on the pool, one
        statement being atomic by itself (two round trips fewer: no BEGIN, no COMMIT)."""
        if alone:
            yield self._pool
            return
        async with self._pool.acquire() as conn, conn.transaction():
            yield conn

    async def _emit(
        self,
        conn: Any,
        record: Call | Task,
        event_type: str,
        at: datetime,
        *,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """The event's outbox row and one delivery row per endpoint taking it; nothing when no
        endpoint takes it (it would never be sent)."""
        if not self._subscribers[event_type]:
            return
        kind = "call" if isinstance(record, Call) else "task"
        payload = record.to_json() if extra is None else {**record.to_json(), **extra}
        await conn.execute(
            "WITH e AS (INSERT INTO outbox (aggregate, event_type, payload, occurred_at)"
            " VALUES ($1, $2, $3::jsonb, $4) RETURNING id)"
            " INSERT INTO outbox_deliveries (event_id, endpoint, aggregate)"
            " SELECT e.id, name, $1 FROM e, unnest($5::text[]) AS name",
            f"{kind}/{record.id}",
            event_type,
            json.dumps(payload),
            at,
            self._subscribers[event_type],
        )

    async def outbox_status(self) -> dict[str, dict[str, Any]]:
        """Per endpoint: pending and dead deliveries, oldest pending event time (for
        /api/status and alerts)."""
        rows = await self._pool.fetch(
            "SELECT d.endpoint,"
            " count(*) FILTER (WHERE d.delivered_at IS NULL AND d.dead_at IS NULL) AS pending,"
            " count(*) FILTER (WHERE d.dead_at IS NOT NULL) AS dead,"
            " min(e.created_at) FILTER (WHERE d.delivered_at IS NULL AND d.dead_at IS NULL)"
            " AS oldest_pending"
            " FROM outbox_deliveries d JOIN outbox e ON e.id = d.event_id"
            " WHERE d.delivered_at IS NULL GROUP BY d.endpoint ORDER BY d.endpoint"
        )
        return {
            r["endpoint"]: {
                "pending": r["pending"],
                "dead": r["dead"],
                "oldest_pending": r["oldest_pending"],
            }
            for r in rows
        }

    async def dead_letters(
        self, *, endpoint: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Deliveries given up on (oldest first): the event, the endpoint, the last error."""
        rows = await self._pool.fetch(
            "SELECT d.event_id, d.endpoint, d.attempts, d.dead_at, d.last_error,"
            " e.event_type, e.aggregate, e.occurred_at, e.idempotency_key"
            " FROM outbox_deliveries d JOIN outbox e ON e.id = d.event_id"
            " WHERE d.dead_at IS NOT NULL AND ($1::text IS NULL OR d.endpoint = $1)"
            " ORDER BY d.dead_at, d.event_id LIMIT $2 OFFSET $3",
            endpoint,
            limit,
            offset,
        )
        return [dict(r) for r in rows]

    async def requeue_dead_letters(
        self,
        *,
        now: datetime,
        endpoint: str | None = None,
        event_ids: Sequence[int] | None = None,
    ) -> int:
        """Deliver dead letters again (after the CRM or its config was fixed): due now, attempts
        from zero; the workers are woken. An event older than the retry policy's max age gets
        one more try before it is dead again. Returns how many were requeued."""
        _require_tz(now, "now")
        async with self._pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                "UPDATE outbox_deliveries SET dead_at = NULL, attempts = 0, next_attempt_at = $1,"
                " last_error = NULL WHERE dead_at IS NOT NULL"
                " AND ($2::text IS NULL OR endpoint = $2)"
                " AND ($3::bigint[] IS NULL OR event_id = ANY ($3::bigint[]))",
                now,
                endpoint,
                list(event_ids) if event_ids is not None else None,
            )
            requeued = int(status.split()[-1])
            if requeued:
                await conn.execute("SELECT pg_notify('crm_outbox', '')")
        logger.info("outbox: %d dead letter(s) requeued", requeued)
        return requeued

    async def purge_outbox(
        self, before: datetime, *, dead_before: datetime | None = None, batch: int = 5000
    ) -> int:
        """Delete events written before `before` whose deliveries are all delivered (and, with
        `dead_before`, dead-lettered ones written before it; without it dead letters stay for
        an operator to replay); returns how many. Run it now and then: the outbox only grows
        otherwise.

        An event whose delivery holds the newest remote ids of its chain (the amoCRM task or
        Bitrix24 activity later events of the same task or call update) stays whatever its age:
        its ids are what a task closed next month is sent against. Deleted in batches of
        `batch`, so no statement holds the table long."""
        _require_tz(before, "before")
        dead = dead_before if dead_before is not None else datetime.min.replace(tzinfo=UTC)
        deleted = 0
        while True:
            status = await self._pool.execute(_PURGE_OUTBOX, before, dead, batch)
            count = int(status.split()[-1])
            deleted += count
            if count < batch:
                return deleted


_PURGE_OUTBOX = (
    "DELETE FROM outbox WHERE id IN (SELECT e.id FROM outbox e WHERE e.created_at < $1"
    " AND NOT EXISTS (SELECT 1 FROM outbox_deliveries d WHERE d.event_id = e.id AND ("
    # still to send, or a dead letter kept
    "  (d.delivered_at IS NULL AND (d.dead_at IS NULL OR e.created_at >= $2))"
    # the newest remote ids of its (endpoint, aggregate) chain
    "  OR (d.remote_ref IS NOT NULL AND NOT EXISTS (SELECT 1 FROM outbox_deliveries n"
    "   WHERE n.endpoint = d.endpoint AND n.aggregate = d.aggregate"
    "   AND n.event_id > d.event_id AND n.remote_ref IS NOT NULL))))"
    " ORDER BY e.id LIMIT $3)"
)

DISPOSITIONS = ("sale", "callback", "not-interested", "wrong-number", "dnc", "answering-machine")
"""answering-machine: the agent heard a machine (AMD called it a person); every other
disposition says a person was there. Campaign AMD quality compares the two."""


def _require_tz(value: datetime, name: str) -> None:
    if value.tzinfo is None:
        raise InvalidInput(f"{name} must be timezone-aware")


def _check_started(call: CallStarted) -> None:
    if call.direction not in DIRECTIONS:
        raise InvalidInput(f"unknown direction {call.direction!r}")
    _require_tz(call.started_at, "started_at")


def _check_ended(ended: CallEnded) -> None:
    if ended.outcome not in OUTCOMES:
        raise InvalidInput(f"unknown outcome {ended.outcome!r}; one of {', '.join(OUTCOMES)}")
    _require_tz(ended.ended_at, "ended_at")
    if ended.answered_at is not None:
        _require_tz(ended.answered_at, "answered_at")
