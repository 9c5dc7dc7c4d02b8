"""The agent page's SIP phone (callcenter/web/phone.js): its unit tests (phone.test.cjs) under
node's own test runner, no npm packages; the page in Chromium is tested in
tests/e2e/test_agent_phone.py."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from sip_test_env import tools

TESTS = Path(__file__).with_name("phone.test.cjs")


@tools.needs("node")
def test_the_phone_s_parser_builders_and_dialogs() -> None:
    result = subprocess.run(
        ["node", "--test", str(TESTS)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    passed = re.search(r"^# pass (\d+)$", result.stdout, re.M)
    assert passed and int(passed.group(1)) > 0 and "# fail 0" in result.stdout, result.stdout
