"""Read the host's files: os-release, hostname, CNI configs, the process table, kube-proxy's and
kube-apiserver's settings, and the sockets in /proc/net. No judgement here: see ``rules``."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys

from netprobe.preflight.facts import CniConfig, CniFacts, KubeFacts, OsFacts, Process, Socket, SocketFacts
from netprobe.preflight.fsroot import Root
from netprobe.preflight.kube import flag_value

CNI_DIR = "etc/cni/net.d"
CNI_SUFFIXES = (".conf", ".conflist", ".json")
APISERVER_MANIFEST = "etc/kubernetes/manifests/kube-apiserver.yaml"
TCP_LISTEN = "0A"


def parse_os_release(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        try:
            parts = shlex.split(value)
        except ValueError:
            parts = [value.strip("\"'")]
        out[key.strip()] = parts[0] if parts else ""
    return out


def read_os(root: Root) -> OsFacts:
    for rel in ("etc/os-release", "usr/lib/os-release"):
        text = root.text(rel)
        if text is not None:
            return OsFacts(parse_os_release(text), root.show(rel))
    return OsFacts()


def read_hostname(root: Root) -> str | None:
    for rel in ("proc/sys/kernel/hostname", "etc/hostname"):
        name = (root.text(rel) or "").strip()
        if name:
            return name
    return os.uname().nodename if root.is_live else None


def parse_cni_config(file: str, text: str) -> CniConfig:
    try:
        data = json.loads(text)
    except ValueError as exc:
        return CniConfig(file, error=f"bad JSON: {exc.args[0] if exc.args else exc}")
    if not isinstance(data, dict):
        return CniConfig(file, error="not a JSON object")
    plugins = data.get("plugins") if isinstance(data.get("plugins"), list) else [data]
    types = tuple(str(p["type"]) for p in plugins if isinstance(p, dict) and p.get("type"))
    name = data.get("name") if isinstance(data.get("name"), str) else None
    return CniConfig(file, name=name, types=types, error=None if types else "no plugin type")


def read_cni(root: Root) -> CniFacts:
    facts = CniFacts(directory=root.show(CNI_DIR))
    path = root.path(CNI_DIR)
    if not path.exists():
        facts.configs = []
        return facts
    facts.exists = True
    try:
        entries = sorted(p for p in path.iterdir() if p.suffix in CNI_SUFFIXES and p.is_file())
    except OSError:
        return facts  # configs stays None: unreadable
    configs = []
    for entry in entries:
        text = root.text(f"{CNI_DIR}/{entry.name}")
        shown = root.show(f"{CNI_DIR}/{entry.name}")
        configs.append(CniConfig(shown, error="unreadable") if text is None else parse_cni_config(shown, text))
    facts.configs = configs
    return facts


def _pids(root: Root) -> list[int] | None:
    try:
        return sorted(int(p.name) for p in root.path("proc").iterdir() if p.name.isdigit())
    except OSError:
        return None


def read_processes(root: Root) -> dict[int, Process] | None:
    """pid -> name and argv. A process that exits while we read is simply left out."""
    pids = _pids(root)
    if not pids:
        return None
    table = {}
    for pid in pids:
        comm = root.text(f"proc/{pid}/comm")
        if comm is None:
            continue
        try:
            raw = root.path(f"proc/{pid}/cmdline").read_bytes()
        except OSError:
            raw = b""
        argv = tuple(a.decode(errors="replace") for a in raw.split(b"\0") if a)
        table[pid] = Process(pid, comm.strip(), argv)
    return table or None


def read_kube(root: Root, processes: dict[int, Process] | None) -> KubeFacts:
    facts = KubeFacts()
    net = root.path("sys/class/net")
    facts.ipvs_link = (net / "kube-ipvs0").exists() if net.is_dir() else None
    text = root.text(APISERVER_MANIFEST)
    if text is not None:
        facts.apiserver_manifest, facts.manifest_source = text, root.show(APISERVER_MANIFEST)
    for proc in sorted((processes or {}).values(), key=lambda p: p.pid):
        exe = proc.cmdline[0].rsplit("/", 1)[-1] if proc.cmdline else ""
        if "kube-proxy" not in (proc.comm, exe):
            continue
        config = flag_value(proc.cmdline, "config")
        if config:
            _read_proxy_config(root, proc.pid, config, facts)
        break
    return facts


def _read_proxy_config(root: Root, pid: int, config: str, facts: KubeFacts) -> None:
    """kube-proxy usually runs in a container: read its --config through /proc/PID/root."""
    import yaml

    rel = f"proc/{pid}/root/{config.lstrip('/')}" if config.startswith("/") else f"proc/{pid}/cwd/{config}"
    text = root.text(rel)
    if text is None:
        facts.proxy_config_error = f"{root.show(rel)} not readable"
        return
    facts.proxy_config_source = f"{config} of kube-proxy pid {pid}"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        facts.proxy_config_error = f"{config}: bad YAML ({str(exc).splitlines()[0]})"
        facts.proxy_config_source = None
        return
    mode = data.get("mode") if isinstance(data, dict) else None
    facts.proxy_config_mode = str(mode) if mode else ""


def _address(hex_addr: str) -> str:
    """/proc/net/tcp's address: 32-bit words in host byte order."""
    import ipaddress

    raw = bytes.fromhex(hex_addr)
    if sys.byteorder == "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw))


def parse_proc_net(text: str, proto: str) -> list[Socket]:
    """TCP sockets in LISTEN and every UDP socket (a bound UDP socket holds its port)."""
    sockets = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or ":" not in fields[1]:
            continue
        if proto == "tcp" and fields[3] != TCP_LISTEN:
            continue
        addr, port = fields[1].rsplit(":", 1)
        try:
            sockets.append(Socket(proto, _address(addr), int(port, 16), int(fields[9])))
        except ValueError:
            continue
    return sockets


def read_sockets(root: Root) -> SocketFacts:
    facts = SocketFacts()
    sockets: list[Socket] = []
    sources = []
    for proto in ("tcp", "udp"):
        for name in (proto, f"{proto}6"):
            text = root.text(f"proc/net/{name}")
            if text is not None:
                sockets.extend(parse_proc_net(text, proto))
                sources.append(root.show(f"proc/net/{name}"))
    if not sources:
        return facts
    facts.listening, facts.sources = sockets, tuple(sources)
    facts.owners = read_socket_owners(root, {s.inode for s in sockets if s.inode})
    return facts


_SOCKET_LINK = re.compile(r"^socket:\[(\d+)\]$")


def read_socket_owners(root: Root, inodes: set[int]) -> dict[int, list[int]] | None:
    """socket inode -> pids with it open, from /proc/PID/fd (only ours unless we are root)."""
    pids = _pids(root)
    if pids is None:
        return None
    owners: dict[int, list[int]] = {}
    if not inodes:
        return owners
    for pid in pids:
        fd_dir = root.path(f"proc/{pid}/fd")
        try:
            fds = list(os.scandir(fd_dir))
        except OSError:
            continue
        for fd in fds:
            try:
                match = _SOCKET_LINK.match(os.readlink(fd.path))
            except OSError:
                continue
            if match and int(match[1]) in inodes:
                owners.setdefault(int(match[1]), [])
                if pid not in owners[int(match[1])]:
                    owners[int(match[1])].append(pid)
    return owners
