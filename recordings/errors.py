"""Errors of the recordings package: one root, :class:`RecordingError`."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

__all__ = ["RecordingError"]


class RecordingError(Exception):
    """Root of every error raised by recordings (bad side name, closed recorder, bad config)."""
