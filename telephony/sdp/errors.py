"""Errors of the SDP layer.

One root (:class:`SdpError`); each error carries the SIP status code a UAS answers an
unacceptable offer with (``status_code``), so the call layer needs no mapping table.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

__all__ = ["NoCommonCodec", "SdpError", "SdpParseError"]


class SdpError(Exception):
    """Root of every error raised by telephony.sdp."""

    #: SIP status code to answer an INVITE/UPDATE whose body caused this error.
    status_code: int = 488


class SdpParseError(SdpError):
    """The session description is malformed (RFC 4566 grammar); answer 400 Bad Request."""

    status_code = 400


class NoCommonCodec(SdpError):
    """No offered audio stream uses a codec we support; answer 488 Not Acceptable Here."""

    status_code = 488
