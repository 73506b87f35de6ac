"""`netprobe preflight` on this machine's real kernel, and in a network namespace whose
addresses and routes overlap the pod pool. Reads only: no packet is sent."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

_SCRIPT = Path(sys.executable).parent / "netprobe"
NETPROBE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "netprobe"]


def preflight(*args: str, netns: str | None = None) -> tuple[int, dict]:
    cmd = [*NETPROBE, "preflight", "--format", "json", *args]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def items(report: dict) -> dict[str, dict]:
    return {i["id"]: i for i in report["items"]}


def kernel_config() -> dict[str, str]:
    try:
        with gzip.open("/proc/config.gz", "rt") as fh:
            text = fh.read()
    except OSError:
        pytest.skip("no /proc/config.gz on this kernel")
    config = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_"):
            key, _, value = line.partition("=")
            config[key] = value
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            config[line[2:].split()[0]] = "n"
    return config


def test_real_kernel_modules():
    config = kernel_config()
    if Path("/proc/modules").exists():
        pytest.skip("a modular kernel: module presence depends on what is loaded, not only the config")
    code, report = preflight()
    found = items(report)
    # as the issue describes this machine: IP-in-IP absent, netfilter pieces built in
    for module, option in (("ip_tables", "CONFIG_IP_NF_IPTABLES"), ("ip_set", "CONFIG_IP_SET"),
                           ("xt_set", "CONFIG_NETFILTER_XT_SET")):
        if config.get(option) == "y":
            assert found[f"module:{module}"]["status"] == "ok", found[f"module:{module}"]
            assert f"{option}=y" in found[f"module:{module}"]["evidence"]
    ipip = found["module:ipip"]
    if config.get("CONFIG_NET_IPIP", "n") == "n":
        assert ipip["status"] == "fail" and "CONFIG_NET_IPIP" in ipip["evidence"], ipip
        assert code == 1
    else:
        assert ipip["status"] == "ok"
    assert found["arch"]["status"] in ("ok", "warn") and found["kernel"]["status"] == "ok"
    # without IP-in-IP in the profile the module is not required
    _, noipip = preflight("--profile", "calico-noipip")
    assert "module:ipip" not in items(noipip)


@pytest.fixture
def pool_netns():
    """A namespace holding 192.168.77.1/24 and fd12:3456:0:1::1/64 on a veth, plus a route to
    192.168.200.0/24: everything created inside the namespace, nothing in the root one."""
    from pyroute2 import NetNS, netns

    name = f"nptest-pf-{uuid.uuid4().hex[:8]}"
    netns.create(name)
    try:
        with NetNS(name) as ns:
            ns.link("add", ifname="pfa", kind="veth", peer="pfb")
            idx = ns.link_lookup(ifname="pfa")[0]
            ns.link("set", index=idx, state="up")
            ns.link("set", index=ns.link_lookup(ifname="pfb")[0], state="up")
            ns.addr("add", index=idx, address="192.168.77.1", prefixlen=24)
            ns.addr("add", index=idx, address="fd12:3456:0:1::1", prefixlen=64)
            ns.route("add", dst="192.168.200.0/24", oif=idx)
        yield name
    finally:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
        for pid in pids:
            subprocess.run(["kill", "-9", pid], capture_output=True)
        netns.remove(name)


def test_address_in_the_default_pool_is_reported(pool_netns):
    code, report = preflight(netns=pool_netns)
    pool = items(report)["pool:192.168.0.0/16"]
    assert pool["status"] == "fail" and code == 1
    assert "address 192.168.77.1/24 on pfa" in pool["evidence"]
    assert "route 192.168.200.0/24 dev pfa" in pool["evidence"]
    assert "route 192.168.77.0/24 dev pfa" in pool["evidence"]


def test_ipv6_pool_and_a_free_pool(pool_netns):
    _, report = preflight("--pool-cidr", "fd12:3456::/48", "--pool-cidr", "172.31.0.0/16", netns=pool_netns)
    found = items(report)
    assert found["pool:fd12:3456::/48"]["status"] == "fail"
    assert "address fd12:3456:0:1::1/64 on pfa" in found["pool:fd12:3456::/48"]["evidence"]
    assert found["pool:172.31.0.0/16"]["status"] == "ok"
    assert "netlink" in found["pool:172.31.0.0/16"]["evidence"]


def test_root_option_does_not_read_the_namespace(pool_netns, tmp_path):
    """With --root the live netlink is not read: the pool check is unknown, not a guess."""
    _, report = preflight("--root", str(tmp_path), netns=pool_netns)
    assert items(report)["pool:192.168.0.0/16"]["status"] == "unknown"
    _, live = preflight("--root", str(tmp_path), "--live-netlink", netns=pool_netns)
    assert items(live)["pool:192.168.0.0/16"]["status"] == "fail"


# -- requirement sets on this machine, and the VXLAN devices the agent reports ----------------

def _release() -> tuple[int, int]:
    major, minor = Path("/proc/sys/kernel/osrelease").read_text().split(".")[:2]
    return int(major), int(minor)


def test_current_set_on_this_machine():
    """The current set is the default; each line follows from this kernel's facts, and names its set."""
    config = kernel_config()
    code, report = preflight()
    found = items(report)
    assert report["requirements"] == "current"
    assert found["kernel"]["title"] == "kernel >= 5.10" and found["kernel"]["requirements"] == "current"
    assert found["kernel"]["status"] == ("ok" if _release() >= (5, 10) else "fail")
    assert found["port:9098/tcp"]["requirements"] == "current"
    assert found["module:ip_tables"]["requirements"] == "legacy+current"
    _, legacy = preflight("--requirements", "legacy")
    assert items(legacy)["kernel"]["title"] == "kernel >= 3.10" and "port:9098/tcp" not in items(legacy)
    assert all(i["requirements"] != "current" for i in legacy["items"])
    # WireGuard on: the module line follows CONFIG_WIREGUARD (this machine's kernel has none)
    _, wg = preflight("--wireguard", "--profile", "calico-noipip")
    module = items(wg)["module:wireguard"]
    if config.get("CONFIG_WIREGUARD", "n") == "n" and not Path("/proc/modules").exists():
        assert module["status"] == "fail" and "CONFIG_WIREGUARD" in module["evidence"], module
    assert "port:51820/udp" in items(wg)
    # the nftables dataplane: kernel >= 5.13 and nft >= 1.0.1, read from this machine
    _, nft = preflight("--dataplane", "nftables", "--profile", "calico-noipip")
    lines = items(nft)
    assert lines["nftables:kernel"]["status"] == ("ok" if _release() >= (5, 13) else "fail")
    assert lines["nftables:nft"]["status"] in ("ok", "fail", "unknown")
    if lines["nftables:nft"]["status"] != "unknown":
        assert "--version" in lines["nftables:nft"]["evidence"]
    # eBPF: IP-in-IP is not supported, VXLAN is
    _, bpf = preflight("--dataplane", "bpf")
    assert items(bpf)["bpf:encapsulation"]["status"] == "fail"
    _, bpf_vx = preflight("--dataplane", "bpf", "--profile", "calico-vxlan")
    assert items(bpf_vx)["bpf:encapsulation"]["status"] == "ok"
    assert items(bpf_vx)["bpf:kernel"]["status"] == ("ok" if _release() >= (5, 8) else "warn")


@pytest.fixture
def vxlan_netns():
    """A namespace with Calico's VXLAN device, vxlan.calico, on 4789 (all inside the namespace)."""
    from pyroute2 import NetNS, netns

    name = f"npct-vx-{uuid.uuid4().hex[:8]}"
    netns.create(name)
    try:
        with NetNS(name) as ns:
            ns.link("add", ifname="eth0", kind="veth", peer="eth1")
            idx = ns.link_lookup(ifname="eth0")[0]
            ns.addr("add", index=idx, address="198.18.77.1", prefixlen=24)
            ns.link("set", index=idx, state="up")
            ns.link("add", ifname="vxlan.calico", kind="vxlan", vxlan_id=4096, vxlan_port=4789, vxlan_link=idx,
                    vxlan_local="198.18.77.1")
        yield name
    finally:
        netns.remove(name)


def test_vxlan_device_port_against_the_probed_port(vxlan_netns):
    _, report = preflight("--profile", "calico-vxlan", netns=vxlan_netns)
    dev = items(report)["vxlan:vxlan.calico"]
    assert dev["status"] == "ok" and "UDP 4789, VNI 4096 (netlink)" in dev["evidence"]
    assert dev["requirements"] == "netprobe"
    # canal probes flannel's 8472: a host whose VXLAN runs on 4789 is flagged
    _, canal = preflight("--profile", "canal", netns=vxlan_netns)
    flagged = items(canal)["vxlan:vxlan.calico"]
    assert flagged["status"] == "warn" and "vxlan probes UDP 8472" in flagged["evidence"]
    _, pinned = preflight("--profile", "canal", "--vxlan-port", "4789", netns=vxlan_netns)
    assert items(pinned)["vxlan:vxlan.calico"]["status"] == "ok"
