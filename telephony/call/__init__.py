"""Call-level vocabulary shared by the asyncio Call facade and the features above it."""

from __future__ import annotations

from .events import Answered, CallEvent, Dtmf, Ended, HoldChanged, Ringing
from .session_timer import SessionTimerConfig

__all__ = [
    "Answered",
    "CallEvent",
    "Dtmf",
    "Ended",
    "HoldChanged",
    "Ringing",
    "SessionTimerConfig",
]
