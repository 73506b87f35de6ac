"""The cluster rules, pure: hand-written API objects -> facts -> one line per Kubernetes row, for
both requirement sets. No client, no server."""

from __future__ import annotations

import pytest

from netprobe.errors import ConfigError
from netprobe.preflight.k8s_facts import cluster_facts, image_name, image_path
from netprobe.preflight.model import Item, Report, Status
from netprobe.preflight.rules_k8s import (REQUIREMENT_SETS, evaluate_cluster, provider_of, providers_in,
                                          unreachable_report)
from netprobe.preflight.k8s_facts import Workload


def node(name, ip="192.0.2.10", *, cidr=None, ready="True", reason="KubeletReady", message="", kubelet="v1.33.1",
         external=None):
    addresses = [{"type": "InternalIP", "address": ip}] + ([{"type": "ExternalIP", "address": external}]
                                                           if external else [])
    return {"metadata": {"name": name}, "spec": {"podCIDRs": [cidr]} if cidr else {},
            "status": {"addresses": addresses, "nodeInfo": {"kubeletVersion": kubelet},
                       "conditions": [{"type": "Ready", "status": ready, "reason": reason, "message": message}]}}


def ds(ns, name, *images, argv=()):
    containers = [{"name": f"c{i}", "image": img, **({"command": list(argv)} if argv and i == 0 else {})}
                  for i, img in enumerate(images)]
    return {"metadata": {"namespace": ns, "name": name},
            "spec": {"template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": containers}}}}


def pod(ns, name, *images, owner=None, labels=None, argv=()):
    meta = {"namespace": ns, "name": name, "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    containers = [{"name": f"c{i}", "image": img, **({"command": list(argv)} if argv and i == 0 else {})}
                  for i, img in enumerate(images)]
    return {"metadata": meta, "spec": {"containers": containers}}


def apiserver(*flags):
    return pod("kube-system", "kube-apiserver-cp1", "registry.k8s.io/kube-apiserver:v1.33.1",
               owner=("Node", "cp1"), labels={"component": "kube-apiserver"},
               argv=("kube-apiserver", "--service-cluster-ip-range=10.96.0.0/12", *flags))


def raw(**over):
    base = {
        "server": "https://192.0.2.10:6443", "errors": {},
        "version": {"major": "1", "minor": "33", "gitVersion": "v1.33.1"},
        "apis": {"groups": [{"name": "apps"}, {"name": "admissionregistration.k8s.io"}]},
        "nodes": [node("cp1", "192.0.2.10", cidr="192.168.0.0/24"), node("n1", "192.0.2.11", cidr="192.168.1.0/24")],
        "daemonsets": [ds("calico-system", "calico-node", "quay.io/calico/node:v3.30.0"),
                       ds("kube-system", "kube-proxy", "registry.k8s.io/kube-proxy:v1.33.1",
                          argv=("kube-proxy", "--config=/var/lib/kube-proxy/config.conf"))],
        "pods": [apiserver()],
        "kube_proxy_config": {"data": {"config.conf": "kind: KubeProxyConfiguration\nmode: iptables\n"}},
        "ippools": {"group": "crd.projectcalico.org/v1",
                    "items": [{"metadata": {"name": "default"}, "spec": {"cidr": "192.168.0.0/16"}}]},
        "kubernetes_service": {"spec": {"ports": [{"name": "https", "port": 443, "targetPort": 6443}]}},
        "kubernetes_endpoints": {"subsets": [{"addresses": [{"ip": "192.0.2.10"}],
                                              "ports": [{"name": "https", "port": 6443}]}]},
    }
    base.update(over)
    return base


def judge(requirements="current", **over) -> dict[str, Item]:
    opts = {k: over.pop(k) for k in ("profile", "pool_cidrs", "service_cidr", "apiserver_port") if k in over}
    report = evaluate_cluster(cluster_facts(raw(**over)), requirements=requirements, **opts)
    return {i.id: i for i in report.items}


def test_everything_holds():
    items = judge()
    assert {i.status for i in items.values()} == {Status.OK}, items
    assert {i.requirements for i in items.values()} == {"current"}
    assert all(i.group == "kubernetes" for i in items.values())


@pytest.mark.parametrize(("requirements", "version", "status", "words"), [
    ("current", "v1.32.0", Status.OK, "tested: 1.32-1.36"),
    ("current", "v1.36.2", Status.OK, "tested"),
    ("current", "v1.37.0", Status.WARN, "newer than the tested 1.32-1.36"),
    ("current", "v1.28.9-eks-1a2b3c", Status.WARN, "older than the tested"),
    ("current", "v1.21.0", Status.WARN, "older"),
    ("current", "v1.20.15", Status.FAIL, "will not work on 1.20 or below"),
    ("legacy", "v1.9.3", Status.OK, "1.9-1.11"),
    ("legacy", "v1.11.10", Status.OK, "1.9-1.11"),
    ("legacy", "v1.8.0", Status.WARN, "older"),
    ("legacy", "v1.33.1", Status.WARN, "newer"),
])
def test_version_against_each_set(requirements, version, status, words):
    item = judge(requirements, version={"gitVersion": version})["k8s:version"]
    assert item.status is status and words in item.evidence, item
    assert item.requirements == requirements


def test_unknown_requirement_set_is_bad_input():
    with pytest.raises(ConfigError, match="--requirements"):
        evaluate_cluster(cluster_facts(raw()), requirements="ancient")
    assert set(REQUIREMENT_SETS) == {"current", "legacy"}


def test_cni_not_ready_nodes_are_named_and_others_told_apart():
    nodes = [node("cp1"), node("n1", ready="False", reason="KubeletNotReady",
                               message="container runtime network not ready: NetworkReady=false "
                                       "reason:NetworkPluginNotReady message:cni plugin not initialized"),
             node("n2", ready="Unknown", reason="NodeStatusUnknown", message="Kubelet stopped posting node status.")]
    item = judge(nodes=nodes)["k8s:cni"]
    assert item.status is Status.FAIL
    assert "on n1: container runtime network not ready" in item.evidence
    assert "NotReady for another reason: n2 (NodeStatusUnknown)" in item.evidence

    only_other = judge(nodes=[node("cp1"), nodes[2]])["k8s:cni"]
    assert only_other.status is Status.WARN and "1 of 2 nodes Ready" in only_other.evidence


def test_network_plugin_flag_is_a_question_only_before_1_24():
    item = judge(nodes=[node("cp1", kubelet="v1.23.17"), node("n1", kubelet="v1.33.1")])["k8s:cni"]
    assert item.status is Status.WARN and "--network-plugin=cni" in item.evidence and "cp1 (v1.23.17)" in item.evidence
    assert "--network-plugin" not in judge()["k8s:cni"].evidence


@pytest.mark.parametrize(("image", "provider"), [
    ("quay.io/calico/node:v3.30.0", "calico"),
    ("docker.io/calico/cni:v3.30.0", "calico"),
    ("ghcr.io/flannel-io/flannel:v0.26.1", "flannel"),
    ("docker.io/rancher/mirrored-flannelcni-flannel:v0.22.0", "flannel"),
    ("quay.io/coreos/flannel:v0.11.0-amd64", "flannel"),
    ("ghcr.io/flannel-io/flannel-cni-plugin:v1.6.0", None),      # flannel's CNI binary installer
    ("quay.io/calico/flannel-migration-controller:v3.30.0", None),
    ("docker.io/weaveworks/weave-kube:2.8.1", "weave"),
    ("quay.io/cilium/cilium:v1.16.3@sha256:abc", "cilium"),
    ("quay.io/cilium/operator-generic:v1.16.3", "cilium"),
    ("602401143452.dkr.ecr.us-west-2.amazonaws.com/amazon-k8s-cni:v1.19.0", "aws-vpc-cni"),
    ("docker.io/cloudnativelabs/kube-router:v2.4.1", "kube-router"),
    ("antrea/antrea-agent-ubuntu:v2.2.0", "antrea"),
    ("docker.io/kindest/kindnetd:v20241108", "kindnet"),
    ("registry.k8s.io/coredns/coredns:v1.11.3", None),
    ("registry.k8s.io/kube-proxy:v1.33.1", None),
    ("localhost:5000/node:v1", None),  # "node" outside calico/ is not Calico
])
def test_provider_of_image(image, provider):
    assert provider_of(image) == provider


def test_image_path_and_name():
    assert image_path("quay.io/calico/node:v3.30.0") == ("calico", "node")
    assert image_path("calico/node") == ("calico", "node")
    assert image_path("localhost:5000/x/y:1@sha256:ab") == ("x", "y")
    assert image_name("registry.k8s.io/kube-apiserver:v1.33.1") == "kube-apiserver"


def test_canal_is_not_a_second_provider():
    canal = Workload("DaemonSet", "kube-system", "canal",
                     images=("docker.io/calico/node:v3.30.0", "docker.io/flannel/flannel:v0.26.1"))
    assert providers_in(canal) == {"canal"}
    item = judge(daemonsets=[ds("kube-system", "canal", "docker.io/calico/cni:v3.30.0",
                                "docker.io/calico/node:v3.30.0", "docker.io/flannel/flannel:v0.26.1")])["k8s:providers"]
    assert item.status is Status.OK and "canal (DaemonSet kube-system/canal)" in item.evidence


def test_other_providers_are_named_once_per_workload():
    daemonsets = [ds("calico-system", "calico-node", "quay.io/calico/node:v3.30.0"),
                  ds("kube-system", "cilium", "quay.io/cilium/cilium:v1.16.3"),
                  ds("kube-system", "aws-node", "602401143452.dkr.ecr.us-west-2.amazonaws.com/amazon-k8s-cni:v1.19.0")]
    pods = [pod("kube-system", "cilium-x1", "quay.io/cilium/cilium:v1.16.3", owner=("DaemonSet", "cilium")),
            pod("kube-system", "cilium-operator-5d7f8c9b6-abcde", "quay.io/cilium/operator-generic:v1.16.3",
                owner=("ReplicaSet", "cilium-operator-5d7f8c9b6")),
            pod("kube-system", "cilium-operator-5d7f8c9b6-fghij", "quay.io/cilium/operator-generic:v1.16.3",
                owner=("ReplicaSet", "cilium-operator-5d7f8c9b6")),
            pod("weave", "weave-net-static", "weaveworks/weave-kube:2.8.1")]
    item = judge(daemonsets=daemonsets, pods=pods)["k8s:providers"]
    assert item.status is Status.FAIL
    assert item.evidence == ("other network providers: aws-vpc-cni (DaemonSet kube-system/aws-node), "
                             "cilium (DaemonSet kube-system/cilium), cilium (Deployment kube-system/cilium-operator), "
                             "weave (Pod weave/weave-net-static); Calico: calico (DaemonSet calico-system/calico-node)")


def proxy(mode=None, *, flag=None, config=True):
    argv = ("kube-proxy",) + (("--config=/c/config.conf",) if config else ()) + ((f"--proxy-mode={flag}",) if flag else ())
    over = {"daemonsets": [ds("kube-system", "kube-proxy", "registry.k8s.io/kube-proxy:v1.33.1", argv=argv)]}
    if mode is None:
        over["kube_proxy_config"] = None
    else:
        over["kube_proxy_config"] = {"data": {"config.conf": f"kind: KubeProxyConfiguration\nmode: {mode!r}\n"}}
    return over


@pytest.mark.parametrize(("requirements", "version", "over", "status", "words"), [
    ("current", "v1.33.1", proxy("iptables"), Status.OK, "iptables (mode in configmap"),
    ("current", "v1.33.1", proxy(""), Status.OK, "iptables (the Linux default"),
    ("current", "v1.33.1", proxy("ipvs"), Status.OK, "ipvs needs >= 1.9.3"),
    ("legacy", "v1.9.2", proxy("ipvs"), Status.FAIL, "ipvs needs >= 1.9.3"),
    ("legacy", "v1.9.3", proxy("ipvs"), Status.OK, "Kubernetes v1.9.3"),
    ("current", "v1.31.0", proxy("nftables"), Status.OK, "nftables needs >= 1.31.0"),
    ("current", "v1.30.4", proxy("nftables"), Status.FAIL, "nftables needs >= 1.31.0"),
    ("legacy", "v1.33.1", proxy("nftables"), Status.FAIL, "supports iptables, ipvs"),
    ("current", "v1.25.0", proxy("userspace"), Status.FAIL, "userspace"),
    ("current", "v1.33.1", proxy(None, flag="ipvs", config=False), Status.OK,
     "--proxy-mode of DaemonSet kube-system/kube-proxy"),
    ("current", "v1.33.1", proxy("ipvs", flag="iptables"), Status.OK, "ipvs (mode in configmap"),  # --config wins
])
def test_kube_proxy_mode(requirements, version, over, status, words):
    item = judge(requirements, version={"gitVersion": version}, **over)["k8s:kube-proxy"]
    assert item.status is status and words in item.evidence, item


def test_no_kube_proxy_is_said_as_such():
    item = judge(daemonsets=[ds("calico-system", "calico-node", "quay.io/calico/node:v3.30.0")],
                 kube_proxy_config=None)["k8s:kube-proxy"]
    assert item.status is Status.WARN and "eBPF data plane" in item.evidence
    static = judge(daemonsets=[], kube_proxy_config=None,
                   pods=[apiserver(), pod("kube-system", "kube-proxy-cp1", "registry.k8s.io/kube-proxy:v1.33.1",
                                          argv=("kube-proxy", "--proxy-mode=ipvs"))])["k8s:kube-proxy"]
    assert static.status is Status.OK and "--proxy-mode of Pod kube-system/kube-proxy-cp1" in static.evidence


def test_pools_name_each_overlapping_pair():
    pools = {"group": "projectcalico.org/v3", "items": [
        {"metadata": {"name": "a"}, "spec": {"cidr": "192.0.2.0/25"}},
        {"metadata": {"name": "b"}, "spec": {"cidr": "10.200.0.0/16"}},
        {"metadata": {"name": "c"}, "spec": {"cidr": "192.0.2.64/26"}},
        {"metadata": {"name": "off"}, "spec": {"cidr": "10.96.0.0/12", "disabled": True}}]}
    nodes = [node("cp1", "192.0.2.10", external="198.51.100.7"), node("n1", "192.0.2.200")]
    items = judge(ippools=pools, nodes=nodes, pods=[apiserver()], service_cidr=None)
    assert items["k8s:pool:192.0.2.0/25"].status is Status.FAIL
    assert items["k8s:pool:192.0.2.0/25"].evidence == (
        "192.0.2.0/25 (IPPool a (projectcalico.org/v3)) contains node cp1's InternalIP 192.0.2.10")
    assert items["k8s:pool:10.200.0.0/16"].status is Status.OK
    assert "overlaps pool 192.0.2.0/25" in items["k8s:pool:192.0.2.64/26"].evidence
    assert "k8s:pool:10.96.0.0/12" not in items  # disabled pools are not checked

    clash = judge(ippools={"group": "crd.projectcalico.org/v1", "items": [
        {"metadata": {"name": "x"}, "spec": {"cidr": "10.96.0.0/16"}}]})["k8s:pool:10.96.0.0/16"]
    assert clash.status is Status.FAIL and "overlaps the service range 10.96.0.0/12" in clash.evidence


def test_pools_default_and_given_when_the_cluster_has_none():
    assert "k8s:pool:192.168.0.0/16" in judge(ippools=None)
    assert "the calico profile's default" in judge(ippools=None)["k8s:pool:192.168.0.0/16"].evidence
    assert "k8s:pool:10.244.0.0/16" in judge(ippools=None, profile="canal")
    given = judge(ippools=None, pool_cidrs=["172.16.0.0/16"])["k8s:pool:172.16.0.0/16"]
    assert given.status is Status.OK and "--pool-cidr" in given.evidence
    # an IPPool in the cluster wins over --pool-cidr
    assert "k8s:pool:192.168.0.0/16" in judge(pool_cidrs=["172.16.0.0/16"])


def test_service_range_from_the_apiserver_pod_else_the_option():
    assert "kube-apiserver pod kube-system/kube-apiserver-cp1" in judge()["k8s:service-range"].evidence
    none = judge(pods=[])
    assert none["k8s:service-range"].status is Status.UNKNOWN
    assert "service range unknown" in none["k8s:pool:192.168.0.0/16"].evidence
    given = judge(pods=[], service_cidr="10.43.0.0/16")["k8s:service-range"]
    assert given.status is Status.OK and given.evidence == "10.43.0.0/16 (--service-cidr)"


def test_pod_cidrs_against_services_and_hosts():
    nodes = [node("cp1", "192.0.2.10", cidr="10.96.1.0/24"), node("n1", "192.0.2.11", cidr="192.0.2.0/24")]
    item = judge(nodes=nodes)["k8s:pod-cidrs"]
    assert item.status is Status.FAIL
    assert "podCIDR 10.96.1.0/24 (cp1) overlaps the service range 10.96.0.0/12" in item.evidence
    assert "podCIDR 192.0.2.0/24 (n1) contains node cp1's InternalIP 192.0.2.10" in item.evidence
    assert judge(nodes=[node("cp1")])["k8s:pod-cidrs"].evidence.startswith("no node has a podCIDR")
    wide = judge(nodes=[node("cp1", cidr="192.168.0.0/15")])["k8s:pod-cidrs"]
    assert wide.status is Status.FAIL
    assert ("podCIDR 192.168.0.0/15 (cp1) contains pool 192.168.0.0/16 (IPPool default (crd.projectcalico.org/v1))"
            == wide.evidence)
    outside = judge(nodes=[node("cp1", cidr="10.244.0.0/24")])["k8s:pod-cidrs"]
    assert outside.status is Status.OK and "inside the pools" not in outside.evidence
    assert judge(nodes=[node("cp1", cidr="10.244.0.0/24")], profile="canal", ippools=None)["k8s:pod-cidrs"].status \
        is Status.OK  # canal's default pool is 10.244.0.0/16


def test_mutating_webhooks():
    assert judge()["k8s:webhooks"].status is Status.OK
    off = judge(pods=[apiserver("--disable-admission-plugins=PodSecurity,MutatingAdmissionWebhook")])["k8s:webhooks"]
    assert off.status is Status.WARN and "--disable-admission-plugins of pod kube-system/kube-apiserver-cp1" in off.evidence
    legacy = judge("legacy", pods=[apiserver("--admission-control=NamespaceLifecycle,ServiceAccount")])["k8s:webhooks"]
    assert legacy.status is Status.WARN and "--admission-control" in legacy.evidence
    unserved = judge(apis={"groups": [{"name": "apps"}]})["k8s:webhooks"]
    assert unserved.status is Status.WARN and "not served" in unserved.evidence
    managed = judge(pods=[])["k8s:webhooks"]
    assert managed.status is Status.OK and "not visible" in managed.evidence


def test_apiserver_port():
    assert judge()["k8s:apiserver-port"].evidence.startswith("6443 (endpoints default/kubernetes)")
    assert judge(apiserver_port=6443)["k8s:apiserver-port"].status is Status.OK
    other = {"subsets": [{"ports": [{"name": "https", "port": 16443}]}]}
    mismatch = judge(kubernetes_endpoints=other, apiserver_port=6443)["k8s:apiserver-port"]
    assert mismatch.status is Status.FAIL and "the inventory's apiserver_port is 6443" in mismatch.evidence
    assert "targetPort disagrees" in mismatch.evidence
    no_inventory = judge(kubernetes_endpoints=other)["k8s:apiserver-port"]
    assert no_inventory.status is Status.WARN and "apiserver_port: 16443" in no_inventory.evidence
    named = judge(kubernetes_endpoints=None,
                  kubernetes_service={"spec": {"ports": [{"name": "https", "port": 443, "targetPort": "https"}]}})
    assert named["k8s:apiserver-port"].status is Status.UNKNOWN  # a named targetPort says no number


def test_refused_reads_make_their_lines_unknown():
    line = "the Kubernetes API at https://192.0.2.10:6443 refused to list nodes: 403 Forbidden"
    items = judge(nodes=None, errors={"nodes": line})
    assert items["k8s:cni"].status is Status.UNKNOWN and items["k8s:cni"].evidence == line
    assert items["k8s:pod-cidrs"].status is Status.UNKNOWN
    assert items["k8s:pool:192.168.0.0/16"].status is Status.UNKNOWN
    assert items["k8s:version"].status is Status.OK
    refused_pools = judge(ippools=None, errors={"ippools": "refused to list Calico IPPools: 403 Forbidden"})
    assert refused_pools["k8s:pools"].status is Status.UNKNOWN


def test_unreachable_report_is_one_unknown_line():
    report = unreachable_report("https://192.0.2.10:6443", "cannot reach the Kubernetes API: refused",
                                requirements="legacy")
    assert [(i.id, i.status, i.requirements) for i in report.items] == [("k8s:api", Status.UNKNOWN, "legacy")]


def test_requirements_survive_the_wire():
    report = evaluate_cluster(cluster_facts(raw()), requirements="legacy")
    again = Report.from_dict(report.to_dict())
    assert {i.requirements for i in again.items} == {"legacy"}
    host_item = Item("kernel", "system", "kernel", Status.OK, "6.1", requirements="legacy+current")
    assert Item.from_dict(host_item.to_dict()).requirements == "legacy+current"
    assert Item.from_dict({"id": "x", "status": "ok"}).requirements == ""  # an older agent's line


def test_garbage_objects_do_not_crash():
    facts = cluster_facts({"server": "s", "nodes": [None, 3, {"metadata": None, "status": {"addresses": "x"}}],
                           "daemonsets": ["x"], "pods": [{}], "version": {"gitVersion": "banana"},
                           "ippools": {"group": "g", "items": [None, {"spec": {"cidr": "not-a-net"}}]}})
    items = {i.id: i for i in evaluate_cluster(facts).items}
    assert items["k8s:version"].status is Status.UNKNOWN
    assert items["k8s:pools"].status is Status.WARN
