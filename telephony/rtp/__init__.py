"""Sans-IO RTP: packets, RTCP, RFC 4733 telephone-events, source statistics, stream rewriting.

Imports only the standard library; the per-packet paths use struct and no numpy. SRTP
(`telephony.rtp.srtp`, libsrtp through pylibsrtp) is imported on its own.
"""

from __future__ import annotations

from .dtmf import (
    DTMF_DIGITS,
    DtmfReceiver,
    DtmfSender,
    TelephoneEvent,
    digit_to_event,
    event_to_digit,
)
from .errors import RtcpError, RtpError
from .packet import RTP_HEADER_SIZE, RtpPacket, is_rtcp
from .rewriter import StreamRewriter
from .rtcp import (
    RTCP_APP,
    RTCP_BYE,
    RTCP_RR,
    RTCP_SDES,
    RTCP_SR,
    SDES_CNAME,
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    RtcpUnknown,
    SdesChunk,
    SenderReport,
    SourceDescription,
    dlsr_from_seconds,
    ntp_from_unix,
    ntp_middle,
    parse_rtcp,
    serialize_rtcp,
)
from .source import MAX_DROPOUT, MAX_MISORDER, MIN_SEQUENTIAL, RtpSource

__all__ = [
    "DTMF_DIGITS",
    "MAX_DROPOUT",
    "MAX_MISORDER",
    "MIN_SEQUENTIAL",
    "RTCP_APP",
    "RTCP_BYE",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_SR",
    "RTP_HEADER_SIZE",
    "SDES_CNAME",
    "Bye",
    "DtmfReceiver",
    "DtmfSender",
    "ReceiverReport",
    "ReportBlock",
    "RtcpError",
    "RtcpPacket",
    "RtcpUnknown",
    "RtpError",
    "RtpPacket",
    "RtpSource",
    "SdesChunk",
    "SenderReport",
    "SourceDescription",
    "StreamRewriter",
    "TelephoneEvent",
    "digit_to_event",
    "dlsr_from_seconds",
    "event_to_digit",
    "is_rtcp",
    "ntp_from_unix",
    "ntp_middle",
    "parse_rtcp",
    "serialize_rtcp",
]
