"""Errors of the RTP layer: one root, :class:`RtpError`, for packets that cannot be parsed."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

__all__ = ["RtcpError", "RtpError"]


class RtpError(ValueError):
    """Root of every error raised by telephony.rtp: a malformed packet or bad argument.

    Media errors have no wire status; the packet is dropped and counted by the caller.
    """


class RtcpError(RtpError):
    """A malformed RTCP (compound) packet."""
