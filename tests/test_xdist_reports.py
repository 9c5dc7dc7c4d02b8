"""A test report crosses from a pytest-xdist worker to the controller whatever it captured."""

from __future__ import annotations

import execnet
import pytest

from telephony.sip.message import parse_message


def test_a_report_with_undecodable_sip_bytes_can_be_sent_to_the_controller(
    pytestconfig: pytest.Config,
) -> None:
    # SIP text as the engine decodes and logs it: the stray byte is a lone surrogate.
    message = parse_message(
        b"OPTIONS sip:101@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n"
        b"From: <sip:100@127.0.0.1>;tag=1\r\nTo: <sip:101@127.0.0.1>\r\nCall-ID: c1\r\n"
        b"CSeq: 1 OPTIONS\r\nUser-Agent: phone \xff\r\nContent-Length: 0\r\n\r\n"
    )
    logged = f"User-Agent {message.headers.get('User-Agent')}"
    with pytest.raises(UnicodeEncodeError):
        logged.encode("utf-8")
    report = pytest.TestReport(
        nodeid="tests/e2e/test_x.py::test_y",
        location=("tests/e2e/test_x.py", 1, "test_y"),
        keywords={},
        outcome="failed",
        longrepr=f"AssertionError: {logged}",
        when="call",
        sections=[("Captured log call", logged)],
    )
    data = pytestconfig.hook.pytest_report_to_serializable(config=pytestconfig, report=report)
    execnet.loads(execnet.dumps(data))  # what the worker's channel does; raised before
    assert data["sections"] == [("Captured log call", "User-Agent phone \\udcff")]
    assert data["longrepr"] == "AssertionError: User-Agent phone \\udcff"
    assert data["outcome"] == "failed"
