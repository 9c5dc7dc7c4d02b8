"""Answering-machine detection: synthetic signals for exact frame counts, espeak-ng for speech.

Time is frames fed (20 ms each); every assertion on timing counts frames, never wall time.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer import (
    AmdConfig,
    AmdDecision,
    AmdReason,
    AnsweringMachineDetector,
    BeepConfig,
    BeepDetector,
    Verdict,
)
from dialer.amd import syllable_nuclei
from sip_test_env import tools
from telephony.media import dbfs

from ._amd_audio import RATE, Speaker, frame_count, frames, gap, mix, noise, scale, tone, voice

DEFAULTS = AmdConfig()
AFTER_GREETING = DEFAULTS.after_greeting_silence_ms // 20  # first look after a greeting
BEEP_WAIT = DEFAULTS.beep_wait_ms // 20  # the longest wait for a beep after a greeting
DEADLINE = DEFAULTS.max_analysis_ms // 20
INITIAL = DEFAULTS.initial_silence_ms // 20
PERSON = (Verdict.HUMAN, (AmdReason.SHORT_GREETING, AmdReason.NO_BEEP))
# webrtcvad holds "speech" a few frames past the end of a word.
HANGOVER = 10
# A word's faint tail (the hiss of "yes") may pass for silence.
FAINT_TAIL = 5


def detect(samples: np.ndarray, config: AmdConfig | None = None) -> AmdDecision:
    detector = AnsweringMachineDetector(config)
    for frame in frames(np.concatenate([samples, gap(4.0)])):
        decision = detector.feed(frame)
        if decision is not None:
            assert decision.frames == detector.frames
            return decision
    raise AssertionError("no decision within the audio")


def beep_end_frame(samples: np.ndarray, config: BeepConfig | None = None) -> int | None:
    """Frames fed when BeepDetector first said the beep had ended."""
    detector = BeepDetector(config)
    for frame in frames(samples):
        if detector.feed(frame):
            assert detector.beep_ended
            return detector.frames
    return None


@pytest.fixture(scope="module")
def speaker(tmp_path_factory: pytest.TempPathFactory) -> Speaker:
    tools.require("espeak-ng", "sox")
    return Speaker(tmp_path_factory.mktemp("amd-speech"))


# -- silence, noise, synthetic voice ------------------------------------------------------------


def test_silent_answer_is_unsure_after_initial_silence() -> None:
    decision = detect(gap(4.0))
    assert (decision.verdict, decision.reason) == (Verdict.UNSURE, AmdReason.INITIAL_SILENCE)
    assert decision.frames == INITIAL
    assert decision.seconds == pytest.approx(INITIAL * 0.02)
    assert decision.words == 0 and decision.initial_silence_ms == INITIAL * 20


def test_initial_silence_verdict_is_configurable() -> None:
    config = AmdConfig(initial_silence_ms=1000, initial_silence_verdict=Verdict.MACHINE)
    decision = detect(gap(2.0), config)
    assert (decision.verdict, decision.frames) == (Verdict.MACHINE, 50)


@settings(max_examples=15, deadline=None)
@given(level=st.floats(-70.0, -20.0), seed=st.integers(0, 2**16))
def test_steady_line_noise_is_no_speech(level: float, seed: int) -> None:
    decision = detect(noise(3.0, level, seed))
    assert (decision.verdict, decision.reason) == (Verdict.UNSURE, AmdReason.INITIAL_SILENCE)
    assert decision.words == 0


def test_a_click_is_not_a_word() -> None:
    decision = detect(np.concatenate([gap(0.5), noise(0.04, -10.0), gap(3.0)]))
    assert decision.reason is AmdReason.INITIAL_SILENCE


@settings(max_examples=20, deadline=None)
@given(lead=st.floats(0.1, 1.0), length=st.floats(0.2, 0.8), f0=st.floats(100.0, 250.0))
def test_short_greeting_then_silence_is_human_after_the_silence(
    lead: float, length: float, f0: float
) -> None:
    speech = np.concatenate([gap(lead), voice(length, f0)])
    decision = detect(speech)
    assert decision.verdict is PERSON[0] and decision.reason in PERSON[1]
    end = frame_count(speech)  # the last frame may hold too little voice to count
    assert end - 1 + AFTER_GREETING <= decision.frames <= end + BEEP_WAIT + HANGOVER
    assert 0.5 <= decision.confidence <= 1.0
    assert decision.words == 1
    assert abs(decision.initial_silence_ms - lead * 1000) <= 60


def test_continuous_speech_is_a_long_greeting() -> None:
    decision = detect(np.concatenate([gap(0.3), voice(7.0)]))
    assert (decision.verdict, decision.reason) == (Verdict.MACHINE, AmdReason.LONG_GREETING)
    # Judged by the model from min_machine_greeting_ms on, a machine's at max_greeting_ms.
    assert DEFAULTS.min_machine_greeting_ms <= decision.greeting_ms <= DEFAULTS.max_greeting_ms
    assert decision.frames == 15 + decision.greeting_ms // 20  # speech from frame 15


def test_continuous_speech_without_the_model_is_a_machine_at_max_greeting() -> None:
    config = AmdConfig(talking_machine_above=2.0, max_greeting_ms=3000)
    decision = detect(np.concatenate([gap(0.3), voice(4.0)]), config)
    assert (decision.verdict, decision.reason) == (Verdict.MACHINE, AmdReason.LONG_GREETING)
    assert decision.frames == 15 + 150  # speech from frame 15, 3 s of it
    assert decision.greeting_ms == 3000


def test_far_voices_after_the_greeting_are_background() -> None:
    """A room's babble 25 dB under the person's hello is not more greeting."""
    far = np.concatenate([voice(0.6, 180.0, dbfs=-45.0), gap(0.2)] * 6)
    audio = np.concatenate([gap(0.3), voice(0.5, dbfs=-20.0), gap(0.3), far])
    decision = detect(audio)
    assert decision.verdict is Verdict.HUMAN and decision.words == 1
    # Either relative gate alone holds them off: the frame's (under the speaker's level) and
    # the word's (under the loudest word's).
    assert detect(audio, AmdConfig(max_below_speech_db=math.inf)).words == 1
    assert detect(audio, AmdConfig(max_word_drop_db=math.inf)).words == 1
    loud = detect(audio, AmdConfig(max_below_speech_db=math.inf, max_word_drop_db=math.inf))
    assert loud.words > 1  # without the relative gates the far voices count


def test_many_words_are_a_machine() -> None:
    words = np.concatenate([np.concatenate([voice(0.25), gap(0.15)]) for _ in range(9)])
    decision = detect(np.concatenate([gap(0.3), words]), AmdConfig(max_words=6))
    assert (decision.verdict, decision.reason) == (Verdict.MACHINE, AmdReason.TOO_MANY_WORDS)
    assert decision.words == 7  # one more than max_words


def test_short_pauses_stay_inside_the_greeting() -> None:
    """Pauses shorter than the after-greeting silence do not end a greeting: it grows long."""
    phrase = np.concatenate([voice(0.6), gap(0.4)])
    config = AmdConfig(talking_machine_above=2.0, max_greeting_ms=2300)
    decision = detect(np.concatenate([gap(0.2), phrase, phrase, phrase, phrase]), config)
    assert (decision.verdict, decision.reason) == (Verdict.MACHINE, AmdReason.LONG_GREETING)
    assert decision.words == 3


def test_beep_after_speech_is_a_machine_at_once() -> None:
    speech = np.concatenate([gap(0.3), voice(0.5), gap(0.3)])
    decision = detect(np.concatenate([speech, tone(1000.0, 0.3), gap(2.0)]))
    assert (decision.verdict, decision.reason) == (Verdict.MACHINE, AmdReason.BEEP)
    assert decision.frames in (frame_count(speech) + 16, frame_count(speech) + 17)


def test_beep_detection_can_be_off() -> None:
    speech = np.concatenate([gap(0.3), voice(0.5), gap(0.3), tone(1000.0, 0.3)])
    decision = detect(speech, AmdConfig(detect_beep=False))
    assert decision.reason is not AmdReason.BEEP


# The deadline at 3.5 s, the model asked only at the deadline: its answer there is the verdict.
AT_DEADLINE = AmdConfig(
    max_analysis_ms=3500, initial_silence_ms=2500, talking_machine_above=2.0, human_below=0.0,
    machine_above=1.0, beep_wait_ms=5000,
)  # fmt: skip


def test_deadline_without_guess_is_unsure() -> None:
    late = np.concatenate([gap(1.5), voice(3.0)])  # 2 s of greeting by the deadline: undecided
    decision = detect(late, dataclasses.replace(AT_DEADLINE, guess_on_timeout=False))
    assert (decision.verdict, decision.reason, decision.frames) == (
        Verdict.UNSURE,
        AmdReason.TIMEOUT,
        175,
    )


def test_deadline_guess_is_the_model_s() -> None:
    talking = detect(np.concatenate([gap(1.5), voice(3.0)]), AT_DEADLINE)
    assert (talking.reason, talking.frames) == (AmdReason.TIMEOUT, 175)
    detector = AnsweringMachineDetector(AT_DEADLINE)
    for frame in frames(np.concatenate([gap(1.5), voice(3.0)])):
        if detector.feed(frame):
            break
    assert detector.probability is not None
    expected = Verdict.MACHINE if detector.probability >= 0.5 else Verdict.HUMAN
    assert talking.verdict is expected
    assert talking.confidence == pytest.approx(
        max(detector.probability, 1 - detector.probability), abs=1e-3
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern=st.lists(
        st.tuples(st.booleans(), st.floats(0.02, 1.0), st.sampled_from([-40.0, -25.0, -10.0])),
        min_size=1,
        max_size=12,
    ),
    guess=st.booleans(),
)
def test_always_decides_by_the_deadline(
    pattern: list[tuple[bool, float, float]], guess: bool
) -> None:
    audio = np.concatenate(
        [voice(seconds, dbfs=level) if speak else gap(seconds) for speak, seconds, level in pattern]
    )
    decision = detect(audio, AmdConfig(guess_on_timeout=guess))
    assert decision.frames <= DEADLINE
    if decision.reason is AmdReason.TIMEOUT:
        assert decision.frames == DEADLINE
    assert 0.5 <= decision.confidence <= 1.0
    if not guess:
        assert decision.reason is not AmdReason.TIMEOUT or decision.verdict is Verdict.UNSURE


def test_decision_is_reported_again_without_more_analysis() -> None:
    detector = AnsweringMachineDetector()
    decision = None
    for frame in frames(gap(INITIAL * 0.02 + 0.5)):
        decision = detector.feed(frame) or decision
    assert decision is not None and detector.decision is decision
    assert detector.frames == INITIAL
    assert detector.feed(np.zeros(160, dtype=np.int16)) is decision
    assert detector.frames == INITIAL


def test_bad_frames_and_settings_are_refused() -> None:
    detector = AnsweringMachineDetector()
    with pytest.raises(ValueError):
        detector.feed(np.zeros(80, dtype=np.int16))
    with pytest.raises(ValueError):
        detector.feed(np.zeros(160, dtype=np.float64))
    with pytest.raises(ValueError):
        BeepDetector().feed(np.zeros(320, dtype=np.int16))
    with pytest.raises(ValueError):
        AmdConfig(vad_aggressiveness=4)
    with pytest.raises(ValueError):
        AmdConfig(max_words=0)
    with pytest.raises(ValueError):
        BeepConfig(min_frequency_hz=2500.0, max_frequency_hz=2000.0)
    with pytest.raises(ValueError):
        BeepConfig(min_tone_share=0.0)
    with pytest.raises(ValueError):
        BeepConfig(min_duration_ms=10)


def test_beep_sounding_at_the_deadline_is_heard_to_its_end() -> None:
    config = AmdConfig(max_analysis_ms=2000, talking_machine_above=2.0, max_greeting_ms=5000)
    audio = np.concatenate([gap(0.2), voice(1.5), gap(0.2), tone(1000.0, 0.6), gap(1.0)])
    decision = detect(audio, config)
    assert (decision.verdict, decision.reason) == (Verdict.MACHINE, AmdReason.BEEP)
    assert decision.frames > 100  # after the deadline: the beep ended after it


def sit(first: float = 913.8, second: float = 1370.6, third: float = 1776.7) -> np.ndarray:
    return np.concatenate([tone(first, 0.274), tone(second, 0.274), tone(third, 0.38)])


@pytest.mark.parametrize("first", [913.8, 985.2])
def test_special_information_tones_are_sit(first: float) -> None:
    decision = detect(np.concatenate([gap(0.3), sit(first), voice(2.0)]))
    assert (decision.verdict, decision.reason) == (Verdict.SIT, AmdReason.SIT_TONES)
    assert decision.frames <= frame_count(np.concatenate([gap(0.3), sit(first)]))


@pytest.mark.parametrize("lost_frame", [3, 6, 9])
def test_a_lost_packet_inside_the_first_sit_tone_does_not_make_it_a_beep(lost_frame: int) -> None:
    """A packet lost in the first tone (zeros in its place) cut it into two short runs, the
    first of which passed for a beep."""
    lead = gap(0.3)
    audio = np.concatenate([lead, sit(), voice(2.0)])
    start = lead.size + lost_frame * 160 - lead.size % 160
    audio[start : start + 160] = 0
    decision = detect(audio)
    assert (decision.verdict, decision.reason) == (Verdict.SIT, AmdReason.SIT_TONES)


def test_a_beep_at_a_sit_frequency_is_still_a_beep() -> None:
    decision = detect(np.concatenate([gap(0.3), voice(0.5), gap(0.3), tone(950.0, 0.3)]))
    assert (decision.verdict, decision.reason) == (Verdict.MACHINE, AmdReason.BEEP)


def test_fax_answer_tone_is_fax() -> None:
    decision = detect(np.concatenate([gap(0.3), tone(2100.0, 3.0)]))
    assert (decision.verdict, decision.reason) == (Verdict.FAX, AmdReason.FAX_TONE)
    assert decision.frames <= 15 + 26  # 0.5 s of CED


def _looks(config: AmdConfig, audio: np.ndarray) -> tuple[AmdDecision, list[dict[str, float]]]:
    """The decision on `audio` and the features of every look of the model before it."""
    detector = AnsweringMachineDetector(config)
    seen: list[dict[str, float]] = []
    detector.on_judge = seen.append
    decision = None
    for frame in frames(audio):
        decision = detector.feed(frame) or decision
    assert decision is not None
    return decision, seen


def test_model_is_asked_with_the_greeting_s_features() -> None:
    config = AmdConfig(human_below=1.0, machine_above=1.0)
    decision, seen = _looks(config, np.concatenate([gap(0.4), voice(0.8), gap(2.0)]))
    assert decision.reason is AmdReason.SHORT_GREETING
    assert len(seen) == 1
    features = seen[0]
    assert features["words"] == 1 and features["talking"] == 0.0
    assert features["silence_s"] == pytest.approx(0.6, abs=0.02)
    assert features["greeting_s"] == pytest.approx(0.8, abs=0.1)
    assert features["initial_silence_s"] == pytest.approx(0.4, abs=0.06)


def test_model_judges_the_greeting_again_as_the_silence_after_it_grows() -> None:
    config = AmdConfig(human_below=0.0, machine_above=1.0, no_beep_machine_above=1.0)
    decision, seen = _looks(config, np.concatenate([gap(0.4), voice(0.8), gap(2.5)]))
    assert decision.reason is AmdReason.NO_BEEP
    silences = [features["silence_s"] for features in seen]
    # A look every 100 ms from after_greeting_silence_ms to beep_wait_ms.
    assert silences[0] == pytest.approx(config.after_greeting_silence_ms / 1000, abs=0.02)
    assert np.diff(silences) == pytest.approx(0.1, abs=0.001)
    assert silences[-1] == pytest.approx(config.beep_wait_ms / 1000, abs=0.02)


def test_machine_probability_grows_with_the_greeting() -> None:
    from dialer.amd import machine_probability

    def greeting(seconds: float, words: int) -> dict[str, float]:
        return {
            "greeting_s": seconds, "words": words, "voiced_share": 0.8,
            "longest_pause_s": 0.2, "initial_silence_s": 0.5, "mean_word_s": seconds / words,
            "pauses": words - 1.0, "level_spread_db": 5.0, "talking": 0.0,
            "level_drop_db": 0.0, "end_rise_st": 0.0, "silence_s": silence,
            "syllable_rate": 6.0,
        }  # fmt: skip

    silence = 0.6
    assert machine_probability(greeting(0.5, 1)) < machine_probability(greeting(5.0, 10))
    # The longer the silence after a short greeting with no beep, the more it is a person's.
    short_now = machine_probability(greeting(0.8, 2))
    silence = 1.6
    assert machine_probability(greeting(0.8, 2)) < short_now


# -- the beep on its own --------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    freq=st.floats(420.0, 1980.0),
    seconds=st.floats(0.14, 0.6),
    offset=st.integers(0, 159),
    level=st.floats(-35.0, -5.0),
)
def test_beep_found_at_any_alignment(
    freq: float, seconds: float, offset: int, level: float
) -> None:
    lead = np.zeros(4000 + offset, dtype=np.int16)
    beep = tone(freq, seconds, level)
    end = frame_count(np.concatenate([lead, beep]))  # frames holding some of the beep
    detector = BeepDetector()
    said = None
    for frame in frames(np.concatenate([lead, beep, gap(0.5)])):
        if detector.feed(frame):
            said = detector.frames
            break
    assert said is not None
    # A beep that could be the first special information tone waits two frames for the second;
    # one frame without the tone may be a lost packet, so a tone ends a frame later, and its
    # partly filled edge frames may count in its run (SIT-like lengths widen by a frame).
    sit_like = 900.0 <= freq <= 995.0 and 0.17 <= seconds <= 0.46
    assert end <= said <= end + (4 if sit_like else 2)
    assert detector.beep_frequency_hz == pytest.approx(freq, abs=10.0)


def test_beep_found_in_line_noise() -> None:
    audio = mix(np.concatenate([gap(0.5), tone(850.0, 0.25, -20.0), gap(0.5)]), noise(1.25, -30.0))
    assert beep_end_frame(audio) in (38, 39)


@pytest.mark.parametrize(
    "signal",
    [
        pytest.param(tone(1000.0, 0.06), id="60 ms tone"),
        pytest.param(tone(1000.0, 0.1), id="100 ms tone (a held vowel's harmonic lasts so long)"),
        pytest.param(tone(300.0, 0.5), id="300 Hz"),
        pytest.param(tone(2500.0, 0.5), id="2500 Hz"),
        pytest.param(mix(tone(697.0, 0.3), tone(1209.0, 0.3)), id="DTMF 1"),
        pytest.param(tone(1000.0, 0.3, -56.0), id="too quiet"),
        pytest.param(voice(1.0, 220.0), id="voice"),
        pytest.param(noise(1.0, -20.0), id="noise"),
    ],
)
def test_not_a_beep(signal: np.ndarray) -> None:
    assert beep_end_frame(np.concatenate([gap(0.3), signal, gap(0.5)])) is None


def test_a_glide_is_not_a_beep() -> None:
    t = np.arange(int(0.4 * RATE)) / RATE
    chirp = 8000 * np.sin(2 * np.pi * (500.0 * t + 0.5 * 2500.0 * t * t))  # 500 -> 1500 Hz
    assert beep_end_frame(np.concatenate([gap(0.3), chirp.astype(np.int16), gap(0.5)])) is None


def test_greeting_without_beep_ends_in_silence() -> None:
    speech = np.concatenate([gap(0.2), voice(2.0), gap(0.4), voice(1.0)])
    detector = BeepDetector()
    ended_at = None
    for frame in frames(np.concatenate([speech, gap(3.0)])):
        assert not detector.feed(frame)
        if detector.greeting_ended and ended_at is None:
            ended_at = detector.frames
    assert ended_at is not None
    end = frame_count(speech)
    assert end + 125 <= ended_at <= end + 125 + HANGOVER  # 2.5 s of silence
    assert detector.ready and not detector.beep_ended and not detector.timed_out


def test_the_message_waits_for_a_second_beep() -> None:
    """Some boxes beep twice: ready after the last beep and a short quiet, not the first."""
    one = tone(1000.0, 0.2)
    audio = np.concatenate([gap(0.3), one, gap(0.1), one, gap(1.0)])
    detector = BeepDetector()
    first = ready = None
    for frame in frames(audio):
        if detector.feed(frame) and first is None:
            first = detector.frames
        if detector.ready:
            ready = detector.frames
            break
    second_end = frame_count(np.concatenate([gap(0.3), one, gap(0.1), one]))
    assert first is not None and first < second_end
    assert ready is not None and second_end + 14 <= ready <= second_end + 16  # +300 ms


def ready_frame(detector: BeepDetector, samples: np.ndarray) -> int | None:
    """Frames fed when the detector first said the message may start."""
    for frame in frames(samples):
        detector.feed(frame)
        if detector.ready:
            return detector.frames
    return None


def test_after_a_verdict_on_the_beep_a_short_quiet_is_enough() -> None:
    detector = BeepDetector(beep_heard=True)
    assert ready_frame(detector, gap(1.0)) == 15 and detector.settled


def test_beep_detector_after_a_verdict_ends_in_silence() -> None:
    """The greeting was heard before the detector started: silence alone ends it."""
    detector = BeepDetector(greeting_heard=True)
    assert ready_frame(detector, gap(3.0)) == 125  # 2.5 s
    assert detector.greeting_ended


def test_beep_detector_gives_up_waiting() -> None:
    detector = BeepDetector(BeepConfig(max_wait_ms=1000))
    states = [(detector.feed(f), detector.ready) for f in frames(gap(1.2))]
    assert [ready for _, ready in states].index(True) == 49  # the 50th frame: 1 s
    assert not any(said for said, _ in states)
    assert detector.timed_out and not detector.greeting_ended


# -- real speech (espeak-ng) ----------------------------------------------------------------------

GREETING = (
    "Hi, you have reached the voicemail of John Smith. I am not available right now. "
    "Please leave a message after the tone."
)


@pytest.mark.parametrize(
    ("text", "voice_name", "speed"),
    [
        ("Hello?", "en-us", 150),
        ("Hello?", "en-gb+f3", 190),
        ("Yes?", "en-us+m3", 130),
        ("Hi, this is John.", "en-us", 150),
        ("Hi, this is John.", "en-gb+f2", 120),
        ("Hello, who's this?", "en-us+f4", 170),
    ],
)
def test_person_decided_soon_after_a_short_greeting(
    speaker: Speaker, text: str, voice_name: str, speed: int
) -> None:
    speech = np.concatenate([gap(0.4), speaker.say(text, voice_name, speed)])
    decision = detect(speech)
    assert decision.verdict is PERSON[0] and decision.reason in PERSON[1]
    end = frame_count(speech)
    assert end - FAINT_TAIL + AFTER_GREETING <= decision.frames <= end + BEEP_WAIT + HANGOVER
    assert decision.frames < DEADLINE


def test_person_answering_at_once_is_heard(speaker: Speaker) -> None:
    speech = speaker.say("Hello?")
    decision = detect(speech)
    assert decision.verdict is Verdict.HUMAN
    assert decision.frames <= frame_count(speech) + BEEP_WAIT + HANGOVER


@pytest.mark.parametrize(("voice_name", "speed"), [("en-us", 150), ("en-gb+f4", 190)])
def test_long_greeting_is_a_machine(speaker: Speaker, voice_name: str, speed: int) -> None:
    decision = detect(np.concatenate([gap(0.5), speaker.say(GREETING, voice_name, speed)]))
    assert decision.verdict is Verdict.MACHINE
    assert decision.reason in (AmdReason.LONG_GREETING, AmdReason.MACHINE_GREETING)
    assert decision.frames < DEADLINE


def test_speech_in_line_noise(speaker: Speaker) -> None:
    person = np.concatenate([gap(0.5), speaker.say("Hi, this is John.")])
    machine = np.concatenate([gap(0.5), speaker.say(GREETING)])
    for speech, verdict in ((person, Verdict.HUMAN), (machine, Verdict.MACHINE)):
        padded = np.concatenate([speech, gap(3.0)])
        decision = detect(mix(padded, noise(padded.size / RATE, -40.0, seed=7)))  # SNR 20 dB
        assert decision.verdict is verdict


def test_short_greeting_with_beep_is_a_machine_before_the_person_verdict(speaker: Speaker) -> None:
    speech = np.concatenate([gap(0.3), speaker.say("Leave a message.")])
    decision = detect(np.concatenate([speech, gap(0.3), tone(1000.0, 0.4), gap(2.0)]))
    assert (decision.verdict, decision.reason) == (Verdict.MACHINE, AmdReason.BEEP)
    assert decision.frames < frame_count(speech) + BEEP_WAIT


def test_short_greeting_with_a_late_beep_is_a_machine(speaker: Speaker) -> None:
    """The beep 1.2 s after "Leave a message.": the detector keeps listening for it."""
    speech = np.concatenate([gap(0.3), speaker.say("Leave a message.")])
    beep_end = frame_count(np.concatenate([speech, gap(1.2), tone(1000.0, 0.3)]))
    decision = detect(np.concatenate([speech, gap(1.2), tone(1000.0, 0.3), gap(2.0)]))
    assert (decision.verdict, decision.reason) == (Verdict.MACHINE, AmdReason.BEEP)
    assert decision.frames in (beep_end, beep_end + 1)


def test_quiet_line_speech_is_heard(speaker: Speaker) -> None:
    """12 dB down (and further): the level normalisation keeps the words."""
    loud = speaker.say("Hi, this is John.")
    for level in (-20.0, -32.0, -40.0):
        speech = np.concatenate([gap(0.4), scale(loud, level)])
        decision = detect(speech)
        assert decision.words >= 1, level
        assert decision.verdict is Verdict.HUMAN, level


def test_machine_then_wait_for_the_beep(speaker: Speaker) -> None:
    """The dialer's flow: AMD says MACHINE, then BeepDetector waits out the greeting's beep."""
    greeting = np.concatenate([gap(0.5), speaker.say(GREETING, "en-us+f2", 160), gap(0.4)])
    beep = tone(1400.0, 0.3)
    audio = np.concatenate([greeting, beep, gap(2.0)])
    amd, waiter = AnsweringMachineDetector(), BeepDetector()
    decision = None
    ready_at = None
    for frame in frames(audio):
        if decision is None:
            decision = amd.feed(frame)
            continue
        if waiter.feed(frame):
            ready_at = amd.frames + waiter.frames
            break
    assert decision is not None and decision.verdict is Verdict.MACHINE
    beep_end = frame_count(np.concatenate([greeting, beep]))
    # The frame after the beep or its last part, or one later (a frame without the tone may be
    # a lost packet inside it).
    assert ready_at in (beep_end, beep_end + 1, beep_end + 2)
    assert not waiter.greeting_ended  # the greeting's own pauses are shorter than 1.5 s


def test_speech_holds_no_beep(speaker: Speaker) -> None:
    for voice_name in ("en-us", "en-gb+f4", "en-us+m3"):
        speech = speaker.say(GREETING, voice_name, 150)
        assert beep_end_frame(speech) is None


# -- chords and babble --------------------------------------------------------------------------


@pytest.mark.parametrize("low", [440.0, 800.0, 1000.0, 1440.0])
def test_a_two_tone_chord_is_a_beep(low: float) -> None:
    """Some carriers' beeps are two tones at once (a third apart): neither carries most of the
    power alone, together they do."""
    chord = mix(tone(low, 0.4, -23.0), tone(low * 1.25, 0.4, -23.0))
    end = frame_count(np.concatenate([gap(0.5), chord]))
    # A frame without the tone may be a lost packet: the beep ends a frame later.
    assert beep_end_frame(np.concatenate([gap(0.5), chord, gap(0.5)])) in (end + 1, end + 2)
    decision = detect(np.concatenate([gap(0.3), voice(0.8), gap(0.4), chord]))
    assert (decision.verdict, decision.reason) == (Verdict.MACHINE, AmdReason.BEEP)


def babble(seconds: float, dbfs: float, seed: int = 0) -> np.ndarray:
    """Six voices at once, each its own pitch and vibrato, talking in syllables of their own."""
    rng = np.random.default_rng(seed)
    n = round(seconds * RATE)
    out = np.zeros(n)
    for _ in range(6):
        f0 = float(rng.uniform(90.0, 260.0))
        x = voice(seconds + 1.0, f0, dbfs=-20.0).astype(np.float64)[:n]
        rate = float(rng.uniform(3.0, 6.0))  # syllables a second
        t = np.arange(n) / RATE
        out += x * (0.5 + 0.5 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 6.28)))
    return scale(out, dbfs)


def test_babble_behind_a_hello_is_not_words() -> None:
    """A room's babble 12 dB under the person's hello (many voices, no one pitch) is not the
    person's next words: the person is decided as such, with the one word heard."""
    hello = np.concatenate([gap(0.3), voice(0.5, dbfs=-20.0)])
    audio = mix(np.concatenate([hello, gap(5.0)]), babble(5.8, -32.0))
    decision = detect(audio)
    assert decision.verdict is Verdict.HUMAN and decision.words == 1
    # The pitch gate alone holds it off: no one voice's pitch in the babble's bursts.
    relative_off = dict(max_below_speech_db=math.inf, max_word_drop_db=math.inf)
    assert detect(audio, AmdConfig(**relative_off)).words == 1
    anything = detect(audio, AmdConfig(min_voiced_frames=0, **relative_off))
    assert anything.words > 1  # without the gates the babble counts


def test_another_voice_after_the_hello_is_not_words(speaker: Speaker) -> None:
    """A man talking 6 dB under a woman's "Hello?" (a far voice, within the level gates) is
    not her greeting going on: his pitch lies an octave under hers."""
    hello = speaker.say("Hello?", "en-us+f2", 150)
    far = scale(speaker.say("We should get going, the car is outside.", "en-us+m3", 150), -26.0)
    audio = np.concatenate([gap(0.3), hello, gap(0.7), far, gap(0.3), far])
    decision = detect(audio)
    assert decision.verdict is Verdict.HUMAN
    assert decision.words == detect(np.concatenate([gap(0.3), hello])).words
    off = detect(audio, AmdConfig(max_pitch_jump_st=math.inf))
    assert off.words > decision.words  # without the pitch gate his words count


# -- syllable rate ------------------------------------------------------------------------------


def _levels(samples: np.ndarray) -> np.ndarray:
    """Level of each 20 ms frame, dBFS (silence at the detector's floor, -100)."""
    return np.array([max(-100.0, dbfs(frame)) for frame in frames(samples)])


@pytest.mark.parametrize(
    ("text", "syllables"),
    [
        ("Please leave a message after the tone.", 9),
        ("Hi, you have reached Mary. Please leave a message after the tone.", 16),
    ],
)
@pytest.mark.parametrize("voice_name", ["en-us", "en-gb-scotland+f2"])
@pytest.mark.parametrize("speed", [120, 175, 240])
def test_syllable_nuclei_count_the_syllables_of_speech(
    speaker: Speaker, text: str, syllables: int, voice_name: str, speed: int
) -> None:
    speech = speaker.say(text, voice_name, speed)
    # Fast speech runs some syllables together: within 15 % (one in a short sentence).
    assert abs(syllable_nuclei(_levels(speech)) - syllables) <= max(1, round(0.15 * syllables))


def test_syllable_nuclei_do_not_depend_on_the_level(speaker: Speaker) -> None:
    speech = speaker.say("Hi, you have reached Mary. Please leave a message after the tone.")
    counts = {syllable_nuclei(_levels(scale(speech, dbfs_))) for dbfs_ in (-12.0, -24.0, -38.0)}
    assert max(counts) - min(counts) <= 1
    assert syllable_nuclei(np.full(50, -100.0)) == 0  # silence has none
    assert syllable_nuclei(np.array([])) == 0


def test_the_greeting_s_syllable_rate_follows_the_speaking_rate(speaker: Speaker) -> None:
    """The model's ``syllable_rate``: the same sentence read twice as fast has about twice the
    rate, whatever the pauses around it."""
    rates = []
    for speed in (120, 240):
        detector = AnsweringMachineDetector()
        seen: list[dict[str, float]] = []
        detector.on_judge = seen.append
        speech = speaker.say("Please leave a message after the tone.", "en-us", speed)
        for frame in frames(np.concatenate([gap(0.3), speech, gap(1.5)])):
            if detector.feed(frame) is not None:
                break
        assert seen, "the model was never asked"
        rates.append(seen[0]["syllable_rate"])
    assert 3.0 < rates[0] < 7.0  # syllables a second of a slow reading
    assert 1.5 < rates[1] / rates[0] < 2.5
