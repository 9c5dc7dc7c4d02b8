"""RFC 4568 a=crypto lines: what we parse, what we refuse, and that keys stay out of reprs."""

from __future__ import annotations

import base64

import pytest

from telephony.sdp.crypto import KEY_LENGTH, CryptoAttribute, SrtpError, SrtpKeys, new_master_key

KEY = bytes(range(KEY_LENGTH))
INLINE = base64.b64encode(KEY).decode()


def test_round_trip_and_lifetime_accepted() -> None:
    line = CryptoAttribute(1, "AES_CM_128_HMAC_SHA1_80", KEY)
    assert CryptoAttribute.parse(line.value()) == line
    # RFC 4568 9.1's example form, with a lifetime: the lifetime is allowed (libsrtp rekeys
    # never; 2^20 packets is 5.8 hours of 20 ms audio).
    parsed = CryptoAttribute.parse(f"2 AES_CM_128_HMAC_SHA1_32 inline:{INLINE}|2^20")
    assert (parsed.tag, parsed.suite, parsed.key) == (2, "AES_CM_128_HMAC_SHA1_32", KEY)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (f"1 AES_256_CM_HMAC_SHA1_80 inline:{INLINE}", "not supported"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}|2^20|1:4", "MKI"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE} UNENCRYPTED_SRTP", "session parameters"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE};inline:{INLINE}", "several"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:QUJD", "bytes"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:%%%", "inline"),
        ("x AES_CM_128_HMAC_SHA1_80", "malformed"),
    ],
)
def test_lines_we_cannot_use_are_refused_with_a_reason(value: str, why: str) -> None:
    with pytest.raises(SrtpError, match=why):
        CryptoAttribute.parse(value)


def test_keys_never_appear_in_reprs_or_str() -> None:
    key = new_master_key()
    assert len(key) == KEY_LENGTH and key != new_master_key()
    attribute = CryptoAttribute(1, "AES_CM_128_HMAC_SHA1_80", key)
    keys = SrtpKeys("AES_CM_128_HMAC_SHA1_80", local=key, remote=key)
    encoded = base64.b64encode(key).decode()
    for text in (repr(attribute), str(attribute), repr(keys), str(keys)):
        assert encoded not in text and repr(key) not in text
