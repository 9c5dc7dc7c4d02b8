"""Optional stdlib ``audioop`` (deprecated in 3.11, removed in 3.13; ``audioop-lts`` restores it).

It does G.711 and mixing on bytes in well under a microsecond per frame, cheaper than any numpy
call, so the per-packet helpers use it when present and numpy otherwise.
"""

from __future__ import annotations

import logging
import warnings
from types import ModuleType
from typing import Final

logger = logging.getLogger(__name__)

__all__ = ["AUDIOOP"]


def _load_audioop() -> ModuleType | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:
            return None
    return audioop


#: The audioop module, or None when this interpreter has none.
AUDIOOP: Final = _load_audioop()
