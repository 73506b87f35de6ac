"""Everything preflight reads from a host, as plain data.

The readers fill these; ``rules.evaluate`` judges them without touching a file, so every rule is
table-tested by building ``Facts`` by hand. Convention: ``None`` means "could not be read"
(the rule then says ``unknown``), an empty collection means "read, and there is nothing".
The ``*_source`` strings name where a fact came from; they end up in the evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class KernelFacts:
    release: str | None = None            # "6.18.44-fc-v595"
    release_source: str | None = None     # "/proc/sys/kernel/osrelease"
    arch: str | None = None               # "x86_64"
    arch_source: str | None = None
    loaded: frozenset[str] | None = None  # /proc/modules (None: absent, e.g. a non-modular kernel)
    loaded_source: str = "/proc/modules"
    builtin: frozenset[str] | None = None  # lib/modules/RELEASE/modules.builtin
    modular: frozenset[str] | None = None  # lib/modules/RELEASE/modules.dep
    modules_dir: str | None = None        # "/lib/modules/RELEASE" when it matched the release
    config: dict[str, str] | None = None  # CONFIG_X -> "y" | "m" | "n" (n: "is not set")
    config_source: str | None = None      # "/proc/config.gz" or "/boot/config-RELEASE"


@dataclass
class OsFacts:
    os_release: dict[str, str] | None = None  # parsed /etc/os-release
    source: str | None = None


@dataclass(frozen=True)
class HostAddress:
    ifname: str
    cidr: str  # the address with its prefix, e.g. "192.0.2.2/24"


@dataclass(frozen=True)
class HostRoute:
    dst: str              # a network, e.g. "192.0.2.0/24"
    dev: str | None = None
    table: int = 254
    proto: int = 0        # rtnetlink protocol: 2 kernel, 3 boot, 12 bird, 80 Felix ...
    type: int = 1         # 1 unicast, 6 blackhole, 7 unreachable, 8 prohibit ...


@dataclass(frozen=True)
class VxlanDevice:
    ifname: str        # "flannel.1", "vxlan.calico", ...
    port: int          # its UDP destination port (IFLA_VXLAN_PORT)
    vni: int | None = None


@dataclass
class NetFacts:
    addresses: list[HostAddress] | None = None
    routes: list[HostRoute] | None = None
    source: str | None = None  # "netlink", "fixture ROOT/netprobe-addrs.json", or why it is unknown
    vxlan: list[VxlanDevice] | None = None  # kernel VXLAN devices (None: not read, see source)


@dataclass(frozen=True)
class CniConfig:
    file: str                 # path as shown to the user
    name: str | None = None   # the network name
    types: tuple[str, ...] = ()  # plugin types in order (the first is the main plugin)
    error: str | None = None  # why it could not be parsed


@dataclass
class CniFacts:
    directory: str = "/etc/cni/net.d"
    configs: list[CniConfig] | None = None  # None: directory unreadable; [] : no config (or no dir)
    exists: bool = False


@dataclass(frozen=True)
class Process:
    pid: int
    comm: str
    cmdline: tuple[str, ...] = ()


@dataclass
class KubeFacts:
    """What tells kube-proxy's mode, the Kubernetes version and the service range."""

    proxy_config_mode: str | None = None     # "mode:" of the file kube-proxy's --config names ("" = default)
    proxy_config_source: str | None = None
    proxy_config_error: str | None = None
    ipvs_link: bool | None = None            # kube-ipvs0 exists (None: /sys/class/net unreadable)
    apiserver_manifest: str | None = None    # text of /etc/kubernetes/manifests/kube-apiserver.yaml
    manifest_source: str | None = None


@dataclass(frozen=True)
class Socket:
    proto: str     # "tcp" or "udp" (IPv6 sockets too: family is in ``local``)
    local: str     # "0.0.0.0", "::", "127.0.0.1" ...
    port: int
    inode: int     # 0: owned by the kernel (e.g. a VXLAN device's socket)


@dataclass
class SocketFacts:
    listening: list[Socket] | None = None   # TCP LISTEN and bound UDP sockets (None: unreadable)
    sources: tuple[str, ...] = ()
    owners: dict[int, list[int]] | None = None  # socket inode -> pids holding it (None: unreadable)


@dataclass
class ToolFacts:
    """Userspace tools a dataplane needs: ``nft`` for Calico's nftables dataplane."""

    nft_version: str | None = None   # "1.0.6" (None: not found or not run; see nft_source)
    nft_source: str | None = None    # "nft --version" or why it is unknown


@dataclass
class Facts:
    """Everything read from one host (or a mounted image, with ``root``)."""

    root: str = "/"
    hostname: str | None = None
    kernel: KernelFacts = field(default_factory=KernelFacts)
    os: OsFacts = field(default_factory=OsFacts)
    net: NetFacts = field(default_factory=NetFacts)
    cni: CniFacts = field(default_factory=CniFacts)
    processes: dict[int, Process] | None = None  # the process table (None: unreadable)
    kube: KubeFacts = field(default_factory=KubeFacts)
    sockets: SocketFacts = field(default_factory=SocketFacts)
    tools: ToolFacts = field(default_factory=ToolFacts)
