"""Overload control, sans-IO: levels from the smoothed loop lag with hysteresis, and what is
refused (only new INVITEs) on a virtual clock."""

from __future__ import annotations

import pytest

from telephony.sip import OverloadConfig, OverloadControl, OverloadLevel, looks_like_new_invite

CONFIG = OverloadConfig(shed_lag=0.1, drop_lag=0.5, recover_after=2.0, smoothing=0.5)


def feed(control: OverloadControl, lags: list[float], start: float = 0.0) -> float:
    now = start
    for lag in lags:
        now += 0.05 + lag
        control.observe(lag, now)
    return now


def test_one_late_timer_is_no_overload() -> None:
    control = OverloadControl(CONFIG)
    feed(control, [0.0] * 5 + [0.15] + [0.0] * 5)
    assert control.level is OverloadLevel.NORMAL


def test_levels_rise_at_once_and_fall_only_after_a_calm_while() -> None:
    changes: list[OverloadLevel] = []
    control = OverloadControl(CONFIG)
    control.listeners.append(changes.append)
    now = feed(control, [0.3, 0.3])
    assert control.level is OverloadLevel.SHEDDING
    now = feed(control, [1.5, 1.5], now)
    assert control.level is OverloadLevel.DROPPING
    now = feed(control, [0.2, 0.2, 0.2], now)  # still behind, no longer far behind
    assert control.level is OverloadLevel.SHEDDING
    now = feed(control, [0.0] * 10, now)  # calm, but not yet for 2 s
    assert control.level is OverloadLevel.SHEDDING and now < 6
    feed(control, [0.0] * 40, now)
    assert control.level is OverloadLevel.NORMAL
    assert changes == [
        OverloadLevel.SHEDDING,
        OverloadLevel.DROPPING,
        OverloadLevel.SHEDDING,
        OverloadLevel.NORMAL,
    ]


def test_only_new_invites_are_refused() -> None:
    control = OverloadControl(CONFIG)
    assert not control.sheds("INVITE", None)  # normal: everything is taken
    feed(control, [0.3, 0.3])
    assert control.sheds("INVITE", None)
    assert not control.sheds("INVITE", "a1b2")  # a re-INVITE in a dialog
    for method in ("ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "INFO", "UPDATE"):
        assert not control.sheds(method, None)
    assert control.shed == 1
    new = b"INVITE sip:101@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:101@x>\r\n"
    assert not control.drops_unread(new)  # shedding answers, it does not drop
    feed(control, [2.0, 2.0])
    assert control.drops_unread(new) and control.dropped == 1


@pytest.mark.parametrize(
    ("data", "new"),
    [
        (b"INVITE sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\n", True),
        (b"INVITE sip:a@b SIP/2.0\r\nt: <sip:a@b>\r\nf: <sip:c@d>;tag=1\r\n", True),
        (b"INVITE sip:a@b SIP/2.0\r\nTO : <sip:a@b>;TAG=9\r\n", False),
        (b"INVITE sip:a@b SIP/2.0\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>;tag=x\r\n", False),
        (b"BYE sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\n", False),
        (b"SIP/2.0 200 OK\r\nTo: <sip:a@b>\r\n", False),
    ],
)
def test_a_new_invite_is_told_from_its_bytes(data: bytes, new: bool) -> None:
    assert looks_like_new_invite(data) is new


def test_thresholds_are_checked() -> None:
    with pytest.raises(ValueError):
        OverloadConfig(shed_lag=0.5, drop_lag=0.1)
    with pytest.raises(ValueError):
        OverloadConfig(smoothing=0)
