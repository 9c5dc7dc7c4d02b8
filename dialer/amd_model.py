"""Weights of the person/machine model of :mod:`dialer.amd` (written by bench/amd_train.py).

A logistic regression over the greeting's features (see ``dialer.amd.FEATURES``), trained on the
train split of bench/amd_corpus.py; its thresholds were chosen on the validation split. Retrain:
``nice .venv/bin/python bench/amd_train.py --write``.
"""

FEATURES = (
    "greeting_s",
    "words",
    "voiced_share",
    "longest_pause_s",
    "initial_silence_s",
    "mean_word_s",
    "pauses",
    "level_spread_db",
    "talking",
)
MEAN = (
    3.9536,
    4.7938,
    0.659078,
    0.819847,
    0.584679,
    0.554489,
    2.71407,
    5.05563,
    0.736404,
)
SCALE = (
    1.8087,
    2.20413,
    0.203973,
    0.781081,
    0.374535,
    0.329554,
    1.65891,
    1.59595,
    0.440584,
)
COEF = (
    0.227343,
    0.701662,
    -0.788631,
    -0.910349,
    -0.0377157,
    1.2564,
    0.0306541,
    -0.023912,
    0.0901041,
)
BIAS = 0.887074
HUMAN_BELOW = 0.0
BEEP_WAIT_MS = 1800
MACHINE_ABOVE = 0.8
TALKING_MACHINE_ABOVE = 0.85
MAX_GREETING_MS = 4500
MAX_ANALYSIS_MS = 6000
NO_BEEP_MACHINE_ABOVE = 0.8
