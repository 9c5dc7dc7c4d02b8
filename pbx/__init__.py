"""PBX: registrar, authentication and bans, calls between extensions (B2BUA)."""

from __future__ import annotations

from .auth import AuthDecision, Authenticator
from .b2bua import BridgedCall, CallSummary
from .registrar import Binding, Registrar, RegistrationError
from .security import AuthFailureBan, BanPolicy, log_auth_failure
from .switchboard import Extension, Switchboard

__all__ = [
    "AuthDecision",
    "AuthFailureBan",
    "Authenticator",
    "BanPolicy",
    "Binding",
    "BridgedCall",
    "CallSummary",
    "Extension",
    "Registrar",
    "RegistrationError",
    "Switchboard",
    "log_auth_failure",
]
