"""The provider keys of [[trunks]]: registration, digest, failover order, channels, qualify."""

from __future__ import annotations

import pytest

from callcenter.config import ConfigError, parse_config

PROVIDER = """[[trunks]]
name = "provider"
register = true
username = "4951234567"
secret = "s3cret-pass"
realm = "sip.provider.test"
registrar = "sip.provider.test:5080"
outbound_proxy = "10.0.0.9:5060"
expires = 600
priority = 1
channels = 30
qualify = 20
"""


def test_a_provider_trunk() -> None:
    (trunk,) = parse_config(PROVIDER, source="cc.toml").trunks
    assert trunk.register and (trunk.username, trunk.secret) == ("4951234567", "s3cret-pass")
    assert trunk.realm == "sip.provider.test"
    assert trunk.registrar == ("sip.provider.test", 5080)
    assert trunk.outbound_proxy == ("10.0.0.9", 5060)
    assert (trunk.expires, trunk.priority, trunk.channels, trunk.qualify) == (600, 1, 30, 20.0)
    # Requests go to the outbound proxy; the AOR and Request-URIs name the registrar's domain.
    assert trunk.signalling == ("10.0.0.9", 5060)
    assert trunk.sip_domain == "sip.provider.test"
    # `password` keeps its meaning: the carrier registering to us (unset here).
    assert trunk.password is None


def test_an_ip_trunk_keeps_its_defaults() -> None:
    (trunk,) = parse_config(
        '[[trunks]]\nname = "c"\noutbound = "127.0.0.1:5070"\n', source="cc.toml"
    ).trunks
    assert not trunk.register and trunk.secret is None
    assert (trunk.priority, trunk.channels, trunk.qualify) == (0, 0, 0.0)
    assert trunk.signalling == ("127.0.0.1", 5070)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (("secret", None), "register = true needs secret"),
        (("registrar", None), "register = true needs registrar"),
        (("qualify", "0.5"), "qualify must be 0 (off) or seconds"),
        (("channels", "-1"), "channels must be a whole number"),
        (("expires", "1"), "expires must be a whole number"),
        (("register", '"yes"'), "register must be true or false"),
        (("registrar", '"nowhere"'), "expected HOST:PORT"),
        (("username", '""'), "username must be a non-empty string"),
    ],
)
def test_provider_mistakes(change: tuple[str, str | None], reason: str) -> None:
    key, value = change
    lines = [
        line
        for line in PROVIDER.splitlines()
        if not line.startswith(f"{key} ") or value is not None
    ]
    lines = [f"{key} = {value}" if line.startswith(f"{key} ") else line for line in lines]
    if key == "registrar" and value is None:
        lines = [line for line in lines if not line.startswith("outbound_proxy")]
    with pytest.raises(ConfigError) as error:
        parse_config("\n".join(lines) + "\n", source="cc.toml")
    assert reason in str(error.value)
    assert str(error.value).startswith("cc.toml:")
