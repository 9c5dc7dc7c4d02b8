"""Config files: the sample one loads; mistakes are reported with the line and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcenter.config import ConfigError, HostPort, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


def test_sample_config_matches_the_readme() -> None:
    config = load_config(ROOT / "callcenter.example.toml")
    assert config.sip.listen == HostPort("127.0.0.1", 5060)
    assert config.http_listen == HostPort("127.0.0.1", 8080)
    assert [(a.extension, a.password, a.role) for a in config.accounts] == [
        *((str(n), f"pass{n}", "agent") for n in range(101, 106)),
        ("190", "pass190", "supervisor"),
    ]
    assert config.database_url is None
    (group,) = config.ring_groups
    assert group.members == ("101", "102", "103") and group.auto_reply is not None
    assert group.auto_reply.is_file()
    assert config.dids[0].route == "queue:sales"
    (queue,) = config.queues
    assert [(m.extension, m.penalty) for m in queue.members] == [("101", 0), ("102", 0), ("103", 1)]
    assert queue.music is not None and Path(queue.music).is_file() and queue.greeting


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("::", HostPort("::", 5060)),
        ("[::1]:5070", HostPort("::1", 5070)),
        ("[::1]", HostPort("::1", 5060)),
        ("0.0.0.0", HostPort("0.0.0.0", 5060)),
        ("10.0.0.5:5080", HostPort("10.0.0.5", 5080)),
    ],
)
def test_listen_on_ipv6_and_wildcards(listen: str, expected: HostPort) -> None:
    config = parse_config(f'[sip]\nlisten = "{listen}"\n', source="cc.toml")
    assert config.sip.listen == expected
    assert str(HostPort("::1", 5070)) == "[::1]:5070"


def test_nat_settings() -> None:
    config = parse_config(
        '[sip]\nlisten = "0.0.0.0:5060"\nexternal_address = "203.0.113.7"\n'
        'networks = ["10.0.0.0/8", "fd00::/8"]\nkeepalive_interval = 25\n',
        source="cc.toml",
    )
    assert config.sip.external_address == "203.0.113.7"
    assert config.sip.networks == ("10.0.0.0/8", "fd00::/8")
    assert config.sip.keepalive_interval == 25.0
    default = parse_config("", source="cc.toml").sip
    assert default.external_address is None and default.keepalive_interval == 0
    assert "192.168.0.0/16" in default.networks and "127.0.0.0/8" in default.networks


def test_cluster_nodes_share_registrations_only_when_told() -> None:
    assert parse_config("", source="cc.toml").sip.cluster is False
    shared = parse_config(
        '[sip]\ncluster = true\ntrusted_proxies = ["10.0.0.1", "[2001:db8::1]"]\n',
        source="cc.toml",
    )
    assert shared.sip.cluster is True
    assert shared.sip.trusted_proxies == ("10.0.0.1", "2001:db8::1")
    assert shared.sip.cluster_lease == 30.0
    assert parse_config("[sip]\ncluster_lease = 3\n", source="cc.toml").sip.cluster_lease == 3.0


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ('[sip]\nlisten = "nowhere"\n', 2, "HOST:PORT"),
        ('[sip]\nlisten = "::1:5060"\n', 2, "[IPV6]:PORT"),
        ('[sip]\nexternal_address = "pbx.example.com"\n', 2, "external_address must be an IP"),
        ('[sip]\nnetworks = ["10.0.0.0/8", "lan"]\n', 2, "not a network (CIDR)"),
        ('[sip]\nnetworks = "10.0.0.0/8"\n', 2, "list of CIDRs"),
        ("[sip]\nkeepalive_interval = -5\n", 2, "keepalive_interval"),
        ('[sip]\ncluster = "yes"\n', 2, "cluster"),
        ("[sip]\ncluster_lease = 0.5\n", 2, "cluster_lease must be a number >= 1"),
        ('[sip]\ntrusted_proxies = ["kamailio.local"]\n', 2, "trusted_proxies"),
        ("[sip]\nring_timeout = -1\n", 2, "ring_timeout"),
        ('[sip]\nrtp_ports = "9-8"\n', 2, "rtp_ports"),
        ('[sip]\ndigest_algorithms = ["SHA-1"]\n', 2, "digest_algorithms"),
        ("[sip]\nbogus = 1\n", 2, "unknown key 'bogus'"),
        ('[sip]\nmusic_on_hold = "no-such.wav"\n', 2, "does not exist"),
        ("[sip]\nmin_se = 0\n", 2, "min_se must be a number >= 1"),
        ("[sip]\nmin_se = 120\nsession_expires = 100\n", 3, "session_expires must be"),
        (
            '[[accounts]]\nextension = "101"\npassword = "pass101"\nsession_timers = "no"\n',
            4,
            "session_timers must be true or false",
        ),
        ('[[trunks]]\nname = "c"\nsession_timers = 0\n', 3, "session_timers must be"),
        (
            '[[accounts]]\nextension = "101"\npassword = "pass101"\n\n[[accounts]]\n'
            'extension = "101"\npassword = "pass101"\n',
            6,
            "defined twice",
        ),
        ('[[accounts]]\nextension = "101"\npassword = "p"\n', 3, "password"),
        ('[[accounts]]\nextension = "101"\npassword = "pass101"\nrole = "boss"\n', 4, "role"),
        ('[[accounts]]\nextension = "101"\npassword = "pass101"\nmax_calls = 0\n', 4, "max_calls"),
        (
            '[[accounts]]\nextension = "101"\npassword = "pass101"\nforward_busy = "sip:x"\n',
            4,
            "forward_busy: busy must be an extension or a phone number",
        ),
        (
            '[[accounts]]\nextension = "101"\npassword = "pass101"\ndnd = "on"\n',
            4,
            "dnd: dnd must be true or false",
        ),
        (
            '[[accounts]]\nextension = "101"\npassword = "pass101"\nforward_always = "555"\n',
            4,
            "forward_always must be another extension",
        ),
        (
            '[[accounts]]\nextension = "101"\npassword = "pass101"\nforward_no_answer_after = 0\n',
            4,
            "from 1 to 300",
        ),
        ("[sip\n", 1, "Expected"),
        ('[[trunks]]\nname = "c"\nallow_from = ["nowhere"]\n', 3, "allow_from"),
        ('[[trunks]]\nname = "c"\ncps = 0\n', 3, "cps must be"),
        (
            '[[api_keys]]\nname = "m"\nkey = "0123456789abc"\nrole = "manager"\n'
            'extension = "101"\n',
            5,
            "extension must be",
        ),
        ('[[ring_groups]]\nname = "s"\nmembers = ["555"]\n', 3, "unknown: 555"),
        (
            '[[accounts]]\nextension = "101"\npassword = "pass101"\n[[ring_groups]]\nname = "s"\n'
            'members = ["101"]\nauto_reply = "missing.wav"\n',
            7,
            "does not exist",
        ),
        (
            '[[trunks]]\nname = "c"\n[[dids]]\nnumber = "+12025550100"\ntrunk = "c"\n'
            'route = "ringgroup:x"\n',
            6,
            "route must be",
        ),
        (
            '[[dids]]\nnumber = "+12025550100"\ntrunk = "nope"\nroute = "agent:101"\n',
            3,
            "trunk 'nope'",
        ),
    ],
)
def test_mistakes_name_line_and_reason(text: str, line: int, reason: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(text, source="cc.toml")
    assert error.value.line == line
    assert reason in str(error.value)
    assert str(error.value).startswith(f"cc.toml:{line}: ")


def test_forwarding_defaults_per_account() -> None:
    config = parse_config(
        '[[accounts]]\nextension = "101"\npassword = "pass101"\ndnd = true\n'
        'forward_busy = "102"\nforward_no_answer = "+74951234567"\n'
        "forward_no_answer_after = 12\n\n"
        '[[accounts]]\nextension = "102"\npassword = "pass102"\n',
        source="cc.toml",
    )
    first, second = config.accounts
    assert first.forwarding.to_json() == {
        "dnd": True, "always": None, "busy": "102", "no_answer": "+74951234567",
        "no_answer_after": 12.0,
    }  # fmt: skip
    assert second.forwarding.to_json()["dnd"] is False


def test_session_timer_settings() -> None:
    config = parse_config(
        "[sip]\nsession_expires = 600\nmin_se = 120\n"
        '[[accounts]]\nextension = "101"\npassword = "pass101"\nsession_timers = false\n'
        '[[trunks]]\nname = "carrier"\nsession_timers = false\n'
    )
    assert (config.sip.session_expires, config.sip.min_se) == (600, 120)
    assert not config.accounts[0].session_timers and not config.trunks[0].session_timers
    defaults = parse_config('[[accounts]]\nextension = "101"\npassword = "pass101"\n')
    assert (defaults.sip.session_expires, defaults.sip.min_se) == (1800, 90)
    assert defaults.accounts[0].session_timers
