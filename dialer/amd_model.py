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
MEAN = (4.02345, 3.82991, 0.753801, 0.706685, 0.576803, 0.846901, 2.0789, 6.89453, 0.810455)
SCALE = (1.69461, 1.78882, 0.199572, 0.780646, 0.360569, 0.447264, 1.39463, 1.98781, 0.391942)
COEF = (0.286914, 0.55681, -0.897707, -1.15521, -0.0703527, 1.45835, -0.189447, -0.186233, 0.123173)
BIAS = 0.92649
HUMAN_BELOW = 0.2
MACHINE_ABOVE = 0.8
TALKING_MACHINE_ABOVE = 0.7
MAX_GREETING_MS = 4500
MAX_ANALYSIS_MS = 7000
BEEP_WAIT_MS = 1300
NO_BEEP_MACHINE_ABOVE = 0.8
