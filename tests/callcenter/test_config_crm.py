"""CRM endpoint mistakes are caught when the config loads, with file:line (issue 16): an
unknown recording_link field used to dead-letter every call with a KeyError."""

from __future__ import annotations

import pytest

from callcenter.config import ConfigError, parse_config

HEAD = '[[crm.endpoints]]\nname = "x"\n'


@pytest.mark.parametrize(
    ("body", "line", "reason"),
    [
        (
            'kind = "webhook"\nurl = "https://h/x"\nsecret = "s"\n'
            'recording_link = "https://pbx/{call_id}/rec"\n',
            6,
            "recording_link uses unknown field(s) {call_id} (known: {expires}, {format}, {id},",
        ),
        (
            'kind = "webhook"\nurl = "https://h/x"\nrecording_link = "https://pbx/{id"\n',
            5,
            "recording_link",
        ),
        ('kind = "webhook"\nurl = "https://h/x"\nsecret = " "\n', 5, "secret is empty"),
        ('kind = "amocrm"\nurl = "https://a.amocrm.ru"\n', 3, "needs an access token"),
        (
            'kind = "webhook"\nurl = "https://h/x"\nevents = ["call.ended", "call.hungup"]\n',
            5,
            "unknown event(s) call.hungup for kind webhook",
        ),
        (
            'kind = "amocrm"\nurl = "https://a.amocrm.ru"\nsecret = "t"\n'
            'events = ["call.answered"]\n',
            6,
            "unknown event(s) call.answered for kind amocrm",
        ),
        (
            'kind = "amocrm"\nurl = "https://a.amocrm.ru"\n'
            'oauth = {client_id = "id", client_secret = ""}\n',
            5,
            "empty OAuth client_id or secret",
        ),
        ('kind = "webhook"\nurl = "https://h/x"\nold_secrets = [""]\n', 5, "old_secrets"),
        ('kind = "webhook"\nurl = "https://h/x"\nburst = 0\n', 5, "burst must be"),
        (
            'kind = "webhook"\nurl = "https://h/x"\n'
            'recording_link = "https://pbx/recordings/{id}.wav?e={expires}&s={signature}"\n',
            5,
            "recording_link is signed but [crm] link_secret is not set",
        ),
        ('kind = "webhook"\nurl = "https://h/x"\nrecording_format = "ogg"\n', 5, "wav, mp3"),
        (
            'kind = "bitrix24"\nurl = "https://p.bitrix24.ru/rest/1/abc/"\n'
            'user_map = {"101" = 7}\n',
            5,
            'needs user_map with a "*" user',
        ),
        (
            'kind = "bitrix24"\nurl = "https://p.bitrix24.ru"\nuser_map = {"*" = 1}\n',
            4,
            "incoming-webhook URL",
        ),
        ('kind = "webhook"\nurl = "https://h/x"\nuser_map = {"101" = "bob"}\n', 5, "user_map"),
    ],
)
def test_crm_endpoint_mistakes_name_line_and_reason(body: str, line: int, reason: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(HEAD + body, source="cc.toml")
    assert str(error.value).startswith(f"cc.toml:{line}: ")
    assert reason in str(error.value)


def test_crm_section_mistakes() -> None:
    for text, line, reason in [
        ("[crm]\nfollow_up_minutes = 0\n", 2, "follow_up_minutes must be a number >= 1"),
        ('[crm]\nlink_secret = "short"\n', 2, "at least 16 characters"),
        ('[crm]\nmanual_policy = {agent = "allow"}\n', 2, "manual_policy maps roles"),
        ('[crm]\nmanual_policy = {boss = "warn"}\n', 2, "manual_policy maps roles"),
        ('[crm]\nmanual_hours = "9-21"\n', 2, "manual_hours must look like"),
        ('[crm]\nmanual_tz = "Mars/Olympus"\n', 2, "unknown time zone"),
        ("[crm]\noutbox_retention_days = 0\n", 2, "outbox_retention_days must be a whole"),
        ("[crm]\ndead_letter_retention_days = 1.5\n", 2, "dead_letter_retention_days must"),
    ]:
        with pytest.raises(ConfigError) as error:
            parse_config(text, source="cc.toml")
        assert str(error.value).startswith(f"cc.toml:{line}: ") and reason in str(error.value)
    config = parse_config(
        '[crm]\nfollow_up_minutes = 10\nmanual_policy = {manager = "block"}\n', source="cc.toml"
    )
    assert config.crm.follow_up_minutes == 10
    assert (config.crm.outbox_retention_days, config.crm.dead_letter_retention_days) == (30, None)
    kept = parse_config("[crm]\noutbox_retention_days = 7\ndead_letter_retention_days = 90\n")
    assert (kept.crm.outbox_retention_days, kept.crm.dead_letter_retention_days) == (7, 90)
    assert config.crm.manual_policy == {"agent": "block", "manager": "block", "admin": "warn"}


def test_a_good_endpoint_loads() -> None:
    config = parse_config(
        HEAD + 'kind = "webhook"\nurl = "https://h/x"\nsecret = "whsec_c2VjcmV0"\n'
        'old_secrets = ["older"]\nrecording_link = "https://pbx/calls/{id}/recording"\n'
        'events = ["call.ended", "task.created"]\nlegacy_signature = false\n',
        source="cc.toml",
    )
    (endpoint,) = config.crm.endpoints
    assert endpoint.signing_secrets == ("whsec_c2VjcmV0", "older")
    assert endpoint.events == {"call.ended", "task.created"}
    assert not endpoint.legacy_signature
