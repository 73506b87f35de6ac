"""Scenario validation: the shipped scenarios load, defaults fill in, and every error names
file and field (one test per error)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from netprobe.core.result import Reach, Where
from netprobe.errors import ConfigError
from netprobe.lab import spec
from netprobe.lab.spec import load_scenario, parse_scenario, resolve_scenario

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((REPO / "scenarios").glob("*.yaml"))

BASE = {
    "name": "t",
    "segments": [{"name": "lan", "subnet": "198.18.0.0/24", "hosts": ["cp1", "node1"]}],
    "hosts": [
        {"name": "cp1", "roles": ["node", "apiserver", "etcd"]},
        {"name": "node1", "roles": ["node", "typha"]},
    ],
}


def parse(data, source="s.yaml"):
    return parse_scenario(yaml.safe_dump(data, sort_keys=False), source=source)


def with_(path: str, value, data=None):
    """A copy of BASE (or data) with one value set at a dotted path like 'hosts.0.roles'."""
    data = yaml.safe_load(yaml.safe_dump(data or BASE))
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


# -- the shipped scenarios ------------------------------------------------------------------

def test_there_are_enough_scenarios_and_a_demo():
    names = {p.stem for p in SCENARIOS}
    assert "demo" in names
    assert len(names - {"demo"}) >= 8


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenario_loads_and_explains_itself(path):
    text = path.read_text()
    header = [line for line in text.splitlines()[:3]]
    assert header[0].startswith(f"# {path.stem}:"), "first line: '# NAME: what this is'"
    assert "What it teaches" in text
    s = load_scenario(path)
    assert s.name == path.stem
    assert s.expect.default is Reach.ALLOWED
    for h in s.hosts:
        assert h.address.startswith("198.18."), "lab addresses stay in 198.18.0.0/15"


def test_firewalls_use_both_nft_and_iptables():
    kinds = set()
    for path in SCENARIOS:
        s = load_scenario(path)
        for node in (*s.hosts, *s.routers):
            kinds |= {k for k in ("nft", "iptables", "ipset") if getattr(node.firewall, k)}
    assert kinds == {"nft", "iptables", "ipset"}


def test_demo_is_one_broken_cell():
    s = load_scenario("demo")
    assert s.profile == "calico" and 3 <= len(s.hosts) <= 4
    assert [r.to_dict() for r in s.expect.rules] == [
        {"check": "bgp", "from": "node1", "to": "node2", "reach": "blocked", "where": "destination-ingress"}
    ]
    roles = s.roles
    assert s.expect.expected("bgp", "node1", "node2", roles) == (Reach.BLOCKED, Where.DESTINATION_INGRESS)
    assert s.expect.expected("bgp", "node2", "node1", roles) == (Reach.ALLOWED, None)
    assert {"apiserver", "etcd"} <= roles["cp1"] and any("typha" in r for r in roles.values())


# -- resolving names ------------------------------------------------------------------------

def test_resolve_by_name_and_path(tmp_path, monkeypatch):
    assert resolve_scenario("demo") == REPO / "scenarios" / "demo.yaml"
    assert resolve_scenario("demo.yaml") == REPO / "scenarios" / "demo.yaml"
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump(BASE))
    assert resolve_scenario(str(mine)) == mine
    monkeypatch.setenv("NETPROBE_SCENARIOS", str(tmp_path))
    assert resolve_scenario("mine") == mine
    assert load_scenario("mine").name == "t"


def test_resolve_unknown_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"no such scenario.*demo") as info:
        resolve_scenario("no-such-scenario")
    assert info.value.file == "no-such-scenario"
    with pytest.raises(ConfigError, match="no such scenario file"):
        resolve_scenario("/nonexistent/x.yaml")


# -- defaults -------------------------------------------------------------------------------

def test_defaults_one_lan_allocated_addresses_role_listeners():
    s = parse_scenario("hosts:\n  - {name: a, roles: [node, etcd]}\n  - {name: b}\n", source="x/mini.yaml",
                       default_name="mini")
    assert s.name == "mini" and s.profile == "calico" and s.vni == 1
    assert [(g.name, g.subnet, g.hosts) for g in s.segments] == [("lan", "198.18.0.0/24", ("a", "b"))]
    assert [h.address for h in s.hosts] == ["198.18.0.10", "198.18.0.11"]
    assert s.host("b").roles == frozenset({"node"})
    assert s.host("a").services.tcp == (179, 2379)
    assert s.host("a").services.vxlan_vni is None
    assert s.host("a").firewall.empty


def test_explicit_addresses_are_skipped_by_allocation():
    data = with_("hosts.0.address", "198.18.0.10")
    s = parse(data)
    assert [h.address for h in s.hosts] == ["198.18.0.10", "198.18.0.11"]


def test_canal_nodes_get_a_vxlan_device_by_default():
    s = parse({**with_("profile", "canal"), "vni": 7})
    assert {h.name: h.services.vxlan_vni for h in s.hosts} == {"cp1": 7, "node1": 7}
    s2 = parse(with_("hosts.1.services", {"vxlan": False}, with_("profile", "canal")))
    assert s2.host("node1").services.vxlan_vni is None
    s3 = parse(with_("hosts.1.services", {"vxlan": {"vni": 42}, "listen": {"tcp": [1], "udp": [8472]}}))
    assert (s3.host("node1").services.vxlan_vni, s3.host("node1").services.udp) == (42, (8472,))


def test_listen_forms():
    s = parse(with_("hosts.1.services", {"listen": [80, 80, 443]}))
    assert s.host("node1").services.tcp == (80, 443)
    s = parse(with_("hosts.1.services", {"listen": [], "daemons": ["bird"]}))
    assert s.host("node1").services.tcp == () and s.host("node1").services.daemons == ("bird",)


def test_routers_get_addresses_and_segments():
    data = {
        "name": "r",
        "segments": [
            {"name": "rack1", "subnet": "198.18.1.0/24", "hosts": ["a"]},
            {"name": "rack2", "subnet": "198.18.2.0/24", "hosts": ["b"]},
        ],
        "routers": [{"name": "core", "segments": ["rack1", "rack2"], "addresses": {"rack2": "198.18.2.254"}}],
        "hosts": [{"name": "a"}, {"name": "b"}],
    }
    s = parse(data)
    assert s.routers[0].addresses == (("rack1", "198.18.1.1"), ("rack2", "198.18.2.254"))
    assert [h.address for h in s.hosts] == ["198.18.1.10", "198.18.2.10"]


def test_small_subnets_allocate_from_the_start():
    data = with_("segments.0.subnet", "198.18.0.0/29")
    assert [h.address for h in parse(data).hosts] == ["198.18.0.1", "198.18.0.2"]


def test_firewall_of_hosts_and_routers():
    s = load_scenario("two-racks-router")
    rules, field = s.firewall_of("core")
    assert "tcp dport 179" in rules.nft and field == "routers[0].firewall"
    rules, field = s.firewall_of("node2")
    assert rules.empty and field == "hosts[2].firewall"
    with pytest.raises(ConfigError, match="no host or router named 'nodeX'") as info:
        s.firewall_of("nodeX")
    assert info.value.field == "--host"


# -- every validation error names file and field --------------------------------------------

NFT_OK = "table inet f {\n  chain input { type filter hook input priority 0; }\n}\n"

ERRORS = [
    # (id, data (or raw text), field, words)
    ("not-yaml", "hosts: [", None, "not valid YAML"),
    ("not-mapping", "- a\n", None, "must be a mapping"),
    ("unknown-top-key", with_("hostz", []), "hostz", "unknown key 'hostz'"),
    ("bad-name", with_("name", "Demo Lab"), "name", "short lowercase name"),
    ("unknown-profile", with_("profile", "cilium"), "profile", "unknown profile 'cilium'"),
    ("bad-vni", with_("vni", 1 << 24), "vni", "VXLAN network id"),
    ("no-hosts", with_("hosts", []), "hosts", "non-empty list"),
    ("host-not-mapping", with_("hosts.1", "node1"), "hosts[1]", "must be a mapping"),
    ("host-unknown-key", with_("hosts.1.role", ["node"]), "hosts[1].role", "unknown key 'role'"),
    ("host-bad-name", with_("hosts.1.name", "node_1"), "hosts[1].name", "lowercase host name"),
    ("duplicate-host", with_("hosts.1.name", "cp1"), "hosts[1].name", "already used by hosts[0]"),
    ("unknown-role", with_("hosts.1.roles", ["node", "master"]), "hosts[1].roles[1]", "unknown role 'master'"),
    ("no-roles", with_("hosts.1.roles", []), "hosts[1].roles", "at least one role"),
    ("roles-not-list", with_("hosts.1.roles", "node"), "hosts[1].roles", "list of names"),
    ("segments-empty", with_("segments", []), "segments", "non-empty list"),
    ("segment-name-clash", with_("segments.0.name", "cp1"), "segments[0].name", "already used by hosts[0]"),
    ("bad-subnet", with_("segments.0.subnet", "198.18.0.1/24"), "segments[0].subnet", "IPv4 subnet"),
    ("tiny-subnet", with_("segments.0.subnet", "198.18.0.0/30"), "segments[0].subnet", "too small"),
    ("segment-unknown-host", with_("segments.0.hosts", ["cp1", "node1", "node9"]), "segments[0].hosts[2]",
     "no host named 'node9'"),
    ("host-in-no-segment", with_("segments.0.hosts", ["cp1"]), "hosts[1]", "in no segment"),
    ("host-in-two-segments",
     with_("segments", [{"name": "a", "subnet": "198.18.1.0/24", "hosts": ["cp1", "node1"]},
                        {"name": "b", "subnet": "198.18.2.0/24", "hosts": ["node1"]}]),
     "segments[1].hosts[0]", "already in segment 'a'"),
    ("overlapping-subnet",
     with_("segments", [{"name": "a", "subnet": "198.18.0.0/16", "hosts": ["cp1"]},
                        {"name": "b", "subnet": "198.18.2.0/24", "hosts": ["node1"]}]),
     "segments[1].subnet", "overlaps 198.18.0.0/16 of segments[0]"),
    ("segment-hosts-missing",
     with_("segments", [{"name": "a", "subnet": "198.18.1.0/24", "hosts": ["cp1", "node1"]},
                        {"name": "b", "subnet": "198.18.2.0/24"}]),
     "segments[1].hosts", "must list the segment's hosts"),
    ("address-outside-subnet", with_("hosts.1.address", "198.19.0.5"), "hosts[1].address", "not in the segment"),
    ("address-broadcast", with_("hosts.1.address", "198.18.0.255"), "hosts[1].address", "broadcast"),
    ("address-garbage", with_("hosts.1.address", "node1.lan"), "hosts[1].address", "IPv4 address"),
    ("duplicate-address", with_("hosts.1.address", "198.18.0.7", with_("hosts.0.address", "198.18.0.7")),
     "hosts[1].address", "already used by hosts[0].address"),
    ("router-unknown-segment", with_("routers", [{"name": "r", "segments": ["lan", "wan"]}]),
     "routers[0].segments[1]", "no segment named 'wan'"),
    ("router-one-segment", with_("routers", [{"name": "r", "segments": ["lan"]}]),
     "routers[0].segments", "at least two segments"),
    ("router-segment-twice", with_("routers", [{"name": "r", "segments": ["lan", "lan"]}]),
     "routers[0].segments[1]", "listed twice"),
    ("router-address-elsewhere",
     with_("routers", [{"name": "r", "segments": ["lan", "lan2"], "addresses": {"lan3": "198.18.0.1"}}],
           with_("segments.1", {"name": "lan2", "subnet": "198.18.9.0/24", "hosts": []},
                 with_("segments", BASE["segments"] * 2))),
     "routers[0].addresses.lan3", "not one of this router's segments"),
    ("firewall-unknown-kind", with_("hosts.1.firewall", {"nftables": NFT_OK}), "hosts[1].firewall.nftables",
     "unknown key"),
    ("firewall-not-text", with_("hosts.1.firewall", {"nft": ["flush ruleset"]}), "hosts[1].firewall.nft",
     "must be nft text"),
    ("nft-unbalanced", with_("hosts.1.firewall", {"nft": "table inet f {\n chain c {\n}\n"}),
     "hosts[1].firewall.nft", "never closed"),
    ("iptables-no-commit", with_("hosts.1.firewall", {"iptables": "*filter\n-A INPUT -j DROP\n"}),
     "hosts[1].firewall.iptables", "*filter has no COMMIT"),
    ("ipset-not-a-command", with_("hosts.1.firewall", {"ipset": "new myset hash:ip\n"}),
     "hosts[1].firewall.ipset", "not an ipset command"),
    ("services-unknown-key", with_("hosts.1.services", {"ports": [1]}), "hosts[1].services.ports", "unknown key"),
    ("bad-port", with_("hosts.1.services", {"listen": {"tcp": [179, 70000]}}), "hosts[1].services.listen.tcp[1]",
     "port in 1-65535"),
    ("vxlan-port-clash", with_("hosts.1.services", {"vxlan": True, "listen": {"udp": [4789]}}),
     "hosts[1].services.listen.udp", "VXLAN device's port"),
    ("canal-vxlan-port-clash", with_("hosts.1.services", {"vxlan": True, "listen": {"udp": [8472]}},
                                     with_("profile", "canal")),
     "hosts[1].services.listen.udp", "UDP 8472 is the VXLAN device's port"),
    ("bad-vxlan-port", with_("vxlan_port", 0), "vxlan_port", "port in 1-65535"),
    ("unknown-daemon", with_("hosts.1.services", {"daemons": ["calico-node"]}), "hosts[1].services.daemons[0]",
     "unknown daemon"),
    ("expect-missing-host", with_("expect", {"rules": [{"check": "bgp", "to": "node9", "reach": "blocked"}]}),
     "expect.rules[0].to", "no host named 'node9'"),
    ("expect-role-no-host-has",
     with_("expect", {"rules": [{"check": "bgp", "to": "role:typha", "reach": "blocked"}]},
           with_("hosts.1.roles", ["node"])),
     "expect.rules[0].to", "no host has role 'typha'"),
    ("expect-bad-reach", with_("expect", {"default": "open"}), "expect.default", "'allowed' or 'blocked'"),
    ("bad-subnet6", with_("segments.0.subnet6", "2001:db8::1/64"), "segments[0].subnet6", "IPv6 subnet"),
    ("subnet6-ipv4", with_("segments.0.subnet6", "198.18.0.0/24"), "segments[0].subnet6", "IPv6 subnet"),
    ("tiny-subnet6", with_("segments.0.subnet6", "2001:db8::/120"), "segments[0].subnet6", "too small"),
    ("address6-without-subnet6", with_("hosts.1.address6", "2001:db8::5"), "hosts[1].address6", "no subnet6"),
    ("address6-outside", with_("hosts.1.address6", "2001:db8:1::5", with_("segments.0.subnet6", "2001:db8::/64")),
     "hosts[1].address6", "not a host address"),
    ("address6-clash", with_("hosts.1.address6", "2001:db8::10", with_("segments.0.subnet6", "2001:db8::/64")),
     "hosts[1].address6", "already used by hosts[0].address6"),
    ("expect-bad-family", with_("expect", {"rules": [{"check": "bgp", "family": 5, "reach": "blocked"}]}),
     "expect.rules[0].family", "4 or 6"),
]


def test_a_segment_with_a_subnet6_makes_its_hosts_and_routers_dual_stack():
    s = parse({"name": "t",
               "segments": [{"name": "a", "subnet": "198.18.1.0/24", "subnet6": "2001:db8:1::/64", "hosts": ["h1"]},
                            {"name": "b", "subnet": "198.18.2.0/24", "hosts": ["h2"]}],
               "routers": [{"name": "r", "segments": ["a", "b"], "addresses6": {"a": "2001:db8:1::fe"}}],
               "hosts": [{"name": "h1", "address": "198.18.1.10"}, {"name": "h2"}]})
    h1, h2 = s.hosts
    # the IPv4 number, in decimal digits, in the subnet6: the two addresses read alike
    assert (h1.address6, h1.prefixlen6) == ("2001:db8:1::10", 64)
    assert h2.address6 is None and s.segment("b").subnet6 is None  # IPv4 only
    r = s.routers[0]
    assert r.addresses6 == (("a", "2001:db8:1::fe"),) and r.address_on("a", 6) == "2001:db8:1::fe"
    assert r.address_on("b", 6) is None and r.address_on("b") == "198.18.2.1"


@pytest.mark.parametrize(("data", "field", "words"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_validation_error(data, field, words):
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    with pytest.raises(ConfigError) as info:
        parse_scenario(text, source="scenarios/broken.yaml", default_name="broken")
    err = info.value
    assert err.file == "scenarios/broken.yaml"
    assert err.field == field
    assert words in str(err)
    assert err.exit_code == 2


def test_error_message_is_one_line_naming_file_and_field():
    with pytest.raises(ConfigError) as info:
        parse(with_("hosts.1.roles", ["master"]), source="lab/x.yaml")
    msg = str(info.value)
    assert msg.startswith("lab/x.yaml: hosts[1].roles[0]: unknown role 'master'") and "\n" not in msg


def test_missing_name_uses_the_default_or_fails():
    data = {k: v for k, v in BASE.items() if k != "name"}
    assert parse_scenario(yaml.safe_dump(data), source="s", default_name="from-file").name == "from-file"
    with pytest.raises(ConfigError) as info:
        parse_scenario(yaml.safe_dump(data), source="s")
    assert info.value.field == "name"


def test_scenario_header_comment_is_not_required_by_the_parser():
    text = textwrap.dedent("""
        # anything
        hosts: [{name: a}]
    """)
    assert parse_scenario(text, source="s", default_name="x").hosts[0].name == "a"


def test_daemon_ports_table_covers_the_known_daemons():
    assert set(spec.DAEMONS) == {"etcd", "bird"}
