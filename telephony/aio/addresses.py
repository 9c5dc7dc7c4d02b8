"""Which of the engine's addresses a peer must see (NAT, wildcard binds, IPv6).

The engine may bind a wildcard (0.0.0.0 or ::) and may sit behind a NAT. Neither a wildcard
nor a private address behind a NAT may reach the wire in a Via, a Contact or an SDP c=/o=:
every message says the address this peer can reach us at.

- A peer in one of the *local networks* (loopback, private ranges by default) sees the local
  address the kernel would send to it from: the bound address, or, for a wildcard bind, the
  source address of a route lookup to that peer (a connected UDP socket's name, cached).
- Any other peer sees the configured *external address* when there is one (a 1:1 NAT or port
  forwarding that keeps the SIP and RTP port numbers), else the local address as above.

IPv4 peers reaching a dual-stack IPv6 socket (bound to ::) appear as IPv4-mapped addresses
(::ffff:192.0.2.1): `unmap` turns them back into plain IPv4 so that bindings, bans and latching
compare like with like, and `for_socket` maps them again when such a socket sends.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Iterable

logger = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Networks whose peers see the local address when an external address is set: loopback,
#: RFC 1918, shared address space (RFC 6598), link-local, IPv6 ULA and link-local.
DEFAULT_LOCAL_NETWORKS: tuple[str, ...] = (
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
)

WILDCARDS = frozenset({"", "0.0.0.0", "::"})

_CACHE_LIMIT = 4096
_CACHE_SECONDS = 60.0
"""How long a route lookup's answer is trusted (addresses and routes change: DHCP, VPNs)."""
# Where to "send" for the address of the default route (nothing is sent: a UDP connect only
# asks the routing table). Documentation addresses (RFC 5737, RFC 3849).
_PROBE_V4 = "192.0.2.1"
_PROBE_V6 = "2001:db8::1"


def unmap(host: str) -> str:
    """An IPv4-mapped IPv6 address (::ffff:192.0.2.1) as plain IPv4; anything else as given."""
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    return host


def for_socket(host: str, family: int) -> str:
    """`host` as a destination for a socket of `family`: an IPv4 address becomes IPv4-mapped
    for an AF_INET6 (dual-stack) socket."""
    if family == socket.AF_INET6 and ":" not in host and is_ip(host):
        return "::ffff:" + host
    return host


def udp_socket(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket bound to host:port, for `create_datagram_endpoint(sock=)`.
    On :: it takes IPv4 too whatever the system's default (net.ipv6.bindv6only): one socket
    serves both families, IPv4 peers appearing IPv4-mapped."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if host == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs (or single addresses) as networks; ValueError names the bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError:
            raise ValueError(f"not a network (CIDR) or address: {value!r}") from None
    return tuple(networks)


def route_source(host: str) -> str | None:
    """The local address the kernel would send to `host` from (no packet is sent); None when
    there is no route or `host` is not an IP address."""
    if not is_ip(host):
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, 9))
        except OSError:
            return None
        return str(probe.getsockname()[0])


class AddressChooser:
    """The address to advertise to each peer (see the module docstring)."""

    def __init__(
        self,
        bind: str,
        *,
        external: str | None = None,
        local_networks: Iterable[str] = DEFAULT_LOCAL_NETWORKS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bind = unmap(bind.strip("[]"))
        self.external = external.strip("[]") if external else None
        self.local_networks = parse_networks(local_networks)
        self.wildcard = self.bind in WILDCARDS
        self._clock = clock
        self._local: dict[str, tuple[str, float]] = {}
        """Route lookups: peer (or "default4"/"default6") -> (our address, trusted until)."""

    def is_local(self, host: str) -> bool:
        """True when `host` is in one of the local networks (a name never is)."""
        try:
            address = ipaddress.ip_address(unmap(host.strip("[]")))
        except ValueError:
            return False
        return any(address in network for network in self.local_networks)

    def local_for(self, host: str) -> str:
        """Our local address as `host` sees it (no NAT in between)."""
        if not self.wildcard:
            return self.bind
        host = unmap(host.strip("[]"))
        if self.bind == "0.0.0.0" and ":" in host:
            return self.default()  # an IPv4-only socket cannot reach an IPv6 peer
        return self._cached(host, lambda: route_source(host) or self._default_local(":" in host))

    def for_peer(self, host: str) -> str:
        """The address `host` must see in our Via, Contact and SDP. The external address is
        for peers of its own family: an IPv6 peer of a dual-stack engine behind an IPv4 NAT
        reaches the engine's own IPv6 address."""
        if (
            self.external is not None
            and (":" in self.external) == (":" in unmap(host))
            and not self.is_local(host)
        ):
            return self.external
        return self.local_for(host)

    def default(self) -> str:
        """The address to name when no particular peer is meant (From/To hosts, Call-ID):
        the external address, else the bound one, else the default route's source."""
        if self.external is not None:
            return self.external
        if not self.wildcard:
            return self.bind
        return self._default_local(self.bind == "::")

    def _default_local(self, ipv6: bool) -> str:
        probe = _PROBE_V6 if ipv6 else _PROBE_V4
        fallback = "::1" if ipv6 else "127.0.0.1"
        return self._cached(
            "default6" if ipv6 else "default4", lambda: route_source(probe) or fallback
        )

    def _cached(self, key: str, look_up: Callable[[], str]) -> str:
        now = self._clock()
        entry = self._local.get(key)
        if entry is not None and entry[1] > now:
            return entry[0]
        found = look_up()
        if len(self._local) >= _CACHE_LIMIT:
            self._local.clear()
        self._local[key] = (found, now + _CACHE_SECONDS)
        return found


def is_ip(host: object) -> bool:
    """Whether `host` (as text) is an IPv4 or IPv6 address, not a name."""
    try:
        ipaddress.ip_address(str(host))
    except ValueError:
        return False
    return True


__all__ = [
    "DEFAULT_LOCAL_NETWORKS",
    "AddressChooser",
    "for_socket",
    "is_ip",
    "parse_networks",
    "route_source",
    "udp_socket",
    "unmap",
]
