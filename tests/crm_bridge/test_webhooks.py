"""Signed links of the CRM bridge: Standard Webhooks signatures (spec:
https://github.com/standard-webhooks/webhooks/blob/main/spec/standard-webhooks.md): the spec's
published test vector, secret rotation, replay protection) and signed recording links."""

from __future__ import annotations

import pytest

from crm_bridge import webhooks
from crm_bridge.links import LinkError, check_link, link_signature

# The test vector the spec's reference libraries share.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_matches_the_spec_vector() -> None:
    assert webhooks.signature(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG
    headers = webhooks.sign_headers([VECTOR_SECRET], VECTOR_ID, VECTOR_TS, VECTOR_BODY)
    assert headers == {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TS),
        "webhook-signature": VECTOR_SIG,
    }
    assert webhooks.verify([VECTOR_SECRET], headers, VECTOR_BODY, now=VECTOR_TS + 10) == VECTOR_ID


def test_rotation_signs_with_every_secret_and_either_verifies() -> None:
    headers = webhooks.sign_headers(["whsec_bmV3LWtleQ==", "old-plain"], "m1", 1000, b"{}")
    assert len(headers["webhook-signature"].split()) == 2
    assert webhooks.verify(["old-plain"], headers, b"{}", now=1000) == "m1"
    assert webhooks.verify(["whsec_bmV3LWtleQ=="], headers, b"{}", now=1000) == "m1"
    with pytest.raises(webhooks.WebhookVerificationError, match="no matching"):
        webhooks.verify(["third"], headers, b"{}", now=1000)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"webhook-timestamp": "1000"}, "too far"),  # a request captured earlier, replayed
        ({"webhook-timestamp": "soon"}, "not an integer"),
        ({"webhook-id": "other"}, "no matching"),  # the id is signed too
        ({"webhook-signature": ""}, "missing"),
    ],
)
def test_tampered_or_replayed_requests_fail(change: dict[str, str], reason: str) -> None:
    headers = webhooks.sign_headers(["k"], "m1", 2000, b'{"a":1}')
    with pytest.raises(webhooks.WebhookVerificationError, match=reason):
        webhooks.verify(["k"], {**headers, **change}, b'{"a":1}', now=2000)
    with pytest.raises(webhooks.WebhookVerificationError, match="no matching"):
        webhooks.verify(["k"], headers, b'{"a":2}', now=2000)


def test_bad_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="base64"):
        webhooks.secret_key("whsec_!!!")
    with pytest.raises(ValueError, match="empty"):
        webhooks.secret_key("")


def test_signed_links_open_until_they_expire_and_never_when_tampered() -> None:
    signature = link_signature("k" * 16, 42, "mp3", 2000)
    check_link("k" * 16, 42, "mp3", "2000", signature, now=1999.0)
    for row, fmt, expires, secret in [
        (43, "mp3", "2000", "k" * 16),
        (42, "wav", "2000", "k" * 16),
        (42, "mp3", "2001", "k" * 16),
        (42, "mp3", "2000", "j" * 16),
    ]:
        with pytest.raises(LinkError) as bad:
            check_link(secret, row, fmt, expires, signature, now=1999.0)
        assert bad.value.status == 403
    with pytest.raises(LinkError) as late:
        check_link("k" * 16, 42, "mp3", "2000", signature, now=2000.5)
    assert late.value.status == 410
    with pytest.raises(LinkError, match="not enabled"):
        check_link("", 42, "mp3", "2000", signature, now=1999.0)
