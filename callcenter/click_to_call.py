"""Click-to-call: the engine rings the agent's phone first (showing the customer's number), and
once the agent picks up, dials the customer through the trunk and bridges the two.

The call is one calls row (outbound, the agent, the customer's number, campaign and lead when
given), opened when the agent's phone starts ringing and closed by the switchboard at the end;
it is recorded and reaches the CRMs like any other call.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import TYPE_CHECKING, Any

from crm_bridge import CrmError, normalize_phone
from dialer import CallingHours, timezone_for_number
from dialer.compliance import zones
from pbx import CallSummary, Switchboard
from telephony.aio import Call
from telephony.call import Answered, Ended
from telephony.sip import SipUri

if TYPE_CHECKING:
    from .engine import Engine

logger = logging.getLogger(__name__)

# What a dialable customer number looks like once spaces, dashes and brackets are gone.
_NUMBER = re.compile(r"^\+?[0-9]{7,15}$")
_SEPARATORS = re.compile(r"[\s\-().]")
AGENT_RING_SECONDS = 30.0
"""How long the agent's phone rings before the click-to-call gives up."""


class ClickToCallError(Exception):
    """A click-to-call that cannot start; `status` is the HTTP answer."""

    status = 400

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        if status is not None:
            self.status = status


@dataclass(frozen=True)
class PlacedCall:
    call_id: str
    """SIP Call-ID of the agent's leg: the call's key in the switchboard and the calls row."""
    row_id: int | None
    """The calls row (None without a database)."""
    agent: str
    number: str
    warnings: tuple[str, ...] = ()
    """Compliance reasons the caller's policy let through ("warn")."""


def dialable(number: str) -> str:
    """The number without separators; ClickToCallError (400) when it is not a phone number."""
    cleaned = _SEPARATORS.sub("", number)
    if not _NUMBER.match(cleaned):
        raise ClickToCallError(f"{number!r} is not a phone number (7-15 digits, optional +)")
    return cleaned


async def click_to_call(
    engine: Engine,
    *,
    agent: str,
    number: str,
    lead_id: int | None = None,
    campaign_id: int | None = None,
    agent_ring_seconds: float = AGENT_RING_SECONDS,
    policy: str = "off",
) -> PlacedCall:
    """Ring `agent`'s phone now; the rest runs beside the engine. ClickToCallError (with the
    HTTP status) when the agent is unknown, busy or not registered, the number is bad or no
    trunk reaches it. `policy` ("block", "warn", "off": the caller's role's) decides what a
    number on a DNC list or outside its calling hours does: refused with 403, placed with the
    reasons in `warnings`, or nothing."""
    switchboard = engine.switchboard
    if agent not in switchboard.extensions:
        raise ClickToCallError(f"no extension {agent}", 404)
    number = dialable(number)
    caller_id, trunk = None, ""
    lead: Any = None
    campaign: Any = None
    if (campaign_id is not None or lead_id is not None) and engine.campaigns is None:
        raise ClickToCallError("campaigns and leads need the database", 503)
    try:
        if lead_id is not None and engine.campaigns is not None:
            # A lead belongs to one campaign: its caller ID and trunk are the call's.
            lead = await engine.campaigns.store.get_lead(lead_id)
            if campaign_id is not None and campaign_id != lead.campaign_id:
                raise ClickToCallError(f"lead {lead_id} is not in campaign {campaign_id}")
            campaign_id = lead.campaign_id
        if campaign_id is not None and engine.campaigns is not None:
            campaign = await engine.campaigns.store.get_campaign(campaign_id)
            caller_id, trunk = campaign.caller_id or None, campaign.trunk
    except CrmError as exc:
        raise ClickToCallError(exc.reason, exc.status) from exc
    warnings: tuple[str, ...] = ()
    if policy != "off":
        warnings = tuple(await compliance_reasons(engine, number, campaign, lead))
        if warnings and policy == "block":
            raise ClickToCallError("; ".join(warnings), 403)
    if not switchboard.can_reach(number, trunk):
        raise ClickToCallError(f"no trunk{' ' + trunk if trunk else ''} can reach {number}", 409)
    now = engine.ua.loop.time()
    bindings = switchboard.registrar.lookup(agent, now=now)
    contact = bindings[0].contact.uri if bindings else None
    if not bindings or not isinstance(contact, SipUri):
        raise ClickToCallError(f"{agent}'s phone is not registered", 409)
    if switchboard.busy(agent):
        raise ClickToCallError(f"{agent} is on a call", 409)
    # Busy for the dialer and other callers from now on, not only once the customer is dialled.
    release = switchboard.hold(agent)
    try:
        # The agent's phone shows the customer's number: they know whom they are about to call.
        leg = await engine.ua.dial(
            contact,
            bindings[0].peer,
            from_=switchboard.identity(number, number),
            to=switchboard.identity(agent, None),
        )
    except BaseException:
        release()
        raise
    summary = CallSummary(
        leg.call_id,
        agent,
        number,
        datetime.now(UTC),
        direction="outbound",
        customer=number,
        campaign_id=campaign_id,
        lead_id=lead_id,
    )
    summary.legs.append(leg.call_id)
    switchboard.announce(summary)
    engine.spawn(
        _connect(switchboard, leg, summary, caller_id, trunk, release,
                 agent_ring_seconds=agent_ring_seconds)
    )  # fmt: skip
    row = None
    if engine.journal is not None:
        try:
            row = await engine.journal.row_id(leg.call_id)
        except Exception as exc:  # the journal logged it; the call goes on
            logger.info("click-to-call %s: no calls row: %s", leg.call_id, exc)
    logger.info("click-to-call %s: ringing %s for %s", leg.call_id, agent, number)
    if warnings:
        logger.warning("click-to-call %s to %s placed despite: %s", leg.call_id, number,
                       "; ".join(warnings))  # fmt: skip
    return PlacedCall(leg.call_id, row, agent, number, warnings)


async def manual_dial_refusal(engine: Engine, extension: str, number: str) -> str | None:
    """The switchboard's outbound check for a number an agent dials on the phone: DNC list and
    calling hours per `[crm] manual_policy` of the account's role. "block" refuses (the phone
    gets 403); "warn" logs and lets the call through (a phone has nowhere to show a warning)."""
    role = next((a.role for a in engine.config.accounts if a.extension == extension), "agent")
    policy = engine.config.crm.manual_policy.get(role, "warn")
    if policy == "off":
        return None
    try:
        reasons = await compliance_reasons(engine, number)
    except ClickToCallError as exc:
        reasons = [str(exc)]  # cannot check: only "block" refuses for it
    if not reasons:
        return None
    if policy == "block":
        return "; ".join(reasons)
    logger.warning("%s dials %s despite: %s", extension, number, "; ".join(reasons))
    return None


async def compliance_reasons(
    engine: Engine, number: str, campaign: Any = None, lead: Any = None
) -> list[str]:
    """Why `number` should not be dialled by hand now: on a DNC list (global, or the
    campaign's), outside the calling hours in the number's local time (the campaign's window
    and the lead's zone for a campaign's call; `[crm] manual_hours` in the zone the number
    gives otherwise, the narrowest window when it spans several)."""
    settings = engine.config.crm
    try:
        e164 = normalize_phone(number, settings.default_country_code)
    except CrmError:
        return []  # not a number we can check; dialable() already vetted its shape
    reasons = []
    campaign_id = None if campaign is None else campaign.id
    if engine.campaigns is not None:
        try:
            barred = await engine.campaigns.store.dnc_contains(e164, campaign_id=campaign_id)
        except (CrmError, OSError) as exc:
            raise ClickToCallError(f"cannot check the do-not-call list: {exc}", 503) from exc
        if barred:
            reasons.append(f"{e164} is on the do-not-call list")
    if campaign is not None:
        hours = CallingHours(
            campaign.window_start, campaign.window_end, frozenset(campaign.window_days)
        )
        tz = (lead.tz if lead is not None else None) or timezone_for_number(e164)
        tz = tz or campaign.tz_default
    else:
        start, end = (time.fromisoformat(t) for t in settings.manual_hours)
        hours = CallingHours(start, end)
        tz = timezone_for_number(e164) or settings.manual_tz
    now = datetime.now(UTC)
    if not hours.allowed(now, tz):
        local = ", ".join(f"{now.astimezone(z):%H:%M} {z.key}" for z in zones(tz))
        reasons.append(f"outside calling hours {hours.start:%H:%M}-{hours.end:%H:%M} (now {local})")
    return reasons


async def _connect(
    switchboard: Switchboard,
    leg: Call,
    summary: CallSummary,
    caller_id: str | None,
    trunk: str,
    release: Callable[[], None],
    *,
    agent_ring_seconds: float,
) -> None:
    """Wait for the agent to pick up, then dial the customer and bridge (from then on the
    bridged call keeps the agent busy: the hold is released)."""
    try:
        await _ring_agent_then_customer(
            switchboard, leg, summary, caller_id, trunk, agent_ring_seconds=agent_ring_seconds
        )
    finally:
        release()


async def _ring_agent_then_customer(
    switchboard: Switchboard,
    leg: Call,
    summary: CallSummary,
    caller_id: str | None,
    trunk: str,
    *,
    agent_ring_seconds: float,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + agent_ring_seconds
    try:
        while True:
            event = await leg.next_event(max(0.0, deadline - loop.time()))
            if isinstance(event, Answered):
                break
            if isinstance(event, Ended):
                summary.outcome, summary.sip_status = "no-answer", event.sip_status
                summary.hangup_cause = f"agent-{event.reason}"
                switchboard.conclude(summary)
                return
    except TimeoutError:
        await leg.hangup(reason="timeout")
        summary.outcome, summary.sip_status, summary.hangup_cause = (
            "no-answer",
            480,
            "agent-timeout",
        )
        switchboard.conclude(summary)
        return
    except asyncio.CancelledError:
        await leg.hangup(reason="shutdown")
        raise
    try:
        switchboard.dial_out(leg, summary.callee, summary=summary, caller_id=caller_id, trunk=trunk)
    except LookupError as exc:  # the trunk went away while the agent's phone rang
        logger.warning("click-to-call %s: %s", leg.call_id, exc)
        await leg.hangup(reason="failed")
        summary.outcome, summary.hangup_cause = "failed", "no-trunk"
        switchboard.conclude(summary)
