"""A labelled corpus of answered calls for answering-machine detection, from three speech engines.

Run: nice .venv/bin/python bench/amd_corpus.py [--seed 17] [--calls 2000] [--jobs 2] [--smoke]

Speech comes from espeak-ng, flite and festival (English and Russian where the engine speaks
it); sox changes its tempo and pitch. Each call is what the dialer hears after answer, 8 s of
8 kHz audio: leading silence, the answer, what follows (silence, a beep, a second "hello?"),
at a random level (down to 12 dB under a normal line), in line noise of one kind (hiss, babble,
street, mains hum) at 10-35 dB SNR, through G.711 (u-law or A-law), with 0-5% of its 20 ms
packets lost. The classes, with the verdict a detector should give:

    person-short     "Hello?", "Да?"                                   human
    person-long      "Hello, this is Karen from accounts, how can I help you?"   human
    person-repeat    "Hello?" ... (silence) ... "Hello?"                human
    person-late      silence for 1.5-2.6 s, then a short greeting      human
    vm-short         "Leave a message." (with or without a beep up to 1.6 s later) machine
    vm-personal      a personal greeting of 2-6 s, beep or not         machine
    vm-carrier       the carrier's long announcement, beep or not      machine
    sit              special information tones and an announcement     sit
    fax              an answering fax: CED 2100 Hz, then V.21 flags    fax
    silence          nobody says anything (line noise only)            unsure

Speakers (engine + voice) and texts are split into train / validation / test so that the test
split holds voices and sentences no tuning ever saw: flite "slt" and "rms", festival "ked" and
"slt" (HTS), espeak-ng's Caribbean and New York voices, and the Russian festival voice only
appear in test. Validation hears every engine as well (flite and festival's "kal", espeak-ng's
Scottish and Lancashire voices, English and Russian), so that thresholds chosen on it are not
chosen for espeak-ng alone; the one Russian voice outside espeak-ng stays in test. Version 2
moved "kal" from train to validation; the test split is the same, call for call, as version 1's.
The corpus is deterministic for a seed; speech is cached under --cache (outside git), each call
is written as a WAV with its truth in manifest.jsonl. A second run with the same seed and size
only checks the files are there. --smoke: 60 calls, for CI.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from telephony.media import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    alaw_to_pcm,
    pcm_to_alaw,
    pcm_to_ulaw,
    ulaw_to_pcm,
)

CALL_SECONDS = 8.0
VERSION = 2  # bump when the generation changes: the corpus folder is named after it

# -- speakers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Speaker:
    engine: str  # espeak, flite, festival
    voice: str
    lang: str  # en, ru
    split: str  # train, val, test

    @property
    def name(self) -> str:
        return f"{self.engine}:{self.voice}"


def _speakers() -> list[Speaker]:
    out: list[Speaker] = []

    def add(engine: str, voices: list[str], lang: str, split: str) -> None:
        out.extend(Speaker(engine, v, lang, split) for v in voices)

    # espeak-ng: accents x variants; the variant sets do not overlap between splits.
    for accent, split, variants in (
        ("en-us", "train", ("", "+m1", "+m2", "+f1", "+f2", "+klatt")),
        ("en-gb", "train", ("", "+m3", "+f3", "+m7")),
        ("en-gb-x-rp", "train", ("+m4", "+f4")),
        ("en-gb-scotland", "val", ("", "+m2", "+f2")),
        ("en-gb-x-gbclan", "val", ("+m5", "+f1")),
        ("en-029", "test", ("", "+m6", "+f5")),
        ("en-us-nyc", "test", ("+m8", "+f3", "+klatt2")),
        ("en-gb-x-gbcwmd", "test", ("+m3",)),
    ):
        add("espeak", [accent + v for v in variants], "en", split)
    add("espeak", ["ru", "ru+m1", "ru+m2", "ru+f1", "ru+f2", "ru+klatt"], "ru", "train")
    add("espeak", ["ru+m4", "ru+f4"], "ru", "val")
    add("espeak", ["ru+m6", "ru+f5", "ru+m8"], "ru", "test")
    # flite and festival: kal is one speaker in both engines, and so is slt. Every engine
    # speaks in validation too (kal, in both), so that thresholds are not tuned on espeak-ng
    # alone; the only Russian voice outside espeak-ng (festival's) stays in test.
    add("flite", ["awb"], "en", "train")
    add("flite", ["kal", "kal16"], "en", "val")
    add("festival", ["kal_diphone"], "en", "val")
    add("flite", ["rms", "slt"], "en", "test")
    add("festival", ["ked_diphone", "cmu_us_slt_arctic_hts"], "en", "test")
    add("festival", ["msu_ru_nsh_clunits"], "ru", "test")
    return out


# -- texts ----------------------------------------------------------------------------------
# Each class's sentences are split by position: i % 5 in (0, 1, 2) train, 3 val, 4 test.

NAMES = {
    "en": ("John", "Mary", "Alex", "Karen", "Dan", "Sarah", "Mike", "Olga", "Tom", "Priya"),
    "ru": ("Иван", "Ольга", "Марина", "Сергей", "Дмитрий", "Анна", "Павел", "Елена"),
}
COMPANIES = {
    "en": ("Acme Plumbing", "the dental office", "Green Valley Insurance", "City Motors"),
    "ru": ("Сбер", "стоматологии Улыбка", "Ромашка", "Автомир"),
}

TEXTS: dict[str, dict[str, tuple[str, ...]]] = {
    "person-short": {
        "en": (
            "Hello?",
            "Yes?",
            "Hi.",
            "Hello, who's this?",
            "Speaking.",
            "Yeah?",
            "Hello, hello?",
            "{first} speaking.",
            "Good morning.",
            "Hi, this is {first}.",
            "Yes, hello?",
            "Hey.",
            "Who's calling?",
            "Hello, {first} here.",
            "Good afternoon.",
        ),
        "ru": (
            "Алло?",
            "Да?",
            "Слушаю.",
            "Алло, слушаю вас.",
            "Да, говорите.",
            "Здравствуйте.",
            "Алло, кто это?",
            "Да, это {first}.",
            "Алло, да?",
            "Слушаю вас.",
        ),
    },
    "person-long": {
        "en": (
            "Hello, this is {first} from accounts, how can I help you?",
            "Good morning, {company}, {first} speaking, how can I help?",
            "Hi, yeah, this is {first}, who am I speaking with?",
            "Hello, you're through to {first}, what can I do for you?",
            "Yes, hello, this is {first} speaking, go ahead.",
            "Good afternoon, this is {first}, how may I help you today?",
            "Hello, {company}, this is {first}, who's calling please?",
            "Hi, it's {first}, sorry, I'm driving, who is this?",
            "Hello, {first} here, can you hear me okay?",
            "Yeah hi, this is {first}, what's this about?",
        ),
        "ru": (
            "Алло, здравствуйте, это {first} из бухгалтерии, чем могу помочь?",
            "Добрый день, компания {company}, {first}, слушаю вас.",
            "Да, алло, это {first}, а кто звонит?",
            "Здравствуйте, {first} слушает, говорите, пожалуйста.",
            "Алло, добрый вечер, это {first}, я вас слушаю.",
            "Да, здравствуйте, это {first}, по какому вопросу?",
            "Алло, я за рулём, это {first}, кто это?",
            "Добрый день, {company}, меня зовут {first}, чем могу помочь?",
            "Алло, {first} на связи, вас плохо слышно.",
            "Здравствуйте, это {first}, слушаю внимательно.",
        ),
    },
    "vm-short": {
        "en": (
            "Leave a message.",
            "Please leave a message.",
            "Leave it at the beep.",
            "It's {first}, leave a message.",
            "Hey, it's {first}, leave it at the beep.",
            "{first}, leave a message.",
            "Message please.",
            "You know what to do.",
            "Hi, it's {first}, talk at the tone.",
            "Leave your message.",
        ),
        "ru": (
            "Оставьте сообщение после сигнала.",
            "Говорите после сигнала.",
            "Это {first}, оставьте сообщение.",
            "Оставьте сообщение.",
            "Привет, это {first}, говори после гудка.",
            "Перезвоню, оставьте сообщение.",
            "Говорите после гудка.",
            "Это {first}, говорите.",
            "Оставьте ваше сообщение.",
            "Я перезвоню, говорите.",
        ),
    },
    "vm-personal": {
        "en": (
            "Hi, you have reached {first}. Please leave a message after the tone.",
            "Hello, this is {first}. I can't take your call right now. Leave a message and I "
            "will call you back.",
            "Hey, it's {first}, sorry I missed you. Leave a message and I'll get back to you.",
            "Thank you for calling {company}. Our office is currently closed. Please leave a "
            "message and we will return your call.",
            "Hi, {first} here. I'm away from the phone, so leave your name and number.",
            "Hello, you've reached {first}. Leave a message.",
            "Hi, this is {first}'s phone. You know what to do.",
            "Thanks for calling {company}. Please leave your name, number and a short message, "
            "and someone will call you back today.",
            "This is {first}. I'm in a meeting, text me or leave a message.",
            "You've reached {first} at {company}. I'm out of the office until Monday.",
        ),
        "ru": (
            "Здравствуйте, вы позвонили {first}. Я сейчас не могу ответить, оставьте "
            "сообщение после сигнала.",
            "Привет, это {first}. Не могу подойти к телефону, перезвоню позже.",
            "Вы позвонили в компанию {company}. Сейчас мы не работаем, оставьте сообщение.",
            "Это {first}, я занят, напишите сообщение или перезвоните позже.",
            "Здравствуйте, это {first}. Оставьте ваше имя и номер телефона, я перезвоню.",
            "Добрый день, вы дозвонились до {first}. Говорите после сигнала.",
            "Компания {company}, все операторы заняты. Оставьте сообщение, и мы вам перезвоним.",
            "Привет, это {first}, я в отпуске до понедельника.",
            "Это автоответчик {first}. Оставьте сообщение после гудка.",
            "Здравствуйте, {first} сейчас недоступен. Пожалуйста, перезвоните позже.",
        ),
    },
    "vm-carrier": {
        "en": (
            "The person you are calling is not available. Please leave a message after the tone.",
            "Your call has been forwarded to an automatic voice message system. The number you "
            "have dialed is not available. At the tone, please record your message.",
            "The subscriber you have dialled is not available right now. Please leave a message "
            "after the tone, or hang up.",
            "We're sorry, nobody can take your call. Please leave your number after the beep.",
            "The wireless customer you are calling is not available. Please leave a message.",
            "You have reached the voice mailbox of a customer. Please record your message after "
            "the tone. When you are finished, hang up.",
            "The mailbox you are calling is not available. Please try again later.",
            "Please leave your message for the customer at the tone.",
            "The number you called is busy. Please leave a message after the tone.",
            "Welcome to voicemail. The person you called cannot answer. Record after the tone.",
        ),
        "ru": (
            "Абонент не может ответить на ваш звонок. Оставьте сообщение после звукового сигнала.",
            "Аппарат абонента выключен или находится вне зоны действия сети. Оставьте "
            "голосовое сообщение.",
            "Вы позвонили в голосовой почтовый ящик. Говорите после сигнала.",
            "Абонент сейчас не может ответить. Пожалуйста, оставьте сообщение после сигнала.",
            "Здравствуйте, абонент недоступен. Вы можете оставить голосовое сообщение.",
            "Ваш звонок переадресован на автоответчик. Говорите после сигнала.",
            "Абонент занят. Оставьте сообщение после звукового сигнала или перезвоните позже.",
            "Голосовая почта абонента. Запишите сообщение после сигнала.",
            "Абонент временно недоступен. Оставьте сообщение, и он перезвонит вам.",
            "Вы дозвонились в службу голосовой почты. Пожалуйста, говорите после сигнала.",
        ),
    },
    "sit": {
        "en": (
            "The number you have dialed is not in service. Please check the number and try again.",
            "We're sorry, your call cannot be completed as dialed.",
            "All circuits are busy now. Please try your call again later.",
            "The number you have reached has been disconnected.",
            "Your call cannot be completed at this time.",
        ),
        "ru": (
            "Неправильно набран номер.",
            "Номер, который вы набрали, не обслуживается.",
            "Абонент не обслуживается. Проверьте правильность набора номера.",
            "Все линии заняты. Пожалуйста, позвоните позже.",
            "Набранный вами номер не существует.",
        ),
    },
}

LABELS = {
    "person-short": "human",
    "person-long": "human",
    "person-repeat": "human",
    "person-late": "human",
    "vm-short": "machine",
    "vm-personal": "machine",
    "vm-carrier": "machine",
    "sit": "sit",
    "fax": "fax",
    "silence": "unsure",
}
# Share of the calls per class (people and machines about even, as a campaign sees them).
CLASS_WEIGHTS = {
    "person-short": 0.16,
    "person-long": 0.10,
    "person-repeat": 0.08,
    "person-late": 0.06,
    "vm-short": 0.10,
    "vm-personal": 0.16,
    "vm-carrier": 0.12,
    "sit": 0.08,
    "fax": 0.07,
    "silence": 0.07,
}
TEXT_CLASS = {"person-repeat": "person-short", "person-late": "person-short"}
NOISES = ("none", "hiss", "babble", "street", "hum")
SPLIT_OF_POSITION = ("train", "train", "train", "val", "test")


def text_split(index: int) -> str:
    return SPLIT_OF_POSITION[index % len(SPLIT_OF_POSITION)]


# -- speech ---------------------------------------------------------------------------------


def _run(cmd: list[str], **kwargs: object) -> None:
    subprocess.run(cmd, check=True, capture_output=True, **kwargs)  # type: ignore[call-overload]


def synthesize(speaker: Speaker, text: str, tempo: float, cents: int, cache: Path) -> np.ndarray:
    """`text` in `speaker`'s voice at 8 kHz int16, tempo and pitch changed; leading and trailing
    silence cut. Cached by all of these."""
    key = hashlib.sha1(f"{speaker.name}|{text}|{tempo:.2f}|{cents}".encode()).hexdigest()[:20]
    out = cache / "speech" / f"{key}.wav"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            raw = Path(tmp) / "raw.wav"
            if speaker.engine == "espeak":
                _run(["espeak-ng", "-v", speaker.voice, "-w", str(raw), text])
            elif speaker.engine == "flite":
                _run(["flite", "-voice", speaker.voice, "-t", text, "-o", str(raw)])
            else:
                _run(
                    ["text2wave", "-o", str(raw), "-eval", f"(voice_{speaker.voice})"],
                    input=text.encode(),
                )
            part = Path(tmp) / "out.wav"
            effects = ["tempo", "-s", f"{tempo:.2f}", "pitch", str(cents)]
            _run(["sox", "-V1", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(part),
                  *effects, "rate", "8000"])  # fmt: skip
            part.replace(out)
    with wave.open(str(out), "rb") as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    loud = np.flatnonzero(np.abs(samples) > 0.02 * max(1.0, np.abs(samples).max()))
    return samples[loud[0] : loud[-1] + 1] if loud.size else samples


# -- signals --------------------------------------------------------------------------------


def _rms(x: np.ndarray) -> float:
    loud = x[np.abs(x) > 0.02 * max(1e-9, np.abs(x).max())]
    return float(np.sqrt(np.mean(loud**2))) if loud.size else 1e-9


def at_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    return x * (32768 * 10 ** (dbfs / 20) / _rms(x))


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE))


def sine(hz: float, seconds: float, dbfs: float) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return 32768 * 10 ** (dbfs / 20) * np.sqrt(2) * np.sin(2 * np.pi * hz * t)


def beep(rng: np.random.Generator, dbfs: float) -> np.ndarray:
    """A voicemail beep: mostly one steady tone, sometimes two in a row or a two-tone chord."""
    hz = float(rng.choice([440.0, 600.0, 850.0, 1000.0, 1000.0, 1200.0, 1400.0, 1800.0]))
    seconds = float(rng.uniform(0.15, 1.0))
    kind = rng.random()
    if kind < 0.15:  # two short beeps
        one = sine(hz, min(seconds, 0.25), dbfs)
        return np.concatenate([one, silence(0.1), one])
    if kind < 0.25:  # a chord (some carriers)
        return sine(hz, seconds, dbfs - 3) + sine(hz * 1.25, seconds, dbfs - 3)
    return sine(hz, seconds, dbfs)


def sit_tones(rng: np.random.Generator, dbfs: float) -> np.ndarray:
    """Special information tones: three rising tones (ITU-T E.180 / Telcordia), 274 or 380 ms."""
    freqs = (
        float(rng.choice([913.8, 985.2])),
        float(rng.choice([1370.6, 1428.5])),
        1776.7,
    )
    lengths = [float(rng.choice([0.274, 0.380])) for _ in range(2)] + [0.380]
    parts = [sine(f, s, dbfs) for f, s in zip(freqs, lengths, strict=True)]
    return np.concatenate([parts[0], parts[1], parts[2], silence(float(rng.uniform(0.0, 0.3)))])


def fax_answer(rng: np.random.Generator, dbfs: float, seconds: float) -> np.ndarray:
    """An answering fax: CED (2100 Hz for 2.6-4 s, ANSam-modulated in some), 75 ms silence,
    then V.21 channel 2 HDLC flags (300 baud FSK, 1650 / 1850 Hz) until `seconds`."""
    ced_s = float(rng.uniform(2.6, 4.0))
    ced = sine(2100.0, ced_s, dbfs)
    if rng.random() < 0.4:  # ANSam: 15 Hz amplitude modulation
        t = np.arange(ced.size) / SAMPLE_RATE
        ced = ced * (1 + 0.2 * np.sin(2 * np.pi * 15 * t)) / 1.2
    rest = max(0.3, seconds - ced_s - 0.075)
    bits = np.tile([0, 1, 1, 1, 1, 1, 1, 0], int(rest * 300 / 8) + 1)
    per_bit = SAMPLE_RATE / 300
    idx = (np.arange(int(rest * SAMPLE_RATE)) / per_bit).astype(int)
    freq = np.where(bits[idx] == 1, 1650.0, 1850.0)
    phase = 2 * np.pi * np.cumsum(freq) / SAMPLE_RATE
    flags = 32768 * 10 ** (dbfs / 20) * np.sqrt(2) * np.sin(phase)
    return np.concatenate([ced, silence(0.075), flags])


def line_noise(
    kind: str, n: int, dbfs: float, rng: np.random.Generator, babble: list[np.ndarray]
) -> np.ndarray:
    if kind == "hiss":
        x = rng.normal(0.0, 1.0, n)
    elif kind == "babble":  # several voices talking at once, far away
        x = np.zeros(n)
        for _ in range(int(rng.integers(4, 8))):
            v = babble[int(rng.integers(len(babble)))]
            v = np.tile(v, n // max(1, v.size) + 2)
            start = int(rng.integers(0, v.size - n))
            x += v[start : start + n] / _rms(v)
    elif kind == "street":  # rumble, with cars passing
        x = np.cumsum(rng.normal(0.0, 1.0, n))
        x -= np.convolve(x, np.ones(400) / 400, mode="same")  # high-pass the drift
        t = np.arange(n) / SAMPLE_RATE
        swell = 1.0 + sum(
            2.0 * np.exp(-(((t - c) / 0.8) ** 2)) for c in rng.uniform(0, n / SAMPLE_RATE, 2)
        )
        x = x * swell
    elif kind == "hum":  # mains hum and its odd harmonics
        f0 = float(rng.choice([50.0, 60.0]))
        t = np.arange(n) / SAMPLE_RATE
        x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.28)) / k for k in (1, 3, 5, 7))
        x = x + 0.05 * rng.normal(0.0, 1.0, n)
    else:
        return np.zeros(n)
    x = np.asarray(x, dtype=np.float64)
    return x * (32768 * 10 ** (dbfs / 20) / max(1e-9, float(np.sqrt(np.mean(x**2)))))


def through_the_network(
    audio: np.ndarray, law: str, loss: float, rng: np.random.Generator
) -> np.ndarray:
    pcm = np.clip(np.round(audio), -32768, 32767).astype(np.int16)
    pcm = ulaw_to_pcm(pcm_to_ulaw(pcm)) if law == "ulaw" else alaw_to_pcm(pcm_to_alaw(pcm))
    if loss > 0:
        frames = pcm.reshape(-1, FRAME_SAMPLES).copy()
        lost = np.flatnonzero(rng.random(frames.shape[0]) < loss)
        for i in lost:  # a receiver without concealment repeats the previous frame at half level
            frames[i] = frames[i - 1] // 2 if i > 0 else 0
        pcm = frames.reshape(-1)
    return pcm


# -- the corpus -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    id: str
    split: str
    cls: str
    label: str
    lang: str
    speaker: str
    text: str
    noise: str
    snr_db: float
    level_dbfs: float
    law: str
    loss: float
    lead_s: float
    beep_end_s: float | None
    """When the beep ends (s from answer), for a machine that beeps."""
    speech_end_s: float | None
    """When the greeting's last word ends (s from answer)."""


def _fill(template: str, lang: str, rng: np.random.Generator) -> str:
    return template.format(
        first=str(rng.choice(NAMES[lang])), company=str(rng.choice(COMPANIES[lang]))
    )


def plan_calls(seed: int, total: int) -> list[dict]:
    """Deterministic plans: class, split, language, speaker, text and every variation."""
    rng = np.random.default_rng(seed)
    speakers = _speakers()
    classes = list(CLASS_WEIGHTS)
    weights = np.array([CLASS_WEIGHTS[c] for c in classes])
    counts = np.floor(weights / weights.sum() * total).astype(int)
    plans: list[dict] = []
    for cls, count in zip(classes, counts, strict=True):
        for i in range(int(count)):
            split = ("train", "train", "train", "val", "test")[i % 5]
            lang = "ru" if rng.random() < 0.4 else "en"
            pool = [s for s in speakers if s.lang == lang and s.split == split]
            speaker = pool[int(rng.integers(len(pool)))]
            texts = TEXTS.get(TEXT_CLASS.get(cls, cls), {}).get(lang, ())
            mine = [t for j, t in enumerate(texts) if text_split(j) == split]
            text = _fill(str(rng.choice(mine)), lang, rng) if mine else ""
            plans.append(
                {
                    "cls": cls,
                    "split": split,
                    "lang": lang,
                    "speaker": speaker,
                    "text": text,
                    "tempo": float(rng.uniform(0.85, 1.25)),
                    "cents": int(rng.integers(-250, 251)),
                    "seed": int(rng.integers(2**31)),
                }
            )
    return plans


def _babble(cache: Path) -> list[np.ndarray]:
    """Voices for babble noise: training speakers reading training sentences."""
    voices = [s for s in _speakers() if s.split == "train" and s.engine != "festival"][:6]
    texts = [t for j, t in enumerate(TEXTS["vm-carrier"]["en"]) if text_split(j) == "train"]
    return [synthesize(v, texts[i % len(texts)], 1.0, 0, cache) for i, v in enumerate(voices)]


def render(
    plan: dict, speech: np.ndarray | None, babble: list[np.ndarray]
) -> tuple[Call, np.ndarray]:
    rng = np.random.default_rng(plan["seed"])
    cls = plan["cls"]
    level = float(rng.uniform(-30.0, -14.0)) if rng.random() < 0.8 else float(rng.uniform(-38, -30))
    lead = float(rng.uniform(1.5, 2.6) if cls == "person-late" else rng.uniform(0.1, 1.2))
    parts = [silence(lead)]
    beep_end = speech_end = None
    if speech is not None:
        voice = at_level(speech, level)
        if cls == "sit":
            parts.append(sit_tones(rng, level - 4))
        parts.append(voice)
        speech_end = sum(p.size for p in parts) / SAMPLE_RATE
        if cls == "person-repeat":
            parts += [silence(float(rng.uniform(1.2, 2.5))), voice]
        elif LABELS[cls] == "machine" and rng.random() < 0.7:
            parts.append(silence(float(rng.uniform(0.2, 1.6))))
            parts.append(beep(rng, level + float(rng.uniform(-6, 3))))
            beep_end = sum(p.size for p in parts) / SAMPLE_RATE
    elif cls == "fax":
        parts.append(fax_answer(rng, level, CALL_SECONDS))
    audio = np.concatenate(parts)[: int(CALL_SECONDS * SAMPLE_RATE)]
    audio = np.concatenate([audio, silence(CALL_SECONDS - audio.size / SAMPLE_RATE)])
    audio = audio[: int(CALL_SECONDS * SAMPLE_RATE) // FRAME_SAMPLES * FRAME_SAMPLES]
    noise = str(rng.choice(NOISES, p=[0.2, 0.25, 0.2, 0.2, 0.15]))
    snr = float(rng.uniform(10.0, 35.0))
    if cls == "silence" and noise == "none":
        noise = "hiss"
    audio = audio + line_noise(noise, audio.size, level - snr, rng, babble)
    law = "ulaw" if rng.random() < 0.5 else "alaw"
    loss = float(rng.choice([0.0, 0.0, 0.01, 0.03, 0.05]))
    pcm = through_the_network(audio, law, loss, rng)
    call = Call(
        id="",
        split=plan["split"],
        cls=cls,
        label=LABELS[cls],
        lang=plan["lang"],
        speaker=plan["speaker"].name if speech is not None else "",
        text=plan["text"] if speech is not None else "",
        noise=noise,
        snr_db=round(snr, 1),
        level_dbfs=round(level, 1),
        law=law,
        loss=loss,
        lead_s=round(lead, 3),
        beep_end_s=None if beep_end is None else round(beep_end, 3),
        speech_end_s=None if speech_end is None else round(speech_end, 3),
    )
    return call, pcm


def _write_wav(path: Path, pcm: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.astype("<i2").tobytes())


def build(seed: int, total: int, cache: Path, jobs: int) -> Path:
    """Make the corpus (if not made yet) and return its folder."""
    folder = cache / f"v{VERSION}-seed{seed}-n{total}"
    manifest = folder / "manifest.jsonl"
    if manifest.exists():
        return folder
    plans = plan_calls(seed, total)
    speaking = [p for p in plans if p["cls"] not in ("fax", "silence")]

    def say(p: dict) -> np.ndarray:
        return synthesize(p["speaker"], p["text"], p["tempo"], p["cents"], cache)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        speech = dict(zip(map(id, speaking), pool.map(say, speaking), strict=True))
    babble = _babble(cache)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = manifest.with_suffix(".part")
    with tmp.open("w") as out:
        for n, plan in enumerate(plans):
            call, pcm = render(plan, speech.get(id(plan)), babble)
            name = f"{plan['split']}-{n:05d}-{plan['cls']}"
            _write_wav(folder / f"{name}.wav", pcm)
            row = asdict(call) | {"id": name}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(manifest)
    return folder


def load(folder: Path, split: str | None = None) -> list[tuple[dict, np.ndarray]]:
    """(truth, audio) of every call of `split` (all splits when None)."""
    rows = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    out = []
    for row in rows:
        if split is None or row["split"] == split:
            with wave.open(str(folder / f"{row['id']}.wav"), "rb") as w:
                pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
            out.append((row, pcm))
    return out


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "callcenter-amd-corpus"


def missing_tools() -> list[str]:
    return [t for t in ("espeak-ng", "flite", "text2wave", "sox") if shutil.which(t) is None]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--calls", type=int, default=2000, help="calls over all splits")
    parser.add_argument("--jobs", type=int, default=2, help="speech engines at once")
    parser.add_argument("--cache", type=Path, default=default_cache())
    parser.add_argument("--smoke", action="store_true", help="60 calls (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.calls = 60
    missing = missing_tools()
    if missing:
        sys.exit(f"needs {', '.join(missing)} (sip_test_env/install-peers.sh installs them)")
    started = time.perf_counter()
    folder = build(args.seed, args.calls, args.cache, args.jobs)
    rows = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    print(f"corpus {folder}: {len(rows)} calls in {time.perf_counter() - started:.1f} s")
    for split in ("train", "val", "test"):
        mine = [r for r in rows if r["split"] == split]
        by = Counter((r["cls"], r["lang"]) for r in mine)
        speakers = sorted({r["speaker"] for r in mine if r["speaker"]})
        print(f"{split}: {len(mine)} calls, {len(speakers)} speakers")
        print("  " + ", ".join(f"{c}/{lang} {n}" for (c, lang), n in sorted(by.items())))


if __name__ == "__main__":
    main()
