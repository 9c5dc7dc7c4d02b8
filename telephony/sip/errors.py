"""Errors of the SIP layer.

One root (:class:`SipError`); a peer's malformed or unacceptable message becomes a
:class:`RemoteProtocolError` carrying the status code to answer with (h11 style).
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

__all__ = [
    "LocalProtocolError",
    "ParseError",
    "RemoteProtocolError",
    "SipError",
    "VersionNotSupported",
]


class SipError(Exception):
    """Root of every error raised by telephony.sip."""


class RemoteProtocolError(SipError):
    """The peer sent something we must refuse; answer with ``status_code`` (if answerable)."""

    status_code: int = 400

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        if status_code is not None:
            self.status_code = status_code
        #: Extra headers the error response must carry (Unsupported, Allow, Accept...).
        self.headers: list[tuple[str, str]] = list(headers) if headers else []
        #: Whatever could be parsed (a SipRequest or SipResponse), so a UAS can still build the
        #: error response (typed loosely: the message module depends on this one, not back).
        self.partial: object | None = None


class ParseError(RemoteProtocolError):
    """Malformed message (400 Bad Request)."""

    status_code = 400


class VersionNotSupported(RemoteProtocolError):
    """SIP-Version other than SIP/2.0 (505 Version Not Supported)."""

    status_code = 505


class LocalProtocolError(SipError):
    """Our own code misused the SIP layer (a bug, never the peer's fault)."""
