"""Auth-failure ban (sliding window, virtual clock) and the security log line."""

from __future__ import annotations

import logging
import re

import pytest

from pbx.security import AuthFailureBan, BanPolicy, log_auth_failure, security_logger

IP = "203.0.113.9"


def fail(ban: AuthFailureBan, ip: str, times: list[float]) -> list[bool]:
    return [ban.record_failure(ip, now=t) for t in times]


def test_ten_failures_in_sixty_seconds_ban() -> None:
    ban = AuthFailureBan()
    results = fail(ban, IP, [i * 6.0 for i in range(10)])  # 0 .. 54 s
    assert results == [False] * 9 + [True]
    assert ban.is_banned(IP, now=54.0)
    assert ban.banned_ips(now=55.0) == {IP: 654.0}


def test_nine_failures_then_one_after_61_seconds_is_not_a_ban() -> None:
    ban = AuthFailureBan()
    assert not any(fail(ban, IP, [float(i) for i in range(9)]))  # 0 .. 8 s
    assert not ban.record_failure(IP, now=8.0 + 61.0)
    assert not ban.is_banned(IP, now=69.0)
    assert ban.failure_count(IP, now=69.0) == 1


def test_window_slides() -> None:
    ban = AuthFailureBan()
    assert not any(fail(ban, IP, [0.0, 1.0] + [50.0 + i for i in range(7)]))  # 9 failures
    # At 61 s the first two left the window: 8 count, so the 10th does not ban yet.
    assert not ban.record_failure(IP, now=61.0)
    assert ban.failure_count(IP, now=61.0) == 8
    assert not ban.record_failure(IP, now=62.0)
    assert ban.record_failure(IP, now=63.0)  # ten inside [3, 63]


def test_ban_expires_after_600_seconds() -> None:
    ban = AuthFailureBan()
    fail(ban, IP, [0.0] * 10)
    assert ban.is_banned(IP, now=599.9)
    assert not ban.is_banned(IP, now=600.0)
    assert ban.banned_ips(now=600.0) == {}
    # A fresh start: the failures before the ban do not carry over.
    assert not any(fail(ban, IP, [601.0] * 9))
    assert ban.record_failure(IP, now=602.0)


def test_failures_while_banned_are_ignored() -> None:
    ban = AuthFailureBan()
    fail(ban, IP, [0.0] * 10)
    assert not ban.record_failure(IP, now=1.0)
    assert ban.banned_ips(now=1.0) == {IP: 600.0}  # not extended


def test_other_ips_unaffected() -> None:
    ban = AuthFailureBan()
    fail(ban, IP, [0.0] * 10)
    fail(ban, "198.51.100.7", [0.0] * 9)
    assert ban.is_banned(IP, now=1.0)
    assert not ban.is_banned("198.51.100.7", now=1.0)
    assert not ban.is_banned("127.0.0.1", now=1.0)


def test_exempt_ip_never_banned() -> None:
    ban = AuthFailureBan(BanPolicy(exempt=frozenset({IP})))
    assert not any(fail(ban, IP, [0.0] * 50))
    assert not ban.is_banned(IP, now=0.0)


def test_custom_policy_and_unban() -> None:
    ban = AuthFailureBan(BanPolicy(max_failures=3, window=10.0, ban_seconds=30.0))
    assert fail(ban, IP, [0.0, 1.0, 2.0]) == [False, False, True]
    assert ban.is_banned(IP, now=31.9)
    assert ban.unban(IP)
    assert not ban.is_banned(IP, now=3.0)
    assert not ban.unban(IP)


def test_memory_is_bounded() -> None:
    ban = AuthFailureBan(BanPolicy(max_failures=2, max_tracked_ips=100, max_banned_ips=50))
    for i in range(1000):
        ban.record_failure(f"10.0.{i // 256}.{i % 256}", now=float(i))
    assert ban.tracked_ips <= 100
    for i in range(200):
        fail(ban, f"10.1.{i // 256}.{i % 256}", [1000.0, 1000.0])
    assert len(ban.banned_ips(now=1000.0)) == 50
    ban.prune(now=10_000.0)
    assert ban.tracked_ips == 0


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        BanPolicy(max_failures=0)
    with pytest.raises(ValueError):
        BanPolicy(window=0.0)


def test_log_line_is_grep_friendly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=security_logger.name):
        log_auth_failure("203.0.113.9", 5062, "101", "wrong_password", "REGISTER")
    [record] = caplog.records
    assert record.name == "callcenter.security"
    assert record.getMessage() == (
        'auth failure ip=203.0.113.9 port=5062 user="101" reason=wrong_password method=REGISTER'
    )


def test_log_line_escapes_peer_text(caplog: pytest.LogCaptureFixture) -> None:
    class Reason:
        value = "unknown_user"

    evil_user = '101" reason=ok\n2024 auth success ip=1.2.3.4 \\'
    with caplog.at_level(logging.WARNING, logger=security_logger.name):
        log_auth_failure("::1", 5060, evil_user, Reason(), "REG ISTER\r\n")
        log_auth_failure("::1", 5060, None, "malformed", "INVITE")
    first, second = (r.getMessage() for r in caplog.records)
    assert "\n" not in first and "\r" not in first
    fields = re.fullmatch(
        r'auth failure ip=(\S+) port=(\d+) user="((?:[^"\\]|\\.)*)" reason=(\S+) method=(\S+)',
        first,
    )
    assert fields is not None
    assert fields.group(4) == "unknown_user"
    assert fields.group(5) == "REG\\x20ISTER\\x0d\\x0a"
    assert second.endswith("user=- reason=malformed method=INVITE")


def test_ban_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    ban = AuthFailureBan()
    with caplog.at_level(logging.WARNING, logger=security_logger.name):
        fail(ban, IP, [0.0] * 10)
    assert [r.getMessage() for r in caplog.records] == [f"auth ban ip={IP} failures=10 seconds=600"]
