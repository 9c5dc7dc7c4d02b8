"""Config of pickup groups, supervisors' teams and monitoring, with line-precise errors."""

from __future__ import annotations

import pytest

from callcenter.config import ConfigError, parse_config

ACCOUNTS = "".join(
    f'[[accounts]]\nextension = "{n}"\npassword = "pass{n}"\n' for n in (101, 102, 103)
)


def test_groups_team_and_beep() -> None:
    config = parse_config(
        ACCOUNTS + '[[accounts]]\nextension = "190"\npassword = "pass190"\nrole = "supervisor"\n'
        'team = ["101", 102]\n'
        '[[pickup_groups]]\nname = "a"\nmembers = ["101", "102"]\n'
        '[[pickup_groups]]\nname = "b"\nmembers = ["102", "103"]\n'
        "[monitor]\nbeep = true\n"
    )
    assert [(g.name, g.members) for g in config.pickup_groups] == [
        ("a", ("101", "102")),
        ("b", ("102", "103")),
    ]
    supervisor = config.account("190")
    assert supervisor is not None and supervisor.team == ("101", "102")
    assert config.monitor.beep is True
    assert parse_config(ACCOUNTS).monitor.beep is False


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ('[[pickup_groups]]\nname = "a"\nmembers = ["101", "555"]\n', 12, "unknown: 555"),
        ('[[pickup_groups]]\nname = "a"\nmembers = ["101"]\n', 12, "at least two"),
        ('[[pickup_groups]]\nmembers = ["101", "102"]\n', 10, "name is required"),
        ('[[pickup_groups]]\nname = "a"\nmembers = ["101", "102"]\nsize = 2\n', 13, "'size'"),
        ('[[accounts]]\nextension = "104"\npassword = "pass104"\nteam = ["101"]\n', 13, "only a"),
        (
            '[[accounts]]\nextension = "190"\npassword = "pass190"\nrole = "supervisor"\n'
            'team = ["101", "555"]\n',
            14,
            "unknown extensions 555",
        ),
        ('[monitor]\nbeep = "loud"\n', 11, "beep must be"),
    ],
)
def test_mistakes_name_line_and_reason(text: str, line: int, reason: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(ACCOUNTS + text, source="cc.toml")
    assert reason in str(error.value)
    assert error.value.line == line, str(error.value)
