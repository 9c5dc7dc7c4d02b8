"""Click-to-call as the API asks for it: the lead's and campaign's caller ID and trunk, the
compliance checks of the caller's policy (DNC lists, calling hours), then `pbx.ClickToCall`
rings the agent and dials the customer. Also the switchboard's check of numbers agents dial by
hand (`manual_dial_refusal`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import TYPE_CHECKING, Any

from crm_bridge import CrmError, normalize_phone
from dialer import CallingHours, DialerError, timezone_for_number
from dialer.compliance import zones
from pbx import ClickToCallError, dialable

if TYPE_CHECKING:
    from .engine import Engine

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlacedCall:
    call_id: str
    """The call's key in the switchboard and the calls row: the SIP Call-ID of the leg to the
    agent's first phone (every phone of the agent rings; any may answer)."""
    row_id: int | None
    """The calls row (None without a database)."""
    agent: str
    number: str
    warnings: tuple[str, ...] = ()
    """Compliance reasons the caller's policy let through ("warn")."""


async def click_to_call(
    engine: Engine,
    *,
    agent: str,
    number: str,
    lead_id: int | None = None,
    campaign_id: int | None = None,
    agent_ring_seconds: float | None = None,
    policy: str = "off",
) -> PlacedCall:
    """Ring `agent`'s phone now; the rest runs beside the engine. ClickToCallError (with the
    HTTP status) as `pbx.ClickToCall.place` says, or for a lead or campaign that does not
    exist. `policy` ("block", "warn", "off": the caller's role's) decides what a number on a
    DNC list or outside its calling hours does: refused with 403, placed with the reasons in
    `warnings`, or nothing."""
    if agent not in engine.switchboard.extensions:
        raise ClickToCallError(f"no extension {agent}", 404)
    number = dialable(number)
    caller_id, trunk = None, ""
    lead: Any = None
    campaign: Any = None
    if (campaign_id is not None or lead_id is not None) and engine.leads is None:
        raise ClickToCallError("campaigns and leads need the database", 503)
    try:
        if lead_id is not None and engine.leads is not None:
            # A lead belongs to one campaign: its caller ID and trunk are the call's.
            lead = await engine.leads.get_lead(lead_id)
            if campaign_id is not None and campaign_id != lead.campaign_id:
                raise ClickToCallError(f"lead {lead_id} is not in campaign {campaign_id}")
            campaign_id = lead.campaign_id
        if campaign_id is not None and engine.leads is not None:
            campaign = await engine.leads.get_campaign(campaign_id)
            caller_id, trunk = campaign.caller_id or None, campaign.trunk
    except DialerError as exc:
        raise ClickToCallError(exc.reason, exc.status) from exc
    warnings: tuple[str, ...] = ()
    if policy != "off":
        warnings = tuple(await compliance_reasons(engine, number, campaign, lead))
        if warnings and policy == "block":
            raise ClickToCallError("; ".join(warnings), 403)
    ring = {} if agent_ring_seconds is None else {"agent_ring_seconds": agent_ring_seconds}
    key = await engine.click_to_call.place(
        agent,
        number,
        caller_id=caller_id,
        trunk=trunk,
        campaign_id=campaign_id,
        lead_id=lead_id,
        **ring,
    )
    row = await engine.journal.find_row(key) if engine.journal is not None else None
    if warnings:
        logger.warning("click-to-call %s to %s placed despite: %s", key, number,
                       "; ".join(warnings))  # fmt: skip
    return PlacedCall(key, row, agent, number, warnings)


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
    if engine.leads is not None:
        try:
            barred = await engine.leads.dnc_contains(e164, campaign_id=campaign_id)
        except (DialerError, OSError) as exc:
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
