"""[[queues]] and [[blf_groups]]: what a good entry gives, and a clear `file:line: reason` for
each mistake."""

from __future__ import annotations

import re

import pytest

from callcenter.config import ConfigError, parse_config

BASE = "".join(f'[[accounts]]\nextension = "{n}"\npassword = "pass{n}"\n\n' for n in (101, 102))
TRUNK = '[[trunks]]\nname = "carrier"\nallow_from = ["127.0.0.2"]\n\n'


def test_a_queue_with_penalties_routed_from_a_did() -> None:
    config = parse_config(
        BASE
        + TRUNK
        + '[[queues]]\nname = "sales"\nmembers = ["101", {extension = "102", penalty = 2}]\n'
        'strategy = "fewest-calls"\nmax_length = 5\noverflow = "voicemail:101"\n\n'
        '[[dids]]\nnumber = "+12025550100"\ntrunk = "carrier"\nroute = "queue:sales"\n'
    )
    (queue,) = config.queues
    assert [(m.extension, m.penalty) for m in queue.members] == [("101", 0), ("102", 2)]
    assert (queue.strategy, queue.max_length, queue.overflow) == (
        "fewest-calls",
        5,
        "voicemail:101",
    )
    assert config.dids[0].route == "queue:sales"


@pytest.mark.parametrize(
    ("entry", "line", "reason"),
    [
        ('members = ["999"]', 11, "member 999 is no extension"),
        ("members = []", 11, "members must be a non-empty list"),
        ('members = ["101", "101"]', 11, "listed twice"),
        ('members = [{extension = "101", penalty = -1}]', 11, "penalty of 101"),
        ('members = ["101"]\nstrategy = "random"', 12, "strategy must be one of"),
        ('members = ["101"]\noverflow = "queue:sales"', 12, "overflow must be"),
        ('members = ["101"]\nmax_wait = -1', 12, "max_wait must be a number >= 0"),
        ('members = ["101"]\nmax_length = 2.5', 12, "max_length must be whole"),
        ('members = ["101"]\ncallback_digit = "12"', 12, "callback_digit"),
        ('members = ["101"]\nmusic = "no-such.wav"', 12, "does not exist"),
        ('members = ["101"]\nsurprise = 1', 12, "unknown key 'surprise'"),
        ('members = ["101"]\nowner = "999"', 12, "owner 999 is no extension (nor 'responsible')"),
        ('members = ["101"]\nvoicemail_greeting = "gone.wav"', 12, "does not exist"),
        ('members = ["101"]\nwhen_empty = "leave"', 12, "when_empty must be wait or overflow"),
    ],
)
def test_mistakes_name_their_line(entry: str, line: int, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + f'[[queues]]\nname = "sales"\n{entry}\n', source="q.toml")
    assert info.value.line == line, str(info.value)
    assert reason in str(info.value)


def test_a_did_to_an_unknown_queue_is_refused() -> None:
    with pytest.raises(ConfigError, match="queue:NAME"):
        parse_config(BASE + TRUNK + '[[dids]]\nnumber = "+12025550199"\ntrunk = "carrier"\n'
                     'route = "queue:nope"\n')  # fmt: skip


def test_voicemail_boxes() -> None:
    config = parse_config(
        BASE + '[[voicemail]]\nowner = "102"\ngreeting = "Bob is out."\nmax_seconds = 30\n'
    )
    (box,) = config.voicemail
    assert (box.owner, box.greeting, box.max_seconds) == ("102", "Bob is out.", 30.0)
    with pytest.raises(ConfigError, match="owner is no extension"):
        parse_config(BASE + '[[voicemail]]\nowner = "999"\n')
    with pytest.raises(ConfigError, match="max_seconds must be a number >= 5"):
        parse_config(BASE + '[[voicemail]]\nowner = "101"\nmax_seconds = 1\n')


def test_a_queue_with_its_own_box_for_the_callers_manager() -> None:
    config = parse_config(
        BASE + '[[queues]]\nname = "sales"\nmembers = ["101"]\noverflow = "voicemail"\n'
        'owner = "responsible"\nwhen_empty = "overflow"\n'
    )
    (queue,) = config.queues
    assert queue.when_empty == "overflow"
    assert (queue.overflow, queue.owner, queue.voicemail_greeting) == (
        "voicemail", "responsible", None,
    )  # fmt: skip
    box = queue.voicemail_box
    assert box.greeting is not None and box.greeting.startswith("You have reached sales.")
    said = parse_config(
        BASE + '[[queues]]\nname = "sales"\nmembers = ["101"]\noverflow = "voicemail"\n'
        'voicemail_greeting = "Sales is closed."\n'
    )
    assert said.queues[0].voicemail_box.greeting == "Sales is closed."


def test_blf_groups() -> None:
    config = parse_config(
        BASE + '[[blf_groups]]\nname = "floor"\nmembers = ["101"]\nwatchers = ["102"]\n'
    )
    (group,) = config.blf_groups
    assert (group.name, group.members, group.watchers) == ("floor", ("101",), ("102",))
    assert parse_config(BASE).blf_groups == ()
    for entry, reason in (
        ('members = ["999"]', "members must be a list of extensions"),
        ("members = []", "members must be a list of extensions (at least one)"),
        ('members = ["101"]\nwatchers = "102"', "watchers must be a list of extensions"),
        ('members = ["101"]\nwho = 1', "unknown key 'who'"),
    ):
        with pytest.raises(ConfigError, match=re.escape(reason)):
            parse_config(BASE + f'[[blf_groups]]\nname = "floor"\n{entry}\n')
