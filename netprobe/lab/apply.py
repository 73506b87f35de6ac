"""Carry out plan actions on the kernel: pyroute2 for namespaces, links, addresses and routes,
``nft``/``iptables-restore``/``ipset`` for firewalls, a ``Supervisor`` for processes.

No forks: pyroute2's own netns helpers fork children that inherit our signal handlers (a
SIGTERM or Ctrl-C landing in such a child makes it run *our* code from the fork point on).
Instead this thread steps into a namespace (setns), creates what it needs there (the
namespace itself via unshare, or a netlink socket, which stays bound to it), and steps back.

``apply_firewall`` is also what ``netprobe lab firewall`` runs on a real VM, so a scenario's
rules load the same way in a namespace and on a machine.

Imports point one way: the runtime drives this module, never the reverse. Process actions go to
the lab's ``processes.Supervisor``, which the Applier is handed, not to the lab handle.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

from netprobe.errors import ConfigError, LabError
from netprobe.lab import firewall as fw
from netprobe.lab import plan as p
from netprobe.lab.names import NETNS_DIR
from netprobe.lab.processes import Supervisor, stop_namespace
TOOL_TIMEOUT = 30.0
CLONE_NEWNET = 0x40000000
IFA_F_NODAD = 0x02  # linux/if_addr.h


def netns_exists(ns: str) -> bool:
    return (NETNS_DIR / ns).exists()


def in_netns_argv(ns: str | None, argv: tuple[str, ...] | list[str]) -> list[str]:
    return list(argv) if ns is None else ["ip", "netns", "exec", ns, *argv]


@contextlib.contextmanager
def in_netns(ns: str) -> Iterator[None]:
    """Run the body with this thread in namespace ``ns`` (for /proc/sys/net writes)."""
    from pyroute2 import netns as pnetns

    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(NETNS_DIR / ns, os.O_RDONLY)
    try:
        pnetns.setns(target)  # an fd, never a name: a name would create a missing namespace
        try:
            yield
        finally:
            pnetns.setns(home)
    finally:
        os.close(target)
        os.close(home)


def create_netns(ns: str) -> None:
    """Create and name a namespace (like `ip netns add`) from this thread, without forking."""
    from pyroute2 import netns as pnetns

    if netns_exists(ns):
        raise LabError(f"namespace {ns} already exists (another lab of that name? `netprobe lab down`)")
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
        try:
            pnetns.attach(ns, "thread-self")  # bind-mounts /proc/thread-self/ns/net at /run/netns/NS
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(NETNS_DIR / ns)  # the name file, if the bind mount never happened
            raise
        finally:
            pnetns.setns(home)
    finally:
        os.close(home)


def netlink_in(ns: str):
    """An IPRoute whose socket lives in ``ns`` (created while this thread is inside it)."""
    from pyroute2 import IPRoute

    with in_netns(ns):
        return IPRoute()


def apply_firewall(
    firewall: fw.Firewall, *, source: str, field: str, netns: str | None = None
) -> list[fw.FirewallCommand]:
    """Load ``firewall`` into ``netns`` (None: the current namespace). A tool that rejects its
    text is a bad scenario (ConfigError naming file and field); a missing tool is a LabError."""
    cmds = fw.commands(firewall)
    run_firewall_commands(cmds, source=source, field=field, netns=netns)
    return cmds


def run_firewall_commands(
    cmds: list[fw.FirewallCommand] | tuple[fw.FirewallCommand, ...], *, source: str, field: str,
    netns: str | None = None,
) -> None:
    for cmd in cmds:
        argv = in_netns_argv(netns, cmd.argv)
        try:
            proc = subprocess.run(argv, input=cmd.text, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
        except FileNotFoundError:
            raise LabError(f"{cmd.argv[0]} is not installed (needed for {source}: {field}.{cmd.kind})") from None
        except subprocess.TimeoutExpired:
            raise LabError(f"{cmd.argv[0]} took more than {TOOL_TIMEOUT:.0f}s") from None
        if proc.returncode != 0:
            msg = " | ".join(line.strip() for line in (proc.stderr or proc.stdout).strip().splitlines()[:6])
            raise ConfigError(f"{cmd.argv[0]} rejected it: {msg}", file=source, field=f"{field}.{cmd.kind}")


def flush_firewall(netns: str | None) -> None:
    for argv in (("nft", "flush", "ruleset"), ("ipset", "destroy")):
        with contextlib.suppress(FileNotFoundError, subprocess.TimeoutExpired):
            subprocess.run(in_netns_argv(netns, argv), capture_output=True, timeout=TOOL_TIMEOUT)


class Applier:
    """Runs plan actions; keeps one netlink socket per namespace while it works. ``source`` (the
    scenario file) names where a rejected firewall came from; ``processes`` starts and stops the
    plan's processes."""

    def __init__(self, source: str, processes: Supervisor):
        self.source = source
        self.processes = processes
        self._ipr: dict[str, object] = {}

    def close(self) -> None:
        for ipr in self._ipr.values():
            with contextlib.suppress(Exception):
                ipr.close()
        self._ipr.clear()

    def _rt(self, ns: str):
        if ns not in self._ipr:
            if not netns_exists(ns):
                raise LabError(f"namespace {ns} is gone")
            self._ipr[ns] = netlink_in(ns)
        return self._ipr[ns]

    def _index(self, ns: str, ifname: str) -> int | None:
        found = self._rt(ns).link_lookup(ifname=ifname)
        return found[0] if found else None

    def _need_index(self, ns: str, ifname: str) -> int:
        idx = self._index(ns, ifname)
        if idx is None:
            raise LabError(f"no interface {ifname} in {ns}")
        return idx

    def run(self, action: p.Action) -> None:
        try:
            self._run(action)
        except (ConfigError, LabError):
            raise
        except Exception as exc:  # pyroute2's NetlinkError, OSError: one clear line
            raise LabError(f"{action.describe()}: {exc}") from exc

    def undo(self, action: p.Action) -> None:
        """Like ``run``, for teardown: something already gone is fine, nothing else stops it."""
        with contextlib.suppress(Exception):  # teardown goes on; the sweep after it catches the rest
            self._run(action)

    def _run(self, a: p.Action) -> None:  # noqa: C901 -- one flat dispatch is the clearest form
        from pyroute2 import netns as pnetns

        match a:
            case p.CreateNetns(ns=ns):
                create_netns(ns)
            case p.DeleteNetns(ns=ns):
                ipr = self._ipr.pop(ns, None)
                if ipr is not None:
                    ipr.close()
                stop_namespace(ns)
                if netns_exists(ns):
                    pnetns.remove(ns)
            case p.AddBridge(ns=ns, ifname=ifname):
                self._rt(ns).link("add", ifname=ifname, kind="bridge")
            case p.AddVeth(ns=ns, ifname=ifname, peer_ns=peer_ns, peer_ifname=peer_ifname):
                try:
                    peer_fd = os.open(NETNS_DIR / peer_ns, os.O_RDONLY)
                except FileNotFoundError:
                    raise LabError(f"namespace {peer_ns} is gone") from None
                try:
                    self._rt(ns).link("add", ifname=ifname, kind="veth",
                                      peer={"ifname": peer_ifname, "net_ns_fd": peer_fd})
                finally:
                    os.close(peer_fd)
            case p.DeleteLink(ns=ns, ifname=ifname):
                idx = self._index(ns, ifname)
                if idx is not None:
                    self._rt(ns).link("del", index=idx)
            case p.SetMaster(ns=ns, ifname=ifname, master=master):
                self._rt(ns).link("set", index=self._need_index(ns, ifname), master=self._need_index(ns, master))
            case p.LinkUp(ns=ns, ifname=ifname):
                self._rt(ns).link("set", index=self._need_index(ns, ifname), state="up")
            case p.AddAddress(ns=ns, ifname=ifname, address=addr, prefixlen=plen):
                nodad = {"flags": IFA_F_NODAD} if ":" in addr else {}  # no DAD: usable at once
                self._rt(ns).addr("add", index=self._need_index(ns, ifname), address=addr, prefixlen=plen, **nodad)
            case p.DeleteAddress(ns=ns, ifname=ifname, address=addr, prefixlen=plen):
                self._rt(ns).addr("del", index=self._need_index(ns, ifname), address=addr, prefixlen=plen)
            case p.AddRoute(ns=ns, dst=dst, gateway=gw):
                self._rt(ns).route("add", dst=dst, gateway=gw)
            case p.DeleteRoute(ns=ns, dst=dst, gateway=gw):
                self._rt(ns).route("del", dst=dst, gateway=gw)
            case p.SetSysctl(ns=ns, key=key, value=value):
                path = Path("/proc/sys") / key.replace(".", "/")
                with in_netns(ns):
                    path.write_text(value)
            case p.AddVxlan(ns=ns, ifname=ifname, vni=vni, port=port, dev=dev, local=local):
                self._rt(ns).link("add", ifname=ifname, kind="vxlan", vxlan_id=vni, vxlan_port=port,
                                  vxlan_link=self._need_index(ns, dev), vxlan_local=local)
            case p.AddFdb(ns=ns, ifname=ifname, dst=dst):
                from pyroute2.netlink.rtnl import ndmsg

                self._rt(ns).neigh("append", ifindex=self._need_index(ns, ifname), family=socket.AF_BRIDGE,
                                   lladdr=p.ZERO_MAC, dst=dst, state=ndmsg.states["permanent"],
                                   flags=ndmsg.flags["self"])
            case p.LoadFirewall(ns=ns, field=field, commands=cmds):
                run_firewall_commands(cmds, source=self.source, field=field, netns=ns)
            case p.FlushFirewall(ns=ns):
                flush_firewall(ns)
            case p.StartListener() | p.StartDaemon():
                self.processes.start_service(a)
            case p.StopProcess(log_name=log_name):
                self.processes.stop(log_name)
            case _:
                raise LabError(f"no way to apply {a!r}")
