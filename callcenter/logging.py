"""Log output: readable lines, or one JSON object per line for log shippers
(`callcenter serve --log-format json`, or `[log] format = "json"`).

A JSON line carries time (UTC, ISO 8601), level, logger, message, and request_id / call_id when
known: the API request being served (`request_id_var`), a record's `call_id` attribute
(`extra={"call_id": ...}`), a message of the engine's usual form "call %s: ..." (its first
argument is the Call-ID), or the incoming call whose handling logged it (`call_id_var`).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from telephony.aio import current_call

logger = logging.getLogger(__name__)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
"""The id of the API request being served."""
call_id_var: contextvars.ContextVar[str | None] = current_call
"""The Call-ID of the call being handled: set for an incoming call's handler and the tasks it
starts (telephony.aio.current_call)."""


class ContextFilter(logging.Filter):
    """Puts request_id and call_id on every record (None when unknown), for any formatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        if getattr(record, "call_id", None) is None:
            # A message naming its call ("call %s: ...") wins over the context, which may be
            # another call's (a transfer target dialled while serving the caller).
            record.call_id = _call_id_of_message(record) or call_id_var.get()
        return True


def _call_id_of_message(record: logging.LogRecord) -> str | None:
    msg = record.msg
    if isinstance(msg, str) and msg.startswith("call %s") and record.args:
        args = record.args if isinstance(record.args, tuple) else (record.args,)
        return str(args[0])
    return None


class TextFormatter(logging.Formatter):
    """The readable line, with the request id appended when the record has one."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{line} [request {rid}]" if rid is not None else line


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("request_id", "call_id"):
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(
    level: str | int = "INFO", fmt: str = "text", *, stream: TextIO | None = None
) -> logging.Handler:
    """Route the root logger to `stream` (stderr) in `fmt` ("text" or "json")."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
