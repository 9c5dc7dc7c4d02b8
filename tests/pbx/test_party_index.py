"""The switchboard's index of who is on which call (what `busy` reads) against a scan of the calls
in progress, through every way a call's parties change and calls come and go."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.b2bua import ActiveCalls, BridgedCall, CallSummary
from telephony.sip import NameAddr

EXTS = ["101", "102", "103", "104"]
KEYS = ["a", "b", "c"]


def _call(caller: str, callee: str) -> BridgedCall:
    summary = CallSummary("x", caller, callee, datetime.now(UTC))
    return BridgedCall(
        None,  # type: ignore[arg-type]  # the index reads no leg (only its Call-ID)
        SimpleNamespace(call_id="x"),  # type: ignore[arg-type]
        caller=caller,
        callee=callee,
        steps=[],
        ring_timeout=30.0,
        caller_identity=NameAddr.parse(f"<sip:{caller}@127.0.0.1>"),
        summary=summary,
    )


def _scan(active: ActiveCalls, extension: str) -> int:
    return sum(extension in call.parties or extension in call.hunting for call in active.values())


ext = st.sampled_from(EXTS)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("start"), st.sampled_from(KEYS), ext, ext),
        st.tuples(st.just("end"), st.sampled_from(KEYS)),
        st.tuples(st.just("pop"), st.sampled_from(KEYS)),
        st.tuples(st.just("caller"), st.sampled_from(KEYS), ext),
        st.tuples(st.just("callee"), st.sampled_from(KEYS), ext),
        st.tuples(st.just("hunt"), st.sampled_from(KEYS), st.sets(ext, max_size=3)),
        st.tuples(st.just("clear")),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(steps=steps)
async def test_the_index_counts_what_a_scan_counts(steps: list[tuple[Any, ...]]) -> None:
    active = ActiveCalls()
    gone: list[BridgedCall] = []
    for step in steps:
        match step:
            case ("start", key, caller, callee):
                active[key] = _call(caller, callee)
            case ("end", key):
                if key in active:
                    gone.append(active[key])
                    del active[key]
            case ("pop", key):
                call = active.pop(key, None)
                if call is not None:
                    gone.append(call)
            case ("caller", key, value) if key in active:
                active[key].caller = value
            case ("callee", key, value) if key in active:
                active[key].callee = value
            case ("hunt", key, value) if key in active:
                active[key].hunting = value
            case ("clear",):
                gone.extend(active.values())
                active.clear()
        for call in gone:  # a call that left changes nothing any more
            call.callee = call.caller = "101"
        for extension in EXTS:
            assert active.parties.calls_of(extension) == _scan(active, extension)
