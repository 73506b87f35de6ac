"""Judge the facts read from a host against Calico's node and kernel requirements.

Pure: ``evaluate(facts, ...)`` reads no file and no netlink, so every rule is table-tested with
hand-built ``Facts``. Each rule returns one ``Item`` (or a few) with its status and the evidence
it used; a fact that could not be read makes its item ``unknown``, never a guess.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from netprobe.core.checks import PROFILES, vxlan_port_for
from netprobe.errors import ConfigError
from netprobe.preflight import kmods, overlap
from netprobe.preflight.facts import Facts, KernelFacts, OsFacts
from netprobe.preflight.kube import parse_version
from netprobe.preflight.model import Item, Report, Status
from netprobe.preflight.requirements import (
    BOTH,
    DATAPLANES,
    DEFAULT_DATAPLANE,
    DEFAULT_REQUIREMENTS,
    LEGACY_SET,
    SETS,
    RequirementSet,
)
from netprobe.preflight.rules_cluster import cni_item, kube_proxy_item, port_items, service_cidrs_seen
from netprobe.preflight.rules_dataplane import dataplane_items, vxlan_device_items, wireguard_items

# The old requirements page's figures, kept under their old names.
MIN_KERNEL = LEGACY_SET.min_kernel
KNOWN_GOOD = LEGACY_SET.known_good


def evaluate(
    facts: Facts,
    *,
    pool_cidrs: Sequence[str] | None = None,
    service_cidr: str | None = None,
    profile: str = "calico",
    requirements: str = DEFAULT_REQUIREMENTS,
    dataplane: str = DEFAULT_DATAPLANE,
    wireguard: bool = False,
    vxlan_port: int | None = None,
) -> Report:
    """Every requirement's status for one host, by the ``requirements`` set (legacy: the old
    page; current: Calico today) plus the ``dataplane``'s and WireGuard's lines (WireGuard is on
    with ``wireguard`` or a profile that probes it). ``vxlan_port`` is the port the mesh probes
    (default: the profile's). Raises ConfigError on bad CIDRs, profile or options."""
    pools, services = check_options(pool_cidrs=pool_cidrs, service_cidr=service_cidr, profile=profile,
                                    requirements=requirements, dataplane=dataplane, vxlan_port=vxlan_port)
    reqs = SETS[requirements]
    checks = set(PROFILES[profile])
    wireguard = wireguard or "wireguard" in checks

    items = [arch_item(facts.kernel, reqs), kernel_item(facts.kernel, reqs), distro_item(facts.os, reqs)]
    for module in kmods.required_modules(checks):
        found = kmods.lookup(facts.kernel, module)
        items.append(Item(f"module:{module}", "kernel modules", f"module {module}",
                          found.status, found.evidence))
    if wireguard:
        items.extend(wireguard_items(facts))
    items.extend(pool_items(facts, pools))
    items.append(service_item(facts, pools, services))
    items.append(cni_item(facts.cni))
    items.append(kube_proxy_item(facts, reqs, dataplane))
    items.extend(dataplane_items(facts, dataplane, checks))
    probed = vxlan_port_for(profile, vxlan_port)
    items.extend(port_items(facts, checks, reqs, vxlan_port=probed, wireguard=wireguard))
    items.extend(vxlan_device_items(facts, checks, profile, probed))
    # a line no set claimed is stated alike by both (modules, pools, services, CNI, most ports)
    items = [i if i.requirements else dataclasses.replace(i, requirements=BOTH) for i in items]
    return Report(items=tuple(items), host=facts.hostname, profile=profile,
                  pool_cidrs=tuple(str(p) for p in pools),
                  service_cidr=",".join(str(s) for s in services) if services else None, root=facts.root,
                  requirements=reqs.name, dataplane=dataplane, wireguard=wireguard)


def check_options(
    *, pool_cidrs: Sequence[str] | None = None, service_cidr: str | None = None, profile: str = "calico",
    requirements: str = DEFAULT_REQUIREMENTS, dataplane: str = DEFAULT_DATAPLANE, wireguard: bool = False,
    vxlan_port: int | None = None,
) -> tuple[list[overlap.Network], list[overlap.Network] | None]:
    """Validate the user's options (ConfigError -> exit 2, one line): the pools (the profile's
    default when none is given) and the service range(s), parsed."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})", field="--profile")
    if requirements not in SETS:
        raise ConfigError(f"unknown requirement set {requirements!r} (known: {', '.join(SETS)})",
                          field="--requirements")
    if dataplane not in DATAPLANES:
        raise ConfigError(f"unknown dataplane {dataplane!r} (known: {', '.join(DATAPLANES)})", field="--dataplane")
    if not isinstance(wireguard, bool):
        raise ConfigError("must be true or false", field="--wireguard")
    if vxlan_port is not None and (isinstance(vxlan_port, bool) or not isinstance(vxlan_port, int)
                                   or not 1 <= vxlan_port <= 65535):
        raise ConfigError(f"must be a port in 1-65535, got {vxlan_port!r}", field="--vxlan-port")
    pools_text = list(pool_cidrs) if pool_cidrs else overlap.default_pools(profile)
    pools = [overlap.parse_cidr(p, "--pool-cidr") for p in pools_text]
    services = [overlap.parse_cidr(s, "--service-cidr") for s in _split(service_cidr)] if service_cidr else None
    return pools, services


def _split(text: str) -> list[str]:
    """A dual-stack service range is written "10.96.0.0/12,fd00::/108"."""
    return [part for part in (p.strip() for p in text.split(",")) if part] or [text]


def arch_item(kernel: KernelFacts, reqs: RequirementSet = SETS[DEFAULT_REQUIREMENTS]) -> Item:
    arch = kernel.arch
    src = f" ({kernel.arch_source})" if kernel.arch_source else ""
    named = "amd64" if reqs is LEGACY_SET else "x86-64, arm64, ppc64le or s390x"
    title = f"architecture {named}"

    def item(status: Status, evidence: str) -> Item:
        return Item("arch", "system", title, status, evidence, reqs.name)

    if not arch:
        return item(Status.UNKNOWN, "not readable (/proc/sys/kernel/arch)")
    if arch in reqs.arches:
        return item(Status.OK, f"{arch}{src}")
    if arch in reqs.other_arches:
        return item(Status.WARN, f"{arch}{src}: the requirements name {named}; check that your Calico release "
                                 f"ships {arch} images")
    return item(Status.FAIL, f"{arch}{src}: Calico needs {named}")


def kernel_item(kernel: KernelFacts, reqs: RequirementSet = SETS[DEFAULT_REQUIREMENTS]) -> Item:
    minimum = reqs.min_kernel
    title = f"kernel >= {minimum[0]}.{minimum[1]}"
    if not kernel.release:
        return Item("kernel", "system", title, Status.UNKNOWN,
                    "kernel release not readable (/proc/sys/kernel/osrelease)", reqs.name)
    src = f" ({kernel.release_source})" if kernel.release_source else ""
    version = parse_version(kernel.release)
    if version is None:
        return Item("kernel", "system", title, Status.UNKNOWN, f"cannot parse release {kernel.release!r}{src}",
                    reqs.name)
    status = Status.OK if version[:2] >= minimum else Status.FAIL
    return Item("kernel", "system", title, status, f"{kernel.release}{src}", reqs.name)


def _version_tuple(text: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return None


def distro_item(os_facts: OsFacts, reqs: RequirementSet = SETS[DEFAULT_REQUIREMENTS]) -> Item:
    """Known-good distributions are information, never a failure: others get a warning."""
    item = _distro_item(os_facts, reqs)
    return Item(item.id, item.group, item.title, item.status, item.evidence, reqs.name)


def _distro_item(os_facts: OsFacts, reqs: RequirementSet) -> Item:
    title = "distribution"
    known_good = reqs.known_good
    rel = os_facts.os_release
    if rel is None:
        return Item("distro", "system", title, Status.UNKNOWN, "no /etc/os-release or /usr/lib/os-release")
    pretty = rel.get("PRETTY_NAME") or " ".join(filter(None, (rel.get("NAME"), rel.get("VERSION_ID")))) or "?"
    ident = rel.get("ID", "").lower()
    like = rel.get("ID_LIKE", "").lower().split()
    version = _version_tuple(rel.get("VERSION_ID", "")) if rel.get("VERSION_ID") else None
    src = f" ({os_facts.source})" if os_facts.source else ""

    def good(family: str, note: str = "") -> Item:
        return Item("distro", "system", title, Status.OK, f"{pretty}{src}: known-good ({family}{note})")

    if reqs is LEGACY_SET and ident == "fedora" and rel.get("VARIANT_ID", "").lower() == "coreos":
        return good("Fedora CoreOS")
    if ident in known_good:
        name, minimum = known_good[ident]
        if not minimum:
            return good(name)
        if version is None:
            if ident == "debian" and not rel.get("VERSION_ID"):  # testing/unstable: newer than any release
                return good(name, " testing/unstable")
        elif version >= (_version_tuple(minimum) or ()):
            return good(name, f" {minimum} or newer")
        return Item("distro", "system", title, Status.WARN,
                    f"{pretty}{src}: not the known-good {name} {minimum} or newer; information only")
    for family in ("rhel", "centos"):
        if family in like and version is not None and version >= reqs.rhel_like_min:
            return good("RHEL", f"-like, {'.'.join(map(str, reqs.rhel_like_min))} or newer")
    listed = ", ".join(f"{name} {minimum}".strip() for name, minimum in known_good.values())
    return Item("distro", "system", title, Status.WARN,
                f"{pretty}{src}: not on Calico's known-good list ({listed} and newer); information only")


def pool_items(facts: Facts, pools: list[overlap.Network]) -> list[Item]:
    """One item per pool: no host address or route in it, no other pool overlapping it."""
    items = []
    net = facts.net
    for i, pool in enumerate(pools):
        problems: list[str] = []
        reserved = _reserved_overlap(pool)
        if reserved:
            problems.append(f"overlaps the {reserved} range")
        block = 26 if pool.version == 4 else 122
        if pool.prefixlen > block:
            problems.append(f"smaller than one Calico IPAM block (/{block})")
        problems.extend(f"overlaps pool {other}" for other in pools[:i] if overlap.overlapping(pool, other))
        notes = ""
        if net.addresses is None or net.routes is None:
            host_status, host_text = Status.UNKNOWN, f"host addresses/routes not read: {net.source or 'unknown'}"
        else:
            checked = overlap.host_conflicts(pool, net.addresses, net.routes)
            problems.extend(c.what for c in checked.conflicts)
            host_status = Status.OK
            host_text = (f"no overlap with {len(net.addresses)} addresses and {len(net.routes)} routes "
                         f"({net.source or 'netlink'})")
            if checked.ignored:
                notes = f"; ignored {checked.ignored} Calico/flannel-owned address/route(s) inside it"
        if problems:
            status, evidence = Status.FAIL, "; ".join(problems)
            if host_status is Status.UNKNOWN:
                evidence += f"; {host_text}"
        else:
            status, evidence = host_status, host_text
        items.append(Item(f"pool:{pool}", "ip pools", f"pool {pool} apart from host networks",
                          status, evidence + notes))
    return items


_RESERVED = (
    ("loopback", ("127.0.0.0/8", "::1/128")),
    ("link-local", ("169.254.0.0/16", "fe80::/10")),
    ("multicast", ("224.0.0.0/4", "ff00::/8")),
)


def _reserved_overlap(pool: overlap.Network) -> str | None:
    for name, nets in _RESERVED:
        if any(overlap.overlapping(pool, overlap.parse_cidr(n, "reserved")) for n in nets):
            return name
    return None


def service_item(facts: Facts, pools: list[overlap.Network], given: list[overlap.Network] | None) -> Item:
    """The service (ClusterIP) range must not overlap a pod pool. Taken from --service-cidr, else
    from kube-apiserver's --service-cluster-ip-range on this host; unknown otherwise."""
    title = "service range apart from the pools"
    if given is not None:
        services, source = given, "--service-cidr"
    else:
        seen = service_cidrs_seen(facts)
        if seen is None:
            return Item("service-range", "ip pools", title, Status.UNKNOWN,
                        "no --service-cidr given and no kube-apiserver --service-cluster-ip-range found here")
        texts, source = seen
        try:
            services = [overlap.parse_cidr(t, "service-cluster-ip-range") for t in texts]
        except ConfigError as exc:
            return Item("service-range", "ip pools", title, Status.UNKNOWN, f"{source}: {exc}")
    clashes = [f"{svc} overlaps pool {pool}" for svc in services for pool in pools if overlap.overlapping(svc, pool)]
    shown = ",".join(str(s) for s in services)
    if clashes:
        return Item("service-range", "ip pools", title, Status.FAIL, f"{'; '.join(clashes)} ({source})")
    return Item("service-range", "ip pools", title, Status.OK, f"{shown} ({source}) overlaps no pool")
