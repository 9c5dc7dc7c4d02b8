"""PBX: registrar, authentication and bans, calls between extensions (B2BUA)."""

from __future__ import annotations

from .auth import AuthDecision, Authenticator
from .b2bua import BridgedCall, CallSummary, HuntStep, Target
from .booking import AgentBookings, LocalBookings
from .click_to_call import ClickToCall, ClickToCallError, dialable
from .hunt import STRATEGIES, HuntStrategy
from .monitor import (
    MonitorError,
    MonitorEvent,
    MonitorMode,
    MonitorSession,
    MonitorSettings,
    mode_matrix,
    parse_monitor,
)
from .pickup import Pickup, PickupGroup, PickupGroups, PickupRefusal, RingingCall, parse_pickup
from .presence import AgentState, Presence
from .registrar import Binding, Registrar, RegistrationError
from .routing import RING_STRATEGIES, Did, RingGroup, Trunk
from .security import AuthFailureBan, BanPolicy, log_auth_failure
from .switchboard import FEATURE_CODES, Extension, Routing, Switchboard

__all__ = [
    "FEATURE_CODES",
    "RING_STRATEGIES",
    "STRATEGIES",
    "AgentBookings",
    "AgentState",
    "AuthDecision",
    "AuthFailureBan",
    "Authenticator",
    "BanPolicy",
    "Binding",
    "BridgedCall",
    "CallSummary",
    "ClickToCall",
    "ClickToCallError",
    "Did",
    "Extension",
    "HuntStep",
    "HuntStrategy",
    "LocalBookings",
    "MonitorError",
    "MonitorEvent",
    "MonitorMode",
    "MonitorSession",
    "MonitorSettings",
    "Pickup",
    "PickupGroup",
    "PickupGroups",
    "PickupRefusal",
    "Presence",
    "Registrar",
    "RegistrationError",
    "RingGroup",
    "RingingCall",
    "Routing",
    "Switchboard",
    "Target",
    "Trunk",
    "dialable",
    "log_auth_failure",
    "mode_matrix",
    "parse_monitor",
    "parse_pickup",
]
