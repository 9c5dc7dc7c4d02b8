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
    "silence_s",
    "level_drop_db",
    "end_rise_st",
    "syllable_rate",
)
MEAN = (
    2.27355,
    2.96953,
    0.778338,
    0.490595,
    0.751965,
    0.552565,
    1.44496,
    5.08921,
    0.349466,
    0.940447,
    1.43697,
    -1.33208,
    6.14224,
)
SCALE = (
    1.61258,
    1.87587,
    0.237063,
    0.638775,
    0.514725,
    0.361986,
    1.38138,
    1.82425,
    0.476802,
    0.833467,
    2.23844,
    2.61098,
    2.08669,
)
COEF = (
    1.35685,
    0.567294,
    -0.463769,
    -1.54138,
    -0.0407777,
    -0.00430241,
    -0.85723,
    0.278908,
    0.358294,
    -0.827439,
    -0.334336,
    -0.526983,
    1.2522,
)
BIAS = -0.230352
HUMAN_BELOW = 0.0
BEEP_WAIT_MS = 1800
MACHINE_ABOVE = 0.97
TALKING_MACHINE_ABOVE = 0.99
MAX_GREETING_MS = 4500
MAX_ANALYSIS_MS = 6000
NO_BEEP_MACHINE_ABOVE = 0.97
TIMEOUT_MACHINE_ABOVE = 0.5
MIN_MACHINE_GREETING_MS = 1000
