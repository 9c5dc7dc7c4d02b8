"""Answering-machine detection over the first seconds after answer, 20 ms frame by frame.

The classic features of telephone AMD: a person answers with a greeting ("Hello?", or "Hello,
this is Karen from accounts, how can I help you?") and then waits for the caller, while a
machine plays a greeting and ends it with a beep, or in silence. The detector:

- normalises the level before its speech detector (webrtcvad behind an adaptive noise-floor
  gate), so a quiet line's speech is heard as well as a loud one's;
- keeps the room behind the speaker out of the greeting: a speech burst becomes a word only
  when one voice's pitch is heard in it (the babble of many voices at once has none), and
  not when it is far under the speaker's level or the loudest word's;
- measures the greeting: initial silence, words (speech bursts of at least ``min_word_ms``),
  its length from the first word's start to the latest word's end, pauses, cadence, the spread
  of its energy, how far its latest word is under its loudest (a far voice after a hello),
  whether its latest word's pitch rises at the end (a person's "Hello?" asks), its syllables a
  second of speech (peaks of its level envelope: a read greeting is faster);
- asks a small logistic model (:mod:`dialer.amd_model`, trained by bench/amd_train.py on a
  corpus of several speech engines) how machine-like the greeting is, every 100 ms once the
  greeting has been followed by ``after_greeting_silence_ms`` of silence (the silence so far is
  one of its features: a short greeting with no beep after it grows more person-like), or has
  gone on for ``min_machine_greeting_ms``;
- when the answer is not clear after a short greeting, keeps listening for a voicemail beep
  (up to ``beep_wait_ms`` of silence) before it says HUMAN;
- hears tones: a voicemail beep (a steady single tone of 400-2000 Hz, or a chord of two, for
  at least 140 ms: MACHINE), special information tones (SIT, the three rising tones before a
  network announcement) and an answering fax's 2100 Hz CED tone (FAX).

Pure code: no clock, no I/O. Time is the count of frames fed (20 ms each, 8 kHz int16 mono).
:class:`BeepDetector` works alone too: after a MACHINE verdict the dialer feeds it until the
beep has ended or the greeting has ended in silence, then plays its voicemail message.
"""

from __future__ import annotations

import enum
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
import webrtcvad

from telephony.media import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE, Frame, dbfs, tone_power_db

from . import amd_model

logger = logging.getLogger(__name__)

__all__ = [
    "AmdConfig",
    "AmdDecision",
    "AmdReason",
    "AnsweringMachineDetector",
    "BeepConfig",
    "BeepDetector",
    "Verdict",
]

# Zero-padded FFT size for the beep's frequency: 8000 / 1024 = 7.8 Hz per bin, refined further
# by parabolic interpolation, where a bare 160-sample frame resolves only 50 Hz.
_FFT_SIZE: Final = 1024
_WINDOW: Final = np.hanning(FRAME_SAMPLES)
_FLOOR_DBFS: Final = -100.0


def _frames(ms: float) -> int:
    """Whole frames in ``ms`` milliseconds (at least one)."""
    return max(1, math.ceil(ms / FRAME_MS))


class Verdict(enum.Enum):
    """What answered the call."""

    HUMAN = "human"
    MACHINE = "machine"
    UNSURE = "unsure"
    SIT = "sit"
    """Special information tones: a network announcement (number not in service, congestion)."""
    FAX = "fax"
    """An answering fax machine (its CED tone)."""


class AmdReason(enum.Enum):
    """Why the detector reached its verdict (the feature that decided)."""

    SHORT_GREETING = "short-greeting"
    """HUMAN: a person-like greeting, then silence (the person waits for the caller)."""
    NO_BEEP = "no-beep"
    """HUMAN: an unclear short greeting, then silence with no beep within ``beep_wait_ms``."""
    LONG_GREETING = "long-greeting"
    """MACHINE: a greeting longer than a person's, still going on."""
    MACHINE_GREETING = "machine-greeting"
    """MACHINE: a machine-like greeting that ended in silence."""
    TOO_MANY_WORDS = "too-many-words"
    """MACHINE: more words than a person's greeting holds."""
    BEEP = "beep"
    """MACHINE: the voicemail beep was heard."""
    SIT_TONES = "sit-tones"
    """SIT: special information tones."""
    FAX_TONE = "fax-tone"
    """FAX: the 2100 Hz answer tone of a fax machine."""
    INITIAL_SILENCE = "initial-silence"
    """No word within ``initial_silence_ms`` of answer."""
    TIMEOUT = "timeout"
    """``max_analysis_ms`` passed without a clear sign either way."""


@dataclass(frozen=True, slots=True)
class BeepConfig:
    """Thresholds of the voicemail-beep tone and of the end-of-greeting silence."""

    min_frequency_hz: float = 400.0
    """Lowest beep frequency accepted (voice fundamentals lie below it)."""
    max_frequency_hz: float = 2000.0
    """Highest beep frequency accepted (a fax's 2100 Hz answer tone lies above it)."""
    min_duration_ms: int = 140
    """Shortest beep. Tolerates any frame alignment: the whole frames inside it must be tone.
    Not less: a voice's steady vowel, one harmonic carrying most of its power, can hold for
    80-100 ms (people's "Hello?" were called machines on it)."""
    min_tone_share: float = 0.7
    """Share of a frame's power the single tone must carry (speech spreads over harmonics)."""
    min_level_dbfs: float = -50.0
    """Quietest beep, dBFS RMS."""
    max_drift_hz: float = 25.0
    """How far the tone's frequency may wander during one beep (a beep is steady, a voice
    glides)."""
    end_of_greeting_silence_ms: int = 2500
    """Silence after speech that ends a greeting without a beep (longer than the pause before
    a late beep)."""
    after_beep_ms: int = 300
    """After a beep, this long without a tone before the message: some boxes beep twice."""
    max_wait_ms: int = 30_000
    """Time after which :class:`BeepDetector` gives up waiting for beep or silence."""
    vad_aggressiveness: int = 2
    """webrtcvad mode for the end-of-greeting silence, 0 (keeps most audio) to 3."""

    def __post_init__(self) -> None:
        if not 0 < self.min_frequency_hz < self.max_frequency_hz < SAMPLE_RATE / 2:
            raise ValueError("beep frequency band must lie within 0..4000 Hz")
        if not 0.0 < self.min_tone_share <= 1.0:
            raise ValueError("min_tone_share must be in (0, 1]")
        if self.min_duration_ms < FRAME_MS:
            raise ValueError(f"min_duration_ms must be at least one frame ({FRAME_MS} ms)")
        if self.vad_aggressiveness not in (0, 1, 2, 3):
            raise ValueError("vad_aggressiveness must be 0..3")


@dataclass(frozen=True, slots=True)
class AmdConfig:
    """Tunable thresholds of :class:`AnsweringMachineDetector` (durations in milliseconds).

    Defaults are tuned on the validation split of bench/amd_corpus.py, leaning to HUMAN:
    calling a person a machine hangs up on a live customer, the costly mistake.
    """

    vad_aggressiveness: int = 3
    """webrtcvad mode, 0 (keeps most audio as speech) to 3 (most eager to call it non-speech)."""
    min_speech_dbfs: float = -58.0
    """Frames quieter than this are silence whatever webrtcvad says (line hiss, comfort noise)."""
    noise_margin_db: float = 6.0
    """A speech frame must stand this far above the line's noise floor."""
    max_below_speech_db: float = 12.0
    """Once someone spoke, a frame this far under the speaker's level (the running mean of
    their speech frames) is background (the babble of a room, a far voice), not the speaker."""
    speech_level_fall_db_s: float = 0.5
    """How fast the speaker's level falls while nobody speaks, dB a second: slowly, or far
    voices creep back in during the greeting's pauses."""
    noise_floor_ms: int = 1500
    """The noise floor is the lowest (smoothed) level of this long a window."""
    normalise_to_dbfs: float = -20.0
    """The speech detector hears the line raised (never lowered) so that its loudest recent
    frames sit here: a quiet line's speech is heard as well as a loud one's."""
    max_gain_db: float = 24.0
    """Most the line is raised by."""
    min_word_ms: int = 100
    """Shortest speech burst counted as a word (clicks and noise bursts are shorter)."""
    min_periodicity: float = 0.8
    """A frame is voiced (one voice's pitch) when its normalised autocorrelation peaks this
    high at a pitch lag (50-400 Hz). The babble of a room, many voices at once, seldom is."""
    max_word_drop_db: float = 9.0
    """A burst this far under the loudest word heard (mean levels) is not a word: the room
    behind the speaker, a far voice."""
    min_voiced_frames: int = 2
    """A speech burst becomes a word only once this many of its frames were voiced (0: any
    burst does): the babble of a room behind a "Hello?" is not the speaker's next words."""
    max_pitch_jump_st: float = 6.0
    """A burst whose pitch (the median of its voiced frames) lies this many semitones or more
    from the speaker's (the median of the words heard so far) is another voice, not a word,
    unless it is louder than the loudest word: the room's babble, a far voice. One speaker's
    words stay within 5 semitones of each other (measured on the validation split); ``inf``
    turns the gate off."""
    word_gap_ms: int = 100
    """Silence that ends a word; shorter dips (stops between syllables) stay inside it."""
    initial_silence_ms: int = 3000
    """No word within this long after answer decides ``initial_silence_verdict``."""
    initial_silence_verdict: Verdict = Verdict.UNSURE
    """Verdict on a silent answer. Asterisk's app_amd says MACHINE; a silent person is as
    likely, so UNSURE (the campaign decides what it means) is the safe default."""
    after_greeting_silence_ms: int = 600
    """Silence after a greeting at which the model first judges it; it judges it again every
    100 ms of silence after that (the silence is one of its features)."""
    human_below: float = amd_model.HUMAN_BELOW
    """At those looks, a machine probability under this decides HUMAN at once."""
    machine_above: float = amd_model.MACHINE_ABOVE
    """At those looks, a machine probability over this decides MACHINE (the dialer then waits
    for the beep, or the greeting's end, before its message)."""
    beep_wait_ms: int = amd_model.BEEP_WAIT_MS
    """An unclear greeting: silence after it this long with no beep decides; a beep within it
    decides MACHINE at once..."""
    no_beep_machine_above: float = amd_model.NO_BEEP_MACHINE_ABOVE
    """...then MACHINE only when the machine probability is over this."""
    min_machine_greeting_ms: int = amd_model.MIN_MACHINE_GREETING_MS
    """A greeting still going on is judged by the model once it is this long..."""
    talking_machine_above: float = amd_model.TALKING_MACHINE_ABOVE
    """...and is a machine's when the machine probability is over this."""
    max_greeting_ms: int = amd_model.MAX_GREETING_MS
    """A greeting going on longer than this is a machine's, whatever the model says."""
    max_words: int = 14
    """More words than this is a machine's greeting."""
    max_analysis_ms: int = amd_model.MAX_ANALYSIS_MS
    """Latest decision, counted from answer (a tone sounding then is heard to its end)."""
    guess_on_timeout: bool = True
    """At ``max_analysis_ms``, give the model's guess instead of UNSURE
    (``initial_silence_verdict`` if no word was heard)..."""
    timeout_machine_above: float = amd_model.TIMEOUT_MACHINE_ABOVE
    """...MACHINE when the machine probability is over this, else HUMAN."""
    detect_beep: bool = True
    """Tones decide at once: a beep MACHINE, SIT tones SIT, a fax's answer tone FAX."""
    beep: BeepConfig = field(default_factory=BeepConfig)
    """Beep thresholds."""

    def __post_init__(self) -> None:
        if self.vad_aggressiveness not in (0, 1, 2, 3):
            raise ValueError("vad_aggressiveness must be 0..3")
        if self.max_analysis_ms <= 0 or self.after_greeting_silence_ms <= 0:
            raise ValueError("analysis and silence times must be positive")
        if self.initial_silence_ms <= 0 or self.beep_wait_ms < self.after_greeting_silence_ms:
            raise ValueError("beep_wait_ms must be at least after_greeting_silence_ms")
        if self.max_words < 1:
            raise ValueError("max_words must be at least 1")
        if not 0.0 <= self.human_below <= self.machine_above <= 1.0:
            raise ValueError("need 0 <= human_below <= machine_above <= 1")
        if self.max_gain_db < 0:
            raise ValueError("max_gain_db must not be negative")
        if not 0.0 <= self.min_periodicity <= 1.0 or self.min_voiced_frames < 0:
            raise ValueError("min_periodicity must be in [0, 1], min_voiced_frames >= 0")
        if not self.max_pitch_jump_st > 0:
            raise ValueError("max_pitch_jump_st must be positive")


@dataclass(frozen=True, slots=True)
class AmdDecision:
    """The detector's verdict on a call (``feed`` returns it from then on)."""

    verdict: Verdict
    """HUMAN, MACHINE, UNSURE, SIT or FAX."""
    reason: AmdReason
    """The feature that decided."""
    frames: int
    """Frames fed when the verdict was reached, this frame included (time since answer)."""
    words: int
    """Words heard by then."""
    greeting_ms: int
    """Greeting length by then: first word's start to last word's end, pauses included, ms."""
    initial_silence_ms: int
    """Time from answer to the first word (all of it if nobody spoke), ms."""
    confidence: float = 1.0
    """How sure, 0.5 (a coin) to 1.0: the model's probability of the verdict, 0.99 for a tone."""

    @property
    def seconds(self) -> float:
        """Decision time in audio seconds since answer."""
        return self.frames * FRAME_MS / 1000


def _as_frame(frame: npt.ArrayLike) -> Frame:
    samples = np.asarray(frame)
    if samples.dtype != np.int16 or samples.shape != (FRAME_SAMPLES,):
        raise ValueError(f"expected one frame of {FRAME_SAMPLES} int16 samples")
    return samples


class _SpeechGate:
    """Speech or not, per frame: webrtcvad, behind an absolute level and a noise-floor gate.

    webrtcvad alone calls much steady noise speech, so a frame must also rise ``margin_db``
    out of the line's noise floor: the lowest level of the last ``floor_ms`` (minimum
    statistics), each level smoothed over three frames so that a lost packet's dip does not
    drag the floor down; the floor climbs no faster than ``rise_db_s``. Once someone spoke, a
    frame ``below_speech_db`` under the speaker's level (a running mean of the speech frames
    heard) is background: the room's babble, a far voice.

    With ``normalise_to`` set, webrtcvad hears the frame raised by the gain that brings the
    loudest recent speech there (a peak follower over frames that passed the gates, falling
    2 dB a second): its own energy threshold would otherwise drop the quiet syllables of a
    quiet line. Noise never raises the gain: the follower only sees frames above the floor.
    """

    def __init__(
        self,
        aggressiveness: int,
        min_dbfs: float,
        margin_db: float,
        *,
        floor_ms: int = 1500,
        rise_db_s: float = 4.0,
        below_speech_db: float = math.inf,
        speech_fall_db_s: float = 2.0,
        normalise_to: float | None = None,
        max_gain_db: float = 0.0,
    ):
        self._vad = webrtcvad.Vad(aggressiveness)
        self._min_dbfs = min_dbfs
        self._margin = margin_db
        self._window: deque[float] = deque(maxlen=_frames(floor_ms))
        self._recent: deque[float] = deque(maxlen=3)
        self._rise = rise_db_s * FRAME_MS / 1000
        self._target = normalise_to
        self._max_gain = max_gain_db
        self._peak = -math.inf
        self._peak_fall = 2.0 * FRAME_MS / 1000
        # The speaker's level: a running mean (dB) of the speech frames heard, falling
        # speech_fall_db_s while nobody speaks. A mean, not the loudest frame: one peaky
        # syllable 10 dB over the rest would make the rest of the greeting "background".
        self._speech_level = -math.inf
        self._speech_fall = speech_fall_db_s * FRAME_MS / 1000
        self._below_speech = below_speech_db
        self.floor = -60.0
        """The noise floor now, dBFS."""

    def is_speech(self, frame: Frame, level: float) -> bool:
        level = max(level, _FLOOR_DBFS)
        self._recent.append(level)
        # Power mean of the last three frames: a single lost (quiet) frame barely moves it.
        smooth = 10 * math.log10(sum(10 ** (x / 10) for x in self._recent) / len(self._recent))
        self._window.append(smooth)
        # The window's minimum, climbing no faster than rise_db_s: a steady sound (a held
        # vowel, a tone) takes seconds to pass for the line's noise.
        if len(self._window) == 1:
            self.floor = smooth  # the first frame seeds it
        self.floor = min(min(self._window), self.floor + self._rise)
        if (
            level < self._min_dbfs
            or level < self.floor + self._margin
            or level < self._speech_level - self._below_speech
        ):
            self._peak -= self._peak_fall
            self._speech_level -= self._speech_fall
            return False
        if self._target is not None:
            self._peak = max(level, self._peak - self._peak_fall)
            gain_db = min(self._max_gain, max(0.0, self._target - self._peak))
            if gain_db > 0.5:
                raised = frame.astype(np.float64) * 10 ** (gain_db / 20)
                frame = np.clip(np.round(raised), -32768, 32767).astype(np.int16)
        speech = bool(self._vad.is_speech(frame.astype("<i2").tobytes(), SAMPLE_RATE))
        if speech:
            first = self._speech_level == -math.inf
            self._speech_level = level if first else 0.9 * self._speech_level + 0.1 * level
        return speech


class _ToneTracker:
    """Finds steady single tones; reports a beep, SIT tones or a fax answer tone.

    A tone "run" is consecutive frames whose strongest in-band component carries most of the
    frame's power at a steady frequency. A run in the beep band is a beep once it has ended,
    unless it is the first of the three special information tones (then the next run says).
    """

    SIT_BANDS: Final = ((900.0, 995.0), (1355.0, 1440.0), (1755.0, 1800.0))
    SIT_FRAMES: Final = (10, 21)  # 274 or 380 ms each, at any frame alignment
    FAX_HZ: Final = (2070.0, 2130.0)
    FAX_FRAMES: Final = 25  # 0.5 s of CED

    def __init__(self, config: BeepConfig) -> None:
        self.config = config
        self._min_level = config.min_level_dbfs
        self._min_db = 10.0 * math.log10(config.min_tone_share)
        # A beep of min_duration_ms covers at least this many whole frames at any alignment.
        self._min_frames = max(1, config.min_duration_ms // FRAME_MS - 1)
        bins = np.fft.rfftfreq(_FFT_SIZE, 1.0 / SAMPLE_RATE)
        self._lo = int(np.searchsorted(bins, config.min_frequency_hz))
        self._hi = int(np.searchsorted(bins, self.FAX_HZ[1], side="right"))
        self._run = 0
        self._run_hz = 0.0
        self._run_chord = False  # the run is of two-tone chords (a run is one kind or other)
        self.chord = False
        """The latest tone found was a two-tone chord."""
        self._hole = False  # the run's latest frame held no tone (one is forgiven)
        self._sit: list[float] = []  # frequencies of the SIT-like runs so far, in order
        self._sit_wait = 0  # frames left to wait for the next SIT tone
        self._pending_beep = 0.0  # a SIT-like first tone that is a beep if no second follows
        self.frequency_hz: float | None = None
        """Frequency of the last beep heard."""
        self.sit = False
        """Special information tones were heard."""
        self.fax = False
        """A fax answer tone is sounding."""

    def tone_frequency(self, frame: Frame, level: float) -> float | None:
        """The frame's single in-band tone, if it is one; of a two-tone chord (some carriers'
        beeps), its lower tone."""
        if level < self._min_level:
            return None
        x = frame.astype(np.float64)
        spectrum = np.abs(np.fft.rfft(x * _WINDOW, _FFT_SIZE))
        band = spectrum[self._lo : self._hi]
        k = self._lo + int(np.argmax(band))
        hz = self._peak_hz(spectrum, k)
        share = 10 ** (tone_power_db(x, hz) / 10)
        self.chord = False
        if share >= self.config.min_tone_share:
            return hz
        if share < self._CHORD_TONE_SHARE or not self._is_beep(hz):
            return None
        # A chord: a second strong tone, away from the first's main lobe, carrying the rest.
        guard = self._CHORD_GUARD_BINS
        band = band.copy()
        band[max(0, k - self._lo - guard) : k - self._lo + guard + 1] = 0.0
        other = self._peak_hz(spectrum, self._lo + int(np.argmax(band)))
        second = 10 ** (tone_power_db(x, other) / 10)
        if second < self._CHORD_TONE_SHARE or not self._is_beep(other):
            return None
        low, high = min(hz, other), max(hz, other)
        if share + second < self.config.min_tone_share or self._is_dtmf(low, high):
            return None
        self.chord = True
        return low

    _CHORD_TONE_SHARE: Final = 0.25  # each tone of a chord carries at least this share
    _CHORD_GUARD_BINS: Final = 12  # 94 Hz: the first tone's main lobe (Hann, 160 samples)
    _DTMF_ROWS: Final = (697.0, 770.0, 852.0, 941.0)
    _DTMF_COLUMNS: Final = (1209.0, 1336.0, 1477.0, 1633.0)

    def _is_dtmf(self, low: float, high: float) -> bool:
        """A key pressed (a row and a column tone within 2 %) is not a beep."""
        return any(abs(low - t) <= 0.02 * t for t in self._DTMF_ROWS) and any(
            abs(high - t) <= 0.02 * t for t in self._DTMF_COLUMNS
        )

    @staticmethod
    def _peak_hz(spectrum: npt.NDArray[np.float64], k: int) -> float:
        """The peak near bin ``k``, refined by parabolic interpolation, Hz."""
        a, b, c = spectrum[k - 1], spectrum[k], spectrum[k + 1]
        denom = a - 2.0 * b + c
        offset = 0.5 * (a - c) / denom if denom != 0.0 else 0.0
        return float((k + offset) * SAMPLE_RATE / _FFT_SIZE)

    def _in_band(self, hz: float, band: tuple[float, float]) -> bool:
        return band[0] <= hz <= band[1]

    def _is_beep(self, hz: float) -> bool:
        return self.config.min_frequency_hz <= hz <= self.config.max_frequency_hz

    def feed(self, frame: Frame, level: float) -> bool:
        """True on the first frame after a beep (a tone run of the minimum length) ended."""
        hz = self.tone_frequency(frame, level)
        if hz is None and self._run and not self._hole:
            # One frame without the tone inside a run is a lost packet (its concealment), not
            # the tone's end: a SIT tone cut in two would pass for a beep.
            self._hole = True
            return False
        steady = hz is not None and abs(hz - self._run_hz) <= self.config.max_drift_hz
        if steady and self._run and self.chord == self._run_chord:
            self._run += 2 if self._hole else 1
            self._hole = False
            if self._in_band(self._run_hz, self.FAX_HZ) and self._run >= self.FAX_FRAMES:
                self.fax = True
            return False
        self._hole = False
        ended_hz, ended_run = self._run_hz, self._run
        self._run, self._run_hz = (1, hz) if hz is not None else (0, 0.0)
        self._run_chord = self.chord
        beep = self._ended(ended_hz, ended_run) if ended_run else False
        if not beep and self._sit_wait:
            self._sit_wait -= 1
            if self._sit_wait == 0 and not self._sit_continues():
                beep = self._pending_beep > 0 and len(self._sit) == 1
                if beep:
                    self.frequency_hz = self._pending_beep
                self._sit, self._pending_beep = [], 0.0
        return beep

    def _sit_continues(self) -> bool:
        """The next SIT tone has begun (a run in the next band is under way)."""
        n = len(self._sit)
        return 0 < n < 3 and self._run > 0 and self._in_band(self._run_hz, self.SIT_BANDS[n])

    def _ended(self, hz: float, run: int) -> bool:
        """A tone run of `run` frames at `hz` just ended: is it a beep?"""
        n = len(self._sit)
        lo, hi = self.SIT_FRAMES
        if n < 3 and self._in_band(hz, self.SIT_BANDS[n]) and lo - 1 <= run <= hi + 1:
            self._sit.append(hz)
            if len(self._sit) >= 2:
                self.sit = True
                return False
            self._pending_beep = hz
            self._sit_wait = 2  # the next tone follows at once
            return False
        self._sit, self._sit_wait, self._pending_beep = [], 0, 0.0
        if run >= self._min_frames and self._is_beep(hz):
            self.frequency_hz = hz
            logger.debug("beep %.0f Hz, %d frames", hz, run)
            return True
        return False

    @property
    def sounding(self) -> bool:
        """The last frame fed was (part of) a steady tone."""
        return self._run > 0

    @property
    def in_tone(self) -> bool:
        """A tone long enough for a beep is sounding now (or a SIT tone may follow)."""
        return self._run >= self._min_frames or self._sit_wait > 0


_VOICE_BAND: Final = np.fft.rfftfreq(_FFT_SIZE, 1.0 / SAMPLE_RATE) >= 250.0


def _voice_band_level(frame: Frame, level: float) -> float:
    """The frame's level above 250 Hz, dBFS: street rumble and mains hum lie below, where a
    telephone voice has little (its fundamental, whose harmonics carry on above)."""
    if level == -math.inf:
        return level
    power = np.abs(np.fft.rfft(frame.astype(np.float64) * _WINDOW, _FFT_SIZE)) ** 2
    total = float(power.sum())
    share = float(power[_VOICE_BAND].sum()) / total if total > 0 else 0.0
    return level + 10.0 * math.log10(max(share, 1e-10))


_PITCH_WINDOW: Final = np.hanning(2 * FRAME_SAMPLES)
# The window's own autocorrelation: dividing by it undoes the taper's fall with the lag.
_PITCH_BIAS: Final = np.correlate(_PITCH_WINDOW, _PITCH_WINDOW, "full")[2 * FRAME_SAMPLES - 1 :]
_PITCH_LAGS: Final = slice(SAMPLE_RATE // 400, SAMPLE_RATE // 60 + 1)  # 400 Hz down to 60 Hz
_PITCHED: Final = 0.7  # periodicity from which a frame's pitch is trusted
_MIN_PITCHED_FRAMES: Final = 3  # pitched frames needed to compare a burst's voice
_LOOK_EVERY: Final = 5  # frames between two looks of the model (talking, or in silence)
_SPEAKER_PITCH_FRAMES: Final = 100  # the speaker's pitch: over their latest 2 s of voice


def _pitch(previous: Frame, frame: Frame) -> tuple[float, float]:
    """(periodicity, pitch Hz) of the last two frames. Periodicity is the normalised
    autocorrelation's peak over pitch lags (60-400 Hz): near 1 for one voice's voiced sound,
    lower for noise and for many voices at once. The pitch is that of the shortest lag nearly
    as strong as the peak (a peak at twice the period is the same voice an octave down)."""
    x = np.concatenate([previous, frame]).astype(np.float64)
    x -= x.mean()
    x *= _PITCH_WINDOW
    r = np.fft.irfft(np.abs(np.fft.rfft(x, _FFT_SIZE)) ** 2)[: 2 * FRAME_SAMPLES]
    if r[0] <= 0.0:
        return 0.0, 0.0
    normalised = (r[_PITCH_LAGS] / r[0]) * (_PITCH_BIAS[0] / _PITCH_BIAS[_PITCH_LAGS])
    best = float(normalised.max())
    inner = normalised[1:-1]
    peaks = (inner >= normalised[:-2]) & (inner >= normalised[2:]) & (inner >= 0.85 * best)
    found = np.flatnonzero(peaks)
    lag = (found[0] + 1 if found.size else int(np.argmax(normalised))) + _PITCH_LAGS.start
    return best, SAMPLE_RATE / lag


_NUCLEUS_DIP_DB: Final = 3.0  # the level falls this far between two syllable nuclei
_NUCLEUS_RANGE_DB: Final = 20.0  # a nucleus is at most this far under the loudest frame


def syllable_nuclei(level: npt.NDArray[np.float64]) -> int:
    """Syllable nuclei in a level track (dBFS per 20 ms frame, non-speech at a floor): peaks
    of the envelope (smoothed over three frames) within ``_NUCLEUS_RANGE_DB`` of the loudest,
    each after a dip of ``_NUCLEUS_DIP_DB`` from the one before (or after a silence). Counts
    syllables whatever the voice or language: a vowel is louder than the consonants around
    it."""
    if level.size == 0:
        return 0
    floor = float(level.max()) - _NUCLEUS_RANGE_DB
    # Each end padded with its own level: the zeros of a plain "same" convolution are 0 dBFS,
    # louder than any frame, and would make a nucleus of each end.
    padded = np.pad(np.maximum(level, floor - 10.0), 1, mode="edge")
    envelope = np.convolve(padded, np.ones(3) / 3, "valid")
    count = 0
    peak = -math.inf  # the nucleus under way's level; -inf in a dip between two
    low = math.inf  # lowest level since the last nucleus
    for value in envelope:
        if peak == -math.inf:
            low = min(low, value)
            if value >= floor and value - low >= _NUCLEUS_DIP_DB:
                peak = value
                count += 1
        elif value > peak:
            peak = value
        elif peak - value >= _NUCLEUS_DIP_DB:
            peak, low = -math.inf, value
    return count


def machine_probability(features: dict[str, float]) -> float:
    """The model's probability that a greeting with these features is a machine's."""
    z = amd_model.BIAS
    for name, mean, scale, coef in zip(
        amd_model.FEATURES, amd_model.MEAN, amd_model.SCALE, amd_model.COEF, strict=True
    ):
        z += coef * (features[name] - mean) / scale
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


class AnsweringMachineDetector:
    """Streaming AMD: feed the answered call's 20 ms frames; the first non-None result is the
    verdict, reached at the latest after ``max_analysis_ms`` of audio (or at the end of a tone
    sounding then).

    Later calls to :meth:`feed` return the same decision without further analysis.
    """

    def __init__(self, config: AmdConfig | None = None) -> None:
        self.config = cfg = config or AmdConfig()
        self._gate = _SpeechGate(
            cfg.vad_aggressiveness,
            cfg.min_speech_dbfs,
            cfg.noise_margin_db,
            floor_ms=cfg.noise_floor_ms,
            below_speech_db=cfg.max_below_speech_db,
            speech_fall_db_s=cfg.speech_level_fall_db_s,
            normalise_to=cfg.normalise_to_dbfs,
            max_gain_db=cfg.max_gain_db,
        )
        self._tones = _ToneTracker(cfg.beep)
        self._min_word = _frames(cfg.min_word_ms)
        self._previous: Frame = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        self._candidate_voiced = 0  # voiced (periodic) frames of the burst not yet a word
        self._candidate_level = 0.0  # sum of the levels of the burst's frames, dB
        self._loudest_word = -math.inf  # the loudest ended word's mean level, dBFS
        self._burst_pitch: list[float] = []  # pitch of the latest burst's voiced frames, Hz
        self._word_pitch: list[float] = []  # pitch of the latest word's voiced frames, Hz
        # Pitch of the words' voiced frames so far (the latest ones), Hz: the speaker's voice.
        self._speaker_pitch: deque[float] = deque(maxlen=_SPEAKER_PITCH_FRAMES)
        self._word_gap = _frames(cfg.word_gap_ms)
        self._initial_silence = _frames(cfg.initial_silence_ms)
        self._after_greeting = _frames(cfg.after_greeting_silence_ms)
        self._beep_wait = _frames(cfg.beep_wait_ms)
        self._min_machine = _frames(cfg.min_machine_greeting_ms)
        self._max_greeting = _frames(cfg.max_greeting_ms)
        self._max_frames = _frames(cfg.max_analysis_ms)
        self._tone_grace = _frames(1500)
        self.frames = 0
        """Frames fed so far."""
        self.words = 0
        """Words heard so far."""
        self.decision: AmdDecision | None = None
        """The verdict once reached."""
        self._first_word_at: int | None = None
        self._last_word_end = 0  # frame count at the last voiced frame of a word
        self._greeting = 0  # frames from the first word's start to the last word's end
        self._candidate = 0  # voiced frames of a burst not yet long enough for a word
        self._in_word = False
        self._gap = 0  # frames since the last voiced frame of a word
        self._dip = 0  # silent frames in a row
        self._voiced = 0  # voiced frames inside words
        self._pauses: list[int] = []  # silent gaps between words, frames
        self._levels: list[float] = []  # levels of voiced frames, dBFS
        self._word_levels: list[list[float]] = []  # [sum, count] of each word's levels
        # Level of each frame since answer, dBFS (non-speech at the floor): the greeting's
        # syllable rate.
        self._track: list[float] = []
        self.probability: float | None = None
        """The model's latest machine probability (None before it was asked)."""
        self.on_judge: Callable[[dict[str, float]], None] | None = None
        """Gets the features each time the model is asked (bench/amd_train.py collects them)."""

    # -- features -------------------------------------------------------------------------

    def features(self) -> dict[str, float]:
        """The greeting so far, as the model sees it."""
        frame_s = FRAME_MS / 1000
        first = self._first_word_at if self._first_word_at is not None else self.frames
        pauses = [p for p in self._pauses if p * FRAME_MS >= 150]
        talking = self._gap < self._word_gap
        return {
            "greeting_s": self._greeting * frame_s,
            "words": float(self.words),
            "voiced_share": self._voiced / self._greeting if self._greeting else 0.0,
            "longest_pause_s": max(self._pauses, default=0) * frame_s,
            "initial_silence_s": first * frame_s,
            "mean_word_s": self._voiced * frame_s / self.words if self.words else 0.0,
            "pauses": float(len(pauses)),
            "level_spread_db": float(np.std(self._levels)) if len(self._levels) > 1 else 0.0,
            "talking": 1.0 if talking else 0.0,
            "silence_s": 0.0 if talking else self._gap * frame_s,
            "level_drop_db": self._level_drop(),
            "end_rise_st": self._end_rise(),
            "syllable_rate": self._syllable_rate(),
        }

    def _syllable_rate(self) -> float:
        """Syllable nuclei a second of the greeting's speech. On train and validation a
        greeting's median is 7.2-7.8 against a person's 6.1-6.7, in espeak-ng's voices only:
        flite and festival read both at one rate (bench/amd_prosody.py)."""
        if self._first_word_at is None:
            return 0.0
        start = self._first_word_at
        level = np.array(self._track[start : start + self._greeting])
        speech = int(np.count_nonzero(level > _FLOOR_DBFS))
        return syllable_nuclei(level) / (speech * FRAME_MS / 1000) if speech else 0.0

    def _end_rise(self) -> float:
        """How far the latest word's pitch rises at its end, semitones: the end of its last
        voiced frames against its first half. A person's "Hello?" asks (rising); a
        greeting's last words ("...after the tone.") fall."""
        pitch = self._word_pitch
        if len(pitch) < 6:
            return 0.0
        head = float(np.median(pitch[: len(pitch) // 2]))
        tail = float(np.median(pitch[-3:]))
        return max(-12.0, min(12.0, 12.0 * math.log2(tail / head)))

    def _level_drop(self) -> float:
        """How far the latest word is under the loudest word, dB (mean levels): a far voice
        after a person's hello is much quieter than the hello, a machine's words are even."""
        if len(self._word_levels) < 2:
            return 0.0
        means = [total / count for total, count in self._word_levels]
        return max(means) - means[-1]

    def _probability(self) -> float:
        features = self.features()
        if self.on_judge is not None:
            self.on_judge(features)
        self.probability = machine_probability(features)
        return self.probability

    # -- streaming ------------------------------------------------------------------------

    def feed(self, frame: npt.ArrayLike) -> AmdDecision | None:
        """Analyse one 20 ms frame; the decision once reached, else None."""
        if self.decision is not None:
            return self.decision
        samples = _as_frame(frame)
        self.frames += 1
        level = dbfs(samples)
        if self.config.detect_beep:
            tones = self._tones
            if tones.feed(samples, level):
                return self._decide(Verdict.MACHINE, AmdReason.BEEP, 0.99)
            if tones.sit:
                return self._decide(Verdict.SIT, AmdReason.SIT_TONES, 0.99)
            if tones.fax:
                return self._decide(Verdict.FAX, AmdReason.FAX_TONE, 0.99)
        tone = self._tones.in_tone
        previous, self._previous = self._previous, samples
        if not tone and self._gate.is_speech(samples, _voice_band_level(samples, level)):
            self._track.append(level)
            decision = self._voiced_frame(level, previous, samples)
        else:
            self._track.append(_FLOOR_DBFS)
            decision = self._silent_frame(tone)
        if decision is None and self.frames >= self._max_frames:
            # A tone begun just before the deadline is heard to its end (it may be the beep).
            sounding = self._tones.sounding
            if not sounding or self.frames >= self._max_frames + self._tone_grace:
                decision = self._timeout()
        return decision

    def _voiced_frame(self, level: float, previous: Frame, frame: Frame) -> AmdDecision | None:
        self._dip = 0
        cfg = self.config
        periodicity, hz = _pitch(previous, frame)
        if self._in_word:
            if self._gap:
                self._voiced += self._gap  # a dip inside a word is part of it
            self._gap = 0
            if periodicity >= _PITCHED:
                self._word_pitch.append(hz)
                self._speaker_pitch.append(hz)
        else:
            if self._candidate == 0:
                self._burst_pitch = []
            if periodicity >= _PITCHED:
                self._burst_pitch.append(hz)
            self._candidate += 1
            self._candidate_level += level
            self._gap += 1
            if periodicity >= cfg.min_periodicity:
                self._candidate_voiced += 1
            if self._candidate < self._min_word or self._candidate_voiced < cfg.min_voiced_frames:
                return None
            if self._candidate_level / self._candidate < self._loudest_word - cfg.max_word_drop_db:
                return None  # far quieter than the greeting's words: the room behind
            if self._other_voice():
                return None  # another voice's pitch: the room behind, a far voice
            self._in_word = True
            self._word_pitch = self._burst_pitch
            self._speaker_pitch.extend(self._burst_pitch)
            if self.words:
                self._pauses.append(self._gap - self._candidate)
            self._gap = 0
            self.words += 1
            self._word_levels.append([0.0, 0])
            self._voiced += self._candidate
            if self._first_word_at is None:
                self._first_word_at = self.frames - self._candidate
        self._voiced += 1
        self._levels.append(level)
        if self._word_levels:
            self._word_levels[-1][0] += level
            self._word_levels[-1][1] += 1
        self._greeting = self.frames - (self._first_word_at or 0)
        if self.words > self.config.max_words:
            return self._decide(Verdict.MACHINE, AmdReason.TOO_MANY_WORDS, 0.9)
        if self._greeting >= self._max_greeting:
            return self._decide(Verdict.MACHINE, AmdReason.LONG_GREETING, 0.9)
        if self._greeting >= self._min_machine and self._greeting % _LOOK_EVERY == 0:
            p = self._probability()
            if p >= self.config.talking_machine_above:
                return self._decide(Verdict.MACHINE, AmdReason.LONG_GREETING, p)
        return None

    def _other_voice(self) -> bool:
        """The burst under way is in another voice than the words heard so far: its pitch lies
        ``max_pitch_jump_st`` or more from theirs, and it is no louder than the loudest word
        (a speaker louder than the "words" before is the speaker, they were the room)."""
        burst = self._burst_pitch
        if len(burst) < _MIN_PITCHED_FRAMES or len(self._speaker_pitch) < _MIN_PITCHED_FRAMES:
            return False  # too little pitch to tell
        if self._candidate_level / self._candidate > self._loudest_word:
            return False
        jump = 12.0 * math.log2(float(np.median(burst)) / float(np.median(self._speaker_pitch)))
        return abs(jump) >= self.config.max_pitch_jump_st

    def _silent_frame(self, tone: bool) -> AmdDecision | None:
        self._gap += 1
        self._dip += 1
        if self._in_word and self._gap >= self._word_gap:
            self._in_word = False
        if self._dip >= 2:
            self._candidate = 0  # one silent frame inside a burst does not restart it
            self._candidate_voiced = 0
            self._candidate_level = 0.0
            if self._word_levels and self._word_levels[-1][1]:
                total, count = self._word_levels[-1]
                self._loudest_word = max(self._loudest_word, total / count)
        if self.words == 0:
            if self.frames >= self._initial_silence and self._candidate == 0 and not tone:
                return self._decide(
                    self.config.initial_silence_verdict, AmdReason.INITIAL_SILENCE, 0.5
                )
            return None
        if tone or self._candidate:
            return None
        cfg = self.config
        p: float | None = None
        if self._gap >= self._after_greeting and self._gap % _LOOK_EVERY == 0:
            # Judged again every look: the longer the silence after it with no beep, the
            # more a short greeting is a person's waiting for the caller (``silence_s``).
            p = self._probability()
            if p < cfg.human_below:
                return self._decide(Verdict.HUMAN, AmdReason.SHORT_GREETING, 1.0 - p)
            if p >= cfg.machine_above:
                return self._decide(Verdict.MACHINE, AmdReason.MACHINE_GREETING, p)
        if self._gap >= self._beep_wait:
            p = self._probability() if p is None else p
            if p >= cfg.no_beep_machine_above:
                return self._decide(Verdict.MACHINE, AmdReason.MACHINE_GREETING, p)
            return self._decide(Verdict.HUMAN, AmdReason.NO_BEEP, 1.0 - p)
        return None

    def _timeout(self) -> AmdDecision:
        if self.words == 0:
            return self._decide(self.config.initial_silence_verdict, AmdReason.TIMEOUT, 0.5)
        p = self._probability()
        if not self.config.guess_on_timeout:
            return self._decide(Verdict.UNSURE, AmdReason.TIMEOUT, 0.5)
        if p >= self.config.timeout_machine_above:
            return self._decide(Verdict.MACHINE, AmdReason.TIMEOUT, p)
        return self._decide(Verdict.HUMAN, AmdReason.TIMEOUT, 1.0 - p)

    def _decide(self, verdict: Verdict, reason: AmdReason, confidence: float) -> AmdDecision:
        first = self._first_word_at if self._first_word_at is not None else self.frames
        self.decision = AmdDecision(
            verdict=verdict,
            reason=reason,
            frames=self.frames,
            words=self.words,
            greeting_ms=self._greeting * FRAME_MS,
            initial_silence_ms=first * FRAME_MS,
            confidence=round(max(0.5, min(1.0, confidence)), 3),
        )
        logger.info(
            "AMD %s (%s, confidence %.2f) after %.2f s: %d words, %d ms greeting",
            verdict.value,
            reason.value,
            self.decision.confidence,
            self.decision.seconds,
            self.words,
            self.decision.greeting_ms,
        )
        return self.decision


class BeepDetector:
    """Waits out a voicemail greeting: :meth:`feed` turns True once the beep has ended.

    ``greeting_heard``: the greeting's speech was heard before the first frame fed (the
    detector called the machine after its greeting), so silence alone can end it.
    ``beep_heard``: the detector called the machine on a beep that has just ended.

    Greetings without a beep end in silence: :attr:`greeting_ended` turns True after
    ``end_of_greeting_silence_ms`` of silence following speech. :attr:`ready` is the moment to
    start the voicemail message: ``after_beep_ms`` without a tone after a beep (some boxes beep
    twice), the greeting ended, or ``max_wait_ms`` passed.
    """

    def __init__(
        self,
        config: BeepConfig | None = None,
        *,
        greeting_heard: bool = False,
        beep_heard: bool = False,
    ) -> None:
        self.config = cfg = config or BeepConfig()
        self._tones = _ToneTracker(cfg)
        # webrtcvad behind a level floor, the line normalised as for AMD (quiet lines).
        self._gate = _SpeechGate(
            cfg.vad_aggressiveness, -58.0, 6.0, normalise_to=-20.0, max_gain_db=24.0
        )
        self._end_silence = _frames(cfg.end_of_greeting_silence_ms)
        self._max_frames = _frames(cfg.max_wait_ms)
        # After an AMD verdict the greeting was heard already: silence from now on ends it.
        self._heard_speech = greeting_heard
        self._silence = 0
        self._beep_heard = beep_heard
        self._after_beep = _frames(cfg.after_beep_ms)
        self._since_tone = 0
        self.frames = 0
        """Frames fed so far."""
        self.beep_ended = False
        """A beep was heard and has ended."""
        self.greeting_ended = False
        """Speech was heard, then ``end_of_greeting_silence_ms`` of silence."""
        self.timed_out = False
        """``max_wait_ms`` passed with neither beep nor end of greeting."""
        self.settled = False
        """A beep was heard, then ``after_beep_ms`` without another tone."""

    @property
    def beep_frequency_hz(self) -> float | None:
        """Frequency of the beep heard, if any."""
        return self._tones.frequency_hz

    @property
    def ready(self) -> bool:
        """Time to play the message: a beep ended (and no second one followed), the greeting
        ended, or waiting timed out."""
        return self.settled or self.greeting_ended or self.timed_out

    def feed(self, frame: npt.ArrayLike) -> bool:
        """Analyse one 20 ms frame; True from the frame after the (first) beep ended on."""
        samples = _as_frame(frame)
        self.frames += 1
        level = dbfs(samples)
        if self._tones.feed(samples, level):
            if not self.beep_ended:
                logger.info("voicemail beep ended after %.2f s", self.frames * FRAME_MS / 1000)
            self.beep_ended = self._beep_heard = True
        self._since_tone = 0 if self._tones.sounding else self._since_tone + 1
        if self._beep_heard and self._since_tone >= self._after_beep:
            self.settled = True
        if self.beep_ended:
            return True
        if self._tones.in_tone:
            self._silence = 0
        elif self._gate.is_speech(samples, level):
            self._heard_speech = True
            self._silence = 0
        else:
            self._silence += 1
            if self._heard_speech and self._silence >= self._end_silence:
                if not self.greeting_ended:
                    logger.info(
                        "greeting ended in silence after %.2f s", self.frames * FRAME_MS / 1000
                    )
                self.greeting_ended = True
        if self.frames >= self._max_frames:
            self.timed_out = True
        return False
