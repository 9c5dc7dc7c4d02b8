"""A NAT in network namespaces, for tests of an engine behind one (needs root, ip, iptables).

    this host (the LAN)          namespace "router"                  namespace "outside"
    engine, agents on lo  ---  veth  ---  DNAT/SNAT  ---  veth  ---  the phone of a remote
    lan_address                lan_router  public_address             phone_address

The router is a 1:1 NAT as in front of a cloud VM: what reaches its public address on the
forwarded ports (SIP on UDP and TCP, the RTP range on UDP) goes to the engine's LAN address,
and everything the LAN sends out leaves from the public address. The LAN is not reachable from
outside otherwise (new connections not forwarded are dropped), so a phone outside that is
told a private address cannot reach it.

Everything lives under names with a random suffix (several runs may share the host) and is
removed when the context ends, even on failure: both namespaces (their veth pairs and iptables
rules go with them) and the route on this host.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

logger = logging.getLogger(__name__)


class NetnsError(RuntimeError):
    pass


def run(*argv: str) -> None:
    """Run one command; NetnsError with its stderr when it fails."""
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {result.stderr.strip() or result.returncode}")


@dataclass(frozen=True)
class NatLab:
    router: str
    """The router namespace's name."""
    outside: str
    """The outside namespace's name (run a phone there: `ip netns exec <outside> ...`)."""
    lan_address: str
    """This host's address on the LAN link (where the router forwards to)."""
    public_address: str
    """The router's outside address: the engine's external address."""
    phone_address: str
    """The outside namespace's address."""
    outside_network: str
    """The outside link's network (a peer there is not local to the engine)."""


@contextlib.contextmanager
def nat_lab(*, sip_port: int, rtp_ports: tuple[int, int]) -> Iterator[NatLab]:
    """Build the NAT of the module docstring, forwarding `sip_port` (UDP, TCP) and the
    `rtp_ports` range (UDP) to this host; torn down on exit."""
    tag = secrets.token_hex(3)
    n = 1 + secrets.randbelow(250)
    router, outside = f"ccnat-r-{tag}", f"ccnat-o-{tag}"
    lan, lan_peer = f"ccl{tag}", f"ccl{tag}r"
    wan, wan_peer = f"ccw{tag}", f"ccw{tag}o"
    lab = NatLab(
        router=router,
        outside=outside,
        lan_address=f"10.213.{n}.1",
        public_address=f"198.18.{n}.1",
        phone_address=f"198.18.{n}.10",
        outside_network=f"198.18.{n}.0/24",
    )
    lan_router = f"10.213.{n}.2"
    created: list[str] = []
    try:
        run("ip", "netns", "add", router)
        created.append(router)
        run("ip", "netns", "add", outside)
        created.append(outside)
        # LAN link: this host <-> router.
        run("ip", "link", "add", lan, "type", "veth", "peer", "name", lan_peer, "netns", router)
        run("ip", "addr", "add", f"{lab.lan_address}/30", "dev", lan)
        run("ip", "link", "set", lan, "up")
        run("ip", "-n", router, "addr", "add", f"{lan_router}/30", "dev", lan_peer)
        run("ip", "-n", router, "link", "set", lan_peer, "up")
        run("ip", "-n", router, "link", "set", "lo", "up")
        # Outside link: router <-> outside.
        run("ip", "-n", router, "link", "add", wan, "type", "veth", "peer", "name", wan_peer)
        run("ip", "-n", router, "link", "set", wan_peer, "netns", outside)
        run("ip", "-n", router, "addr", "add", f"{lab.public_address}/24", "dev", wan)
        run("ip", "-n", router, "link", "set", wan, "up")
        run("ip", "-n", outside, "addr", "add", f"{lab.phone_address}/24", "dev", wan_peer)
        run("ip", "-n", outside, "link", "set", wan_peer, "up")
        run("ip", "-n", outside, "link", "set", "lo", "up")
        run("ip", "-n", outside, "route", "add", "default", "via", lab.public_address)
        # This host reaches the outside through the router.
        run("ip", "route", "add", lab.outside_network, "via", lan_router, "dev", lan)
        run("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        nat = ("ip", "netns", "exec", router, "iptables", "-t", "nat")
        low, high = rtp_ports
        to_lan = ("-j", "DNAT", "--to-destination", lab.lan_address)
        into = ("-A", "PREROUTING", "-i", wan, "-d", lab.public_address)
        run(*nat, *into, "-p", "udp", "--dport", str(sip_port), *to_lan)
        run(*nat, *into, "-p", "tcp", "--dport", str(sip_port), *to_lan)
        run(*nat, *into, "-p", "udp", "--dport", f"{low}:{high}", *to_lan)
        run(*nat, "-A", "POSTROUTING", "-o", wan, "-j", "SNAT", "--to-source", lab.public_address)
        # Nothing else gets in: a private address is unreachable from outside.
        run(
            "ip", "netns", "exec", router, "iptables", "-A", "FORWARD", "-i", wan,
            "-m", "conntrack", "--ctstate", "NEW", "-m", "conntrack", "!", "--ctstate", "DNAT",
            "-j", "DROP",
        )  # fmt: skip
        logger.info(
            "NAT lab: LAN %s, public %s, phone %s", lab.lan_address, lab.public_address,
            lab.phone_address,
        )  # fmt: skip
        yield lab
    finally:
        for name in reversed(created):
            with contextlib.suppress(NetnsError):
                run("ip", "netns", "del", name)
        # The LAN veth and its route die with the router's end; make sure.
        with contextlib.suppress(NetnsError):
            run("ip", "link", "del", lan)


__all__ = ["NatLab", "NetnsError", "nat_lab", "run"]
