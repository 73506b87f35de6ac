#!/usr/bin/env python3
"""`make vm-test`: a scenario on real VMs, offline, with libvirt in a network namespace of its own.

    python tools/vm/vmlab.py run SCENARIO [-o vm-result.json] [--cache DIR] [--keep]

1. a wheelhouse of this checkout (tools/vm/wheelhouse.sh) and a local Debian 12 box with
   netprobe's dependencies preinstalled (tools/vm/build-box.sh, cached by the hash of that
   script and of the dependency wheels' names) -- the VMs have no network;
2. libvirtd/virtlogd in a fresh netns ``npvm-PID`` (tools/vm/libvirt-ns.sh): its bridges, taps,
   dnsmasq, NAT chains and vagrant's SSH all live there; management network 198.19.254.0/24;
3. ``vagrant up`` of the scenario's hosts and routers from the project's Vagrantfile (TCG,
   512 MB, 1 vCPU; machines that create a segment's network one at a time, the rest two at a
   time), provisioned by deploy/vagrant-provision.sh: wheelhouse install, routes, listeners,
   the responder unit, the host's firewall;
4. ``netprobe mesh`` in the first host VM against the inventory the Vagrantfile wrote, the
   result JSON copied out and verified against the scenario's ``expect:``;
5. ``vagrant destroy -f``, then every domain, network, process and the namespace removed --
   on success, failure, Ctrl-C and SIGTERM (``--keep`` leaves it up for a look, printing how
   to enter and remove it).

Exit codes as ``netprobe lab run``: 0 the expectation holds, 1 a cell differs, 3 an agent or
the VM lab failed, 2 bad usage or a bad scenario.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1].parent
TOOLS = ROOT / "tools" / "vm"
MGMT_NET = "198.19.254.0/24"   # inside the namespace; the scenarios use 198.18.0.0/16
WHEELHOUSE = ".vm/wheelhouse"  # under the checkout: the synced folder carries it into the VMs
MEMORY_MB = 512
PARALLEL = 2                   # VMs booted at once: 2 cores, qemu's TCG is one busy thread per VM
DEFAULT_CACHE = "/var/cache/netprobe-vm"


class VmLabError(Exception):
    pass


def say(msg: str) -> None:
    print(f"vm-test: {msg}", file=sys.stderr, flush=True)


def run(argv, *, env=None, cwd=None, check=True, capture=False, timeout=None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], env=env, cwd=cwd, timeout=timeout, text=True,
                          stdout=subprocess.PIPE if capture else None, stderr=None)
    if check and proc.returncode != 0:
        raise VmLabError(f"{shlex.join(map(str, argv))} exited {proc.returncode}")
    return proc


class Timer:
    def __init__(self):
        self.marks: dict[str, float] = {}

    def time(self, name, fn, *args, **kw):
        t0 = time.monotonic()
        try:
            return fn(*args, **kw)
        finally:
            self.marks[name] = round(time.monotonic() - t0, 1)
            say(f"{name}: {self.marks[name]:.1f} s")


def boot_batches(spec) -> list[list[str]]:
    """Routers first, then hosts; a machine that brings a segment network not made yet boots
    alone (two vagrant-libvirt threads must not both create one network or upload the box),
    the rest PARALLEL at a time."""
    machines = [(r.name, set(r.segments)) for r in spec.routers] + [(h.name, {h.segment}) for h in spec.hosts]
    made: set[str] = set()
    alone, rest = [], []
    for name, segs in machines:
        if not alone or not segs <= made:
            alone.append([name])
            made |= segs
        else:
            rest.append(name)
    return alone + [rest[i:i + PARALLEL] for i in range(0, len(rest), PARALLEL)]


class VmLab:
    def __init__(self, scenario_ref: str, cache: Path, keep: bool):
        from netprobe.lab.spec import load_scenario

        self.spec = load_scenario(scenario_ref)
        self.scenario_ref = scenario_ref
        self.cache = cache
        self.keep = keep
        self.ns = f"npvm-{os.getpid()}"
        self.run_dir = Path(f"/var/tmp/{self.ns}")
        self.started_ns = False
        self.timer = Timer()
        self.t0 = time.monotonic()
        self.mesh_host = os.environ.get("NETPROBE_VM_MESH_FROM") or self.spec.hosts[0].name

    # -- pieces ---------------------------------------------------------------------------
    def in_ns(self, argv, **kw):
        return run([TOOLS / "libvirt-ns.sh", "exec", self.run_dir, *argv], **kw)

    def box(self) -> str:
        path = run([TOOLS / "build-box.sh", self.cache, ROOT / WHEELHOUSE], capture=True).stdout.strip()
        name = "netprobe/" + Path(path).stem  # netprobe/netprobe-bookworm-KEY
        env = self.vagrant_env(box=name)
        listed = [line.split()[0] for line in run(["vagrant", "box", "list"], env=env, capture=True).stdout.splitlines()
                  if line.startswith("netprobe/")]
        for old in listed:
            if old != name:  # an older build of ours: about 1 GB each
                run(["vagrant", "box", "remove", "--force", "--all", old], env=env, check=False)
        if name not in listed:
            run(["vagrant", "box", "add", "--name", name, path], env=env)
        return name

    def vagrant_env(self, box: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAGRANT_", "NETPROBE_"))}
        env.update({
            "VAGRANT_HOME": str(self.cache / "vagrant.d"),
            "VAGRANT_DOTFILE_PATH": str(self.run_dir / "vagrant"),
            "VAGRANT_DEFAULT_PROVIDER": "libvirt",
            "VAGRANT_CHECKPOINT_DISABLE": "1",
            "VAGRANT_NO_COLOR": "1",
            "NETPROBE_SCENARIO": self.scenario_ref,
            "NETPROBE_LIBVIRT_TCG": "1",
            "NETPROBE_VM_MEMORY": str(MEMORY_MB),
            "NETPROBE_LIBVIRT_MGMT": MGMT_NET,
            "NETPROBE_WHEELHOUSE": WHEELHOUSE,
            "NETPROBE_LIBVIRT_SERIAL_DIR": "/var/log/libvirt/qemu",  # in the namespace's own mounts
        })
        if box:
            env["NETPROBE_BOX"] = box
        return env

    def vagrant(self, *args, **kw):
        # vagrant, its SSH and rsync run in the namespace: only there are the VMs reachable
        if kw.get("capture"):
            return self.in_ns(["vagrant", *args], env=self.env, cwd=ROOT, **kw)
        # its output with the seconds since the run began: where the time goes, at a glance
        argv = [str(a) for a in (TOOLS / "libvirt-ns.sh", "exec", self.run_dir, "vagrant", *args)]
        with subprocess.Popen(argv, env=self.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, errors="replace") as proc:
            try:
                for line in proc.stdout:
                    print(f"[{time.monotonic() - self.t0:6.1f}s] {line}", end="", flush=True)
                proc.wait(timeout=kw.get("timeout"))
            except BaseException:
                proc.kill()
                raise
        if kw.get("check", True) and proc.returncode != 0:
            raise VmLabError(f"vagrant {' '.join(map(str, args))} exited {proc.returncode}")
        return proc

    def ssh(self, host: str, command: str, **kw):
        return self.in_ns(["ssh", "-F", self.run_dir / "ssh-config", host, command], **kw)

    # -- the run ----------------------------------------------------------------------------
    def up(self):
        self.timer.time("wheelhouse", run, [TOOLS / "wheelhouse.sh", sys.executable, ROOT / WHEELHOUSE])
        box = self.timer.time("box", self.box)
        self.env = self.vagrant_env(box=box)
        self.started_ns = True
        self.timer.time("libvirt", run, [TOOLS / "libvirt-ns.sh", "start", self.run_dir, self.ns])
        for i, batch in enumerate(boot_batches(self.spec), 1):
            args = ["up", "--parallel" if len(batch) > 1 else "--no-parallel", *batch]
            self.timer.time(f"vagrant up {' '.join(batch)}", self.vagrant, *args, timeout=1800)
        cfg = self.vagrant("ssh-config", capture=True).stdout
        (self.run_dir / "ssh-config").write_text(cfg)

    def mesh(self, output: Path):
        opts = f"--profile {self.spec.profile} --timeout 2 --retries 2"
        proc = self.timer.time("mesh", self.ssh, self.mesh_host,
                               f"sudo netprobe mesh -i /etc/netprobe/inventory.yaml {opts} --format json "
                               f"-o /tmp/vm-result.json >/dev/null; echo rc=$?", capture=True, check=False)
        say(f"mesh in {self.mesh_host}: {proc.stdout.strip()}")
        text = self.ssh(self.mesh_host, "sudo cat /tmp/vm-result.json", capture=True).stdout
        json.loads(text)
        output.write_text(text)
        say(f"result JSON: {output}")

    def down(self, failed: bool):
        if not self.started_ns:
            return
        if failed:  # consoles and libvirt's logs outlive the namespace, for a look
            logs = ROOT / ".vm" / "logs"
            subprocess.run(["rm", "-rf", str(logs)])
            subprocess.run(["cp", "-r", str(self.run_dir / "libvirt" / "log"), str(logs)])
            say(f"VM consoles and libvirt logs: {logs}")
        if self.keep:
            say(f"--keep: left up in namespace {self.ns}; enter with "
                f"`tools/vm/libvirt-ns.sh exec {self.run_dir} bash`, remove with "
                f"`tools/vm/libvirt-ns.sh stop {self.run_dir} {self.ns}`")
            return
        try:
            self.timer.time("vagrant destroy", self.vagrant, "destroy", "-f", timeout=300, check=False)
        except Exception as exc:  # the namespace goes anyway
            say(f"vagrant destroy: {exc}")
        self.timer.time("libvirt stop", run, [TOOLS / "libvirt-ns.sh", "stop", self.run_dir, self.ns], check=False)


def verify(scenario_ref: str, result_path: Path) -> int:
    from netprobe.commands.output import emit_result
    from netprobe.config import load_result
    from netprobe.core.expect import compare
    from netprobe.lab.spec import load_scenario

    spec = load_scenario(scenario_ref)
    result = load_result(str(result_path))
    mismatches = compare(spec.expect, result)
    emit_result(result, "table", mismatches)
    code = 3 if result.errors else (1 if mismatches else 0)
    verdict = "holds" if code == 0 else "does NOT hold"
    print(f"scenario {spec.name} on VMs: expectation {verdict}; VMs removed.")
    return code


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="vmlab.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="boot SCENARIO's hosts as VMs, mesh, verify, destroy")
    r.add_argument("scenario")
    r.add_argument("-o", "--output", default="vm-result.json")
    r.add_argument("--cache", default=os.environ.get("NETPROBE_VM_CACHE", DEFAULT_CACHE))
    r.add_argument("--keep", action="store_true", help="leave the VMs and the namespace up")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        say("needs root (network namespaces, libvirtd)")
        return 2

    from netprobe.errors import NetprobeError

    try:
        lab = VmLab(args.scenario, Path(args.cache), args.keep)
    except NetprobeError as exc:
        say(str(exc))
        return exc.exit_code

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    output = Path(args.output).resolve()
    t0 = time.monotonic()
    code = 3
    try:
        lab.up()
        lab.mesh(output)
        code = verify(args.scenario, output)
    except KeyboardInterrupt:
        say("interrupted; tearing down")
        code = 130
    except (VmLabError, subprocess.TimeoutExpired, ValueError) as exc:
        say(f"failed: {exc}; tearing down")
        code = 3
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        lab.down(failed=code not in (0, 1))
        lab.timer.marks["total"] = round(time.monotonic() - t0, 1)
        say("times (s): " + ", ".join(f"{k} {v}" for k, v in lab.timer.marks.items()))
        (Path(args.output).resolve().parent / "vm-times.json").write_text(json.dumps(lab.timer.marks, indent=1) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
