"""Signed, expiring recording links: a CRM's player fetches the recording with no API key
until the link expires.

A link names the call row, the format, the expiry (Unix seconds) and an HMAC-SHA256 of the three
under the engine's `[crm] link_secret` (the same on every node, so any node serves any link):
`https://pbx.example.com/recordings/42.mp3?expires=1767225600&signature=...`. Changing the
secret revokes every link given out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

FORMATS = ("wav", "mp3")


class LinkError(ValueError):
    """A link that does not open: `status` 403 (tampered) or 410 (expired)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def link_signature(secret: str, call_row: int, fmt: str, expires: int) -> str:
    """URL-safe signature of one link."""
    message = f"{call_row}.{fmt}.{expires}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def check_link(
    secret: str, call_row: int, fmt: str, expires: str, signature: str, *, now: float
) -> None:
    """Raise LinkError unless the link is genuine and not expired."""
    if not secret:
        raise LinkError(403, "signed recording links are not enabled ([crm] link_secret)")
    try:
        when = int(expires)
    except ValueError:
        raise LinkError(403, "malformed link") from None
    expected = link_signature(secret, call_row, fmt, when)
    if not hmac.compare_digest(expected, signature):
        raise LinkError(403, "bad link signature")
    if when < now:
        raise LinkError(410, "this recording link has expired; the CRM needs a fresh one")
