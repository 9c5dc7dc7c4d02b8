"""scripts/cluster's plan (callcenter.cluster): distinct ports and names per node, and the
`serve` options it passes each node land in that node's config."""

from __future__ import annotations

import pytest

from callcenter.cli import _apply_overrides, build_parser
from callcenter.cluster import KAMAILIO_CFG, KamailioProcess, plan_nodes
from callcenter.config import ConfigError, parse_config


def test_nodes_get_their_own_ports_and_names() -> None:
    nodes = plan_nodes(3, first_sip_port=5071, first_http_port=8081, rtp_base=20000, rtp_span=100)
    assert [(n.name, n.sip_port, n.http_port, n.rtp_ports) for n in nodes] == [
        ("node1", 5071, 8081, (20000, 20099)),
        ("node2", 5072, 8082, (20100, 20199)),
        ("node3", 5073, 8083, (20200, 20299)),
    ]
    kamailio = KamailioProcess("127.0.0.1", 5060, nodes, KAMAILIO_CFG.parent)
    assert kamailio.dispatcher_list().splitlines() == [
        "1 sip:127.0.0.1:5071",
        "1 sip:127.0.0.1:5072",
        "1 sip:127.0.0.1:5073",
    ]
    with pytest.raises(ValueError, match="at least one"):
        plan_nodes(0)
    with pytest.raises(ValueError, match="do not fit"):
        plan_nodes(20, rtp_base=20000, rtp_span=5000)


def test_a_nodes_command_line_overrides_the_shared_config() -> None:
    args = build_parser().parse_args(
        ["serve", "--sip-listen", "127.0.0.1:5072", "--http-listen", "127.0.0.1:8082",
         "--rtp-ports", "25000-29999", "--node", "node2", "--cluster",
         "--trusted-proxy", "127.0.0.1"]
    )  # fmt: skip
    config = _apply_overrides(parse_config("", source="cc.toml"), args)
    assert (config.sip.listen.port, config.http_listen.port) == (5072, 8082)
    assert config.sip.rtp_ports == (25000, 29999)
    assert config.crm.node == "node2" and config.sip.cluster
    assert config.sip.trusted_proxies == ("127.0.0.1",)
    bad = build_parser().parse_args(["serve", "--rtp-ports", "30000-20000"])
    with pytest.raises(ConfigError, match="rtp-ports"):
        _apply_overrides(parse_config("", source="cc.toml"), bad)
    named = build_parser().parse_args(["serve", "--trusted-proxy", "kamailio.local"])
    with pytest.raises(ConfigError, match="trusted-proxy"):
        _apply_overrides(parse_config("", source="cc.toml"), named)
