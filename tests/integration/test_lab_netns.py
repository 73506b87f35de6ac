"""The lab on real kernels: every scenario up and down without a trace, firewalls exactly as
written, real connects through them, Ctrl-C and SIGTERM, two labs at once, `lab down --all`.

Every lab here is named ``<short>-<tag>`` so nothing collides with a lab someone else has up;
reference namespaces are ``npref-<tag>``; decoys are named so that no lab sweep may match them.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from netprobe.core.inventory import parse_inventory
from netprobe.errors import ConfigError
from netprobe.lab.names import state_dir
from netprobe.lab.runtime import running_lab
from netprobe.lab.spec import load_scenario, parse_scenario

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((REPO / "scenarios").glob("*.yaml"))
NETPROBE = [sys.executable, "-m", "netprobe"]
TAG = uuid.uuid4().hex[:4]

CONNECT = """
import errno, socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("open")
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e)))
"""

# (source host, destination host, TCP port, what a kernel connect() sees[, 6: to its IPv6 address]) per scenario
FLOWS = {
    "dual-stack-bgp6-blocked": [("cp1", "node1", 179, "open"), ("cp1", "node1", 179, "timeout", 6),
                                ("node1", "cp1", 179, "open", 6), ("node2", "cp1", 2379, "open", 6)],
    "calico-wireguard": [("node1", "node2", 179, "open"), ("node2", "cp1", 6443, "open"), ("node1", "node2", 179, "open", 6),
                         ("node2", "node1", 5473, "open")],
    "demo": [("node1", "node2", 179, "timeout"), ("node2", "node1", 179, "open"), ("cp1", "node2", 179, "open"),
             ("node2", "cp1", 2379, "open")],
    "calico-default": [("node3", "cp1", 6443, "open"), ("node2", "node1", 5473, "open"),
                       ("cp1", "node3", 179, "open")],
    "bgp-blocked-inbound": [("cp1", "node3", 179, "timeout"), ("node3", "cp1", 179, "open")],
    "etcd-control-plane-only": [("node1", "cp1", 2379, "refused"), ("cp2", "cp1", 2379, "open"),
                                ("node2", "cp2", 2379, "refused"), ("node2", "cp1", 6443, "open")],
    "typha-icmp-reject": [("node2", "node1", 5473, "EHOSTUNREACH"), ("cp1", "node1", 5473, "open"),
                          ("node2", "node1", 179, "open")],
    "canal-vxlan-one-way": [("node3", "node1", 5473, "open")],
    "egress-drop": [("node2", "cp1", 179, "timeout"), ("node2", "cp1", 6443, "open"), ("cp1", "node2", 179, "open")],
    "stateful-no-established": [("node2", "cp1", 179, "timeout"), ("cp1", "node2", 179, "open")],
    "two-racks-router": [("cp1", "node2", 179, "timeout"), ("node3", "node1", 179, "timeout"),
                         ("cp1", "node1", 179, "open"), ("node2", "node3", 179, "open"),
                         ("node3", "cp1", 6443, "open"), ("node2", "node1", 5473, "open")],
    "ipip-ipset": [("node3", "cp1", 179, "open")],
    "mtu-black-hole": [("cp1", "node3", 179, "open"), ("node4", "node1", 5473, "open"), ("node3", "cp1", 6443, "open"),
                       ("node3", "node2", 22, "timeout")],
    "routed-stateful": [("cp1", "node1", 179, "timeout"), ("node1", "cp1", 179, "timeout"),
                        ("cp1", "node1", 5473, "open"), ("node1", "cp1", 6443, "timeout")],
    "netdev-ingress-drop": [("node1", "node2", 179, "timeout"), ("cp1", "node2", 179, "open"),
                            ("node2", "node1", 179, "open")],
    "netdev-egress-drop": [("node2", "cp1", 179, "timeout"), ("node2", "node1", 5473, "timeout"),
                           ("node2", "cp1", 6443, "open"), ("cp1", "node2", 179, "open"), ("node1", "node2", 5473, "open")],
    "legacy-iptables-drop": [("node1", "node2", 179, "timeout"), ("cp1", "node2", 179, "open"),
                             ("node2", "node1", 179, "open")],
    "chain-policy-drop": [("node1", "cp1", 2379, "timeout"), ("node1", "cp1", 6443, "open"),
                          ("cp1", "node1", 179, "open")],
    "commented-nft-rule": [("node3", "node2", 179, "timeout"), ("node1", "node2", 179, "open"),
                           ("node2", "node3", 179, "open")],
}


# -- helpers ----------------------------------------------------------------------------------

def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("timeout", 60)
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def root_links() -> list[str]:
    """The root namespace's links, addresses and routes: the lab must never change any of them."""
    links = sorted(line.split(":")[1].strip().split("@")[0] for line in sh(["ip", "-o", "link"]).stdout.splitlines())
    addrs = sorted(" ".join(line.split()[1:4]) for line in sh(["ip", "-o", "addr"]).stdout.splitlines())
    routes = sorted(sh(["ip", "route", "show", "table", "all"]).stdout.splitlines())
    return links + addrs + routes


def namespaces(prefix: str) -> list[str]:
    return sorted(ns for ns in (os.listdir("/run/netns") if os.path.isdir("/run/netns") else [])
                  if ns.startswith(prefix))


def lab_namespaces(name: str) -> list[str]:
    return namespaces(f"nplab-{name}.")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            with contextlib.suppress(OSError):
                if text.encode() in Path(f"/proc/{entry}/cmdline").read_bytes() and alive(int(entry)):
                    found.append(int(entry))
    return found


def connect(lab, src: str, dst: str, port: int, timeout: float = 0.5, family: int = 4) -> str:
    proc = lab.exec(src, [sys.executable, "-c", CONNECT, lab.address(dst, family), str(port), str(timeout)],
                    capture_output=True, text=True, timeout=30)
    return proc.stdout.strip() or proc.stderr.strip()


def firewall_listing(ns: str) -> tuple[str, str, str]:
    """What the kernel holds: the whole nftables ruleset (iptables-nft rules included), stateless,
    every ipset, and the legacy x_tables rules nft cannot see (empty until something loads one)."""
    nft = sh(["ip", "netns", "exec", ns, "nft", "-s", "list", "ruleset"])
    assert nft.returncode == 0, nft.stderr
    ipset = sh(["ip", "netns", "exec", ns, "ipset", "save"])
    # sets list members in hash order and carry a random hash seed: compare them as sorted lines
    members = sorted(re.sub(r" initval 0x[0-9a-f]+", "", line) for line in ipset.stdout.splitlines())
    legacy = sh(["ip", "netns", "exec", ns, "iptables-legacy-save"])
    assert legacy.returncode == 0, legacy.stderr
    rules = [re.sub(r" \[\d+:\d+\]$", "", line) for line in legacy.stdout.splitlines() if not line.startswith("#")]
    return nft.stdout, "\n".join(members), "\n".join(rules)


@contextlib.contextmanager
def scratch_netns():
    name = f"npref-{TAG}-{uuid.uuid4().hex[:4]}"
    sh(["ip", "netns", "add", name]).check_returncode()
    try:
        yield name
    finally:
        sh(["ip", "netns", "del", name])


def reference_listing(firewall) -> tuple[str, str, str]:
    """The scenario's text loaded by hand with the operator's own tools into a fresh namespace."""
    with scratch_netns() as ns:
        for kind, argv in (("ipset", ["ipset", "restore"]), ("nft", ["nft", "-f", "-"]),
                           ("iptables", ["iptables-restore"]), ("iptables-legacy", ["iptables-legacy-restore"]),
                           ("ip6tables", ["ip6tables-restore"])):
            text = firewall.text(kind)
            if text:
                proc = sh(["ip", "netns", "exec", ns, *argv], input=text)
                assert proc.returncode == 0, proc.stderr
        return firewall_listing(ns)


def assert_gone(name: str, pids: list[int], links_before: list[str]) -> None:
    assert lab_namespaces(name) == []
    assert not state_dir(name).exists()
    assert [pid for pid in pids if alive(pid)] == []
    assert processes_mentioning(f"/run/netprobe/lab/{name}/") == []
    assert root_links() == links_before


# -- every scenario ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_up_firewalls_flows_and_down(path):
    scenario = load_scenario(path)
    name = f"s{SCENARIOS.index(path)}-{TAG}"
    links_before = root_links()
    with running_lab(scenario, name) as lab:
        # the layout: our namespaces only, nothing in the root namespace
        assert lab_namespaces(name) == sorted(lab.namespaces.values())
        assert root_links() == links_before
        # each host's and router's firewall is exactly the scenario's text, nothing more
        for node in (*scenario.hosts, *scenario.routers):
            got = firewall_listing(lab.netns(node.name))
            if node.firewall.empty:
                assert got == ("", "", ""), node.name
            else:
                assert got == reference_listing(node.firewall), node.name
        # fabric namespaces carry no rules either
        for seg in scenario.segments:
            assert firewall_listing(lab.netns(seg.name)) == ("", "", "")
        # services are running; state, token and inventory are in place
        procs = lab.processes()
        assert procs and all(ok for _, ok in procs.values())
        pids = [pid for pid, _ in procs.values()]
        assert lab.token_path.stat().st_mode & 0o777 == 0o600 and len(lab.token_path.read_text()) == 64
        inv = parse_inventory(lab.inventory_path.read_text(), source=str(lab.inventory_path),
                              base_dir=str(lab.state_dir))
        assert [h.name for h in inv.hosts] == [h.name for h in scenario.hosts]
        assert inv.token_file == str(lab.token_path)
        assert all(h.agent == f"unix:{lab.agent_socket(h.name)}" for h in inv.hosts)
        # real connects through the real rules
        for src, dst, port, want, *family in FLOWS[scenario.name]:
            assert connect(lab, src, dst, port, family=family[0] if family else 4) == want, f"{src} -> {dst}:{port}"
    assert_gone(name, pids, links_before)


def test_every_scenario_has_flows_checked():
    assert {p.stem for p in SCENARIOS} == set(FLOWS)


# -- IP-in-IP and VXLAN through the kernel ----------------------------------------------------

SEND_IPIP = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
inner = bytes.fromhex("45000014000000004011" + "0000" + "c6120001c6120002")  # any inner IPv4 header
s.sendto(inner, (sys.argv[1], 0))
"""


def ipip_counters(lab, host: str) -> tuple[int, int]:
    """Packets counted by Calico's two cali-INPUT rules on ``host``: (accepted, dropped)."""
    out = lab.exec(host, ["iptables", "-t", "filter", "-L", "cali-INPUT", "-v", "-x", "-n"],
                   capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in out.splitlines()[2:] if line.strip()]
    return int(rows[0][0]), int(rows[1][0])


def test_ipip_passes_the_ipset_or_dies():
    with running_lab(load_scenario("ipip-ipset"), f"ipip-{TAG}") as lab:
        assert ipip_counters(lab, "node1") == (0, 0)
        lab.exec("node2", [sys.executable, "-c", SEND_IPIP, lab.address("node1")], check=True)
        assert ipip_counters(lab, "node1") == (1, 0)   # node2 is in cali40all-hosts-net
        lab.exec("node3", [sys.executable, "-c", SEND_IPIP, lab.address("node1")], check=True)
        assert ipip_counters(lab, "node1") == (1, 1)   # node3 is not: "Drop IPIP from non-Calico hosts"


RECV_UDP = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)  # sees what INPUT accepted
s.settimeout(0.1)
print("ready", flush=True)
seen, end = set(), time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    try:
        pkt, (src, _) = s.recvfrom(2048)
    except socket.timeout:
        continue
    ihl = (pkt[0] & 15) * 4
    if int.from_bytes(pkt[ihl + 2:ihl + 4], "big") == 8472:
        seen.add(src)
print(" ".join(sorted(seen)))
"""

SEND_UDP = """
import socket, sys
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"\\x08" + bytes(15), (sys.argv[1], 8472))
"""


def test_vxlan_reaches_the_kernel_device_one_way():
    with running_lab(load_scenario("canal-vxlan-one-way"), f"vx-{TAG}") as lab:
        links = lab.exec("node1", ["ip", "-d", "link", "show", "flannel.1"], capture_output=True, text=True).stdout
        assert "vxlan id 1" in links and "dstport 8472" in links  # flannel's port on Linux
        recv = subprocess.Popen(["ip", "netns", "exec", lab.netns("node1"), sys.executable, "-c", RECV_UDP, "1.5"],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert recv.stdout.readline().strip() == "ready"
            for src in ("node2", "node3"):
                lab.exec(src, [sys.executable, "-c", SEND_UDP, lab.address("node1")], check=True)
            seen = recv.communicate(timeout=10)[0].split()
        finally:
            recv.kill()
            recv.wait()
        # the overlay's own traffic (cp1's flannel.1 floods its neighbour discovery) may show up too:
        # only the two senders matter here
        senders = {lab.address("node2"), lab.address("node3")}
        assert [a for a in seen if a in senders] == [lab.address("node2")]  # node3's died in node1's INPUT


# -- interruptions and errors -------------------------------------------------------------------

def test_sigint_during_lab_up_leaves_nothing():
    links_before = root_links()
    for attempt in range(6):
        name = f"int{attempt}-{TAG}"
        proc = subprocess.Popen([*NETPROBE, "lab", "up", "two-racks-router", "--name", name],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        # interrupt once a few namespaces exist: halfway through building
        while len(lab_namespaces(name)) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.0005)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        if proc.returncode == 0:  # it finished first; take it down and try to be quicker
            sh([*NETPROBE, "lab", "down", name]).check_returncode()
            continue
        assert proc.returncode == 130, out + err
        assert err.strip().splitlines()[-1] in ("interrupted", "aborted")
        assert_gone(name, [], links_before)
        return
    pytest.fail("lab up always finished before the SIGINT landed")


def test_sigterm_while_a_lab_runs_tears_it_down():
    name = f"term-{TAG}"
    code = (
        "import sys, time\n"
        "from netprobe.lab.runtime import running_lab\n"
        "from netprobe.lab.spec import load_scenario\n"
        f"with running_lab(load_scenario('demo'), {name!r}) as lab:\n"
        "    lab.spawn('node1', ['sleep', '300'], 'sleeper')\n"
        "    print(' '.join(str(pid) for pid, _ in lab.processes().values()), flush=True)\n"
        "    time.sleep(300)\n"
    )
    links_before = root_links()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 4 and all(alive(p) for p in pids)
        assert lab_namespaces(name)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            sh([*NETPROBE, "lab", "down", name])
    assert proc.returncode != 0
    assert_gone(name, pids, links_before)


def test_an_error_inside_the_lab_still_tears_it_down():
    name = f"err-{TAG}"
    links_before = root_links()
    with pytest.raises(RuntimeError, match="boom"), running_lab(load_scenario("demo"), name) as lab:
        pid = lab.spawn("cp1", ["sleep", "300"], "sleeper")
        raise RuntimeError("boom")
    assert_gone(name, [pid], links_before)


def test_a_rule_nft_rejects_fails_the_up_cleanly(tmp_path):
    text = (REPO / "scenarios" / "demo.yaml").read_text().replace(
        'tcp dport 22 accept comment "ssh"\n                tcp dport 179 ip saddr @bgp_peers',
        'tcp dport 22 acept comment "ssh"\n                tcp dport 179 ip saddr @bgp_peers')
    bad = tmp_path / "typo.yaml"
    bad.write_text(text)
    scenario = parse_scenario(text, source=str(bad), default_name="typo")
    name = f"typo-{TAG}"
    links_before = root_links()
    with pytest.raises(ConfigError) as info, running_lab(scenario, name):
        pass
    assert info.value.file == str(bad) and info.value.field == "hosts[2].firewall.nft"
    assert "nft rejected it" in str(info.value)
    assert_gone(name, [], links_before)
    # and from the CLI: exit 2, one line naming file and field
    proc = sh([*NETPROBE, "lab", "up", str(bad), "--name", name])
    assert proc.returncode == 2 and f"{bad}: hosts[2].firewall.nft: nft rejected it" in proc.stderr
    assert_gone(name, [], links_before)


def test_daemons_run_when_installed_and_a_listener_stands_in_otherwise():
    import shutil

    text = """
name: daemons
hosts:
  - {name: cp1, roles: [node, etcd], services: {daemons: [etcd, bird]}}
  - {name: node1}
"""
    scenario = parse_scenario(text, source="daemons.yaml")
    with running_lab(scenario, f"dmn-{TAG}") as lab:
        for daemon, port in (("etcd", 2379), ("bird", 179)):
            log = (lab.log_dir / f"cp1-{daemon}.log").read_text()
            if shutil.which(daemon) is None:
                assert f"{daemon} is not installed; a listener" in log
                assert connect(lab, "node1", "cp1", port) == "open"
            assert lab.processes()[f"cp1-{daemon}"][1]


# -- side by side ---------------------------------------------------------------------------------

def test_two_labs_of_one_scenario_at_once():
    demo = load_scenario("demo")
    with running_lab(demo, f"a-{TAG}") as a, running_lab(demo, f"b-{TAG}") as b:
        assert set(a.namespaces.values()).isdisjoint(b.namespaces.values())
        assert a.address("node1") == b.address("node1")  # same addresses, separate worlds
        assert connect(a, "node2", "node1", 179) == connect(b, "node2", "node1", 179) == "open"
        a.stop_process("node1-listener")
        assert connect(a, "node2", "node1", 179) == "refused"
        assert connect(b, "node2", "node1", 179) == "open"
    assert lab_namespaces(f"a-{TAG}") == lab_namespaces(f"b-{TAG}") == []


# -- the CLI ---------------------------------------------------------------------------------------

def test_cli_up_status_exec_down():
    name = f"cli-{TAG}"
    links_before = root_links()
    try:
        up = sh([*NETPROBE, "lab", "up", "demo", "--name", name])
        assert up.returncode == 0, up.stderr
        assert f"lab {name} is up" in up.stdout and f"/run/netprobe/lab/{name}/inventory.yaml" in up.stdout
        again = sh([*NETPROBE, "lab", "up", "demo", "--name", name])
        assert again.returncode == 2 and "already up" in again.stderr

        status = sh([*NETPROBE, "lab", "status", name])
        assert status.returncode == 0, status.stdout + status.stderr
        assert "namespaces: 4/4 present" in status.stdout and "node2-listener" in status.stdout

        ran = sh([*NETPROBE, "lab", "exec", name, "node2", "--", sys.executable, "-c", CONNECT,
                  "198.18.0.11", "179", "0.5"])
        assert (ran.returncode, ran.stdout.strip()) == (0, "open")
        blocked = sh([*NETPROBE, "lab", "exec", name, "node1", "--", sys.executable, "-c", CONNECT,
                      "198.18.0.12", "179", "0.5"])
        assert blocked.stdout.strip() == "timeout"
        code = sh([*NETPROBE, "lab", "exec", name, "cp1", "--", "sh", "-c", "exit 7"])
        assert code.returncode == 7
        nohost = sh([*NETPROBE, "lab", "exec", name, "nodeX", "--", "true"])
        assert nohost.returncode == 2 and "no host 'nodeX'" in nohost.stderr

        # a dead service makes the lab unhealthy
        pid = int((state_dir(name) / "pids" / "node1-listener").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        sick = sh([*NETPROBE, "lab", "status", name])
        assert sick.returncode == 1 and "DEAD" in sick.stdout

        down = sh([*NETPROBE, "lab", "down", name])
        assert down.returncode == 0 and "removed 4 namespaces" in down.stdout
    finally:
        sh([*NETPROBE, "lab", "down", name])
    assert_gone(name, [], links_before)
    gone = sh([*NETPROBE, "lab", "status", name])
    assert gone.returncode == 2 and "no lab named" in gone.stderr
    again = sh([*NETPROBE, "lab", "down", name])  # already down: said, and no error
    assert again.returncode == 0 and "already down" in again.stdout


def test_down_all_removes_only_netprobe_labs():
    decoys = [f"npother-{TAG}", f"nplabx-{TAG}"]  # not ours: `down --all` must leave them alone
    stray = f"nplab-stray{TAG}.node1"            # ours, from a `lab up` that lost its state
    sleeper = None
    try:
        for ns in (*decoys, stray):
            sh(["ip", "netns", "add", ns]).check_returncode()
        sleeper = subprocess.Popen(["ip", "netns", "exec", decoys[0], "sleep", "300"])
        up = sh([*NETPROBE, "lab", "up", "demo", "--name", f"all-{TAG}"])
        assert up.returncode == 0, up.stderr
        status = sh([*NETPROBE, "lab", "status"])
        assert status.returncode == 1 and stray in status.stdout  # stray namespaces make it unhealthy

        down = sh([*NETPROBE, "lab", "down", "--all"])
        assert down.returncode == 0, down.stderr
        assert lab_namespaces(f"all-{TAG}") == [] and namespaces(stray) == []
        assert all(namespaces(d) == [d] for d in decoys)
        assert sleeper.poll() is None  # a process in a foreign namespace lives on
    finally:
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait()
        for ns in (*decoys, stray):
            sh(["ip", "netns", "del", ns])
        sh([*NETPROBE, "lab", "down", f"all-{TAG}"])


# -- the VM path is the lab path ----------------------------------------------------------------

def test_lab_firewall_loads_what_the_lab_loads():
    scenario = load_scenario("ipip-ipset")
    with running_lab(scenario, f"fw-{TAG}") as lab, scratch_netns() as vm:
        for _ in range(2):  # provisioning twice gives the same firewall
            proc = sh(["ip", "netns", "exec", vm, *NETPROBE, "lab", "firewall", "ipip-ipset", "--host", "node1",
                       "--replace-firewall"])
            assert proc.returncode == 0, proc.stderr
        assert firewall_listing(vm) == firewall_listing(lab.netns("node1"))


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15])
def test_sigterm_while_responders_start_leaves_nothing(delay):
    """SIGTERM during `lab up --responders`, once the responders are being started (and a little
    after): the lab comes down whole, never half up with `lab status` saying "up"."""
    name = f"rt{int(delay * 100)}-{TAG}"
    links_before = root_links()
    proc = subprocess.Popen([*NETPROBE, "lab", "up", "demo", "--name", name, "--responders"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pids = state_dir(name) / "pids"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if pids.is_dir() and any(p.name.startswith("responder-") for p in pids.iterdir()):
                break
            time.sleep(0.005)
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.returncode == 0:  # up already: that is allowed, the lab must then be whole
        assert "is up" in out
        sh([*NETPROBE, "lab", "down", name]).check_returncode()
        return
    assert proc.returncode != 0, out + err
    assert_gone(name, [], links_before)
