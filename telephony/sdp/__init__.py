"""Sans-IO SDP: the session description model (RFC 4566) and offer/answer (RFC 3264).

Knows nothing of SIP; imports only the standard library.
"""

from __future__ import annotations

from .errors import NoCommonCodec, SdpError, SdpParseError
from .model import (
    STATIC_PAYLOAD_TYPES,
    Attribute,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    RtpMap,
    SessionDescription,
    Timing,
)
from .offer_answer import (
    DEFAULT_DTMF_EVENTS,
    DEFAULT_DTMF_PAYLOAD_TYPE,
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    Answer,
    Codec,
    CodecSpec,
    NegotiatedMedia,
    accept_answer,
    answer_direction,
    create_offer,
    is_hold,
    negotiate,
    plain_rtp,
    with_direction,
)

__all__ = [
    "DEFAULT_DTMF_EVENTS",
    "DEFAULT_DTMF_PAYLOAD_TYPE",
    "PCMA",
    "PCMU",
    "STATIC_PAYLOAD_TYPES",
    "TELEPHONE_EVENT",
    "Answer",
    "Attribute",
    "Codec",
    "CodecSpec",
    "Connection",
    "Direction",
    "MediaDescription",
    "NegotiatedMedia",
    "NoCommonCodec",
    "Origin",
    "RtpMap",
    "SdpError",
    "SdpParseError",
    "SessionDescription",
    "Timing",
    "accept_answer",
    "answer_direction",
    "create_offer",
    "is_hold",
    "negotiate",
    "plain_rtp",
    "with_direction",
]
