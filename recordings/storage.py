"""Where recordings live: ``root/YYYY/MM/DD/<call id>.wav``, purged after ``retention_days``.

Dates are UTC: an aware ``started_at``/``now`` is converted, a naive one is taken as UTC. The
layout is the retention index: purge deletes whole days, so it never has to stat every file.
Whether a call is recorded at all (per-route opt-out) is the engine's decision, not the store's.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Final

from .errors import RecordingError

logger = logging.getLogger(__name__)

__all__ = ["RecordingStore", "safe_file_name"]

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME: Final = 80
_YEAR: Final = re.compile(r"\d{4}")
_TWO_DIGITS: Final = re.compile(r"\d{2}")
SUFFIX: Final = ".wav"


def safe_file_name(call_id: str) -> str:
    """A file name (no suffix) for a Call-ID: letters, digits, ``. _ -``; no leading dot.

    When the Call-ID had to be changed (``/``, ``@``, spaces, too long...), a short hash of the
    original is appended so that two different Call-IDs never share a file.
    """
    name = _UNSAFE.sub("_", call_id).lstrip(".")[:_MAX_NAME] or "call"
    if name != call_id:
        digest = hashlib.sha256(call_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        name = f"{name}-{digest}"
    return name


def _utc_date(moment: datetime) -> date:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.date()


class RecordingStore:
    """The recordings folder of one site, laid out by day."""

    def __init__(self, root: Path, retention_days: int | None) -> None:
        """``retention_days``: recordings older than this many days are purged; None keeps all."""
        if retention_days is not None and retention_days < 1:
            raise RecordingError(f"retention_days must be at least 1, not {retention_days}")
        self.root = Path(root)
        self.retention_days = retention_days

    def path_for(self, call_id: str, started_at: datetime) -> Path:
        """The file for a call (its day's folder is created); the file itself is not."""
        day = _utc_date(started_at)
        folder = self.root / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{safe_file_name(call_id)}{SUFFIX}"

    def purge(self, now: datetime) -> list[Path]:
        """Delete recordings of every day before ``now - retention_days``; return the files.

        A day is kept whole until all of it is past retention, so a recording is kept at least
        ``retention_days``. Only ``*.wav`` files (and their ``.mp3`` copies) in ``YYYY/MM/DD``
        folders are touched; emptied day, month and year folders are removed.
        """
        if self.retention_days is None or not self.root.is_dir():
            return []
        oldest_kept = _utc_date(now) - timedelta(days=self.retention_days)
        deleted: list[Path] = []
        for day, folder in self._days():
            if day >= oldest_kept:
                continue
            for file in sorted(folder.glob(f"*{SUFFIX}")):
                try:
                    file.unlink()
                    # An MP3 copy made for a CRM player goes with its master.
                    file.with_suffix(".mp3").unlink(missing_ok=True)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    logger.warning("cannot purge %s: %s", file, exc)
                    continue
                deleted.append(file)
            for empty in (folder, folder.parent, folder.parent.parent):
                try:
                    empty.rmdir()
                except OSError:
                    break  # not empty (foreign files, other days): keep it and its parents
        if deleted:
            logger.info("purged %d recordings older than %s", len(deleted), oldest_kept)
        return deleted

    def _days(self) -> list[tuple[date, Path]]:
        days = []
        for year in self.root.iterdir():
            if not (year.is_dir() and _YEAR.fullmatch(year.name)):
                continue
            for month in year.iterdir():
                if not (month.is_dir() and _TWO_DIGITS.fullmatch(month.name)):
                    continue
                for folder in month.iterdir():
                    if not (folder.is_dir() and _TWO_DIGITS.fullmatch(folder.name)):
                        continue
                    try:
                        day = date(int(year.name), int(month.name), int(folder.name))
                    except ValueError:
                        continue  # 2024/02/31 is not ours
                    days.append((day, folder))
        return sorted(days)
