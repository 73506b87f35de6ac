"""Judge the facts read from a host against Calico's node and kernel requirements.

Pure: ``evaluate(facts, ...)`` reads no file and no netlink, so every rule is table-tested with
hand-built ``Facts``. Each rule returns one ``Item`` (or a few) with its status and the evidence
it used; a fact that could not be read makes its item ``unknown``, never a guess.
"""

from __future__ import annotations

from collections.abc import Sequence

from netprobe.core.checks import PROFILES
from netprobe.errors import ConfigError
from netprobe.preflight import kmods, overlap
from netprobe.preflight.facts import Facts, KernelFacts, OsFacts
from netprobe.preflight.kube import parse_version
from netprobe.preflight.model import Item, Report, Status
from netprobe.preflight.rules_cluster import cni_item, kube_proxy_item, port_items, service_cidrs_seen

MIN_KERNEL = (3, 10)
AMD64 = {"x86_64", "amd64"}
# Not on the requirements page's list, but Calico publishes images for them.
OTHER_CALICO_ARCHES = {"aarch64", "arm64", "ppc64le", "s390x"}
# ID -> (shown name, minimum VERSION_ID as written) known to work: Calico's list, or newer releases.
KNOWN_GOOD = {
    "rhel": ("RHEL", "7"),
    "centos": ("CentOS", "7"),
    "ubuntu": ("Ubuntu", "16.04"),
    "debian": ("Debian", "8"),
    "coreos": ("CoreOS", ""),
    "flatcar": ("Flatcar (CoreOS Container Linux)", ""),
}


def evaluate(
    facts: Facts,
    *,
    pool_cidrs: Sequence[str] | None = None,
    service_cidr: str | None = None,
    profile: str = "calico",
) -> Report:
    """Every requirement's status for one host. Raises ConfigError on bad CIDRs or profile."""
    pools, services = check_options(pool_cidrs=pool_cidrs, service_cidr=service_cidr, profile=profile)
    checks = set(PROFILES[profile])

    items = [arch_item(facts.kernel), kernel_item(facts.kernel), distro_item(facts.os)]
    for module in kmods.required_modules(checks):
        found = kmods.lookup(facts.kernel, module)
        items.append(Item(f"module:{module}", "kernel modules", f"module {module}",
                          found.status, found.evidence))
    items.extend(pool_items(facts, pools))
    items.append(service_item(facts, pools, services))
    items.append(cni_item(facts.cni))
    items.append(kube_proxy_item(facts))
    items.extend(port_items(facts, checks))
    return Report(items=tuple(items), host=facts.hostname, profile=profile,
                  pool_cidrs=tuple(str(p) for p in pools),
                  service_cidr=",".join(str(s) for s in services) if services else None, root=facts.root)


def check_options(
    *, pool_cidrs: Sequence[str] | None = None, service_cidr: str | None = None, profile: str = "calico",
) -> tuple[list[overlap.Network], list[overlap.Network] | None]:
    """Validate the user's options (ConfigError -> exit 2, one line): the pools (the profile's
    default when none is given) and the service range(s), parsed."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})", field="--profile")
    pools_text = list(pool_cidrs) if pool_cidrs else overlap.default_pools(profile)
    pools = [overlap.parse_cidr(p, "--pool-cidr") for p in pools_text]
    services = [overlap.parse_cidr(s, "--service-cidr") for s in _split(service_cidr)] if service_cidr else None
    return pools, services


def _split(text: str) -> list[str]:
    """A dual-stack service range is written "10.96.0.0/12,fd00::/108"."""
    return [part for part in (p.strip() for p in text.split(",")) if part] or [text]


def arch_item(kernel: KernelFacts) -> Item:
    arch = kernel.arch
    src = f" ({kernel.arch_source})" if kernel.arch_source else ""
    if not arch:
        return Item("arch", "system", "architecture amd64", Status.UNKNOWN,
                    "not readable (/proc/sys/kernel/arch)")
    if arch in AMD64:
        return Item("arch", "system", "architecture amd64", Status.OK, f"{arch}{src}")
    if arch in OTHER_CALICO_ARCHES:
        return Item("arch", "system", "architecture amd64", Status.WARN,
                    f"{arch}{src}: the requirements name amd64; check that your Calico release ships {arch} images")
    return Item("arch", "system", "architecture amd64", Status.FAIL, f"{arch}{src}: Calico needs amd64 (x86_64)")


def kernel_item(kernel: KernelFacts) -> Item:
    title = f"kernel >= {MIN_KERNEL[0]}.{MIN_KERNEL[1]}"
    if not kernel.release:
        return Item("kernel", "system", title, Status.UNKNOWN,
                    "kernel release not readable (/proc/sys/kernel/osrelease)")
    src = f" ({kernel.release_source})" if kernel.release_source else ""
    version = parse_version(kernel.release)
    if version is None:
        return Item("kernel", "system", title, Status.UNKNOWN, f"cannot parse release {kernel.release!r}{src}")
    status = Status.OK if version[:2] >= MIN_KERNEL else Status.FAIL
    return Item("kernel", "system", title, status, f"{kernel.release}{src}")


def _version_tuple(text: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return None


def distro_item(os_facts: OsFacts) -> Item:
    """Known-good distributions are information, never a failure: others get a warning."""
    title = "distribution"
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

    if ident == "fedora" and rel.get("VARIANT_ID", "").lower() == "coreos":
        return good("Fedora CoreOS")
    if ident in KNOWN_GOOD:
        name, minimum = KNOWN_GOOD[ident]
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
        if family in like and version is not None and version >= (7,):
            return good("RHEL", "-like, 7 or newer")
    return Item("distro", "system", title, Status.WARN,
                f"{pretty}{src}: not on Calico's known-good list (RHEL/CentOS 7, CoreOS, Ubuntu 16.04, "
                f"Debian 8 and newer); information only")


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
