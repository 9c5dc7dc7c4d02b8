# Sourced by scripts/run and scripts/test: make sure "$VENV" holds the engine installed from this
# checkout, installing only when the environment is missing or pyproject.toml (or the native
# relay's C source) changed since the last install (a stamp file), so a second start needs no
# package index.
#   PYTHON  interpreter for a new environment (default python3; e.g. python3.13)
#   VENV    where the environment lives (default .venv)
# Usage: ensure_venv EXTRAS   (EXTRAS: "" for the engine alone, "test" for the test tools too)
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

ensure_venv() {
    local extras="$1" spec="." stamp want
    [ -n "$extras" ] && spec=".[$extras]"
    stamp="$VENV/.installed-${extras:-engine}"
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV"
    fi
    # setup.py and the native relay's C source too: pip builds it into the checkout (editable).
    want="$(cat pyproject.toml setup.py telephony/rtp/_relay.c | sha256sum | cut -d' ' -f1) $("$VENV/bin/python" -V 2>&1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    # The test install holds the engine too.
    if [ -z "$extras" ] && [ -f "$VENV/.installed-test" ] \
        && [ "$(cat "$VENV/.installed-test")" = "$want" ]; then
        return 0
    fi
    echo "installing $spec into $VENV ($("$VENV/bin/python" -V 2>&1))"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e "$spec"
    echo "$want" > "$stamp"
}
