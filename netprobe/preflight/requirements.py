"""Calico's requirement sets: the old requirements page and current Calico. Pure data.

``legacy`` is the old "System requirements" page netprobe followed first (kernel 3.10, amd64,
RHEL/CentOS 7, Ubuntu 16.04, Debian 8, kube-proxy in iptables or ipvs mode). ``current`` is what
Calico asks of a new install today (docs.tigera.io, Calico Open Source "System requirements for
Kubernetes", 3.29 and later): kernel 5.10, x86-64/arm64/ppc64le/s390x, Ubuntu 20.04, RHEL 8,
Debian 10, Bottlerocket 1.47, Talos 1.6 or later, kube-proxy in iptables, ipvs or nftables mode
(nftables needs Kubernetes 1.31), the Typha health port 9098 besides Felix's 9099; and per
dataplane: nftables (the "Calico nftables data plane" page) kernel 5.13 with nft 1.0.1 and
kube-proxy in nftables mode; eBPF (the eBPF install pages) kernel 5.3, 5.8 or later recommended,
VXLAN between hosts and no IP-in-IP; WireGuard the ``wireguard`` module and UDP 51820.

Every preflight line carries the set(s) it comes from (``Item.requirements``): ``legacy``,
``current``, ``legacy+current`` when both state it, ``netprobe`` for netprobe's own
consistency lines (a VXLAN device against the port the mesh probes).
"""

from __future__ import annotations

from dataclasses import dataclass

LEGACY = "legacy"
CURRENT = "current"
BOTH = "legacy+current"
NETPROBE = "netprobe"
DEFAULT_REQUIREMENTS = CURRENT  # what a new install gets

DATAPLANES = ("iptables", "nftables", "bpf")
DEFAULT_DATAPLANE = "iptables"  # Calico's default dataplane


@dataclass(frozen=True)
class RequirementSet:
    name: str
    min_kernel: tuple[int, int]
    arches: frozenset[str]           # named by the set: ok
    other_arches: frozenset[str]     # Calico ships images, the set does not name them: warn
    # ID -> (shown name, minimum VERSION_ID as written) known to work
    known_good: dict[str, tuple[str, str]]
    rhel_like_min: tuple[int, ...]   # an ID_LIKE rhel/centos distribution from this version on
    proxy_modes: tuple[str, ...]
    typha_health: bool               # port 9098 (Typha's health) is checked


LEGACY_SET = RequirementSet(
    name=LEGACY,
    min_kernel=(3, 10),
    arches=frozenset({"x86_64", "amd64"}),
    other_arches=frozenset({"aarch64", "arm64", "ppc64le", "s390x"}),
    known_good={
        "rhel": ("RHEL", "7"),
        "centos": ("CentOS", "7"),
        "ubuntu": ("Ubuntu", "16.04"),
        "debian": ("Debian", "8"),
        "coreos": ("CoreOS", ""),
        "flatcar": ("Flatcar (CoreOS Container Linux)", ""),
    },
    rhel_like_min=(7,),
    proxy_modes=("iptables", "ipvs"),
    typha_health=False,
)

CURRENT_SET = RequirementSet(
    name=CURRENT,
    min_kernel=(5, 10),
    arches=frozenset({"x86_64", "amd64", "aarch64", "arm64", "ppc64le", "s390x"}),
    other_arches=frozenset(),
    known_good={
        "ubuntu": ("Ubuntu", "20.04"),
        "rhel": ("RHEL", "8"),
        "debian": ("Debian", "10"),
        "bottlerocket": ("Bottlerocket", "1.47"),
        "talos": ("Talos", "1.6"),
    },
    rhel_like_min=(8,),
    proxy_modes=("iptables", "ipvs", "nftables"),
    typha_health=True,
)

SETS = {LEGACY: LEGACY_SET, CURRENT: CURRENT_SET}

NFTABLES_MIN_K8S = (1, 31, 0)    # kube-proxy's nftables mode
NFT_DATAPLANE_MIN_KERNEL = (5, 13)
NFT_MIN_VERSION = (1, 0, 1)
BPF_MIN_KERNEL = (5, 3)
BPF_RECOMMENDED_KERNEL = (5, 8)
