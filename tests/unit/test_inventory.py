"""Inventory YAML (docs/design.md "Inventory"): a valid file, its defaults, and every validation error naming
the file and the field."""

from __future__ import annotations

import textwrap

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from netprobe.core.checks import Check, Direction, Proto
from netprobe.core.inventory import DEFAULT_AGENT_PORT, Host, Inventory, parse_agent_url, parse_inventory
from netprobe.errors import ConfigError

VALID = """
token_file: token
apiserver_port: 443
vni: 4096
hosts:
  - name: node1
    address: 192.0.2.11
    roles: [node, apiserver, etcd]
    agent: unix:/run/netprobe/node1.sock
  - name: node2
    address: 192.0.2.12
    roles: [node, typha]
  - name: bastion
    address: 192.0.2.13
    roles: []
    agent: https://bastion.example:8443
checks:
  - id: dns
    proto: udp
    port: 53
    to_role: node
    from_role: "*"
    description: cluster DNS
  - id: node-exporter
    proto: tcp
    port: 9100
"""


def parse(text: str, **kw) -> Inventory:
    return parse_inventory(textwrap.dedent(text), source="inv.yaml", **kw)


def test_dual_stack_and_ipv6_only_hosts():
    inv = parse("""
        hosts:
          - {name: dual, address: 192.0.2.11, address6: '2001:DB8::11'}
          - {name: six, address: '2001:db8::12', roles: [node, etcd]}
          - {name: four, address: 192.0.2.13}
        """)
    dual, six, four = inv.hosts
    assert (dual.address, dual.address4, dual.address6) == ("192.0.2.11", "192.0.2.11", "2001:db8::11")
    assert (six.address, six.address4, six.address6) == ("2001:db8::12", None, "2001:db8::12")
    assert six.agent == f"tcp://[2001:db8::12]:{DEFAULT_AGENT_PORT}"  # parse_agent_url takes brackets
    assert (four.address4, four.address6) == ("192.0.2.13", None)


def test_valid_inventory():
    inv = parse(VALID, base_dir="/etc/netprobe")
    assert inv.hosts == (
        Host("node1", "192.0.2.11", frozenset({"node", "apiserver", "etcd"}), "unix:/run/netprobe/node1.sock"),
        Host("node2", "192.0.2.12", frozenset({"node", "typha"}), f"tcp://192.0.2.12:{DEFAULT_AGENT_PORT}"),
        Host("bastion", "192.0.2.13", frozenset(), "https://bastion.example:8443"),
    )
    assert inv.token_file == "/etc/netprobe/token"
    assert (inv.apiserver_port, inv.vni, inv.source) == (443, 4096, "inv.yaml")
    assert inv.custom_checks == (
        Check("dns", "cluster DNS", Proto.UDP, 53, Direction.TO_ROLE, to_role="node", from_role=None),
        Check("node-exporter", "node-exporter", Proto.TCP, 9100, Direction.BOTH, to_role=None, from_role="node"),
    )
    assert inv.host("node2").address == "192.0.2.12"
    with pytest.raises(KeyError):
        inv.host("node9")


def test_minimal_inventory_and_defaults():
    inv = parse("hosts: [{name: a, address: 198.51.100.1}]")
    assert inv.hosts == (Host("a", "198.51.100.1", frozenset({"node"}), "tcp://198.51.100.1:7879"),)
    assert (inv.token_file, inv.apiserver_port, inv.vni, inv.custom_checks) == (None, 6443, 1, ())


def test_vxlan_port_is_optional_and_validated():
    assert parse("hosts: [{name: a, address: 198.51.100.1}]").vxlan_port is None  # the profile's default
    assert parse("vxlan_port: 8472\nhosts: [{name: a, address: 198.51.100.1}]").vxlan_port == 8472
    for bad in ("0", "65536", "'8472'", "true"):
        with pytest.raises(ConfigError) as info:
            parse(f"vxlan_port: {bad}\nhosts: [{{name: a, address: 198.51.100.1}}]")
        assert "vxlan_port" in str(info.value)


def test_default_agent_port_is_not_a_calico_or_kubernetes_port():
    assert DEFAULT_AGENT_PORT == 7879
    assert DEFAULT_AGENT_PORT not in {179, 2379, 2380, 4789, 5473, 6443, 9099, 10250, 10256}


def test_token_file_paths():
    assert parse("token_file: ../t\nhosts: [{name: a, address: 198.51.100.1}]", base_dir="/a/b").token_file == "/a/t"
    assert parse("token_file: /abs/t\nhosts: [{name: a, address: 198.51.100.1}]", base_dir="/x").token_file == "/abs/t"


def test_ca_file_for_https_agents_is_resolved_next_to_the_inventory():
    inv = parse("ca_file: certs/ca.pem\nhosts: [{name: a, address: 198.51.100.1, agent: 'https://198.51.100.1:7879'}]",
                base_dir="/etc/netprobe")
    assert inv.ca_file == "/etc/netprobe/certs/ca.pem"
    assert parse("hosts: [{name: a, address: 198.51.100.1}]").ca_file is None
    with pytest.raises(ConfigError) as err:
        parse("ca_file: ''\nhosts: [{name: a, address: 198.51.100.1}]")
    assert err.value.field == "ca_file"


@pytest.mark.parametrize("from_role", ["'*'", "all"])
def test_custom_check_from_every_host(from_role):
    inv = parse(f"hosts: [{{name: a, address: 198.51.100.1}}]\nchecks: [{{id: x, proto: tcp, port: 1, "
                f"from_role: {from_role}}}]")
    assert inv.custom_checks[0].from_role is None


@pytest.mark.parametrize("url", ["unix:/run/x.sock", "tcp://198.51.100.1:1", "tcp://node1:65535",
                                 "https://[2001:db8::1]:7879", "tcp://[::1]:7879"])
def test_good_agent_urls(url):
    assert parse_agent_url(url, source="s", field="f") == url


H = "hosts: [{name: a, address: 198.51.100.1}]\n"
H2 = "hosts:\n  - {name: a, address: 198.51.100.1}\n  - "

# (id, yaml text, field the error must name, words the message must contain)
ERRORS = [
    ("not-yaml", "hosts: [", None, "not valid YAML"),
    ("empty-file", "", None, "mapping"),
    ("a-list", "- a\n- b", None, "mapping"),
    ("unknown-top-key", H + "nodes: []", "nodes", "unknown key"),
    ("no-hosts", "vni: 1", "hosts", "non-empty list"),
    ("empty-hosts", "hosts: []", "hosts", "non-empty list"),
    ("hosts-a-mapping", "hosts: {a: 1}", "hosts", "non-empty list"),
    ("host-not-a-mapping", "hosts: [node1]", "hosts[0]", "mapping"),
    ("host-unknown-key", "hosts: [{name: a, address: 198.51.100.1, ip: 1}]", "hosts[0]", "unknown key 'ip'"),
    ("host-without-name", "hosts: [{address: 198.51.100.1}]", "hosts[0].name", "host name"),
    ("host-name-not-a-string", "hosts: [{name: 12, address: 198.51.100.1}]", "hosts[0].name", "host name"),
    ("host-name-with-space", "hosts: [{name: 'node 1', address: 198.51.100.1}]", "hosts[0].name", "host name"),
    ("host-name-too-long", "hosts: [{name: " + "a" * 64 + ", address: 198.51.100.1}]", "hosts[0].name", "host name"),
    ("duplicate-name", H2 + "{name: a, address: 198.51.100.2}", "hosts[1].name", "duplicate host name"),
    ("no-address", "hosts: [{name: a}]", "hosts[0].address", "IPv4 or IPv6 address"),
    ("bad-address", "hosts: [{name: a, address: 198.51.100.300}]", "hosts[0].address", "IPv4 or IPv6 address"),
    ("link-local-address", "hosts: [{name: a, address: 'fe80::1'}]", "hosts[0].address", "global unicast"),
    ("cidr-address", "hosts: [{name: a, address: 198.51.100.1/24}]", "hosts[0].address", "IPv4 or IPv6 address"),
    ("hostname-address", "hosts: [{name: a, address: node1.example}]", "hosts[0].address", "IPv4 or IPv6 address"),
    ("duplicate-address", H2 + "{name: b, address: 198.51.100.1}", "hosts[1].address", "duplicate address"),
    ("address6-ipv4", "hosts: [{name: a, address: 198.51.100.1, address6: 198.51.100.2}]", "hosts[0].address6",
     "IPv6 address"),
    ("address6-multicast", "hosts: [{name: a, address: 198.51.100.1, address6: 'ff02::1'}]", "hosts[0].address6",
     "global unicast"),
    ("address6-twice", "hosts: [{name: a, address: '2001:db8::1', address6: '2001:db8::2'}]", "hosts[0].address6",
     "already IPv6"),
    ("duplicate-address6", H2 + "{name: b, address: 198.51.100.2, address6: '2001:db8::1'}\n"
     "  - {name: c, address: '2001:db8::1'}", "hosts[2].address", "duplicate address"),
    ("roles-a-string", "hosts: [{name: a, address: 198.51.100.1, roles: node}]", "hosts[0].roles", "list"),
    ("roles-not-strings", "hosts: [{name: a, address: 198.51.100.1, roles: [1]}]", "hosts[0].roles", "list"),
    ("unknown-role", "hosts: [{name: a, address: 198.51.100.1, roles: [node, master]}]", "hosts[0].roles",
     "unknown role 'master'"),
    ("agent-not-a-string", "hosts: [{name: a, address: 198.51.100.1, agent: 7879}]", "hosts[0].agent", "string"),
    ("agent-relative-unix", "hosts: [{name: a, address: 198.51.100.1, agent: 'unix:run/x'}]", "hosts[0].agent",
     "absolute"),
    ("agent-without-port", "hosts: [{name: a, address: 198.51.100.1, agent: 'tcp://198.51.100.1'}]",
     "hosts[0].agent", "tcp://HOST:PORT"),
    ("agent-port-zero", "hosts: [{name: a, address: 198.51.100.1, agent: 'tcp://198.51.100.1:0'}]",
     "hosts[0].agent", "tcp://HOST:PORT"),
    ("agent-port-too-big", "hosts: [{name: a, address: 198.51.100.1, agent: 'tcp://198.51.100.1:65536'}]",
     "hosts[0].agent", "tcp://HOST:PORT"),
    ("agent-http", "hosts: [{name: a, address: 198.51.100.1, agent: 'http://198.51.100.1:80'}]",
     "hosts[0].agent", "tcp://HOST:PORT"),
    ("agent-with-path", "hosts: [{name: a, address: 198.51.100.1, agent: 'tcp://198.51.100.1:80/x'}]",
     "hosts[0].agent", "tcp://HOST:PORT"),
    ("token-file-empty", H + "token_file: ''", "token_file", "path"),
    ("token-file-a-number", H + "token_file: 5", "token_file", "path"),
    ("apiserver-port-zero", H + "apiserver_port: 0", "apiserver_port", "1-65535"),
    ("apiserver-port-too-big", H + "apiserver_port: 65536", "apiserver_port", "1-65535"),
    ("apiserver-port-a-string", H + "apiserver_port: '443'", "apiserver_port", "integer"),
    ("apiserver-port-a-bool", H + "apiserver_port: true", "apiserver_port", "integer"),
    ("apiserver-port-a-float", H + "apiserver_port: 443.0", "apiserver_port", "integer"),
    ("vni-negative", H + "vni: -1", "vni", "0-16777215"),
    ("vni-too-big", H + "vni: 16777216", "vni", "0-16777215"),
    ("checks-a-mapping", H + "checks: {id: x}", "checks", "list"),
    ("check-not-a-mapping", H + "checks: [dns]", "checks[0]", "mapping"),
    ("check-without-id", H + "checks: [{proto: tcp, port: 1}]", "checks[0].id", "short name"),
    ("check-bad-id", H + "checks: [{id: 'a b', proto: tcp, port: 1}]", "checks[0].id", "short name"),
    ("check-bad-proto", H + "checks: [{id: x, proto: icmp, port: 1}]", "checks[0].proto", "tcp or udp"),
    ("check-without-port", H + "checks: [{id: x, proto: tcp}]", "checks[0].port", "1-65535"),
    ("check-port-zero", H + "checks: [{id: x, proto: udp, port: 0}]", "checks[0].port", "1-65535"),
    ("check-bad-to-role", H + "checks: [{id: x, proto: tcp, port: 1, to_role: db}]", "checks[0].to_role",
     "unknown role 'db'"),
    ("check-bad-from-role", H + "checks: [{id: x, proto: tcp, port: 1, from_role: db}]", "checks[0].from_role",
     "unknown role 'db'"),
    ("second-check-bad", H + "checks: [{id: x, proto: tcp, port: 1}, {id: y, proto: tcp, port: 99999}]",
     "checks[1].port", "1-65535"),
    ("check-shadows-a-builtin", H + "checks: [{id: bgp, proto: tcp, port: 1179}]", "checks[0].id",
     "'bgp'"),
    ("duplicate-check-id", H + "checks: [{id: x, proto: tcp, port: 1}, {id: x, proto: udp, port: 2}]",
     "checks[1].id", "duplicate"),
    ("non-string-unknown-keys", H + "1: a\nextra: b", "1", "unknown key"),
    ("non-string-unknown-host-keys", "hosts: [{name: a, address: 198.51.100.1, 7: x, z: y}]", "hosts[0]",
     "unknown key"),
]


@pytest.mark.parametrize("text,field,words", [pytest.param(t, f, w, id=i) for i, t, f, w in ERRORS])
def test_validation_errors_name_file_and_field(text, field, words):
    with pytest.raises(ConfigError) as info:
        parse(text)
    e = info.value
    assert e.file == "inv.yaml" and e.field == field
    assert words in str(e)
    assert str(e).startswith("inv.yaml: " + (f"{field}: " if field else ""))
    assert e.exit_code == 2


def test_the_first_bad_host_is_named():
    text = "hosts:\n" + "".join(f"  - {{name: h{i}, address: 198.51.100.{i + 1}}}\n" for i in range(5))
    text += "  - {name: h5, address: nowhere}\n"
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert info.value.field == "hosts[5].address"


@settings(max_examples=300)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["hosts", "name", "address", "roles", "agent", "checks", "id", "proto", "port", "vni",
                         "token_file", "apiserver_port", "to_role", "from_role", "x"]) | st.integers(), children,
        max_size=4),
    max_leaves=12,
))
def test_any_document_gives_an_inventory_or_a_config_error(doc):
    try:
        inv = parse_inventory(yaml.safe_dump(doc), source="f.yaml")
    except ConfigError as e:
        assert e.file == "f.yaml"
    else:
        assert inv.hosts
