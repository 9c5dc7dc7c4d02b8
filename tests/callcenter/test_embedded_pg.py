"""The embedded PostgreSQL survives its user's kill -9: the dead user's handle is dropped at the
next start, so the next clean stop really stops the server (no orphaned postmaster)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from callcenter import embedded_pg

CHILD = """
import sys, time
from pathlib import Path
from callcenter import embedded_pg
server = embedded_pg.start(Path(sys.argv[1]))
print(server.get_uri(), flush=True)
time.sleep(600)
"""


def _postmaster_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    except FileNotFoundError:
        return None


def _running(pid: int) -> bool:
    """Alive and not a zombie (a postmaster whose parent was killed is reaped by init later)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_killed_user_does_not_leave_the_server_running_forever(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(pgdata)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().startswith("postgresql://")
        postmaster = _postmaster_pid(pgdata)
        assert postmaster is not None and _running(postmaster)
        assert json.loads((pgdata / embedded_pg.HANDLES).read_text()) == [child.pid]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    # The server outlived its killed user, whose handle is still listed.
    assert _running(postmaster)
    assert json.loads((pgdata / embedded_pg.HANDLES).read_text()) == [child.pid]

    server = embedded_pg.start(pgdata)  # the next engine start on this data dir
    assert json.loads((pgdata / embedded_pg.HANDLES).read_text()) == [os.getpid()]
    assert _postmaster_pid(pgdata) == postmaster  # joined, not restarted
    embedded_pg.stop(server)  # the next clean stop
    assert _postmaster_pid(pgdata) is None
    assert not _running(postmaster)


def test_a_data_dir_of_another_major_version_is_refused_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "PG_VERSION").write_text("9\n")
    major = embedded_pg.server_major_version()
    assert major >= 16
    with pytest.raises(
        embedded_pg.EmbeddedPostgresError, match=f"PostgreSQL 9 .* PostgreSQL {major}"
    ):
        embedded_pg.start(tmp_path)


def test_dead_handles_are_pruned_and_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / embedded_pg.HANDLES).write_text(json.dumps([os.getpid(), dead.pid]))
    assert embedded_pg.prune_dead_handles(tmp_path) == [dead.pid]
    assert json.loads((tmp_path / embedded_pg.HANDLES).read_text()) == [os.getpid()]
    assert embedded_pg.prune_dead_handles(tmp_path) == []
