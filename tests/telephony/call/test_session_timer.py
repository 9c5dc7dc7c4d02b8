"""Session timers (RFC 4028) in memory: a UAC and a UAS session on a virtual clock. Hours of
session run in microseconds: the clock is `Pair.now`, moved by `run_until`, which fires each
side's timer exactly when `get_timer()` says, as the asyncio facade does."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.call import Ended
from telephony.call.session import Respond, Send, SendAck, SendInvite, SessionState
from telephony.call.session_timer import (
    DISABLED,
    IntervalTooSmall,
    SessionTimer,
    SessionTimerConfig,
    parse_session_expires,
)
from telephony.sip import SipRequest, SipResponse, make_response

from .test_session import Pair, _via, _wire, answered, events, invite_pair

TIMER = SessionTimerConfig(session_expires=90, min_se=90)


def run_until(pair: Pair, end: float, *, sides: tuple[str, ...] = ("uac", "uas")) -> list[str]:
    """Move the clock to `end`, firing the timers of `sides` when due; returns what was sent
    on those timers, as "t side METHOD" lines."""
    sent: list[str] = []
    while True:
        due = [(t, side) for side in sides if (t := pair.side(side).get_timer()) is not None]
        if not due or min(due)[0] > end:
            pair.now = end
            return sent
        pair.now, side = min(due)
        effects = pair.side(side).handle_timer(pair.now)
        for effect in effects:
            if isinstance(effect, Send):
                sent.append(f"{pair.now:g} {side} {effect.request.method}")
        pair.deliver(side, effects)


def requests_of(pair: Pair, side: str, method: str, *, hold: bool = True) -> list[SipRequest]:
    """The requests of `method` the timer of `side` sends now, held back (not delivered)."""
    effects = pair.side(side).handle_timer(pair.now)
    found = [e.request for e in effects if isinstance(e, Send) and e.request.method == method]
    if not hold:
        pair.deliver(side, effects)
    return found


def header(message: SipRequest | SipResponse, name: str) -> str | None:
    return message.headers.get(name)


def ok_of(pair: Pair) -> SipResponse:
    """The UAS's 200 to the INVITE (answering it, undelivered)."""
    pair.uas_sdp.accept_offer(pair.uas.invite.body)
    effects = pair.uas.answer(now=pair.now)
    response = next(e.response for e in effects if isinstance(e, Respond))
    return response


# -- negotiation -----------------------------------------------------------------------------------


def test_the_uac_asks_and_the_uas_makes_the_uac_refresh() -> None:
    pair = invite_pair(uac_timer=TIMER, uas_timer=TIMER)
    invite = pair.uas.invite
    assert header(invite, "Supported") == "timer"
    assert header(invite, "Session-Expires") == "90"
    assert header(invite, "Min-SE") == "90"
    ok = ok_of(pair)
    assert header(ok, "Session-Expires") == "90;refresher=uac"
    assert header(ok, "Require") == "timer"  # the UAC said it supports timer
    pair.deliver("uas", [Respond(pair.uas.invite, ok)])
    assert pair.uac.timer.we_refresh and not pair.uas.timer.we_refresh
    assert pair.uac.get_timer() == 45.0  # refresh at half the interval
    assert pair.uas.get_timer() == 60.0  # 90 - min(32, 90/3)


def test_a_session_refreshed_by_the_uac_survives_many_intervals() -> None:
    pair = answered(invite_pair(uac_timer=TIMER, uas_timer=TIMER))
    sent = run_until(pair, 400.0)
    assert sent == [f"{t:g} uac INVITE" for t in (45, 90, 135, 180, 225, 270, 315, 360)]
    assert (pair.uac.state, pair.uas.state) == (SessionState.CONNECTED, SessionState.CONNECTED)
    assert not events(pair, "uac", Ended) and not events(pair, "uas", Ended)
    assert pair.uas.get_timer() == 360 + 60  # restarted by the last refresh


def test_a_uac_that_stops_refreshing_is_hung_up_at_the_expiry() -> None:
    pair = answered(invite_pair(uac_timer=TIMER, uas_timer=TIMER))
    run_until(pair, 100.0, sides=("uas",))  # the UAC never refreshes
    assert events(pair, "uas", Ended) == [Ended(pair.uas.call_id, "session-expired", None)]
    assert events(pair, "uac", Ended) == [Ended(pair.uac.call_id, "remote-bye", None)]
    assert pair.now == 100.0 and pair.uas.get_timer() is None


def test_the_expiry_is_the_interval_less_a_third_or_32_seconds() -> None:
    for interval, expiry in ((90, 60.0), (1800, 1768.0), (4, 4 - 4 / 3)):
        config = SessionTimerConfig(session_expires=interval, min_se=min(interval, 90))
        pair = answered(invite_pair(uac_timer=config, uas_timer=config))
        assert pair.uas.get_timer() == pytest.approx(expiry)
        assert pair.uas.handle_timer(expiry - 0.01) == []
        effects = pair.uas.handle_timer(expiry)
        assert [e.request.method for e in effects if isinstance(e, Send)] == ["BYE"]


def test_a_caller_that_names_no_timer_gets_none() -> None:
    """baresip: no Supported: timer, no Session-Expires: the 200 says we support it, no more."""
    pair = invite_pair(uas_timer=TIMER)
    assert header(pair.uas.invite, "Supported") is None
    ok = ok_of(pair)
    assert header(ok, "Supported") == "timer"
    assert header(ok, "Session-Expires") is None and header(ok, "Require") is None
    pair.deliver("uas", [Respond(pair.uas.invite, ok)])
    assert pair.uas.get_timer() is None and pair.uac.get_timer() is None
    assert run_until(pair, 10_000.0) == []
    assert pair.uas.state is SessionState.CONNECTED


def test_a_disabled_leg_neither_asks_nor_answers() -> None:
    pair = invite_pair(uac_timer=DISABLED, uas_timer=DISABLED, headers=(("Supported", "timer"),))
    ok = ok_of(pair)
    assert header(ok, "Session-Expires") is None and header(ok, "Supported") is None
    assert header(pair.uac.invite, "Session-Expires") is None


def test_a_uac_without_the_extension_behind_a_session_expires_makes_us_refresh() -> None:
    """A Session-Expires a proxy put in for a UAC that does not support timer: we refresh
    (refresher=uas), and no Require: timer goes to a UAC that would not understand it."""
    pair = invite_pair(uas_timer=SessionTimerConfig(), headers=(("Session-Expires", "120"),))
    ok = ok_of(pair)
    assert header(ok, "Session-Expires") == "120;refresher=uas"
    assert header(ok, "Require") is None
    pair.deliver("uas", [Respond(pair.uas.invite, ok)])
    assert pair.uas.timer.we_refresh and pair.uas.get_timer() == 60.0
    assert run_until(pair, 59.9) == []
    pair.now = 60.0
    (refresh,) = requests_of(pair, "uas", "INVITE")
    assert header(refresh, "Session-Expires") == "120;refresher=uac"  # the sender: us
    assert header(refresh, "Content-Type") == "application/sdp" and refresh.body


def test_the_uas_shortens_a_long_interval_to_its_own() -> None:
    config = SessionTimerConfig(session_expires=600, min_se=90)
    pair = invite_pair(
        uas_timer=config, headers=(("Supported", "timer"), ("Session-Expires", "7200"))
    )
    assert header(ok_of(pair), "Session-Expires") == "600;refresher=uac"


def test_the_engine_refreshes_toward_a_uas_that_makes_it_the_refresher() -> None:
    """The engine dials; the UAS answers refresher=uac: the engine re-INVITEs every half
    interval and the UAS, refreshed, keeps the call."""
    pair = answered(invite_pair(uac_timer=TIMER, uas_timer=TIMER))
    sent = run_until(pair, 200.0)
    assert sent == ["45 uac INVITE", "90 uac INVITE", "135 uac INVITE", "180 uac INVITE"]
    assert pair.uac.dialog is not None and pair.uac.dialog.local_seq == 5


# -- 422 -------------------------------------------------------------------------------------------


def test_a_too_small_interval_gets_422_and_the_uac_asks_again_with_the_min_se() -> None:
    strict = SessionTimerConfig(session_expires=1800, min_se=300)
    pair = invite_pair(uac_timer=TIMER, uas_timer=strict)
    refused = pair.uas.admit()
    response = next(e.response for e in refused if isinstance(e, Respond))
    assert response.status == 422 and header(response, "Min-SE") == "300"
    assert events(pair, "uas", Ended) == [] and pair.uas.state is SessionState.ENDED
    pair.deliver("uas", refused)
    # The UAC sent the INVITE again (CSeq 2, Session-Expires 300) and the new UAS took it.
    assert pair.uac.invite.cseq.seq == 2 and header(pair.uac.invite, "Session-Expires") == "300"
    assert pair.uas.invite.cseq.seq == 2 and pair.uas.state is SessionState.INCOMING
    assert pair.uac.state is SessionState.CALLING and pair.uac.final_status is None
    ok = ok_of(pair)
    assert header(ok, "Session-Expires") == "300;refresher=uac"
    pair.deliver("uas", [Respond(pair.uas.invite, ok)])
    assert pair.uac.state is SessionState.CONNECTED and pair.uac.get_timer() == 150.0


def test_a_422_that_asks_for_no_more_ends_the_call() -> None:
    pair = invite_pair(uac_timer=TIMER)
    bogus = make_response(pair.uac.invite, 422, to_tag="x", extra=[("Min-SE", "90")])
    effects = pair.uac.receive_response(_wire(bogus))  # type: ignore[arg-type]
    assert effects == [Ended(pair.uac.call_id, "rejected", 422)]


def test_422_retries_are_bounded() -> None:
    pair = invite_pair(uac_timer=TIMER)
    sent = 0
    for min_se in range(100, 200, 10):
        effects = pair.uac.receive_response(
            _wire(make_response(pair.uac.invite, 422, to_tag="x", extra=[("Min-SE", str(min_se))]))  # type: ignore[arg-type]
        )
        if any(isinstance(e, Ended) for e in effects):
            break
        assert [type(e) for e in effects] == [SendInvite]
        sent += 1
    assert sent == 3 and pair.uac.state is SessionState.ENDED


def test_a_too_small_refresh_gets_422_and_the_refresher_asks_again() -> None:
    pair = answered(invite_pair(uac_timer=TIMER, uas_timer=TIMER))
    pair.uas.timer.config = SessionTimerConfig(session_expires=1800, min_se=150)
    assert run_until(pair, 45.0) == ["45 uac INVITE"]  # 422, then the INVITE again at once
    assert pair.uac.dialog is not None and pair.uac.dialog.local_seq == 3
    assert pair.uac.timer.interval == 150 and pair.uac.get_timer() == 45 + 75


def test_a_reinvite_from_the_peer_below_min_se_gets_422_and_changes_nothing() -> None:
    pair = answered(invite_pair(uac_timer=TIMER, uas_timer=TIMER))
    assert pair.uac.dialog is not None
    small = pair.uac.dialog.create_request(
        "INVITE", via=_via("10.0.0.1"), contact=pair.uac.contact,
        headers=[("Session-Expires", "30")],
        body=pair.uac_sdp.local_sdp(), content_type="application/sdp",
    )  # fmt: skip
    (effect,) = pair.uas.receive_request(_wire(small), now=10.0)  # type: ignore[arg-type]
    assert isinstance(effect, Respond) and effect.response.status == 422
    assert header(effect.response, "Min-SE") == "90"
    assert pair.uas.get_timer() == 60.0


# -- refreshes that fail ---------------------------------------------------------------------------


def _refresh_answered(status: int) -> tuple[Pair, list[object]]:
    pair = answered(invite_pair(uac_timer=TIMER, uas_timer=TIMER))
    pair.now = 45.0
    (refresh,) = requests_of(pair, "uac", "INVITE")
    response = make_response(refresh, status, to_tag=pair.uas.local_tag)
    return pair, list(pair.uac.receive_response(_wire(response), now=45.0))  # type: ignore[arg-type]


def test_a_refresh_answered_481_ends_the_call_without_bye() -> None:
    pair, effects = _refresh_answered(481)
    assert effects == [Ended(pair.uac.call_id, "refresh-failed", None)]


def test_a_refresh_answered_408_ends_the_call_with_bye() -> None:
    pair, effects = _refresh_answered(408)
    assert [type(e) for e in effects] == [Send, Ended]
    assert isinstance(effects[0], Send) and effects[0].request.method == "BYE"
    assert effects[1] == Ended(pair.uac.call_id, "refresh-failed", None)


def test_a_refresh_that_times_out_ends_the_call_with_bye() -> None:
    pair = answered(invite_pair(uac_timer=TIMER, uas_timer=TIMER))
    pair.now = 45.0
    (refresh,) = requests_of(pair, "uac", "INVITE")
    bye = pair.uac.request_timed_out(refresh)
    assert [e.request.method for e in bye if isinstance(e, Send)] == ["BYE"]
    assert bye[-1] == Ended(pair.uac.call_id, "refresh-failed", None)


def test_a_refresh_answered_491_is_tried_again_before_the_expiry() -> None:
    pair, effects = _refresh_answered(491)
    assert effects == [] and pair.uac.state is SessionState.CONNECTED
    # Expiry (as the UAC sees it) at 60: the next try halfway there.
    assert pair.uac.get_timer() == pytest.approx(52.5)
    pair.now = 52.5
    assert len(requests_of(pair, "uac", "INVITE")) == 1


def test_a_reinvite_crossing_our_refresh_gets_491() -> None:
    pair = answered(invite_pair(uac_timer=TIMER, uas_timer=TIMER))
    pair.now = 45.0
    requests_of(pair, "uac", "INVITE")  # our refresh is out
    assert pair.uas.dialog is not None
    theirs = pair.uas.dialog.create_request(
        "INVITE", via=_via("10.0.0.2"), contact=pair.uas.contact,
        body=pair.uas_sdp.local_sdp(), content_type="application/sdp",
    )  # fmt: skip
    (effect,) = pair.uac.receive_request(_wire(theirs), now=45.0)  # type: ignore[arg-type]
    assert isinstance(effect, Respond) and effect.response.status == 491


def test_a_bare_update_refreshes_and_gets_no_sdp() -> None:
    pair = answered(invite_pair(uac_timer=TIMER, uas_timer=TIMER))
    assert pair.uac.dialog is not None
    update = pair.uac.dialog.create_request(
        "UPDATE", via=_via("10.0.0.1"), contact=pair.uac.contact,
        headers=[("Supported", "timer"), ("Session-Expires", "90;refresher=uac")],
    )  # fmt: skip
    (effect,) = pair.uas.receive_request(_wire(update), now=40.0)  # type: ignore[arg-type]
    assert isinstance(effect, Respond) and effect.response.status == 200
    assert effect.response.body == b"" and header(effect.response, "Content-Type") is None
    assert header(effect.response, "Session-Expires") == "90;refresher=uac"
    assert pair.uas.get_timer() == 40.0 + 60


def test_a_retransmitted_refresh_200_is_acked_again() -> None:
    pair = answered(invite_pair(uac_timer=TIMER, uas_timer=TIMER))
    pair.now = 45.0
    (refresh,) = requests_of(pair, "uac", "INVITE")
    effects = pair.uas.receive_request(_wire(refresh), now=45.0)  # type: ignore[arg-type]
    ok = _wire(next(e.response for e in effects if isinstance(e, Respond)))
    assert isinstance(ok, SipResponse)
    first = pair.uac.receive_response(ok, now=45.0)
    again = pair.uac.receive_response(ok, now=45.1)
    assert [type(e) for e in first] == [SendAck] and [type(e) for e in again] == [SendAck]
    assert pair.uac.get_timer() == 90.0


# -- header rules ----------------------------------------------------------------------------------


def test_parse_session_expires() -> None:
    assert parse_session_expires("1800") == (1800, None)
    assert parse_session_expires("90 ; refresher=UAS") == (90, "uas")
    assert parse_session_expires("90;foo=bar;refresher=uac") == (90, "uac")
    for bad in ("", "abc", "-5", "90;refresher=proxy", "9" * 11):
        with pytest.raises(ValueError):
            parse_session_expires(bad)


def test_a_garbled_session_expires_is_ignored() -> None:
    pair = invite_pair(uas_timer=TIMER, headers=(("Session-Expires", "soon"),))
    assert pair.uas.admit() == []
    assert header(ok_of(pair), "Session-Expires") is None


def test_config_bounds() -> None:
    with pytest.raises(ValueError):
        SessionTimerConfig(session_expires=60, min_se=90)
    with pytest.raises(ValueError):
        SessionTimerConfig(session_expires=60, min_se=0)
    timer = SessionTimer(TIMER)
    assert not timer.active and timer.get_timer() is None
    assert IntervalTooSmall(30, 90).headers == [("Min-SE", "90")]


# (no gap within a microsecond of the 60 s bound, where float rounding decides)
GAPS = st.floats(min_value=0.5, max_value=80.0).filter(lambda gap: abs(gap - 60) > 1e-6)


@settings(max_examples=100, deadline=None)
@given(st.lists(GAPS, min_size=1, max_size=12))
def test_the_uas_ends_the_call_exactly_when_a_refresh_comes_too_late(gaps: list[float]) -> None:
    """A refreshing peer that waits `gaps` seconds before each refresh: the call ends (with BYE,
    session-expired) at the first gap of 60 s or more (90 - 90/3), never otherwise."""
    pair = answered(invite_pair(uac_timer=TIMER, uas_timer=TIMER))
    assert pair.uac.dialog is not None
    for gap in gaps:
        run_until(pair, pair.now + gap, sides=("uas",))
        if gap >= 60:
            assert events(pair, "uas", Ended) == [Ended(pair.uas.call_id, "session-expired", None)]
            return
        assert pair.uas.state is SessionState.CONNECTED
        refresh = pair.uac.dialog.create_request(
            "INVITE", via=_via("10.0.0.1"), contact=pair.uac.contact,
            headers=[("Supported", "timer"), ("Session-Expires", "90;refresher=uac")],
            body=pair.uac_sdp.local_sdp(), content_type="application/sdp",
        )  # fmt: skip
        pair.deliver("uac", [Send(refresh)])
        assert pair.uas.get_timer() == pytest.approx(pair.now + 60)
    assert not events(pair, "uas", Ended)
