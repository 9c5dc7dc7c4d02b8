"""The screen pop of every call: who is calling (the contact and its responsible manager), the
lead of a dialer call, the last calls with their recordings and the open tasks, built from the
calls row the journal opened; and `RingingPops`, which pushes it to each agent the moment their
phone rings for the call (before the answer), whatever routed it there: a DID, a queue, a ring
group, a transfer, the broadcast's press-1.

The dialer's own pop (`dialing.ScreenPops`, with the campaign and attempt) still comes when the
dialer connects an agent; the page asks `GET /calls/{id}/pop` for the rest then.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from crm_bridge import Call
from crm_bridge.links import link_signature
from dialer import DialerError
from pbx import events as pbx_events

if TYPE_CHECKING:
    from .engine import Engine
    from .journal import CallJournal

logger = logging.getLogger(__name__)

LAST_CALLS = 5
PLAYER_LINK_SECONDS = 3600
"""A pop's recording links play for an hour (the page asks for a new pop after that)."""


class Spawn(Protocol):
    def __call__(self, coro: Coroutine[Any, Any, None], /) -> Any: ...


def customer_phone(call: Call) -> str | None:
    """The customer's number of a calls row (None between agents)."""
    if call.contact_phone:
        return call.contact_phone
    if call.direction == "inbound":
        return call.from_number
    if call.direction == "outbound":
        return call.to_number
    return None


def recording_link(engine: Engine, call: Call, *, now: float) -> str | None:
    """A signed link that plays the call's recording without a key (relative to the engine's
    HTTP listener), when the call has one and `[crm] link_secret` is set."""
    secret = engine.config.crm.link_secret
    if not call.recording_path or not secret:
        return None
    expires = int(now + PLAYER_LINK_SECONDS)
    signature = link_signature(secret, call.id, "wav", expires)
    return f"/recordings/{call.id}.wav?expires={expires}&signature={signature}"


async def build_pop(engine: Engine, call: Call) -> dict[str, Any]:
    """The pop of the calls row `call` (one contact read, two indexed lists, and the lead for a
    dialer call)."""
    now = time.time()
    phone = customer_phone(call)
    pop: dict[str, Any] = {
        "call": call.id,
        "call_id": call.call_id,
        "direction": call.direction,
        "number": phone or call.from_number,
        "did": call.did,
        "ring_group": call.ring_group,
        "contact": None,
        "responsible": None,
        "lead": None,
        "campaign": call.campaign_id,
        "last_calls": [],
        "tasks": [],
    }
    store = engine.store
    if store is not None and phone:
        try:
            contact, calls, tasks = await store.contact_card(
                phone, calls=LAST_CALLS, leave_out=call.id
            )
        except ValueError:  # not a phone number (PhoneNumberError): nothing to look up
            contact, calls, tasks = None, [], []
        if contact is not None:
            pop["contact"] = {"id": contact.id, "phone": contact.phone, "name": contact.name}
            pop["responsible"] = _person(engine, contact.responsible)
        pop["last_calls"] = [_last_call(engine, c, now=now) for c in calls]
        pop["tasks"] = [t.to_json() for t in tasks]
    if call.lead_id is not None and engine.leads is not None:
        try:
            lead = await engine.leads.get_lead(call.lead_id)
        except DialerError:
            lead = None
        if lead is not None:
            pop["lead"] = {
                "id": lead.id,
                "name": lead.name,
                "phone": lead.phone,
                "data": dict(lead.data),
                "responsible": lead.responsible,
            }
            if pop["responsible"] is None:
                pop["responsible"] = _person(engine, lead.responsible)
    return pop


def _person(engine: Engine, extension: str | None) -> dict[str, Any] | None:
    if not extension:
        return None
    account = engine.switchboard.extensions.get(extension)
    name = account.display_name if account is not None else None
    return {"extension": extension, "name": name}


def _last_call(engine: Engine, call: Call, *, now: float) -> dict[str, Any]:
    return {
        "id": call.id,
        "started_at": call.started_at.isoformat(),
        "direction": call.direction,
        "agent": call.agent,
        "outcome": call.outcome,
        "talk_seconds": call.talk_seconds,
        "disposition": call.disposition,
        "note": call.disposition_note,
        "recording": recording_link(engine, call, now=now),
    }


class RingingPops:
    """Sends `screen-pop` to each agent's stream when their phone starts ringing for a call
    (CallRinging), and to the new agent of a transfer (CallTransferred): once per agent and
    call. Also `call` events ({state: talking | ended, call_id, call, outcome}) to the agents
    on the call, so the page follows it without polling."""

    def __init__(
        self,
        engine: Engine,
        events: pbx_events.EventBus,
        *,
        journal: CallJournal,
        spawn: Spawn,
    ) -> None:
        self.engine = engine
        self.journal = journal
        self.spawn = spawn
        self._popped: dict[str, set[str]] = {}
        self._rows: dict[str, int] = {}
        """Calls rows by Call-ID, kept to the end (the journal lets go of them then)."""
        events.subscribe(pbx_events.CallRinging, self._ringing)
        events.subscribe(pbx_events.CallTransferred, self._transferred)
        events.subscribe(pbx_events.CallAnswered, self._answered)
        events.subscribe(pbx_events.CallEnded, self._ended)

    def _answered(self, event: pbx_events.CallAnswered) -> None:
        agents = [p for p in event.bridged.parties if p in self.engine.switchboard.extensions]
        self.spawn(self._call_event(event.summary.call_id, agents, {"state": "talking"}))

    def _ended(self, event: pbx_events.CallEnded) -> None:
        summary = event.summary
        agents = self._popped.pop(summary.call_id, set())
        agents |= {a for a in (*summary.agents, summary.caller, summary.callee)
                   if a in self.engine.switchboard.extensions}  # fmt: skip
        state = {"state": "ended", "outcome": summary.outcome}
        self.spawn(self._call_event(summary.call_id, sorted(agents), state))

    async def _row(self, call_id: str) -> int | None:
        row = self._rows.get(call_id)
        if row is None:
            row = await self.journal.find_row(call_id)
            if row is not None:
                self._rows[call_id] = row
        return row

    async def _call_event(self, call_id: str, agents: list[str], state: dict[str, Any]) -> None:
        if state["state"] == "ended":
            row = self._rows.pop(call_id, None) or await self.journal.find_row(call_id)
        else:
            row = await self._row(call_id)
        for agent in agents:
            self.engine.events.publish(agent, "call", {"call_id": call_id, "call": row, **state})

    def _ringing(self, event: pbx_events.CallRinging) -> None:
        self._pop(event.summary.call_id, event.agents)

    def _transferred(self, event: pbx_events.CallTransferred) -> None:
        self._pop(event.summary.call_id, frozenset({event.new_agent}))

    def _pop(self, call_id: str, agents: frozenset[str]) -> None:
        done = self._popped.setdefault(call_id, set())
        fresh = {a for a in agents if a not in done and a in self.engine.switchboard.extensions}
        done |= fresh
        # Built from the database only for agents whose page listens (none: no queries).
        watching = sorted(a for a in fresh if self.engine.events.watched(a))
        if watching:
            self.spawn(self._send(call_id, watching))

    async def _send(self, call_id: str, agents: list[str]) -> None:
        row = await self._row(call_id)
        if row is not None:
            await send_pop(self.engine, row, agents, ringing=True)


async def pop_of_row(engine: Engine, row: int) -> dict[str, Any]:
    """The pop of calls row `row` ({} when the row is gone or there is no database)."""
    call = await engine.store.get_call(row) if engine.store is not None else None
    return {} if call is None else await build_pop(engine, call)


async def _dialer_pops(engine: Engine, call: Call) -> bool:
    """A power or predictive campaign's call: the dialer pops it itself when it connects the
    agent (dialing.ScreenPops, with the attempt). A broadcast's press-1 rings like any call."""
    if call.campaign_id is None or engine.leads is None:
        return False
    try:
        campaign = await engine.leads.get_campaign(call.campaign_id)
    except DialerError:
        return False
    return campaign.mode != "broadcast"


async def send_pop(engine: Engine, row: int, agents: list[str], *, ringing: bool = False) -> None:
    """Build the pop of calls row `row` and push it to the agents' streams as `screen-pop`
    (`ringing`: unless the dialer pops this call itself)."""
    if engine.store is None:
        return
    try:
        call = await engine.store.get_call(row)
        if call is None or (ringing and await _dialer_pops(engine, call)):
            return
        pop = await build_pop(engine, call)
    except Exception:  # the phone rings all the same; the page can ask GET /calls/{id}/pop
        logger.exception("calls row %s: screen pop not built", row)
        return
    for agent in agents:
        engine.events.publish(agent, "screen-pop", {**pop, "agent": agent})
