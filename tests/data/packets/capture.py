"""Capture the real packets the unit tests parse (run once, as root; the JSON files are committed).

    sudo .venv/bin/python tests/data/packets/capture.py

Builds two namespaces, ``nptest-cap-<tag>-a`` (the sender) and ``nptest-cap-<tag>-b`` (the
target; ``NETPROBE_TEST_NS_PREFIX`` replaces ``nptest``), joined by a veth made directly inside them (nothing is added to the root namespace),
addressed 198.18.<n>.1 and 198.18.<n>.2. On b: a listener on 179, a server on 8080, and nft rules
(2379: reject with tcp reset, 6443: reject with icmp admin-prohibited); 5473 and UDP are closed;
this kernel has no ipip module, so b answers IPIP with ICMP protocol unreachable. a probes b with
``netprobe probe`` (and sends one plain UDP probe and opens one ordinary connection), while
``tcpdump -i any`` writes everything each namespace sees. Each packet of interest is written as
``<name>.json``: the IPv4 bytes in hex (as an AF_PACKET SOCK_DGRAM tap or raw socket delivers
them), the packet type the tap reported (0 host, 4 outgoing), the addresses and the token that keys
its cookies. Traffic only ever goes between the two namespace addresses. The namespaces are removed
in ``finally``.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from netprobe.core.cookies import marker_of
from netprobe.core.keys import probe_key

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
NETPROBE = str(REPO / ".venv" / "bin" / "netprobe")
PYTHON = str(REPO / ".venv" / "bin" / "python")
TOKEN = "netprobe-capture-token"
MARKER = marker_of(probe_key(TOKEN))
NS_PREFIX = os.environ.get("NETPROBE_TEST_NS_PREFIX", "nptest")  # the namespaces' name prefix
VNI = 42
UDP_PORT = 5000

NFT_B = """
table inet filter {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 2379 reject with tcp reset
    tcp dport 6443 reject with icmp type admin-prohibited
  }
}
"""

LISTEN_179 = (
    "import socket,time\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 179)); s.listen(16); print('ready', flush=True); time.sleep(60)\n"
)
SERVE_8080 = (
    "import socket\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 8080)); s.listen(1); s.settimeout(30); print('ready', flush=True)\n"
    "c,_=s.accept(); c.settimeout(5); c.recv(100); c.sendall(b'world\\n'); c.close()\n"
)
CONNECT_8080 = (
    "import socket,sys\n"
    "c=socket.create_connection((sys.argv[1], 8080), timeout=5); c.sendall(b'hello\\n'); c.recv(100); c.close()\n"
)
# one plain UDP probe (no built-in check is plain UDP): built by the core, sent on a raw socket
SEND_UDP = (
    "import socket,sys,time\n"
    "from netprobe.core import cookies, templates\n"
    "from netprobe.core.keys import probe_key\n"
    "from netprobe.core.parse import ip_bytes\n"
    "src, dst, port, token = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]\n"
    "pid, key = 0x1234, probe_key(token)\n"
    "tpl = templates.UdpProbeTemplate(src, dst, port)\n"
    "slot = cookies.slot_of(pid)\n"
    "data = tpl.build(slot, cookies.encode_payload(cookies.dest_key(key, ip_bytes(dst)),"
    " cookies.ProbePayload(pid, time.time_ns(), 0, cookies.marker_of(key)), tpl.flow(slot)))\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW); s.sendto(data, (dst, 0))\n"
)


def sh(*cmd: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=60)
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def in_ns(ns: str, *cmd: str, **kw) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", ns, *cmd, **kw)


def spawn(ns: str, *cmd: str, ready: str | None = "ready") -> subprocess.Popen:
    proc = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    if ready is not None:
        line = proc.stdout.readline().strip()
        if line != ready:
            raise SystemExit(f"{cmd} did not start: {line!r} {proc.stderr.read()}")
    return proc


def start_tcpdump(ns: str, path: Path) -> subprocess.Popen:
    proc = subprocess.Popen(["ip", "netns", "exec", ns, "tcpdump", "-i", "any", "-U", "-n", "-s", "0",
                             "-w", str(path), "ip and not host 127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    for _ in range(5):  # "tcpdump: data link type LINUX_SLL2", then "listening on any, ..."
        lines.append(proc.stderr.readline())
        if "listening" in lines[-1]:
            return proc
    proc.kill()
    raise SystemExit(f"tcpdump did not start: {''.join(lines)}")


def read_pcap(path: Path) -> list[tuple[int, bytes]]:
    """(packet type, IPv4 bytes) of each packet in a Linux cooked (SLL or SLL2) pcap."""
    data = path.read_bytes()
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    out, off = [], 24
    while off + 16 <= len(data):
        _sec, _usec, incl, _orig = struct.unpack_from(endian + "IIII", data, off)
        frame = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        if linktype == 113:  # LINUX_SLL: pkttype(2) hatype(2) halen(2) addr(8) proto(2)
            pkttype, proto, ip = struct.unpack_from("!H", frame, 0)[0], struct.unpack_from("!H", frame, 14)[0], frame[16:]
        elif linktype == 276:  # LINUX_SLL2: proto(2) res(2) ifindex(4) hatype(2) pkttype(1) halen(1) addr(8)
            proto, pkttype, ip = struct.unpack_from("!H", frame, 0)[0], frame[10], frame[20:]
        else:
            raise SystemExit(f"unexpected pcap link type {linktype}")
        if proto == 0x0800:
            out.append((pkttype, ip))
    return out


def describe(ip: bytes) -> dict:
    """The fields used to pick packets out of a capture (independent of netprobe's parsers)."""
    ihl = (ip[0] & 0x0F) * 4
    d = {"proto": ip[9], "src": ".".join(map(str, ip[12:16])), "dst": ".".join(map(str, ip[16:20])),
         "ip_id": struct.unpack_from("!H", ip, 4)[0]}
    body = ip[ihl:]
    if d["proto"] in (6, 17):
        d["sport"], d["dport"] = struct.unpack_from("!HH", body)
    if d["proto"] == 6:
        d["flags"] = body[13]
        d["data_len"] = len(body) - (body[12] >> 4) * 4
    if d["proto"] == 1:
        d["type"], d["code"] = body[0], body[1]
        quoted = body[8:]
        qihl = (quoted[0] & 0x0F) * 4
        d["q_proto"] = quoted[9]
        if quoted[9] in (6, 17):
            d["q_dport"] = struct.unpack_from("!H", quoted, qihl + 2)[0]
    return d


# name -> (which namespace's capture, wanted pkttype (None: any but outgoing), predicate, comment)
WANTED = {
    # what came back to the sender (a)
    "syn_ack": ("a", 0, lambda d: d["proto"] == 6 and d["sport"] == 179 and d["flags"] == 0x12,
                "SYN-ACK from a listener on b:179, answering a netprobe SYN (as it arrived at a)"),
    "rst_closed": ("a", 0, lambda d: d["proto"] == 6 and d["sport"] == 5473 and d["flags"] & 0x04,
                   "RST|ACK from b's kernel: nothing listens on 5473 (as it arrived at a)"),
    "rst_forged": ("a", 0, lambda d: d["proto"] == 6 and d["sport"] == 2379 and d["flags"] & 0x04,
                   "RST forged by b's nft `tcp dport 2379 reject with tcp reset` (as it arrived at a)"),
    "icmp_admin_prohibited": ("a", 0, lambda d: d["proto"] == 1 and (d["type"], d["code"]) == (3, 13),
                              "ICMP 3/13 from b's nft `reject with icmp type admin-prohibited` on 6443"),
    "icmp_port_unreach_vxlan": ("a", 0, lambda d: d["proto"] == 1 and (d["type"], d["code"]) == (3, 3)
                                and d.get("q_dport") == 4789,
                                "ICMP port unreachable from b: no VXLAN device on b, the VXLAN probe quoted"),
    "icmp_port_unreach_udp": ("a", 0, lambda d: d["proto"] == 1 and (d["type"], d["code"]) == (3, 3)
                              and d.get("q_dport") == UDP_PORT,
                              f"ICMP port unreachable from b for a plain UDP probe to {UDP_PORT}, quoted in full"),
    "icmp_proto_unreach_ipip": ("a", 0, lambda d: d["proto"] == 1 and (d["type"], d["code"]) == (3, 2),
                                "ICMP protocol unreachable from b: this kernel has no ipip module"),
    "tcp_data": ("a", 0, lambda d: d["proto"] == 6 and d["sport"] == 8080 and d["data_len"] > 0,
                 "an ordinary data segment from b:8080 on a kernel connection (not a reply to a probe)"),
    "probe_syn_sent": ("a", 4, lambda d: d["proto"] == 6 and d["dport"] == 179 and d["flags"] == 0x02,
                       "netprobe's SYN to b:179 leaving a (outgoing on a's tap)"),
    # what arrived at, and left, the target (b)
    "probe_syn_arrived": ("b", 0, lambda d: d["proto"] == 6 and d["dport"] == 179 and d["flags"] == 0x02,
                          "netprobe's marked SYN (IP id = sport ^ the keyed marker) as it arrived at b"),
    "kernel_syn_arrived": ("b", 0, lambda d: d["proto"] == 6 and d["dport"] == 8080 and d["flags"] == 0x02
                           and d["ip_id"] ^ d["sport"] != MARKER,
                           "an ordinary kernel SYN (connect() to b:8080) as it arrived at b: unmarked"),
    "vxlan_probe_arrived": ("b", 0, lambda d: d["proto"] == 17 and d["dport"] == 4789,
                            f"netprobe's VXLAN probe (VNI {VNI}) as it arrived at b"),
    "udp_probe_arrived": ("b", 0, lambda d: d["proto"] == 17 and d["dport"] == UDP_PORT,
                          "a plain UDP probe (UdpProbeTemplate) as it arrived at b"),
    "ipip_probe_arrived": ("b", 0, lambda d: d["proto"] == 4,
                           "netprobe's IPIP probe as it arrived at b"),
    "syn_ack_leaving": ("b", 4, lambda d: d["proto"] == 6 and d["sport"] == 179 and d["flags"] == 0x12,
                        "b's SYN-ACK from 179 leaving b (outgoing on b's tap)"),
    "rst_closed_leaving": ("b", 4, lambda d: d["proto"] == 6 and d["sport"] == 5473 and d["flags"] & 0x04,
                           "b's kernel RST for closed 5473 leaving b"),
    "rst_forged_leaving": ("b", 4, lambda d: d["proto"] == 6 and d["sport"] == 2379 and d["flags"] & 0x04,
                           "the RST b's nft forged for 2379, leaving b"),
    "icmp_admin_prohibited_leaving": ("b", 4, lambda d: d["proto"] == 1 and (d["type"], d["code"]) == (3, 13),
                                      "the ICMP 3/13 b's nft sent, leaving b"),
    "icmp_proto_unreach_leaving": ("b", 4, lambda d: d["proto"] == 1 and (d["type"], d["code"]) == (3, 2),
                                   "b's ICMP protocol unreachable for the IPIP probe, leaving b"),
}


def main() -> int:
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    tag = uuid.uuid4().hex[:6]
    n = int(tag[:2], 16)
    ns_a, ns_b = f"{NS_PREFIX}-cap-{tag}-a", f"{NS_PREFIX}-cap-{tag}-b"
    addr_a, addr_b = f"198.18.{n}.1", f"198.18.{n}.2"
    made: list[str] = []
    procs: list[subprocess.Popen] = []
    tmp = Path(tempfile.mkdtemp(prefix="nptest-cap-"))
    try:
        for ns in (ns_a, ns_b):
            sh("ip", "netns", "add", ns)
            made.append(ns)
        # the veth is born inside the namespaces: the root namespace never holds it
        in_ns(ns_a, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", ns_b)
        for ns, addr in ((ns_a, addr_a), (ns_b, addr_b)):
            in_ns(ns, "ip", "addr", "add", f"{addr}/24", "dev", "eth0")
            in_ns(ns, "ip", "link", "set", "eth0", "up")
            in_ns(ns, "ip", "link", "set", "lo", "up")
        in_ns(ns_b, "nft", "-f", "-", input=NFT_B)
        token_file = tmp / "token"
        token_file.write_text(TOKEN + "\n")
        pcaps = {"a": tmp / "a.pcap", "b": tmp / "b.pcap"}
        procs.append(start_tcpdump(ns_a, pcaps["a"]))
        procs.append(start_tcpdump(ns_b, pcaps["b"]))
        procs.append(spawn(ns_b, PYTHON, "-c", LISTEN_179))
        procs.append(spawn(ns_b, PYTHON, "-c", SERVE_8080))
        time.sleep(0.3)  # let the link settle (no neighbour discovery races in the capture)

        in_ns(ns_a, PYTHON, "-c", CONNECT_8080, addr_b)
        for checks in ("bgp", "typha", "etcd", "apiserver", "vxlan", "ipip"):
            proc = in_ns(ns_a, NETPROBE, "probe", addr_b, "--checks", checks, "--format", "json",
                         "--timeout", "0.5", "--retries", "0", "--vni", str(VNI), "--token-file", str(token_file),
                         check=False)
            if proc.returncode not in (0, 1):
                raise SystemExit(f"netprobe probe {checks} failed: {proc.stderr}")
            cell = json.loads(proc.stdout)["cells"][0]
            print(f"{checks}: {cell['verdict']} {cell['reach']} {cell['evidence'].get('icmp')}")
            time.sleep(0.2)
        in_ns(ns_a, PYTHON, "-c", SEND_UDP, addr_a, addr_b, str(UDP_PORT), TOKEN)
        time.sleep(0.5)
        for proc in procs[:2]:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=10)

        seen = {side: [(pt, ip, describe(ip)) for pt, ip in read_pcap(path)] for side, path in pcaps.items()}
        missing = []
        for name, (side, pkttype, wanted, comment) in WANTED.items():
            found = next(((pt, ip) for pt, ip, d in seen[side] if pt == pkttype and wanted(d)), None)
            if found is None:
                missing.append(name)
                continue
            pt, ip = found
            record = {
                "name": name,
                "comment": comment,
                "captured": f"tcpdump -i any -w in namespace {side} ({'sender' if side == 'a' else 'target'}); "
                            f"packet type {pt}; made by tests/data/packets/capture.py",
                "namespace": side,
                "pkttype": pt,
                "sender": addr_a,
                "target": addr_b,
                "token": TOKEN,
                "vni": VNI,
                "hex": ip.hex(),
            }
            (HERE / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
            print(f"wrote {name}.json ({len(ip)} bytes)")
        if missing:
            print(f"not captured: {', '.join(missing)}", file=sys.stderr)
            return 1
        return 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for ns in made:
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                sh("kill", "-9", pid, check=False)
            sh("ip", "netns", "del", ns, check=False)
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()


if __name__ == "__main__":
    sys.exit(main())
