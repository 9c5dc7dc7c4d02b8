from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recordings import RecordingError, RecordingStore, safe_file_name

NOW = datetime(2024, 5, 31, 10, 0, tzinfo=UTC)


def test_path_is_laid_out_by_utc_day(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "rec", retention_days=30)
    path = store.path_for("a84b4c76e66710", datetime(2024, 3, 7, 12, 30, tzinfo=UTC))
    assert path == tmp_path / "rec" / "2024" / "03" / "07" / "a84b4c76e66710.wav"
    assert path.parent.is_dir() and not path.exists()
    # 01:00 in Moscow on 1 March is still 29 February in UTC (a leap year).
    msk = timezone(timedelta(hours=3))
    path = store.path_for("x", datetime(2024, 3, 1, 1, 0, tzinfo=msk))
    assert path.parent == tmp_path / "rec" / "2024" / "02" / "29"
    assert store.path_for("x", datetime(2024, 3, 1, 1, 0)).parent.name == "01"  # naive = UTC


@pytest.mark.parametrize(
    "call_id",
    ["a84b4c76e66710@pc33.atlanta.com", "../../etc/passwd", "..", "", "a b/c\\d\x00e", "x" * 500],
)
def test_call_ids_become_safe_file_names_inside_the_day_folder(
    tmp_path: Path, call_id: str
) -> None:
    store = RecordingStore(tmp_path, retention_days=1)
    path = store.path_for(call_id, NOW)
    assert path.parent == tmp_path / "2024" / "05" / "31"
    assert path.resolve().parent == path.parent.resolve()
    assert path.suffix == ".wav" and not path.name.startswith(".")
    assert len(path.name) <= 100


@given(st.text(min_size=1, max_size=60), st.text(min_size=1, max_size=60))
def test_different_call_ids_never_share_a_file(a: str, b: str) -> None:
    name = safe_file_name(a)
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
    if a != b:
        assert safe_file_name(a) != safe_file_name(b)


def test_plain_call_ids_are_kept_as_they_are() -> None:
    assert safe_file_name("3848276298220188511-1") == "3848276298220188511-1"
    assert safe_file_name("a84b4c76e66710@pc33") != "a84b4c76e66710_pc33"


def make(root: Path, day: str, name: str = "call.wav") -> Path:
    path = root / day / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF")
    return path


def test_purge_deletes_whole_days_past_retention(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path, retention_days=30)
    old = [
        make(tmp_path, "2023/12/31"),
        make(tmp_path, "2024/04/30", "a.wav"),
        make(tmp_path, "2024/04/30", "b.wav"),
    ]
    copy = make(tmp_path, "2024/04/30", "a.mp3")  # an MP3 made for a CRM player
    kept = [make(tmp_path, "2024/05/01"), make(tmp_path, "2024/05/31")]
    foreign = [
        make(tmp_path, "2024/04/29", "notes.txt"),  # not a recording
        make(tmp_path, "lost+found/01/01", "x.wav"),  # not a date
        make(tmp_path, "2024/02/31", "x.wav"),  # not a real day
    ]
    deleted = store.purge(NOW)
    assert sorted(deleted) == sorted(old)
    assert not any(p.exists() for p in old) and not copy.exists()
    assert all(p.exists() for p in kept + foreign)
    assert not (tmp_path / "2023").exists()  # emptied year removed
    assert not (tmp_path / "2024" / "04" / "30").exists()
    assert (tmp_path / "2024" / "04" / "29").is_dir()  # still holds a foreign file
    assert store.purge(NOW) == []  # nothing left to do
    assert store.purge(NOW + timedelta(days=1)) == [kept[0]]


def test_purge_uses_the_utc_day_of_now(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path, retention_days=1)
    file = make(tmp_path, "2024/05/29")
    late_evening_utc = datetime(2024, 5, 31, 1, 0, tzinfo=timezone(timedelta(hours=3)))
    assert store.purge(late_evening_utc) == []  # still 30 May in UTC: 29 May is kept one day
    assert store.purge(datetime(2024, 5, 31, 0, 0, tzinfo=UTC)) == [file]


def test_keep_forever_and_bad_retention(tmp_path: Path) -> None:
    make(tmp_path, "2000/01/01")
    assert RecordingStore(tmp_path, retention_days=None).purge(NOW) == []
    assert RecordingStore(tmp_path / "missing", retention_days=3).purge(NOW) == []
    with pytest.raises(RecordingError):
        RecordingStore(tmp_path, retention_days=0)
