"""The pure plan: scenario -> ordered steps with undos; names; routes; teardown; inventory."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from netprobe.core.inventory import parse_inventory
from netprobe.errors import ConfigError
from netprobe.lab import plan as p
from netprobe.lab.names import check_lab_name, netns_name, parse_netns, state_dir
from netprobe.lab.spec import load_scenario, parse_scenario

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((REPO / "scenarios").glob("*.yaml"))


def chain_of_three() -> str:
    """Three segments in a row: a - r1 - b - r2 - c."""
    return yaml.safe_dump({
        "name": "chain",
        "segments": [
            {"name": "sa", "subnet": "198.18.1.0/24", "hosts": ["ha"]},
            {"name": "sb", "subnet": "198.18.2.0/24", "hosts": ["hb"]},
            {"name": "sc", "subnet": "198.18.3.0/24", "hosts": ["hc"]},
        ],
        "routers": [{"name": "r1", "segments": ["sa", "sb"]}, {"name": "r2", "segments": ["sb", "sc"]}],
        "hosts": [{"name": "ha"}, {"name": "hb"}, {"name": "hc", "roles": ["node", "etcd"],
                                                  "services": {"daemons": ["etcd", "bird"],
                                                               "listen": [179, 2379, 10250]}}],
    })


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_step_acts_inside_one_of_our_namespaces(path):
    steps = p.build_plan(load_scenario(path), "lab1")
    created = p.namespaces(steps)
    assert created and all(ns.startswith("nplab-lab1.") for ns in created)
    for step in steps:
        # never the root namespace: every action names its namespace, and it is one we create
        assert step.action.ns in created, step.describe()
        if step.undo is not None:
            assert step.undo.ns == step.action.ns
        if isinstance(step.action, p.AddVeth):
            assert step.action.peer_ns in created
    # namespaces come first, services last
    kinds = [type(s.action) for s in steps]
    assert kinds[: len(created)] == [p.CreateNetns] * len(created)


def test_demo_plan_in_order():
    steps = p.build_plan(load_scenario("demo"), "d")
    text = [s.describe() for s in steps]
    assert text[:4] == ["ip netns add nplab-d.lan", "ip netns add nplab-d.cp1",
                        "ip netns add nplab-d.node1", "ip netns add nplab-d.node2"]
    assert "[nplab-d.lan] ip link add br0 type bridge" in text
    assert "[nplab-d.lan] ip link add to-node2 type veth peer eth0 netns nplab-d.node2" in text
    assert "[nplab-d.node2] ip addr add 198.18.0.12/24 dev eth0" in text
    assert "[nplab-d.lan] sysctl -w net.bridge.bridge-nf-call-iptables=0" in text
    # the bridge port exists before it is enslaved, the address before the firewall, the firewall
    # before the listeners
    i = text.index
    assert i("[nplab-d.lan] ip link add to-cp1 type veth peer eth0 netns nplab-d.cp1") < \
        i("[nplab-d.lan] ip link set to-cp1 master br0")
    loads = [n for n, s in enumerate(steps) if isinstance(s.action, p.LoadFirewall)]
    listens = [n for n, s in enumerate(steps) if isinstance(s.action, p.StartListener)]
    assert len(loads) == 3 and len(listens) == 3 and max(loads) < min(listens)
    cp1 = next(s.action for s in steps if isinstance(s.action, p.StartListener) and s.action.host == "cp1")
    assert (cp1.tcp, cp1.udp, cp1.log_name) == ((179, 6443, 2379), (), "cp1-listener")


def test_every_creating_step_has_an_undo():
    steps = p.build_plan(parse_scenario(chain_of_three(), source="c"), "c")
    for s in steps:
        if isinstance(s.action, (p.CreateNetns, p.AddBridge, p.AddVeth, p.AddVxlan, p.AddAddress, p.AddRoute,
                                 p.LoadFirewall, p.StartListener, p.StartDaemon)):
            assert s.undo is not None, s.describe()
    undo_types = {type(s.action): type(s.undo) for s in steps if s.undo}
    assert undo_types[p.CreateNetns] is p.DeleteNetns
    assert undo_types[p.AddVeth] is p.DeleteLink
    assert undo_types[p.AddRoute] is p.DeleteRoute
    assert undo_types[p.StartListener] is p.StopProcess


def test_two_labs_of_one_scenario_share_no_name():
    s = load_scenario("two-racks-router")
    a = set(p.namespaces(p.build_plan(s, "a")))
    b = set(p.namespaces(p.build_plan(s, "a-b")))
    assert not a & b
    assert {parse_netns(ns)[0] for ns in a} == {"a"} and {parse_netns(ns)[0] for ns in b} == {"a-b"}


def test_routes_follow_the_shortest_path():
    s = parse_scenario(chain_of_three(), source="c")
    r = p.routes(s)
    r1_on_a, r1_on_b = (a for _, a in s.routers[0].addresses)
    r2_on_b, r2_on_c = (a for _, a in s.routers[1].addresses)
    assert r["ha"] == [("198.18.2.0/24", r1_on_a), ("198.18.3.0/24", r1_on_a)]
    assert r["hb"] == [("198.18.1.0/24", r1_on_b), ("198.18.3.0/24", r2_on_b)]
    assert r["hc"] == [("198.18.1.0/24", r2_on_c), ("198.18.2.0/24", r2_on_c)]
    assert r["r1"] == [("198.18.3.0/24", r2_on_b)]
    assert r["r2"] == [("198.18.1.0/24", r1_on_b)]


def test_single_segment_needs_no_routes():
    assert all(v == [] for v in p.routes(load_scenario("demo")).values())


def test_routers_forward_and_get_one_interface_per_segment():
    steps = p.build_plan(load_scenario("two-racks-router"), "t")
    text = [s.describe() for s in steps]
    assert "[nplab-t.core] sysctl -w net.ipv4.ip_forward=1" in text
    assert "[nplab-t.rack1] ip link add to-core type veth peer eth0 netns nplab-t.core" in text
    assert "[nplab-t.rack2] ip link add to-core type veth peer eth1 netns nplab-t.core" in text
    assert "[nplab-t.cp1] ip route add 198.18.2.0/24 via 198.18.1.1" in text
    assert "[nplab-t.node3] ip route add 198.18.1.0/24 via 198.18.2.1" in text


def test_vxlan_devices_for_canal():
    steps = p.build_plan(load_scenario("canal-vxlan-one-way"), "v")
    vx = [s.action for s in steps if isinstance(s.action, p.AddVxlan)]
    assert len(vx) == 4
    assert {(a.vni, a.port, a.dev, a.ifname) for a in vx} == {(1, 8472, "eth0", "flannel.1")}  # flannel's real port
    assert any(a.local == "198.18.0.140" for a in vx)
    # an overlay address each and a flood entry to every peer: the devices carry traffic
    overlay = [s.action for s in steps if isinstance(s.action, p.AddAddress) and s.action.ifname == "flannel.1"]
    assert sorted(a.address for a in overlay) == [f"198.19.0.{i}" for i in range(1, 5)]
    fdb = [s.action for s in steps if isinstance(s.action, p.AddFdb)]
    assert len(fdb) == 4 * 3 and "bridge fdb append 00:00:00:00:00:00 dev flannel.1 dst" in fdb[0].describe()
    assert p.inventory(load_scenario("canal-vxlan-one-way"), "v")["vxlan_port"] == 8472


def test_calico_vxlan_devices_are_vxlan_calico_on_4789():
    scenario = parse_scenario("name: s\nprofile: calico-vxlan\nhosts: [{name: a}, {name: b}]", source="s")
    vx = [s.action for s in p.build_plan(scenario, "v") if isinstance(s.action, p.AddVxlan)]
    assert {(a.ifname, a.port) for a in vx} == {("vxlan.calico", 4789)}
    assert scenario.host("a").services.udp == ()


def test_wireguard_profile_nodes_listen_on_51820_as_the_wireguard_device_would():
    scenario = parse_scenario("name: s\nprofile: calico-wireguard\nhosts: [{name: a, roles: [node]}, {name: b, roles: [etcd]}]",
                              source="s")
    assert scenario.host("a").services.udp == (51820,) and scenario.host("b").services.udp == ()
    dual = parse_scenario("name: s\nprofile: calico-wireguard\nsegments: [{name: lan, subnet: 198.18.0.0/24, "
                          "subnet6: '2001:db8::/64'}]\nhosts: [{name: a, roles: [node]}]", source="s")
    assert dual.host("a").services.udp == (51820, 51821)  # wg-v6.cali's port too, on a dual-stack node


def test_daemons_take_their_ports_from_the_listener():
    steps = p.build_plan(parse_scenario(chain_of_three(), source="c"), "c")
    hc = [s.action for s in steps if getattr(s.action, "host", None) == "hc"]
    listener = next(a for a in hc if isinstance(a, p.StartListener))
    etcd, bird = (a for a in hc if isinstance(a, p.StartDaemon))
    assert listener.tcp == (10250,)  # 179 is BIRD's, 2379 etcd's (or their stand-in listeners')
    assert etcd.argv[0] == "etcd" and "--data-dir" in etcd.argv and etcd.fallback_tcp == (2379, 2380)
    assert str(state_dir("c")) in etcd.argv[etcd.argv.index("--data-dir") + 1]
    assert bird.argv[:2] == ("bird", "-f") and bird.config_path.endswith("hc-bird.conf")
    # BIRD peers with every other node, as Calico's full mesh does
    assert bird.config_text.count("protocol bgp") == 2 and "neighbor 198.18.1.10 as 64512" in bird.config_text


def test_a_host_without_ports_gets_no_listener():
    s = parse_scenario("name: q\nhosts:\n  - {name: a, services: {listen: []}}\n", source="q")
    assert not any(isinstance(st.action, p.StartListener) for st in p.build_plan(s, "q"))


def test_long_names_fall_back_to_numbered_ports():
    assert p.port_name("node1", 3) == "to-node1"
    assert p.port_name("a-very-long-host", 3) == "port3"
    assert all(len(p.port_name("x" * n, 1)) <= 15 for n in range(1, 33))


def test_teardown_skips_work_inside_doomed_namespaces():
    steps = p.build_plan(load_scenario("demo"), "d")
    undo = p.teardown(steps)
    assert [type(a) for a in undo] == [p.StopProcess] * 3 + [p.DeleteNetns] * 4
    assert [a.ns for a in undo[3:]] == list(reversed(p.namespaces(steps)))
    # a plan cut short: only what was done is undone
    partial = steps[:2]
    assert p.teardown(partial) == [p.DeleteNetns("nplab-d.cp1"), p.DeleteNetns("nplab-d.lan")]
    # undos in namespaces the plan did not create (none here) would be kept
    foreign = [p.Step(p.AddAddress("other", "eth0", "198.18.0.1", 24),
                      p.DeleteAddress("other", "eth0", "198.18.0.1", 24))]
    assert p.teardown(foreign) == [p.DeleteAddress("other", "eth0", "198.18.0.1", 24)]


def test_inventory_is_valid_and_points_at_unix_sockets():
    s = load_scenario("demo")
    inv_data = p.inventory(s, "demo")
    inv = parse_inventory(yaml.safe_dump(inv_data), source="inventory.yaml", base_dir="/run/netprobe/lab/demo")
    assert inv.token_file == "/run/netprobe/lab/demo/token"
    assert [(h.name, h.address, h.agent) for h in inv.hosts] == [
        ("cp1", "198.18.0.10", "unix:/run/netprobe/lab/demo/cp1.sock"),
        ("node1", "198.18.0.11", "unix:/run/netprobe/lab/demo/node1.sock"),
        ("node2", "198.18.0.12", "unix:/run/netprobe/lab/demo/node2.sock"),
    ]
    assert inv.host("cp1").roles == frozenset({"node", "apiserver", "etcd"})


def test_lab_names():
    assert netns_name("demo", "cp1") == "nplab-demo.cp1"
    assert parse_netns("nplab-demo.cp1") == ("demo", "cp1")
    assert parse_netns("nplab-a-b.x") == ("a-b", "x")
    for foreign in ("nptest-abc-a", "nplab-nodot", "nplabx-a.b", "other", "nplab-.x"):
        assert parse_netns(foreign) is None
    assert check_lab_name("calico-default") == "calico-default"
    for bad in ("", "Demo", "a.b", "-a", "a" * 25, "a_b"):
        with pytest.raises(ConfigError) as info:
            check_lab_name(bad)
        assert info.value.field == "--name"


def test_dual_stack_segments_get_ipv6_addresses_nodad_routes_and_forwarding():
    text = yaml.safe_dump({
        "name": "chain6",
        "segments": [
            {"name": "sa", "subnet": "198.18.1.0/24", "subnet6": "2001:db8:1::/64", "hosts": ["ha"]},
            {"name": "sb", "subnet": "198.18.2.0/24", "subnet6": "2001:db8:2::/64", "hosts": ["hb"]},
            {"name": "sc", "subnet": "198.18.3.0/24", "hosts": ["hc"]},
        ],
        "routers": [{"name": "r1", "segments": ["sa", "sb"]}, {"name": "r2", "segments": ["sb", "sc"]}],
        "hosts": [{"name": "ha"}, {"name": "hb"}, {"name": "hc"}],
    })
    scenario = parse_scenario(text, source="chain6.yaml")
    steps = p.build_plan(scenario, "lab1")
    said = [s.describe() for s in steps]
    assert "[nplab-lab1.ha] ip addr add 2001:db8:1::10/64 dev eth0 nodad" in said
    assert "[nplab-lab1.r1] ip addr add 2001:db8:1::1/64 dev eth0 nodad" in said
    assert not any("nplab-lab1.hc] ip addr add 2001" in d for d in said)  # sc has no subnet6
    assert "[nplab-lab1.r1] sysctl -w net.ipv6.conf.all.forwarding=1" in said
    assert "[nplab-lab1.r2] sysctl -w net.ipv6.conf.all.forwarding=1" in said  # it has IPv6 on sb
    # IPv6 routes cross IPv6 segments only: ha reaches sb over r1; nobody routes IPv6 to sc
    six = p.routes(scenario, 6)
    assert six["ha"] == [("2001:db8:2::/64", "2001:db8:1::1")]
    assert six["hb"] == [("2001:db8:1::/64", "2001:db8:2::1")] and six["hc"] == []
    assert p.routes(scenario, 4)["ha"] == [("198.18.2.0/24", "198.18.1.1"), ("198.18.3.0/24", "198.18.1.1")]
    inv = parse_inventory(yaml.safe_dump(p.inventory(scenario, "lab1")), source="inv")
    assert [(h.address, h.address6) for h in inv.hosts] == [("198.18.1.10", "2001:db8:1::10"),
                                                           ("198.18.2.10", "2001:db8:2::10"), ("198.18.3.10", None)]
