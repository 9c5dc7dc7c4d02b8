"""Errors of the ivr package: one root, `IvrError`."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


class IvrError(Exception):
    """Root of the ivr package's errors."""


class FlowError(IvrError):
    """A flow file that cannot be used; the message says where (file:line) and why."""

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


class PromptError(IvrError):
    """A prompt that cannot be made playable (unreadable WAV, no espeak-ng, TTS failed)."""


__all__ = ["FlowError", "IvrError", "PromptError"]
