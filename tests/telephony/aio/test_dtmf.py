"""One press, one digit: RFC 4733, SIP INFO and in-band tones on a real Call, debounced.

Two of our own UserAgents on loopback: the caller sends digits every way a carrier might (as
telephone-event packets, as INFO, as tones in the audio, and the same press two ways at once);
the callee's Call must report each press exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telephony.aio import Call, UserAgent
from telephony.aio.dtmf import DtmfDebouncer
from telephony.call import Dtmf
from telephony.media import dtmf_sequence
from telephony.rtp import DtmfSender

from .conftest import answered_call


def test_same_digit_from_another_source_is_the_same_press() -> None:
    debouncer = DtmfDebouncer(window=0.5)
    assert debouncer.accept("5", "rfc4733", now=10.0)
    assert not debouncer.accept("5", "inband", now=10.06)
    assert debouncer.accept("5", "rfc4733", now=10.3)  # a second press on the same channel
    assert not debouncer.accept("5", "inband", now=10.35)
    assert debouncer.accept("5", "inband", now=11.0)  # too late to be a copy: a new press
    assert debouncer.accept("6", "info", now=11.01)  # another key is always a new press


@given(st.lists(st.tuples(st.sampled_from("159#"), st.floats(0.2, 2.0)), max_size=20))
def test_one_source_alone_never_loses_a_press(presses: list[tuple[str, float]]) -> None:
    debouncer = DtmfDebouncer()
    now = 0.0
    for digit, gap in presses:
        now += gap
        assert debouncer.accept(digit, "rfc4733", now=now)


@pytest.fixture
async def pair(user_agents: tuple[UserAgent, UserAgent]) -> AsyncIterator[tuple[Call, Call]]:
    """An answered call between two UserAgents: (caller's leg, callee's leg)."""
    caller, callee = await answered_call(*user_agents)
    try:
        yield caller, callee
    finally:
        await caller.hangup()
        await asyncio.sleep(0.05)


async def send_rfc4733(call: Call, digit: str, *, seq: int, timestamp: int) -> int:
    assert call.media is not None and call.media.remote_dte_pt is not None
    sender = DtmfSender(
        digit, payload_type=call.media.remote_dte_pt, ssrc=4711, timestamp=timestamp
    )
    while (packet := sender.next_packet(seq)) is not None:
        call.media.rtp.send(bytes(packet))
        seq += 1
        await asyncio.sleep(0.02)
    return seq


async def digits_within(call: Call, seconds: float) -> list[Dtmf]:
    found: list[Dtmf] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            event = await call.next_event(timeout=left)
        except TimeoutError:
            break
        if isinstance(event, Dtmf):
            found.append(event)
    return found


async def test_inband_tones_are_heard_once_each(pair: tuple[Call, Call]) -> None:
    caller, callee = pair
    undo = callee.detect_inband()
    await caller.play(dtmf_sequence("1590#", tone=0.08, gap=0.08))
    got = await digits_within(callee, 0.5)
    assert [(d.digit, d.method) for d in got] == [(k, "inband") for k in "1590#"]
    assert callee.flush_digits() == "1590#"
    undo()
    await caller.play(dtmf_sequence("7"))  # detection off: nothing
    assert await digits_within(callee, 0.3) == []


async def test_each_source_alone_and_two_at_once(pair: tuple[Call, Call]) -> None:
    caller, callee = pair
    callee.detect_inband()
    await caller.send_dtmf("4", method="info")
    assert [(d.digit, d.method) for d in await digits_within(callee, 0.5)] == [("4", "info")]
    seq = await send_rfc4733(caller, "8", seq=100, timestamp=8000)
    assert [(d.digit, d.method) for d in await digits_within(callee, 0.5)] == [("8", "rfc4733")]
    # One press, sent as an RFC 4733 event and left in the audio too: one digit.
    tone = asyncio.ensure_future(caller.play(dtmf_sequence("3", tone=0.12)))
    await send_rfc4733(caller, "3", seq=seq, timestamp=32000)
    await tone
    await caller.send_dtmf("3", method="info")  # and a phone that also sends INFO for it
    got = await digits_within(callee, 0.6)
    assert [d.digit for d in got] == ["3"], got
    assert callee.flush_digits() == "483"
