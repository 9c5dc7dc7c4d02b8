"""Standard Webhooks signatures (https://www.standardwebhooks.com/, spec at
https://github.com/standard-webhooks/webhooks/blob/main/spec/standard-webhooks.md).

Each request carries `webhook-id` (the message id, the same on every retry: our idempotency
key), `webhook-timestamp` (integer Unix seconds of this attempt) and `webhook-signature`: one
`v1,<base64 HMAC-SHA256>` per secret, space-separated, over `id.timestamp.body`. Several secrets
let a receiver rotate keys without dropping a delivery. A `whsec_` secret is base64 of the key
bytes; any other secret is used as its UTF-8 bytes.

Written here rather than taken from the `standardwebhooks` PyPI package: signing and verifying
are a dozen lines over `hmac`, while that package brings httpx, attrs, python-dateutil and
Deprecated with it for an API client we do not use. The tests check our output against the
spec's published test vector.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE = 300.0
"""Seconds a receiver accepts between a request's timestamp and its own clock (the spec's
recommended five minutes)."""


class WebhookVerificationError(ValueError):
    """A request that does not carry a valid, fresh Standard Webhooks signature."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: base64 after `whsec_`, else the text's UTF-8 bytes."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("a whsec_ secret must be base64 after the prefix") from exc
    if not secret:
        raise ValueError("empty webhook secret")
    return secret.encode()


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign_headers(
    secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three headers of one delivery attempt, signed with every secret."""
    if not secrets:
        raise ValueError("no webhook secret to sign with")
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: " ".join(signature(s, msg_id, timestamp, body) for s in secrets),
    }


def verify(
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> str:
    """For receivers: check a request's headers (case-insensitive mapping such as aiohttp's
    `request.headers`) and return its message id; raise WebhookVerificationError if no
    signature matches one of `secrets` or the timestamp is outside `tolerance` (a replay)."""
    msg_id = headers.get(ID_HEADER)
    stamp = headers.get(TIMESTAMP_HEADER)
    offered = headers.get(SIGNATURE_HEADER)
    if not msg_id or not stamp or not offered:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    if abs(now - timestamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp too far from now (a replay?)")
    expected = {signature(s, msg_id, timestamp, body) for s in secrets}
    for candidate in offered.split():
        if any(hmac.compare_digest(candidate, e) for e in expected):
            return msg_id
    raise WebhookVerificationError("no matching signature")
