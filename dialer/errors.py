"""Errors of the dialer: one root, the HTTP status the API should answer as an attribute."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


class DialerError(Exception):
    """Root of every error the dialer raises on purpose."""

    status: int = 500
    """HTTP status the REST API answers with when this error reaches it."""

    @property
    def reason(self) -> str:
        """Human-readable reason, for a JSON error body."""
        return str(self)


class InvalidInput(DialerError, ValueError):
    """A value handed to the store (setting, outcome, phone number...) is malformed."""

    status = 400


class NotFound(DialerError, LookupError):
    """The campaign, lead or attempt asked for does not exist."""

    status = 404


class Conflict(DialerError):
    """The object is not in a state that allows the change (an attempt dialled twice...)."""

    status = 409


class InvalidCampaign(DialerError, ValueError):
    """A campaign setting is out of range (ratio, abandon cap, ring time under 15 s...)."""

    status = 400


class InvalidTransition(DialerError):
    """A campaign command that its current state does not allow (resume a draft...)."""

    status = 409


class LeadFileError(DialerError, ValueError):
    """A lead or DNC file that cannot be read at all (no header, no phone column...).

    Bad single rows are not errors: they are reported in the import result."""

    status = 400

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.line = line
        """Physical line of the file the problem is on (header = 1), when there is one."""
