"""Errors of the media layer: one root, :class:`MediaError`."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

__all__ = ["MediaError", "WavFormatError"]


class MediaError(Exception):
    """Root of every error raised by telephony.media."""


class WavFormatError(MediaError):
    """A WAV file is not 8 kHz mono 16-bit PCM (converting other formats is a later issue)."""
