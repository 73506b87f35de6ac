"""Kernel module lookup: is a module loaded, built in, installed as a module, or enabled in the
kernel config? Pure: works on ``KernelFacts``.

A module counts as present when any source says so; it is absent only when a source that
knows the whole kernel says so (the config, or modules.builtin + modules.dep together). With
no such source the answer is ``unknown``: /proc/modules alone proves presence, never absence.
"""

from __future__ import annotations

from dataclasses import dataclass

from netprobe.preflight.facts import KernelFacts
from netprobe.preflight.model import Status

# Calico's kernel dependencies, and the option that builds each module.
MODULE_CONFIG: dict[str, str] = {
    "nf_conntrack_netlink": "CONFIG_NF_CT_NETLINK",
    "ip_tables": "CONFIG_IP_NF_IPTABLES",
    "ip6_tables": "CONFIG_IP6_NF_IPTABLES",
    "ip_set": "CONFIG_IP_SET",
    "xt_set": "CONFIG_NETFILTER_XT_SET",
    "ipt_set": "CONFIG_NETFILTER_XT_SET",
    "ipt_rpfilter": "CONFIG_IP_NF_MATCH_RPFILTER",
    "ipt_REJECT": "CONFIG_IP_NF_TARGET_REJECT",
    "ipip": "CONFIG_NET_IPIP",
    "vxlan": "CONFIG_VXLAN",
    "wireguard": "CONFIG_WIREGUARD",
}

# Names a module is known by in /proc/modules and modules.dep (xt_set carries the ipt_set alias).
MODULE_FILES: dict[str, tuple[str, ...]] = {
    "ipt_set": ("xt_set",),
}

BASE_MODULES = ("nf_conntrack_netlink", "ip_tables", "ip6_tables", "ip_set", "xt_set", "ipt_set",
                "ipt_rpfilter", "ipt_REJECT")


def required_modules(encapsulations: set[str]) -> list[str]:
    """The base list, plus ``ipip`` / ``vxlan`` when the profile uses that encapsulation."""
    extra = [m for m in ("ipip", "vxlan") if m in encapsulations]
    return [*BASE_MODULES, *extra]


def normalize(name: str) -> str:
    """The kernel treats - and _ alike in module names."""
    return name.replace("-", "_")


@dataclass(frozen=True)
class Lookup:
    status: Status
    evidence: str


def lookup(kernel: KernelFacts, module: str) -> Lookup:
    option = MODULE_CONFIG.get(module)
    names = {normalize(module), *(normalize(n) for n in MODULE_FILES.get(module, ()))}
    shown = module if len(names) == 1 else f"{module} ({'/'.join(sorted(names - {normalize(module)}))})"
    mods_dir = kernel.modules_dir or "lib/modules"
    value = kernel.config.get(option) if (kernel.config is not None and option) else None
    cfg = f"{option}={value} ({kernel.config_source})" if value in ("y", "m") else None

    if kernel.loaded is not None and names & kernel.loaded:
        return Lookup(Status.OK, f"loaded ({kernel.loaded_source})")
    if kernel.builtin is not None and names & kernel.builtin:
        return Lookup(Status.OK, f"built in ({mods_dir}/modules.builtin)")
    if value == "y":
        return Lookup(Status.OK, f"built in: {cfg}")
    if kernel.modular is not None and names & kernel.modular:
        return Lookup(Status.OK, f"available as a module ({mods_dir}/modules.dep)")
    if value == "m":
        if kernel.modular is not None:
            return Lookup(Status.FAIL, f"{option}=m ({kernel.config_source}) but {shown} is not installed: "
                                       f"not in {mods_dir}/modules.dep (a missing modules-extra package?)")
        return Lookup(Status.OK, f"module per the config: {cfg} (modules.dep not readable)")

    # Absent from every source read: is any of them authoritative?
    if kernel.config is not None and option:
        state = "is not set" if value == "n" else "is absent"
        checked = _checked(kernel, mods_dir)
        return Lookup(Status.FAIL, f"{option} {state} ({kernel.config_source})" + (f"; {checked}" if checked else ""))
    if kernel.builtin is not None and kernel.modular is not None:
        return Lookup(Status.FAIL, f"{shown} absent: {_checked(kernel, mods_dir)}; no kernel config to read {option}")
    unread = ["kernel config (/proc/config.gz, /boot/config-RELEASE)"]
    if kernel.builtin is None or kernel.modular is None:
        unread.append(f"{mods_dir}/modules.builtin + modules.dep")
    seen = "not loaded; " if kernel.loaded is not None else ""
    return Lookup(Status.UNKNOWN, f"{seen}cannot tell whether {option} is enabled: unreadable {' and '.join(unread)}")


def _checked(kernel: KernelFacts, mods_dir: str) -> str:
    parts = []
    if kernel.loaded is not None:
        parts.append("not loaded")
    if kernel.builtin is not None:
        parts.append("not in modules.builtin")
    if kernel.modular is not None:
        parts.append(f"not in {mods_dir}/modules.dep")
    return ", ".join(parts)
