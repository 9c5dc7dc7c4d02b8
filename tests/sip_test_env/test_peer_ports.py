"""Free-port allocation for test peers."""

from __future__ import annotations

import socket

import pytest

from sip_test_env.ports import free_port, free_port_range, port_is_free


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
