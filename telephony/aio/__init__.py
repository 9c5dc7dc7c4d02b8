"""The asyncio shell of the core: SIP transports, RTP ports, the Call facade."""

from __future__ import annotations

from .call import Call, LegState, UserAgent, UserAgentConfig, bridge, dtmf_route
from .clock import MediaClock
from .conference import Conference
from .endpoint import EndpointConfig, Peer, SipEndpoint
from .media_session import MediaBridge, MediaError, MediaSession
from .playout import Playout
from .rtp import RtpEndpoint, RtpPortPool
from .tasks import TaskSet, current_call

__all__ = [
    "Call",
    "Conference",
    "EndpointConfig",
    "LegState",
    "MediaBridge",
    "MediaClock",
    "MediaError",
    "MediaSession",
    "Peer",
    "Playout",
    "RtpEndpoint",
    "RtpPortPool",
    "SipEndpoint",
    "TaskSet",
    "UserAgent",
    "UserAgentConfig",
    "bridge",
    "current_call",
    "dtmf_route",
]
