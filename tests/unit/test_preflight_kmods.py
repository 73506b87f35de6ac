"""Kernel module lookup: each source (loaded, built in, modular, config-only via /proc/config.gz
and /boot/config-RELEASE), absence, and unreadable sources -> unknown, never a guess."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from netprobe.preflight.facts import KernelFacts
from netprobe.preflight.fsroot import Root
from netprobe.preflight.kmods import MODULE_CONFIG, lookup, required_modules
from netprobe.preflight.model import Status
from netprobe.preflight.read_kernel import module_name, parse_config, read_kernel

REL = "5.15.0-91-generic"


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --- pure lookup, table-driven -------------------------------------------------------------

CFG = "/proc/config.gz"


@pytest.mark.parametrize(
    ("facts", "module", "status", "words"),
    [
        (KernelFacts(loaded=frozenset({"ipip"})), "ipip", Status.OK, ["loaded", "/proc/modules"]),
        (KernelFacts(builtin=frozenset({"ipip"}), modules_dir="/lib/modules/X"), "ipip", Status.OK,
         ["built in", "/lib/modules/X/modules.builtin"]),
        (KernelFacts(modular=frozenset({"ipip"}), builtin=frozenset(), modules_dir="/lib/modules/X"), "ipip",
         Status.OK, ["available as a module", "modules.dep"]),
        (KernelFacts(config={"CONFIG_NET_IPIP": "y"}, config_source=CFG), "ipip", Status.OK,
         ["built in", "CONFIG_NET_IPIP=y", CFG]),
        (KernelFacts(config={"CONFIG_NET_IPIP": "m"}, config_source=CFG), "ipip", Status.OK,
         ["CONFIG_NET_IPIP=m", "modules.dep not readable"]),
        # =m in the config but the .ko is not installed: cannot be loaded
        (KernelFacts(config={"CONFIG_NET_IPIP": "m"}, config_source=CFG, modular=frozenset({"xt_set"}),
                     builtin=frozenset()), "ipip", Status.FAIL, ["CONFIG_NET_IPIP=m", "not installed"]),
        (KernelFacts(config={"CONFIG_NET_IPIP": "n"}, config_source=CFG), "ipip", Status.FAIL,
         ["CONFIG_NET_IPIP is not set", CFG]),
        # an option missing from a readable config is absent too
        (KernelFacts(config={"CONFIG_IP_SET": "y"}, config_source=CFG), "ipip", Status.FAIL,
         ["CONFIG_NET_IPIP is absent"]),
        # modules.builtin + modules.dep together know every module of the kernel
        (KernelFacts(builtin=frozenset({"ip_tables"}), modular=frozenset({"xt_set"}), loaded=frozenset()),
         "ipip", Status.FAIL, ["not loaded", "not in modules.builtin", "no kernel config"]),
        # /proc/modules alone proves presence, never absence
        (KernelFacts(loaded=frozenset({"ip_tables"})), "ipip", Status.UNKNOWN, ["not loaded", "CONFIG_NET_IPIP"]),
        (KernelFacts(), "ipip", Status.UNKNOWN, ["cannot tell", "CONFIG_NET_IPIP"]),
        # ipt_set is an alias that xt_set carries
        (KernelFacts(loaded=frozenset({"xt_set"})), "ipt_set", Status.OK, ["loaded"]),
        (KernelFacts(config={"CONFIG_NETFILTER_XT_SET": "y"}, config_source=CFG), "ipt_set", Status.OK,
         ["CONFIG_NETFILTER_XT_SET=y"]),
    ],
)
def test_lookup(facts, module, status, words):
    found = lookup(facts, module)
    assert found.status is status, found.evidence
    for word in words:
        assert word in found.evidence


def test_config_options_named_in_the_issue():
    assert MODULE_CONFIG["ipip"] == "CONFIG_NET_IPIP"
    assert MODULE_CONFIG["xt_set"] == "CONFIG_NETFILTER_XT_SET"
    assert MODULE_CONFIG["ipt_rpfilter"] == "CONFIG_IP_NF_MATCH_RPFILTER"
    assert set(required_modules({"bgp"})) == set(MODULE_CONFIG) - {"ipip", "vxlan", "wireguard"}  # wireguard: when on
    assert "ipip" in required_modules({"ipip", "bgp"}) and "vxlan" not in required_modules({"ipip"})
    assert "vxlan" in required_modules({"vxlan"})


def test_parsers():
    assert parse_config("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=m\nCONFIG_D=\"x\"\n# comment\n") == {
        "CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_C": "m", "CONFIG_D": "x"}
    assert module_name("kernel/net/ipv4/ipip.ko.zst") == "ipip"
    assert module_name("kernel/net/netfilter/nf-conntrack-netlink.ko") == "nf_conntrack_netlink"
    assert module_name("modules.order") is None


# --- the reader on fixture trees: one per source ------------------------------------------

def base_tree(root: Path, release: str = REL) -> None:
    write(root, "proc/sys/kernel/osrelease", release + "\n")
    write(root, "proc/sys/kernel/arch", "x86_64\n")


def test_reader_loaded(tmp_path):
    base_tree(tmp_path)
    write(tmp_path, "proc/modules", "ipip 32768 0 - Live 0x0\nip_tunnel 32768 1 ipip, Live 0x0\n")
    kernel = read_kernel(Root(tmp_path))
    assert kernel.loaded == {"ipip", "ip_tunnel"}
    found = lookup(kernel, "ipip")
    assert found.status is Status.OK and f"{tmp_path}/proc/modules" in found.evidence


def test_reader_builtin_and_modular(tmp_path):
    base_tree(tmp_path)
    write(tmp_path, f"lib/modules/{REL}/modules.builtin", "kernel/net/ipv4/netfilter/ip_tables.ko\n")
    write(tmp_path, f"lib/modules/{REL}/modules.dep",
          "kernel/net/ipv4/ipip.ko.zst: kernel/net/ipv4/ip_tunnel.ko.zst\n")
    kernel = read_kernel(Root(tmp_path))
    assert lookup(kernel, "ip_tables").status is Status.OK
    assert "modules.builtin" in lookup(kernel, "ip_tables").evidence
    assert "available as a module" in lookup(kernel, "ipip").evidence
    # builtin + dep readable and the module in neither: absent, without a config
    missing = lookup(kernel, "ip_set")
    assert missing.status is Status.FAIL and "not in modules.builtin" in missing.evidence


def test_reader_ignores_modules_of_another_release(tmp_path):
    base_tree(tmp_path)
    write(tmp_path, "lib/modules/4.19.0-old/modules.dep", "kernel/net/ipv4/ipip.ko: \n")
    write(tmp_path, "boot/config-4.19.0-old", "CONFIG_NET_IPIP=m\n")
    kernel = read_kernel(Root(tmp_path))
    assert kernel.modular is None and kernel.config is None
    assert lookup(kernel, "ipip").status is Status.UNKNOWN


def test_reader_config_gz(tmp_path):
    base_tree(tmp_path)
    (tmp_path / "proc").mkdir(exist_ok=True)
    with gzip.open(tmp_path / "proc/config.gz", "wt") as fh:
        fh.write("CONFIG_IP_NF_IPTABLES=y\n# CONFIG_NET_IPIP is not set\n")
    # /boot/config-RELEASE exists too: /proc/config.gz describes the running kernel and wins
    write(tmp_path, f"boot/config-{REL}", "CONFIG_NET_IPIP=y\n")
    kernel = read_kernel(Root(tmp_path))
    assert kernel.config_source == f"{tmp_path}/proc/config.gz"
    assert lookup(kernel, "ip_tables").status is Status.OK
    ipip = lookup(kernel, "ipip")
    assert ipip.status is Status.FAIL and "CONFIG_NET_IPIP is not set" in ipip.evidence


def test_reader_boot_config(tmp_path):
    base_tree(tmp_path)
    write(tmp_path, f"boot/config-{REL}", "CONFIG_NET_IPIP=m\nCONFIG_IP_SET=y\n")
    write(tmp_path, "boot/config-4.19.0-old", "CONFIG_NETFILTER_XT_SET=y\n")
    kernel = read_kernel(Root(tmp_path))
    assert kernel.config_source == f"{tmp_path}/boot/config-{REL}"
    assert lookup(kernel, "ipip").status is Status.OK
    assert "CONFIG_NET_IPIP=m" in lookup(kernel, "ipip").evidence
    # the other kernel's config is not read
    assert lookup(kernel, "xt_set").status is Status.FAIL


def test_reader_image_without_proc_uses_its_only_config(tmp_path):
    write(tmp_path, "boot/config-6.1.0-9-amd64", "CONFIG_NET_IPIP=m\n")
    kernel = read_kernel(Root(tmp_path))
    assert kernel.release == "6.1.0-9-amd64" and "only kernel config" in kernel.release_source
    assert kernel.arch is None  # never the live host's uname under --root
    assert lookup(kernel, "ipip").status is Status.OK


def test_reader_two_configs_and_no_proc_is_unknown(tmp_path):
    write(tmp_path, "boot/config-6.1.0-9-amd64", "CONFIG_NET_IPIP=m\n")
    write(tmp_path, "boot/config-6.1.0-10-amd64", "CONFIG_NET_IPIP=m\n")
    kernel = read_kernel(Root(tmp_path))
    assert kernel.release is None
    assert lookup(kernel, "ipip").status is Status.UNKNOWN


def test_reader_unreadable_sources(tmp_path):
    base_tree(tmp_path)
    # directories where files should be: reading them fails like an unreadable file does
    (tmp_path / "proc/modules").mkdir(parents=True)
    (tmp_path / f"boot/config-{REL}").mkdir(parents=True)
    (tmp_path / "proc/config.gz").mkdir(parents=True)
    (tmp_path / f"lib/modules/{REL}/modules.dep").mkdir(parents=True)
    kernel = read_kernel(Root(tmp_path))
    assert kernel.loaded is None and kernel.config is None and kernel.modular is None
    for module in ("ipip", "ip_tables"):
        assert lookup(kernel, module).status is Status.UNKNOWN


def test_reader_corrupt_config_gz_falls_back_to_boot(tmp_path):
    base_tree(tmp_path)
    write(tmp_path, "proc/config.gz", "not gzip")
    write(tmp_path, f"boot/config-{REL}", "CONFIG_NET_IPIP=y\n")
    kernel = read_kernel(Root(tmp_path))
    assert kernel.config_source.endswith(f"boot/config-{REL}")
    assert lookup(kernel, "ipip").status is Status.OK
