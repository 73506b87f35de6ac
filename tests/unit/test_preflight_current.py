"""The requirement sets (legacy: the old page; current: Calico today), the dataplane and WireGuard
lines, and the VXLAN devices against the probed port. Pure rules on hand-built facts."""

from __future__ import annotations

import pytest

from netprobe.errors import ConfigError
from netprobe.preflight.facts import (Facts, KernelFacts, KubeFacts, NetFacts, OsFacts, Process, Socket,
                                      SocketFacts, ToolFacts, VxlanDevice)
from netprobe.preflight.model import Report, Status
from netprobe.preflight.read_net import vxlan_devices
from netprobe.preflight.requirements import BOTH, CURRENT, CURRENT_SET, LEGACY, LEGACY_SET, NETPROBE
from netprobe.preflight.rules import arch_item, distro_item, evaluate, kernel_item
from netprobe.preflight.rules_cluster import kube_proxy_item

KP = Process(977, "kube-proxy", ("/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf"))
MANIFEST = "    image: registry.k8s.io/kube-apiserver:v{}\n"


def osr(**fields):
    return OsFacts({k.upper(): v for k, v in fields.items()}, "/etc/os-release")


@pytest.mark.parametrize(("release", "legacy", "current"), [
    ("3.10.0-1160.el7.x86_64", Status.OK, Status.FAIL),
    ("4.18.0-513.el8", Status.OK, Status.FAIL),
    ("5.10.0-28-amd64", Status.OK, Status.OK),
    ("6.18.44-fc-v1045", Status.OK, Status.OK),
])
def test_kernel_by_set(release, legacy, current):
    assert kernel_item(KernelFacts(release=release), LEGACY_SET).status is legacy
    item = kernel_item(KernelFacts(release=release), CURRENT_SET)
    assert (item.status, item.title, item.requirements) == (current, "kernel >= 5.10", CURRENT)


@pytest.mark.parametrize(("arch", "legacy", "current"), [
    ("x86_64", Status.OK, Status.OK), ("aarch64", Status.WARN, Status.OK), ("s390x", Status.WARN, Status.OK),
    ("i686", Status.FAIL, Status.FAIL),
])
def test_arch_by_set(arch, legacy, current):
    assert arch_item(KernelFacts(arch=arch), LEGACY_SET).status is legacy
    assert arch_item(KernelFacts(arch=arch), CURRENT_SET).status is current


@pytest.mark.parametrize(("facts", "legacy", "current"), [
    (osr(id="ubuntu", version_id="18.04"), Status.OK, Status.WARN),
    (osr(id="ubuntu", version_id="22.04"), Status.OK, Status.OK),
    (osr(id="debian", version_id="9"), Status.OK, Status.WARN),
    (osr(id="debian", version_id="12"), Status.OK, Status.OK),
    (osr(id="centos", version_id="7"), Status.OK, Status.WARN),
    (osr(id="rhel", version_id="8.9"), Status.OK, Status.OK),
    (osr(id="bottlerocket", version_id="1.47.0"), Status.WARN, Status.OK),
    (osr(id="talos", version_id="1.5"), Status.WARN, Status.WARN),
    (osr(id="rocky", id_like="rhel centos fedora", version_id="8.9"), Status.OK, Status.OK),
])
def test_distro_by_set_is_information_never_failure(facts, legacy, current):
    assert distro_item(facts, LEGACY_SET).status is legacy
    item = distro_item(facts, CURRENT_SET)
    assert item.status is current and item.requirements == CURRENT


def kp(mode, version=None):
    return Facts(processes={KP.pid: KP}, kube=KubeFacts(
        proxy_config_mode=mode, proxy_config_source="cfg",
        apiserver_manifest=MANIFEST.format(version) if version else None, manifest_source="manifest"))


@pytest.mark.parametrize(("facts", "dataplane", "legacy", "current", "words"), [
    (kp("nftables", "1.31.0"), "iptables", Status.WARN, Status.OK, ["nftables", "1.31"]),
    (kp("nftables", "1.30.4"), "iptables", Status.WARN, Status.FAIL, ["1.30.4", ">= 1.31"]),
    (kp("nftables"), "iptables", Status.WARN, Status.WARN, ["version not found"]),
    (kp("iptables"), "iptables", Status.OK, Status.OK, ["iptables"]),
    (kp("iptables"), "nftables", Status.FAIL, Status.FAIL, ["needs kube-proxy in nftables mode"]),
    (kp("nftables", "1.33.1"), "nftables", Status.WARN, Status.OK, []),
])
def test_kube_proxy_modes_by_set(facts, dataplane, legacy, current, words):
    assert kube_proxy_item(facts, LEGACY_SET, dataplane).status is legacy
    item = kube_proxy_item(facts, CURRENT_SET, dataplane)
    assert item.status is current, item.evidence
    assert all(w in item.evidence for w in words)


def report(facts=None, **options) -> Report:
    return evaluate(facts or Facts(), **options)


def test_current_is_the_default_and_every_line_names_its_set():
    rep = report(Facts(kernel=KernelFacts(release="4.19.0")))
    assert rep.requirements == CURRENT and rep.item("kernel").status is Status.FAIL
    assert report(Facts(kernel=KernelFacts(release="4.19.0")), requirements="legacy").item("kernel").status \
        is Status.OK
    assert all(i.requirements in (LEGACY, CURRENT, BOTH, NETPROBE) for i in rep.items)
    assert rep.item("module:ip_tables").requirements == BOTH
    assert rep.item("port:9098/tcp").requirements == CURRENT
    assert rep.item("port:9099/tcp").requirements == BOTH
    assert all(i.requirements != LEGACY for i in rep.items)
    assert all(i.requirements != CURRENT for i in report(requirements="legacy").items)


def test_nftables_dataplane_lines():
    facts = Facts(kernel=KernelFacts(release="5.10.0"), tools=ToolFacts("0.9.8", "nft --version"))
    rep = report(facts, dataplane="nftables")
    assert rep.item("nftables:kernel").status is Status.FAIL and "5.13" in rep.item("nftables:kernel").evidence
    assert rep.item("nftables:nft").status is Status.FAIL and "0.9.8" in rep.item("nftables:nft").evidence
    facts = Facts(kernel=KernelFacts(release="6.1.0"), tools=ToolFacts("1.0.6", "nft --version"))
    rep = report(facts, dataplane="nftables")
    assert rep.item("nftables:kernel").status is Status.OK and rep.item("nftables:nft").status is Status.OK
    assert report(Facts(tools=ToolFacts(None, "no nft on PATH")), dataplane="nftables").item("nftables:nft").status \
        is Status.UNKNOWN
    assert report(dataplane="iptables").item("nftables:kernel") is None


def test_bpf_dataplane_lines():
    rep = report(Facts(kernel=KernelFacts(release="5.4.0")), dataplane="bpf", profile="calico")
    assert rep.item("bpf:kernel").status is Status.WARN  # 5.3+ works, 5.8+ recommended
    assert rep.item("bpf:encapsulation").status is Status.FAIL  # IP-in-IP
    rep = report(Facts(kernel=KernelFacts(release="5.15.0")), dataplane="bpf", profile="calico-vxlan")
    assert rep.item("bpf:kernel").status is Status.OK and rep.item("bpf:encapsulation").status is Status.OK
    assert report(Facts(kernel=KernelFacts(release="5.2.0")), dataplane="bpf").item("bpf:kernel").status \
        is Status.FAIL
    assert report(dataplane="bpf", profile="calico-noipip").item("bpf:encapsulation").status is Status.WARN


def test_wireguard_module_where_wireguard_is_on():
    no_wg = KernelFacts(release="6.1.0", config={"CONFIG_WIREGUARD": "n"}, config_source="/proc/config.gz")
    assert report(Facts(kernel=no_wg)).item("module:wireguard") is None
    item = report(Facts(kernel=no_wg), wireguard=True).item("module:wireguard")
    assert item.status is Status.FAIL and "CONFIG_WIREGUARD is not set" in item.evidence
    assert report(Facts(kernel=no_wg), profile="calico-wireguard").item("module:wireguard").status is Status.FAIL
    wg = KernelFacts(release="6.1.0", loaded=frozenset({"wireguard"}))
    assert report(Facts(kernel=wg), wireguard=True).item("module:wireguard").status is Status.OK


def test_wireguard_port_held_by_the_kernels_device_is_fine():
    facts = Facts(sockets=SocketFacts([Socket("udp", "0.0.0.0", 51820, 0)], ("/proc/net/udp",), {}))
    assert report(facts, wireguard=True).item("port:51820/udp").status is Status.OK


def vx(*devices, source="netlink"):
    return Facts(net=NetFacts([], [], source, list(devices)))


def test_vxlan_devices_against_the_probed_port():
    flannel = VxlanDevice("flannel.1", 8472, 1)
    ok = report(vx(flannel), profile="canal").item("vxlan:flannel.1")
    assert ok.status is Status.OK and "UDP 8472" in ok.evidence and ok.requirements == NETPROBE
    # an inventory that pins 4789 for canal probes a port the overlay does not use
    bad = report(vx(flannel), profile="canal", vxlan_port=4789).item("vxlan:flannel.1")
    assert bad.status is Status.WARN and "vxlan_port: 8472" in bad.evidence
    # Calico's VXLAN on 4789 under a profile that probes no VXLAN: say so
    calico = report(vx(VxlanDevice("vxlan.calico", 4789, 4096)), profile="calico").item("vxlan:vxlan.calico")
    assert calico.status is Status.WARN and "does not probe vxlan" in calico.evidence
    assert report(vx(VxlanDevice("vxlan.calico", 4789)), profile="calico-vxlan").item("vxlan:vxlan.calico").status \
        is Status.OK
    other = report(vx(VxlanDevice("vx-lab", 4790)), profile="canal").item("vxlan:vx-lab")
    assert other.status is Status.OK and "not compared" in other.evidence
    # Calico's IPv6 VXLAN device is judged too: vxlan probes the same port over IPv6
    six = report(vx(VxlanDevice("vxlan-v6.calico", 4789)), profile="canal").item("vxlan:vxlan-v6.calico")
    assert six.status is Status.WARN and "vxlan_port: 4789" in six.evidence
    assert report(vx(VxlanDevice("vxlan-v6.calico", 4789)), profile="calico-vxlan").item(
        "vxlan:vxlan-v6.calico").status is Status.OK


def test_vxlan_devices_unread_or_absent():
    assert report(Facts(net=NetFacts(source="with --root ...")), profile="canal").item("vxlan-devices").status \
        is Status.UNKNOWN
    assert report(vx(), profile="canal").item("vxlan-devices").status is Status.OK
    assert report(vx(), profile="calico").item("vxlan-devices") is None


def test_vxlan_devices_from_netlink_messages():
    links = [
        {"IFLA_IFNAME": "eth0", "IFLA_LINKINFO": {"IFLA_INFO_KIND": "veth"}},
        {"IFLA_IFNAME": "lo"},
        {"IFLA_IFNAME": "flannel.1",
         "IFLA_LINKINFO": {"IFLA_INFO_KIND": "vxlan", "IFLA_INFO_DATA": {"IFLA_VXLAN_PORT": 8472, "IFLA_VXLAN_ID": 1}}},
    ]
    assert vxlan_devices(links) == [VxlanDevice("flannel.1", 8472, 1)]


@pytest.mark.parametrize(("option", "value", "field"), [
    ("requirements", "2019", "--requirements"), ("dataplane", "vpp", "--dataplane"),
    ("vxlan_port", 0, "--vxlan-port"),
])
def test_bad_options_are_config_errors(option, value, field):
    with pytest.raises(ConfigError) as info:
        report(**{option: value})
    assert field in str(info.value)


def test_report_round_trips_with_sets():
    rep = report(vx(VxlanDevice("flannel.1", 8472)), profile="canal", dataplane="bpf", wireguard=True)
    back = Report.from_dict(rep.to_dict())
    assert back == rep and back.dataplane == "bpf" and back.wireguard is True
