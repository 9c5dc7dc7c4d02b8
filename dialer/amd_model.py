"""Weights of the person/machine model of :mod:`dialer.amd` (written by bench/amd_train.py).

A logistic regression over the greeting's features (see ``dialer.amd.FEATURES``), trained on the
train split of bench/amd_corpus.py; its thresholds were chosen on the validation split. Retrain:
``nice -n 10 .venv/bin/python bench/amd_train.py --seed 23 --calls 4000 --write`` (the shipped
weights: a larger corpus than the evaluation's default, its validation split twice the size;
train and validation hold none of the test split's voices and sentences whatever the seed).
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
    "level_drop_db",
    "end_rise_st",
)
MEAN = (
    3.09418,
    3.72511,
    0.744422,
    0.563681,
    0.672097,
    0.670588,
    1.91752,
    5.31891,
    0.787338,
    1.96236,
    -1.01078,
)
SCALE = (
    1.58123,
    1.91727,
    0.193977,
    0.627595,
    0.434971,
    0.460004,
    1.38744,
    1.43212,
    0.409191,
    2.48422,
    2.60048,
)
COEF = (
    1.59104,
    0.388011,
    -0.863124,
    -1.97735,
    0.0299886,
    0.166208,
    -0.777437,
    0.160234,
    0.397677,
    -0.278733,
    -0.400475,
)
BIAS = 0.95197
HUMAN_BELOW = 0.0
BEEP_WAIT_MS = 1800
MACHINE_ABOVE = 0.8
TALKING_MACHINE_ABOVE = 0.95
MAX_GREETING_MS = 4500
MAX_ANALYSIS_MS = 6000
NO_BEEP_MACHINE_ABOVE = 0.8
TIMEOUT_MACHINE_ABOVE = 0.7
MIN_MACHINE_GREETING_MS = 2300
