"""Rules of current Calico's dataplanes and overlays: nftables, eBPF, WireGuard, and the VXLAN
devices found on the host against the port the mesh probes. Pure, like ``rules``."""

from __future__ import annotations

from netprobe.preflight import kmods
from netprobe.preflight.facts import Facts, KernelFacts, VxlanDevice
from netprobe.preflight.kube import parse_version
from netprobe.preflight.model import Item, Status
from netprobe.preflight.requirements import (
    BPF_MIN_KERNEL,
    BPF_RECOMMENDED_KERNEL,
    CURRENT,
    NETPROBE,
    NFT_DATAPLANE_MIN_KERNEL,
    NFT_MIN_VERSION,
)

GROUP = "dataplane"


def _v(version: tuple[int, ...]) -> str:
    return ".".join(str(p) for p in version)


def _kernel_at_least(kernel: KernelFacts, minimum: tuple[int, int], item_id: str, title: str,
                     why: str) -> Item:
    src = f" ({kernel.release_source})" if kernel.release_source else ""
    version = parse_version(kernel.release)
    if version is None:
        return Item(item_id, GROUP, title, Status.UNKNOWN,
                    f"kernel release not readable{src}" if not kernel.release else f"cannot parse {kernel.release!r}",
                    CURRENT)
    ok = version[:2] >= minimum
    return Item(item_id, GROUP, title, Status.OK if ok else Status.FAIL,
                f"{kernel.release}{src}" + ("" if ok else f": {why}"), CURRENT)


def dataplane_items(facts: Facts, dataplane: str, checks: set[str]) -> list[Item]:
    """The lines of ``--dataplane nftables|bpf`` (iptables, the default, adds none)."""
    if dataplane == "nftables":
        items = [_kernel_at_least(facts.kernel, NFT_DATAPLANE_MIN_KERNEL, "nftables:kernel",
                                  f"nftables dataplane: kernel >= {_v(NFT_DATAPLANE_MIN_KERNEL)}",
                                  "Calico's nftables dataplane needs 5.13 or later")]
        tools = facts.tools
        title = f"nftables dataplane: nft >= {_v(NFT_MIN_VERSION)}"
        version = parse_version(tools.nft_version)
        if version is None:
            items.append(Item("nftables:nft", GROUP, title, Status.UNKNOWN,
                              tools.nft_source or "nft version not read", CURRENT))
        else:
            ok = version >= NFT_MIN_VERSION
            items.append(Item("nftables:nft", GROUP, title, Status.OK if ok else Status.FAIL,
                              f"nft {tools.nft_version} ({tools.nft_source})" + ("" if ok else ": too old"), CURRENT))
        return items
    if dataplane == "bpf":
        kernel = _kernel_at_least(facts.kernel, BPF_MIN_KERNEL, "bpf:kernel",
                                  f"eBPF dataplane: kernel >= {_v(BPF_MIN_KERNEL)} "
                                  f"({_v(BPF_RECOMMENDED_KERNEL)}+ recommended)",
                                  "the eBPF dataplane needs 5.3 or later")
        version = parse_version(facts.kernel.release)
        if kernel.status is Status.OK and version is not None and version[:2] < BPF_RECOMMENDED_KERNEL:
            kernel = Item(kernel.id, kernel.group, kernel.title, Status.WARN,
                          f"{kernel.evidence}: older than the recommended {_v(BPF_RECOMMENDED_KERNEL)}", CURRENT)
        title = "eBPF dataplane: VXLAN between hosts, no IP-in-IP"
        if "ipip" in checks:
            encap = Item("bpf:encapsulation", GROUP, title, Status.FAIL,
                         "the profile uses IP-in-IP, which the eBPF dataplane does not support: use VXLAN "
                         "(profile calico-vxlan)", CURRENT)
        elif "vxlan" in checks:
            encap = Item("bpf:encapsulation", GROUP, title, Status.OK, "the profile uses VXLAN, no IP-in-IP", CURRENT)
        else:
            encap = Item("bpf:encapsulation", GROUP, title, Status.WARN,
                         "the profile probes no VXLAN: between hosts the eBPF dataplane encapsulates with VXLAN "
                         "(profile calico-vxlan)", CURRENT)
        return [kernel, encap]
    return []


def wireguard_items(facts: Facts) -> list[Item]:
    found = kmods.lookup(facts.kernel, "wireguard")
    return [Item("module:wireguard", "kernel modules", "module wireguard (WireGuard on)", found.status,
                 found.evidence, CURRENT)]


# Devices whose port the mesh's vxlan check must match: flannel's (canal) and Felix's (IPv4 and
# IPv6: vxlan probes the same port over both families).
def _judged(dev: VxlanDevice) -> bool:
    return dev.ifname.startswith("flannel.") or dev.ifname in ("vxlan.calico", "vxlan-v6.calico")


def vxlan_device_items(facts: Facts, checks: set[str], profile: str, probed_port: int) -> list[Item]:
    """Each kernel VXLAN device and its UDP port, against the port ``vxlan`` probes: a mismatch
    means the mesh proves a port the overlay does not use (a warning: the host itself is fine)."""
    net = facts.net
    probes = "vxlan" in checks
    if net.vxlan is None:
        if not probes:
            return []
        return [Item("vxlan-devices", "overlay", "VXLAN devices on the probed port", Status.UNKNOWN,
                     f"devices not read: {net.source or 'no netlink'}", NETPROBE)]
    if not net.vxlan:
        if not probes:
            return []
        return [Item("vxlan-devices", "overlay", "VXLAN devices on the probed port", Status.OK,
                     f"no VXLAN device yet ({net.source}); vxlan probes UDP {probed_port}", NETPROBE)]
    items = []
    for dev in net.vxlan:
        title = f"VXLAN device {dev.ifname} on the probed port"
        seen = f"UDP {dev.port}" + (f", VNI {dev.vni}" if dev.vni is not None else "") + f" ({net.source})"
        if not _judged(dev):
            status, text = Status.OK, f"{seen}; not Calico's nor flannel's device: not compared"
        elif not probes:
            status, text = Status.WARN, (f"{seen}, but profile {profile} does not probe vxlan: pick the profile "
                                         f"this cluster runs (calico-vxlan, canal) or add --checks vxlan")
        elif dev.port == probed_port:
            status, text = Status.OK, f"{seen}: the port vxlan probes"
        else:
            status, text = Status.WARN, (f"{seen}, but vxlan probes UDP {probed_port}: set vxlan_port: {dev.port} "
                                         f"in the inventory (or --vxlan-port {dev.port})")
        items.append(Item(f"vxlan:{dev.ifname}", "overlay", title, status, text, NETPROBE))
    return items
