"""kube.build: API-shaped dicts -> inventory, pure. Roles from labels, endpoints and typha pods;
what is skipped is said."""

from __future__ import annotations

from netprobe.kube.build import ClusterSnapshot, apiserver_endpoint, build_inventory, to_inventory


def node(name, *addrs, labels=None):
    return {"metadata": {"name": name, "labels": labels or {}},
            "status": {"addresses": [{"type": t, "address": a} for t, a in addrs]}}


def pod(on, phase="Running"):
    return {"metadata": {"name": f"calico-typha-{on}", "labels": {"k8s-app": "calico-typha"}},
            "spec": {"nodeName": on}, "status": {"phase": phase}}


def roles(built):
    return {h["name"]: h["roles"] for h in built.document["hosts"]}


def test_legacy_master_and_dedicated_etcd_labels():
    snap = ClusterSnapshot([
        node("m1", ("InternalIP", "192.0.2.1"), labels={"node-role.kubernetes.io/master": "true"}),
        node("e1", ("InternalIP", "192.0.2.2"), labels={"node-role.kubernetes.io/etcd": "true"}),
        node("w1", ("InternalIP", "192.0.2.3")),
    ], apiserver_endpoints={"subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 443}]}]})
    built = build_inventory(snap)
    assert roles(built) == {"e1": ["node", "etcd"], "m1": ["node", "apiserver", "etcd"], "w1": ["node"]}
    assert built.document["apiserver_port"] == 443  # an unnamed port is still the apiserver's
    assert built.notes == []


def test_endpoints_alone_make_an_apiserver():
    """Clusters that don't label their control plane (some managed or hand-made ones)."""
    snap = ClusterSnapshot([node("a", ("InternalIP", "192.0.2.1")), node("b", ("InternalIP", "192.0.2.2"))],
                           apiserver_endpoints={"subsets": [{"addresses": [{"ip": "192.0.2.2"}],
                                                             "ports": [{"name": "https", "port": 6443}]}]})
    assert roles(build_inventory(snap)) == {"a": ["node"], "b": ["node", "apiserver"]}


def test_no_endpoints_is_said_and_the_default_port_used():
    built = build_inventory(ClusterSnapshot([node("a", ("InternalIP", "192.0.2.1"))]))
    assert built.document["apiserver_port"] == 6443
    assert any("no default/kubernetes endpoints" in n for n in built.notes)


def test_typha_only_where_running_and_known():
    snap = ClusterSnapshot([node("a", ("InternalIP", "192.0.2.1")), node("b", ("InternalIP", "192.0.2.2"))],
                           typha_pods=[pod("a"), pod("b", "Pending"), pod("gone"), {"spec": {}, "status": {}}],
                           apiserver_endpoints={})
    built = build_inventory(snap)
    assert roles(built) == {"a": ["node", "typha"], "b": ["node"]}
    assert "calico-typha runs on gone, which is not in the inventory" in built.notes


def test_skipped_nodes_and_addresses_are_said():
    long_name = "n" * 64
    snap = ClusterSnapshot([
        node(long_name, ("InternalIP", "192.0.2.9")),
        node("ext", ("ExternalIP", "203.0.113.1")),
        node("six", ("InternalIP", "2001:db8::6")),
        node("dual", ("InternalIP", "2001:db8::7"), ("InternalIP", "192.0.2.7"), ("InternalIP", "192.0.2.8")),
    ], apiserver_endpoints={}, agent_port=9000)
    built = build_inventory(snap, token_file="/etc/netprobe/token")
    assert [h["name"] for h in built.document["hosts"]] == ["dual", "six"]
    dual, six = built.document["hosts"]
    # the first InternalIP of each family; the agent at the IPv4 one
    assert (dual["address"], dual["address6"], dual["agent"]) == ("192.0.2.7", "2001:db8::7", "tcp://192.0.2.7:9000")
    assert six["address"] == "2001:db8::6" and "address6" not in six and six["agent"] == "tcp://[2001:db8::6]:9000"
    assert len(built.notes) == 3  # the long name, ext (no InternalIP), dual's second IPv4
    assert any(long_name in n and "63" in n for n in built.notes)
    assert "node dual: InternalIP 192.0.2.8 not probed (one address per family)" in built.notes
    inventory = to_inventory(built)
    assert inventory.token_file == "/etc/netprobe/token" and inventory.host("dual").roles == frozenset({"node"})
    assert inventory.host("dual").address6 == "2001:db8::7" and inventory.host("six").address4 is None


def test_apiserver_endpoint_parsing():
    assert apiserver_endpoint(None) == (set(), None)
    assert apiserver_endpoint({"subsets": [{"addresses": [{"ip": "192.0.2.1"}, {"ip": "192.0.2.2"}],
                                            "ports": [{"name": "metrics", "port": 1}, {"name": "https", "port": 2}]}]}) \
        == ({"192.0.2.1", "192.0.2.2"}, 2)
