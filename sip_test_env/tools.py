"""The outside programs the tests drive, the Debian package of each, and what a test does when
one is missing: outside CI it is skipped with the command that installs the program; under CI
(CI=true) it fails with that command, so a broken install step can never pass as a green run
with half the suite skipped."""

from __future__ import annotations

import os
import shutil

import pytest

#: command -> the Debian package that installs it (see install-peers.sh).
PACKAGES: dict[str, str] = {
    "baresip": "baresip-core",
    "sipp": "sip-tester",
    "tshark": "tshark",
    "dumpcap": "tshark",
    "sipsak": "sipsak",
    "svwar": "sipvicious",
    "espeak-ng": "espeak-ng",
    "sox": "sox",
    "chromium": "chromium",
    "flite": "flite",
    "text2wave": "festival",
    "iptables": "iptables",
    "ip": "iproute2",
    "kamailio": "kamailio",
    "rtpengine": "rtpengine-daemon",
    "linphonec": "linphone-cli",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(*commands: str) -> list[str]:
    return [name for name in commands if shutil.which(name) is None]


def install_hint(commands: list[str]) -> str:
    packages = sorted({PACKAGES.get(name, name) for name in commands})
    return (
        "apt-get install -y --no-install-recommends "
        + " ".join(packages)
        + " (or run sip_test_env/install-peers.sh)"
    )


def missing_message(commands: list[str]) -> str:
    return f"missing {', '.join(commands)}: {install_hint(commands)}"


def require(*commands: str) -> None:
    """Skip (outside CI) or fail (under CI) the calling test when a command is not installed."""
    absent = missing(*commands)
    if not absent:
        return
    if in_ci():
        pytest.fail(missing_message(absent), pytrace=False)
    pytest.skip(missing_message(absent))


def is_root() -> bool:
    return os.geteuid() == 0


def require_root(why: str) -> None:
    """Skip (outside CI) or fail (under CI, which runs as root) the calling test unless it
    runs as root; `why` says what needs it (network namespaces, iptables...)."""
    if is_root():
        return
    message = f"needs root: {why} (run the tests as root, as CI does)"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def needs(*commands: str) -> pytest.MarkDecorator:
    """A mark for tests or modules that need these commands (skip outside CI; under CI the
    suite's hook in tests/conftest.py turns every skip into a failure)."""
    absent = missing(*commands)
    return pytest.mark.skipif(bool(absent), reason=missing_message(absent))
