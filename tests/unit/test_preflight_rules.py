"""The pure rules, table-driven on hand-built facts: system, CNI, kube-proxy, ports, and how
statuses add up to a report and an exit code."""

from __future__ import annotations

import pytest

from netprobe.errors import ConfigError
from netprobe.preflight.facts import (CniConfig, CniFacts, Facts, HostAddress, KernelFacts, KubeFacts, NetFacts,
                                      OsFacts, Process, Socket, SocketFacts)
from netprobe.preflight.model import Item, Report, Status
from netprobe.preflight.requirements import LEGACY_SET
from netprobe.preflight.rules import arch_item, distro_item, evaluate, kernel_item
from netprobe.preflight.rules_cluster import PORTS, cni_item, kube_proxy_item, port_item


@pytest.mark.parametrize(
    ("arch", "status"),
    [("x86_64", Status.OK), ("amd64", Status.OK), ("aarch64", Status.WARN), ("i686", Status.FAIL),
     ("riscv64", Status.FAIL), (None, Status.UNKNOWN)],
)
def test_arch(arch, status):
    assert arch_item(KernelFacts(arch=arch), LEGACY_SET).status is status


@pytest.mark.parametrize(
    ("release", "status"),
    [("3.10.0-1160.el7.x86_64", Status.OK), ("6.18.44-fc-v595", Status.OK), ("4.4.0", Status.OK),
     ("3.9.11", Status.FAIL), ("2.6.32-754.el6", Status.FAIL), ("weird", Status.UNKNOWN), (None, Status.UNKNOWN)],
)
def test_kernel(release, status):
    item = kernel_item(KernelFacts(release=release), LEGACY_SET)
    assert item.status is status
    if release:
        assert release in item.evidence


def osr(**fields):
    return OsFacts({k.upper(): v for k, v in fields.items()}, "/etc/os-release")


@pytest.mark.parametrize(
    ("facts", "status", "words"),
    [
        (osr(id="ubuntu", version_id="16.04", pretty_name="Ubuntu 16.04.7 LTS"), Status.OK, ["known-good"]),
        (osr(id="ubuntu", version_id="22.04"), Status.OK, ["Ubuntu 16.04 or newer"]),
        (osr(id="ubuntu", version_id="14.04"), Status.WARN, ["not the known-good Ubuntu 16.04"]),
        (osr(id="debian", version_id="12"), Status.OK, []),
        (osr(id="debian"), Status.OK, ["testing/unstable"]),
        (osr(id="debian", version_id="7"), Status.WARN, []),
        (osr(id="centos", version_id="7"), Status.OK, []),
        (osr(id="rhel", version_id="9.3"), Status.OK, []),
        (osr(id="rhel", version_id="6.10"), Status.WARN, []),
        (osr(id="coreos", version_id="2512.3.0"), Status.OK, ["CoreOS"]),
        (osr(id="fedora", variant_id="coreos", version_id="39"), Status.OK, ["Fedora CoreOS"]),
        (osr(id="rocky", id_like="rhel centos fedora", version_id="9.3"), Status.OK, ["RHEL-like"]),
        (osr(id="amzn", id_like="centos rhel fedora", version_id="2"), Status.WARN, ["information only"]),
        (osr(id="arch", pretty_name="Arch Linux"), Status.WARN, ["Arch Linux", "not on Calico's known-good list"]),
        (OsFacts(), Status.UNKNOWN, []),
    ],
)
def test_distro_is_information_never_failure(facts, status, words):
    item = distro_item(facts, LEGACY_SET)
    assert item.status is status, item.evidence
    for word in words:
        assert word in item.evidence


def cni(*configs, exists=True):
    return CniFacts(directory="/etc/cni/net.d", configs=list(configs), exists=exists)


@pytest.mark.parametrize(
    ("facts", "status", "words"),
    [
        (CniFacts(configs=[], exists=False), Status.OK, ["no provider installed"]),
        (CniFacts(configs=None, exists=True), Status.UNKNOWN, ["cannot read"]),
        (cni(), Status.OK, ["no network config"]),
        (cni(CniConfig("/e/10-calico.conflist", "k8s-pod-network", ("calico", "portmap", "bandwidth")),
             CniConfig("/e/99-loopback.conf", "lo", ("loopback",))), Status.OK, ["only Calico"]),
        (cni(CniConfig("/e/10-flannel.conflist", "cbr0", ("flannel", "portmap"))), Status.WARN,
         ["10-flannel.conflist: flannel (cbr0)"]),
        (cni(CniConfig("/e/05-cilium.conflist", "cilium", ("cilium-cni",)),
             CniConfig("/e/10-calico.conflist", "k8s-pod-network", ("calico",))), Status.WARN,
         ["05-cilium.conflist: cilium", "first by name: 05-cilium.conflist"]),
        (cni(CniConfig("/e/10-weave.conflist", "weave", ("weave-net",))), Status.WARN, ["weave"]),
        (cni(CniConfig("/e/10-containerd-net.conflist", "containerd-net", ("bridge", "portmap"))), Status.WARN,
         ["bridge (containerd-net)"]),
        (cni(CniConfig("/e/broken.conf", error="bad JSON")), Status.WARN, ["broken.conf: unreadable"]),
    ],
)
def test_cni(facts, status, words):
    item = cni_item(facts)
    assert item.status is status, item.evidence
    for word in words:
        assert word in item.evidence


KP = Process(977, "kube-proxy", ("/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf"))
MANIFEST = "    image: registry.k8s.io/kube-apiserver:v{}\n"


def kp_facts(procs=(KP,), **kube):
    return Facts(processes={p.pid: p for p in procs} | {1: Process(1, "systemd")}, kube=KubeFacts(**kube))


@pytest.mark.parametrize(
    ("facts", "status", "words"),
    [
        (kp_facts(proxy_config_mode="ipvs", proxy_config_source="cfg",
                  apiserver_manifest=MANIFEST.format("1.28.2"), manifest_source="m"), Status.OK,
         ["ipvs", "Kubernetes 1.28.2"]),
        (kp_facts(proxy_config_mode="ipvs", proxy_config_source="cfg",
                  apiserver_manifest=MANIFEST.format("1.9.2")), Status.FAIL, ["1.9.2", ">= 1.9.3"]),
        (kp_facts(proxy_config_mode="ipvs", proxy_config_source="cfg",
                  apiserver_manifest=MANIFEST.format("1.9.3")), Status.OK, []),
        (kp_facts(proxy_config_mode="ipvs", proxy_config_source="cfg"), Status.WARN, ["version not found"]),
        (kp_facts(proxy_config_mode="iptables", proxy_config_source="cfg"), Status.OK, ["iptables"]),
        (kp_facts(proxy_config_mode="", proxy_config_source="cfg"), Status.OK, ["iptables", "default"]),
        (kp_facts(procs=(Process(5, "kube-proxy", ("kube-proxy", "--proxy-mode", "ipvs")),)), Status.WARN,
         ["ipvs", "--proxy-mode"]),
        (kp_facts(procs=(Process(5, "kube-proxy", ("kube-proxy", "--proxy-mode=iptables")),)), Status.OK,
         ["iptables"]),
        (kp_facts(proxy_config_mode="nftables", proxy_config_source="cfg"), Status.WARN, ["nftables"]),
        (kp_facts(proxy_config_error="unreadable"), Status.UNKNOWN, ["unreadable"]),
        (kp_facts(procs=(), ipvs_link=True), Status.WARN, ["kube-ipvs0"]),
        (kp_facts(procs=(), ipvs_link=False), Status.UNKNOWN, ["not detectable"]),
        (Facts(), Status.UNKNOWN, ["unreadable"]),
    ],
)
def test_kube_proxy(facts, status, words):
    item = kube_proxy_item(facts, LEGACY_SET)
    assert item.status is status, item.evidence
    for word in words:
        assert word in item.evidence


BGP = next(p for p in PORTS if p.port == 179)
TYPHA = next(p for p in PORTS if p.port == 5473)
VXLAN = next(p for p in PORTS if p.port == 4789)
BIRD = Process(812, "bird", ("bird", "-R"))
NGINX = Process(950, "nginx", ("nginx",))
LAB_LISTENER = Process(990, "python3", ("/usr/bin/python3", "-m", "netprobe.lab.listener", "--tcp", "179"))


def sockets(*socks, owners=None, procs=(BIRD, NGINX, LAB_LISTENER)):
    return Facts(processes={p.pid: p for p in procs},
                 sockets=SocketFacts(list(socks), ("/proc/net/tcp", "/proc/net/tcp6", "/proc/net/udp"),
                                     owners if owners is not None else {}))


@pytest.mark.parametrize(
    ("need", "facts", "status", "words"),
    [
        (BGP, sockets(), Status.OK, ["free", "/proc/net/tcp"]),
        (BGP, sockets(Socket("tcp", "0.0.0.0", 179, 42), owners={42: [812]}), Status.OK,
         ["expected bird (pid 812) on 0.0.0.0:179"]),
        (BGP, sockets(Socket("tcp", "::", 179, 43), owners={43: [950]}), Status.FAIL, ["nginx (pid 950) on :::179"]),
        (BGP, sockets(Socket("tcp", "0.0.0.0", 179, 42), Socket("tcp", "::", 179, 43), owners={42: [812], 43: [950]}),
         Status.FAIL, ["nginx"]),
        (BGP, sockets(Socket("tcp", "0.0.0.0", 179, 44)), Status.UNKNOWN, ["not visible", "inode 44"]),
        (BGP, sockets(Socket("udp", "0.0.0.0", 179, 45), owners={45: [950]}), Status.OK, ["free"]),
        (TYPHA, sockets(Socket("tcp", "0.0.0.0", 5473, 46), owners={46: [950]}), Status.WARN, ["nginx"]),
        (VXLAN, sockets(Socket("udp", "0.0.0.0", 4789, 0)), Status.OK, ["the kernel"]),
        (VXLAN, sockets(Socket("udp", "0.0.0.0", 4789, 47), owners={47: [950]}), Status.FAIL, ["nginx"]),
        (BGP, Facts(), Status.UNKNOWN, ["cannot read /proc/net/tcp"]),
        # the netns lab's listener is the service the host's role implies, not a conflict
        (BGP, sockets(Socket("tcp", "0.0.0.0", 179, 48), owners={48: [990]}), Status.OK,
         ["lab listener standing in for BGP (BIRD) (pid 990) on 0.0.0.0:179"]),
        (TYPHA, sockets(Socket("tcp", "0.0.0.0", 5473, 49), owners={49: [990]}), Status.OK, ["lab listener"]),
    ],
)
def test_ports(need, facts, status, words):
    item = port_item(facts, need)
    assert item.status is status, item.evidence
    for word in words:
        assert word in item.evidence


def test_ports_follow_the_profile():
    def ids(profile, requirements="legacy", **kw):
        report = evaluate(Facts(), profile=profile, requirements=requirements, **kw)
        return [i.id for i in report.items if i.group == "ports"]
    assert ids("calico") == ["port:179/tcp", "port:5473/tcp", "port:9099/tcp"]
    # canal's VXLAN is flannel's 8472 on Linux (the old page said 4789): the port it probes
    assert ids("canal") == ["port:5473/tcp", "port:8472/udp", "port:9099/tcp"]
    assert ids("calico-vxlan") == ["port:5473/tcp", "port:4789/udp", "port:9099/tcp"]
    assert ids("canal", vxlan_port=4789) == ["port:5473/tcp", "port:4789/udp", "port:9099/tcp"]
    # current Calico adds Typha's health port; WireGuard's port when it is on
    assert ids("calico", "current") == ["port:179/tcp", "port:5473/tcp", "port:9099/tcp", "port:9098/tcp"]
    assert ids("calico", "current", wireguard=True)[-1] == "port:51820/udp"
    assert ids("calico-wireguard", "current")[-1] == "port:51820/udp"


def test_modules_follow_the_profile():
    def mods(profile):
        return [i.id for i in evaluate(Facts(), profile=profile).items if i.id.startswith("module:")]
    assert "module:ipip" in mods("calico")
    assert "module:ipip" not in mods("calico-noipip") and "module:vxlan" not in mods("calico-noipip")
    assert "module:vxlan" in mods("canal")


def test_nothing_readable_is_unknown_never_fail():
    report = evaluate(Facts())
    assert report.exit_code == 0
    assert {i.status for i in report.items} <= {Status.UNKNOWN, Status.OK}
    assert report.item("module:ipip").status is Status.UNKNOWN
    assert report.item("arch").status is Status.UNKNOWN


def healthy_facts() -> Facts:
    return Facts(
        hostname="node1",
        kernel=KernelFacts(release="5.15.0", arch="x86_64", config={o: "y" for o in (
            "CONFIG_NF_CT_NETLINK", "CONFIG_IP_NF_IPTABLES", "CONFIG_IP6_NF_IPTABLES", "CONFIG_IP_SET",
            "CONFIG_NETFILTER_XT_SET", "CONFIG_IP_NF_MATCH_RPFILTER", "CONFIG_IP_NF_TARGET_REJECT",
            "CONFIG_NET_IPIP")}, config_source="/proc/config.gz"),
        os=osr(id="ubuntu", version_id="22.04"),
        net=NetFacts([HostAddress("eth0", "192.0.2.2/24")], [], "netlink"),
        cni=CniFacts(configs=[], exists=False),
        processes={KP.pid: KP},
        kube=KubeFacts(proxy_config_mode="iptables", proxy_config_source="cfg"),
        sockets=SocketFacts([], ("/proc/net/tcp",), {}),
    )


def test_healthy_host_exits_0():
    report = evaluate(healthy_facts(), service_cidr="10.96.0.0/12")
    assert [i.id for i in report.items if i.status is not Status.OK] == []
    assert report.exit_code == 0 and report.host == "node1"


def test_one_fail_exits_1_and_warn_or_unknown_do_not():
    facts = healthy_facts()
    facts.kernel.config["CONFIG_NET_IPIP"] = "n"
    report = evaluate(facts)
    assert report.exit_code == 1
    assert [i.id for i in report.items if i.status is Status.FAIL] == ["module:ipip"]
    assert evaluate(facts, profile="calico-noipip").exit_code == 0
    facts = healthy_facts()
    facts.os = osr(id="arch")
    facts.kernel.arch = None
    report = evaluate(facts)
    assert report.item("distro").status is Status.WARN and report.item("arch").status is Status.UNKNOWN
    assert report.exit_code == 0


def test_report_round_trips_through_json():
    import json

    report = evaluate(healthy_facts(), pool_cidrs=["10.10.0.0/16", "fd00:10::/48"], service_cidr="10.96.0.0/12")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["schema"] == "netprobe.preflight/v1" and data["status"] == "ok"
    assert data["counts"]["ok"] == len(report.items)
    again = Report.from_dict(data)
    assert again == report and again.exit_code == 0


def test_report_from_dict_rejects_garbage():
    with pytest.raises(ConfigError, match="schema"):
        Report.from_dict({"schema": "other"})
    with pytest.raises(ConfigError, match="items"):
        Report.from_dict({"schema": "netprobe.preflight/v1", "items": [{"id": "x", "status": "maybe"}]})
    bad = Report(items=(Item("x", "g", "t", Status.FAIL, "e"),))
    assert Report.from_dict(bad.to_dict()).exit_code == 1


PURE = ("facts", "kmods", "kube", "model", "overlap", "render", "rules", "rules_cluster")
IMPURE = {"os", "socket", "subprocess", "pyroute2", "gzip", "pathlib", "shutil", "glob", "trio",
          "netprobe.preflight.read_host", "netprobe.preflight.read_kernel", "netprobe.preflight.read_net",
          "netprobe.preflight.gather", "netprobe.preflight.fsroot"}


@pytest.mark.parametrize("name", PURE)
def test_judging_modules_stay_pure(name):
    """The rules and renderers never read a file nor netlink: only the read_* modules do."""
    import ast
    from pathlib import Path

    import netprobe.preflight

    path = Path(netprobe.preflight.__file__).parent / f"{name}.py"
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open":
            raise AssertionError(f"{name}.py calls open()")
        else:
            continue
        for module in modules:
            top = module.split(".")[0]
            assert module not in IMPURE and top not in IMPURE, f"{name}.py imports {module}"
