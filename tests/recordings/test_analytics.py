from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recordings import RecordingError, SpeechAnalytics, TalkCounter, VadSmoother

from ._audio import RATE, tone, voice

FRAME = 160


def pattern(text: str) -> list[bool]:
    """'#' is a speech frame, '.' silence (spaces ignored)."""
    return [c == "#" for c in text.replace(" ", "")]


def smooth(raw: list[bool], hangover_frames: int = 3) -> list[bool]:
    smoother = VadSmoother(hangover_frames)
    out = [smoother.step(r) for r in [*raw, False]]
    assert out[0] is None  # one frame late
    return [bool(o) for o in out[1:]]


def count(customer: list[bool], agent: list[bool], gap_frames: int = 15) -> TalkCounter:
    counter = TalkCounter(monologue_gap_frames=gap_frames)
    for c, a in zip(customer, agent, strict=True):
        counter.add(c, a)
    return counter


def analyse(left: np.ndarray, right: np.ndarray, **kwargs: int) -> SpeechAnalytics:
    n = max(left.size, right.size)
    n += -n % FRAME
    left, right = np.pad(left, (0, n - left.size)), np.pad(right, (0, n - right.size))
    analytics = SpeechAnalytics(**kwargs)
    for i in range(0, n, FRAME):
        analytics.feed(left[i : i + FRAME], right[i : i + FRAME])
    return analytics


# -- smoothing -----------------------------------------------------------------------------------


def test_a_lone_speech_frame_is_a_click_not_talk() -> None:
    assert smooth(pattern("....#....#.....")) == [False] * 15
    assert smooth(pattern("....##........."), 0) == pattern("....##.........")


def test_hangover_bridges_dips_between_syllables() -> None:
    raw = pattern("..####..###....#####......")
    assert smooth(raw, 3) == pattern(".. ############ . ######## ...")
    assert smooth(raw, 0) == raw


# -- counting ------------------------------------------------------------------------------------


def test_talk_silence_overtalk_and_ratio_from_a_known_pattern() -> None:
    customer = [True] * 50 + [False] * 100
    agent = [False] * 25 + [True] * 75 + [False] * 50
    result = count(customer, agent).result()
    assert result.duration_seconds == 3.0
    assert result.customer_talk_seconds == 1.0
    assert result.agent_talk_seconds == 1.5
    assert result.overtalk_seconds == 0.5
    assert result.silence_seconds == 1.0
    assert result.customer_longest_monologue_seconds == 1.0
    assert result.agent_longest_monologue_seconds == 1.5
    assert result.agent_talk_ratio == 0.6


def test_monologue_bridges_pauses_up_to_300_ms() -> None:
    quiet = [False] * 40
    bridged = pattern("#" * 10 + "." * 15 + "#" * 10)  # 300 ms pause: one run of 35 frames
    split = pattern("#" * 10 + "." * 16 + "#" * 20)  # 320 ms pause: two runs, longest 20
    result = count(bridged + quiet + split, [False] * (35 + 40 + 46)).result()
    assert result.customer_longest_monologue_seconds == 0.7
    result = count(split, [False] * 46).result()
    assert result.customer_longest_monologue_seconds == 0.4
    assert result.customer_talk_seconds == 0.6


def test_nobody_talking() -> None:
    result = count([False] * 10, [False] * 10).result()
    assert result.silence_seconds == result.duration_seconds == 0.2
    assert result.agent_talk_ratio is None
    assert json.loads(json.dumps(result.to_dict())) == result.to_dict()


@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=300), st.integers(0, 20))
def test_the_parts_add_up(frames: list[tuple[bool, bool]], gap: int) -> None:
    customer, agent = [c for c, _ in frames], [a for _, a in frames]
    r = count(customer, agent, gap).result()
    only_c = r.customer_talk_seconds - r.overtalk_seconds
    only_a = r.agent_talk_seconds - r.overtalk_seconds
    assert r.silence_seconds + only_c + only_a + r.overtalk_seconds == pytest.approx(
        r.duration_seconds
    )
    assert r.duration_seconds == pytest.approx(len(frames) * 0.02)
    for side, talk, longest in (
        (customer, r.customer_talk_seconds, r.customer_longest_monologue_seconds),
        (agent, r.agent_talk_seconds, r.agent_longest_monologue_seconds),
    ):
        runs = "".join("#" if s else "." for s in side).split(".")
        longest_plain = max((len(run) for run in runs), default=0) * 0.02
        assert longest_plain - 1e-9 <= longest <= (len(side) * 0.02 if talk else 0) + 1e-9
        if gap == 0:
            assert longest == pytest.approx(longest_plain)


# -- webrtcvad on signals ------------------------------------------------------------------------


def test_voice_bursts_with_known_on_off() -> None:
    """Customer speaks 0-2 s and 5-6 s, the agent 1.5-4 s, over 7 s."""
    left = np.zeros(7 * RATE, dtype=np.int16)
    right = np.zeros(7 * RATE, dtype=np.int16)
    left[: 2 * RATE] = voice(2.0, 120)
    left[5 * RATE : 6 * RATE] = voice(1.0, 120)
    right[int(1.5 * RATE) : 4 * RATE] = voice(2.5, 210)
    r = analyse(left, right).result()
    # webrtcvad's own hangover plus ours (60 ms) make each talk spurt up to ~0.2 s longer.
    assert r.duration_seconds == 7.0
    assert 3.0 <= r.customer_talk_seconds <= 3.4
    assert 2.5 <= r.agent_talk_seconds <= 2.75
    assert 0.5 <= r.overtalk_seconds <= 0.75
    assert 1.6 <= r.silence_seconds <= 2.0
    assert 2.0 <= r.customer_longest_monologue_seconds <= 2.25
    assert 2.5 <= r.agent_longest_monologue_seconds <= 2.75
    assert r.agent_talk_ratio == pytest.approx(2.5 / 5.5, abs=0.05)


def test_digital_silence_and_quiet_hum_are_not_speech() -> None:
    hum = tone(50, 3.0, amplitude=30)  # mains hum far below speech level
    r = analyse(np.zeros(3 * RATE, dtype=np.int16), hum).result()
    assert r.customer_talk_seconds == r.agent_talk_seconds == 0
    assert r.silence_seconds == 3.0


def test_result_mid_call_changes_nothing() -> None:
    speech, quiet = voice(1.0), np.zeros(RATE, dtype=np.int16)
    analytics = analyse(speech, quiet)
    first = analytics.result()
    assert analytics.result() == first
    assert first.customer_talk_seconds == pytest.approx(1.0, abs=0.1)
    for _ in range(50):
        analytics.feed(np.zeros(FRAME, dtype=np.int16), np.zeros(FRAME, dtype=np.int16))
    whole = analyse(np.concatenate([speech, quiet]), np.concatenate([quiet, quiet]))
    assert analytics.result() == whole.result()


def test_bad_frames_and_settings() -> None:
    analytics = SpeechAnalytics()
    with pytest.raises(RecordingError):
        analytics.feed(np.zeros(80, dtype=np.int16), np.zeros(80, dtype=np.int16))
    with pytest.raises(RecordingError):
        SpeechAnalytics(4)
    with pytest.raises(RecordingError):
        SpeechAnalytics(hangover_ms=-20)


def test_real_speech_turns_overtalk_and_silence(speak: Callable[[str, str], np.ndarray]) -> None:
    customer = speak("Hello, I am calling about my order. It has not arrived yet.", "en-us")
    agent = speak("I am sorry to hear that. Let me check the status for you.", "en-gb")
    # Customer speaks; 1 s pause; the agent answers; 1 s pause; both at once; 1 s of silence.
    t_agent = customer.size + RATE
    t_both = t_agent + agent.size + RATE
    n = t_both + max(customer.size, agent.size) + RATE
    left, right = np.zeros(n, dtype=np.int16), np.zeros(n, dtype=np.int16)
    left[: customer.size] = customer
    right[t_agent : t_agent + agent.size] = agent
    left[t_both : t_both + customer.size] = customer
    right[t_both : t_both + agent.size] = agent
    r = analyse(left, right).result()

    c_span, a_span = customer.size / RATE, agent.size / RATE
    overlap = min(c_span, a_span)
    # Talk is the spoken span, minus the longer pauses between words, plus a little hangover.
    assert 0.8 * 2 * c_span <= r.customer_talk_seconds <= 2 * c_span + 0.5
    assert 0.8 * 2 * a_span <= r.agent_talk_seconds <= 2 * a_span + 0.5
    assert 0.8 * overlap <= r.overtalk_seconds <= overlap + 0.3
    # The three 1 s pauses are silence; so are a few gaps between words.
    assert 2.6 <= r.silence_seconds <= 3.0 + 0.25 * (2 * c_span + 2 * a_span)
    # Pauses between words (< 300 ms) do not break a monologue: each utterance is one run.
    assert r.customer_longest_monologue_seconds == pytest.approx(c_span, abs=0.4)
    assert r.agent_longest_monologue_seconds == pytest.approx(a_span, abs=0.4)
    assert r.agent_talk_ratio == pytest.approx(a_span / (a_span + c_span), abs=0.08)
