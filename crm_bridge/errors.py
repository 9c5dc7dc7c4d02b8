"""Errors of the CRM bridge: one root, the HTTP status the API should answer as an attribute."""

from __future__ import annotations


class CrmError(Exception):
    """Root of every error the CRM bridge raises on purpose."""

    status: int = 500
    """HTTP status the REST API answers with when this error reaches it."""

    @property
    def reason(self) -> str:
        """Human-readable reason, for a JSON error body."""
        return str(self)


class InvalidInput(CrmError, ValueError):
    """A value handed to the store (filter, outcome, phone number...) is malformed."""

    status = 400


class PhoneNumberError(InvalidInput):
    """Text that cannot be read as a phone number."""


class InvalidFilter(InvalidInput):
    """A read filter (date range, outcome, limit...) is malformed."""


class NotFound(CrmError, LookupError):
    """The call, task or contact asked for does not exist."""

    status = 404


class Conflict(CrmError):
    """The object is not in a state that allows the change (ending an ended call...)."""

    status = 409
