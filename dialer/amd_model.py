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
    4.06883,
    3.70651,
    0.763332,
    0.69856,
    0.569837,
    0.938309,
    1.99974,
    6.94177,
    0.820879,
)
SCALE = (
    1.70688,
    1.7634,
    0.201352,
    0.791355,
    0.360117,
    0.626748,
    1.37628,
    2.00563,
    0.383455,
)
COEF = (
    0.454961,
    0.373055,
    -0.833975,
    -1.19783,
    -0.0707324,
    1.55301,
    -0.162692,
    -0.15146,
    0.133351,
)
BIAS = 0.989529
HUMAN_BELOW = 0.0
BEEP_WAIT_MS = 1800
MACHINE_ABOVE = 0.8
TALKING_MACHINE_ABOVE = 0.85
MAX_GREETING_MS = 4500
MAX_ANALYSIS_MS = 6000
NO_BEEP_MACHINE_ABOVE = 0.8
