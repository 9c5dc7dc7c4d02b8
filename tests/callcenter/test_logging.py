"""The JSON log format: one object per line with time, level, logger, message, and the request
and call ids when known."""

from __future__ import annotations

import io
import json
import logging

import pytest

from callcenter.logging import call_id_var, configure, request_id_var


@pytest.fixture
def stream() -> io.StringIO:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    configure("DEBUG", "json", stream=out)
    yield out
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_json_object_per_line_with_context(stream: io.StringIO) -> None:
    log = logging.getLogger("pbx.test")
    log.info("plain %s\nwith a newline", "message")
    token = request_id_var.set("req-42")
    try:
        log.warning("call %s: ring timeout", "abc@host")
    finally:
        request_id_var.reset(token)
    token = call_id_var.set("xyz@host")
    try:
        log.error("bridging failed")
    finally:
        call_id_var.reset(token)
    log.info("picked up", extra={"call_id": "given@host"})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("crashed")
    first, second, third, fourth, fifth = _lines(stream)
    assert first["message"] == "plain message\nwith a newline" and first["level"] == "INFO"
    assert first["logger"] == "pbx.test" and str(first["time"]).endswith("+00:00")
    assert "request_id" not in first and "call_id" not in first
    assert second["request_id"] == "req-42" and second["call_id"] == "abc@host"
    assert third["call_id"] == "xyz@host"
    assert fourth["call_id"] == "given@host"
    assert "ValueError: boom" in str(fifth["exception"])


def test_text_lines_carry_the_request_id() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    configure("INFO", "text", stream=out)
    try:
        token = request_id_var.set("req-7")
        try:
            logging.getLogger("api").info("refused")
        finally:
            request_id_var.reset(token)
        logging.getLogger("api").info("quiet")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    first, second = out.getvalue().splitlines()
    assert first.endswith("INFO api: refused [request req-7]")
    assert second.endswith("INFO api: quiet")


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="json"):
        configure("INFO", "xml")
