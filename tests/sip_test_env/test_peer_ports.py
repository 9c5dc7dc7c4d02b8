"""Free-port allocation for test peers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sip_test_env.ports import (
    SHARE_ENV,
    SHARES_ENV,
    free_port,
    free_port_range,
    port_is_free,
    worker_share,
)


def test_free_port_is_bindable_for_udp_and_tcp() -> None:
    port = free_port("both")
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", port))


def test_ports_are_never_handed_out_twice() -> None:
    ports = [free_port(kind) for kind in ("udp", "tcp", "both") * 100]
    assert len(set(ports)) == len(ports)


def test_range_is_even_consecutive_and_disjoint_from_others() -> None:
    low, high = free_port_range(20)
    assert low % 2 == 0 and high - low == 19
    other_low, other_high = free_port_range(20)
    assert other_high < low or other_low > high
    assert free_port() not in range(low, high + 1)


def test_port_held_by_someone_else_is_not_free() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert not port_is_free(port, "tcp")
        assert not port_is_free(port, "both")


def test_bad_range_size() -> None:
    with pytest.raises(ValueError):
        free_port_range(0)


def _unshared_env() -> dict[str, str]:
    """This environment without the share settings (scripts/test sets them for its lanes)."""
    names = (SHARE_ENV, SHARES_ENV, "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT")
    return {k: v for k, v in os.environ.items() if k not in names}


@pytest.fixture(autouse=True)
def unshared(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (SHARE_ENV, SHARES_ENV):
        monkeypatch.delenv(name, raising=False)


def _as_worker(monkeypatch: pytest.MonkeyPatch, worker: str, count: int) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(count))


def test_outside_xdist_a_process_takes_the_whole_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    assert worker_share(16000, 17999) == (16000, 17999)
    _as_worker(monkeypatch, "gw0", 1)
    assert worker_share(16000, 17999) == (16000, 17999)


def test_xdist_workers_take_disjoint_consecutive_shares(monkeypatch: pytest.MonkeyPatch) -> None:
    shares = []
    for k in range(3):
        _as_worker(monkeypatch, f"gw{k}", 3)
        shares.append(worker_share(16000, 17999))
    assert shares == [(16000, 16665), (16666, 17331), (17332, 17997)]
    # A worker started again after a crash (gw3 of 3) reuses a share instead of leaving the range.
    _as_worker(monkeypatch, "gw3", 3)
    assert worker_share(16000, 17999) == shares[0]


def test_lanes_side_by_side_take_shares_after_the_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # scripts/test: three e2e workers and two unit lanes cut every range in five.
    monkeypatch.setenv(SHARES_ENV, "5")
    shares = []
    for k in range(3):
        _as_worker(monkeypatch, f"gw{k}", 3)
        shares.append(worker_share(20000, 29999))
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT")
    for lane in ("3", "4"):
        monkeypatch.setenv(SHARE_ENV, lane)
        shares.append(worker_share(20000, 29999))
    assert shares == [(20000 + k * 2000, 21999 + k * 2000) for k in range(5)]
    # Workers of a run given a first share start there.
    monkeypatch.setenv(SHARE_ENV, "1")
    _as_worker(monkeypatch, "gw1", 2)
    assert worker_share(20000, 29999) == shares[2]


def test_bad_shares_are_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    _as_worker(monkeypatch, "gw0", 4)
    with pytest.raises(ValueError, match="4 shares"):
        worker_share(100, 106)
    monkeypatch.setenv(SHARES_ENV, "2")
    with pytest.raises(ValueError, match="port share 2 of 2"):
        _as_worker(monkeypatch, "gw2", 3)
        worker_share(20000, 29999)
    monkeypatch.setenv(SHARES_ENV, "two")
    with pytest.raises(ValueError, match="SIP_TEST_PORT_SHARES='two'"):
        worker_share(20000, 29999)


def test_each_worker_hands_out_ports_only_from_its_share() -> None:
    # Fresh processes, since this one's pool is already placed.
    code = (
        "from sip_test_env.ports import _pool, free_port, free_port_range\n"
        "low, high = _pool()\n"
        "ports = [free_port() for _ in range(50)] + list(free_port_range(20))\n"
        "print(low, high, min(ports), max(ports))\n"
    )
    shares = []
    for worker in ("gw0", "gw1"):
        env = {**_unshared_env(), "PYTEST_XDIST_WORKER": worker, "PYTEST_XDIST_WORKER_COUNT": "2"}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout
        low, high, first, last = map(int, out.split())
        assert low <= first and last <= high
        shares.append((low, high))
    (low0, high0), (low1, high1) = shares
    assert 20000 <= low0 < high0 < low1 < high1 <= 29999


def test_the_pool_is_a_ring_that_hands_out_the_oldest_ports_again() -> None:
    # 100 workers leave this process a share of 100 ports: more are handed out than it holds.
    code = (
        "from sip_test_env.ports import _pool, free_port\n"
        "print(*_pool())\n"
        "print(*(free_port() for _ in range(250)))\n"
    )
    env = {**_unshared_env(), "PYTEST_XDIST_WORKER": "gw7", "PYTEST_XDIST_WORKER_COUNT": "100"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    low, high = map(int, out[0].split())
    ports = [int(p) for p in out[1].split()]
    assert high - low == 99 and all(low <= p <= high for p in ports)
    # Ports come again (the share never ran out), but only once the ring has gone round: a few
    # may be skipped while someone else holds them, so a turn is somewhat under 100 ports.
    last_seen: dict[int, int] = {}
    gaps = []
    for i, port in enumerate(ports):
        if port in last_seen:
            gaps.append(i - last_seen[port])
        last_seen[port] = i
    assert gaps and min(gaps) >= 50, gaps


def test_a_phone_on_another_loopback_address_gets_ports_free_there(tmp_path: Path) -> None:
    from sip_test_env import ports
    from sip_test_env.baresip import BaresipPeer

    free_port()  # places the cursor: the next ports handed out follow it
    assert ports._cursor is not None
    held: list[socket.socket] = []
    try:
        # Someone else (another run's customer phone, say) holds the next 60 ports on 127.0.0.2
        # only: they are free on 127.0.0.1.
        for port in range(ports._cursor, ports._cursor + 60):
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                s = socket.socket(socket.AF_INET, kind)
                try:
                    s.bind(("127.0.0.2", port))
                except OSError:
                    s.close()
                    continue
                held.append(s)
        busy = {s.getsockname()[1] for s in held}
        assert len(busy) >= 50
        phone = BaresipPeer("300", workdir=tmp_path, host="127.0.0.2")
        wanted = {
            phone.sip_port,
            phone.sip_port + 1,
            *range(phone.rtp_ports[0], phone.rtp_ports[1]),
        }
        assert not wanted & busy
    finally:
        for s in held:
            s.close()
