"""[[trunks]] number rewriting and caller ID keys, and DIDs normalised to E.164 at load."""

from __future__ import annotations

import pytest

from callcenter.config import ConfigError, parse_config

TRUNK = '[[trunks]]\nname = "c"\nallow_from = ["127.0.0.2"]\n'


def test_numbering_keys_and_dids_in_any_format() -> None:
    config = parse_config(
        TRUNK + 'country = "RU"\noutbound_format = "national"\nstrip_prefix = "999"\n'
        'dial_prefix = "1010#"\nidentity_headers = ["PAI", "rpid"]\n'
        'asserted_identity = "8 495 765-43-21"\ncaller_id = "84951234567"\n'
        '[[accounts]]\nextension = "101"\npassword = "pass101"\n'
        '[[dids]]\nnumber = "8 (495) 123-45-67"\ntrunk = "c"\nroute = "agent:101"\n'
        '[[dids]]\nnumber = "+7 915 123 45 67"\ntrunk = "c"\nroute = "agent:101"\n',
        source="cc.toml",
    )
    (trunk,) = config.trunks
    assert (trunk.numbers.country, trunk.numbers.outbound_format) == ("RU", "national")
    assert (trunk.numbers.strip_prefix, trunk.numbers.dial_prefix) == ("999", "1010#")
    assert trunk.identity.headers == ("pai", "rpid")
    assert trunk.identity.asserted == "+74957654321" and not trunk.identity.withhold
    assert trunk.caller_id == "+74951234567" and trunk.trust_identity
    assert [d.number for d in config.dids] == ["+74951234567", "+79151234567"]


def test_the_default_country_is_crms_default_country_code() -> None:
    config = parse_config(
        TRUNK + '[crm]\ndefault_country_code = "44"\n'
        '[[accounts]]\nextension = "101"\npassword = "pass101"\n'
        '[[dids]]\nnumber = "020 7946 0958"\ntrunk = "c"\nroute = "agent:101"\n'
    )
    assert config.trunks[0].numbers.country == "GB"
    assert config.dids[0].number == "+442079460958"
    assert config.trunks[0].numbers.outbound_format == "e164"


@pytest.mark.parametrize(
    ("extra", "line", "reason"),
    [
        ('country = "Russia"\n', 4, "country must be an ISO 3166 code"),
        ("country = 7\n", 4, "country must be a string"),
        ('outbound_format = "local"\n', 4, "outbound_format must be one of"),
        ('strip_prefix = "x1"\n', 4, "strip_prefix must be"),
        ('dial_prefix = "12345678901234567"\n', 4, "dial_prefix must be"),
        ('identity_headers = "pai"\n', 4, "identity_headers must be a list"),
        ('identity_headers = ["ppi"]\n', 4, "identity_headers may name"),
        ("withhold_caller_id = 1\n", 4, "withhold_caller_id must be true or false"),
        ('trust_identity = "no"\n', 4, "trust_identity must be true or false"),
        ('asserted_identity = "12"\n', 4, "asserted_identity: '12' is not a whole phone number"),
        ('caller_id = "Sales"\n', 4, "caller_id: 'Sales' is not a phone number"),
        (
            '[[accounts]]\nextension = "101"\npassword = "pass101"\n'
            '[[dids]]\nnumber = "15550100"\ntrunk = "c"\nroute = "agent:101"\n',
            8,
            "DID 15550100: '15550100' is not a whole phone number (country US)",
        ),
        (
            '[[accounts]]\nextension = "101"\npassword = "pass101"\n'
            '[[dids]]\nnumber = "+12025550100"\ntrunk = "c"\nroute = "agent:101"\n'
            '[[dids]]\nnumber = "(202) 555-0100"\ntrunk = "c"\nroute = "agent:101"\n',
            12,
            "'(202) 555-0100' is defined twice (as +12025550100)",
        ),
    ],
)
def test_mistakes_name_line_and_reason(extra: str, line: int, reason: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(TRUNK + extra, source="cc.toml")
    assert str(error.value).startswith(f"cc.toml:{line}: "), str(error.value)
    assert reason in str(error.value)
