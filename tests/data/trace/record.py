"""Record the nftables trace messages and listings the unit tests read (run once, as root; the
JSON files are committed).

    sudo .venv/bin/python tests/data/trace/record.py

Each case gets two fresh namespaces, ``nprf-rec-<tag>-a`` and ``-b`` (``NETPROBE_TEST_NS_PREFIX``
replaces ``nprf``), joined by a veth made inside them (nothing is added to the root namespace),
addressed 198.18.<n>.1 and .2. The case's rules are loaded on the dropping side; there a netlink
socket joins the trace group (``sockets.open_trace_listener``) and the trace table of
``core/trace.py`` is added; a sends the case's probes, built by netprobe's templates, on a raw
socket. ``<case>.json`` holds the flow, its direction, every netlink read in hex, ``nft list
chains``/``list tables`` with the trace table in place, the dropping chains as ``nft -a list
chain`` shows them, and ``iptables-nft-save`` / ``iptables-legacy-save -c`` text where the case
uses them. Traffic only goes between the two namespace addresses; the namespaces are removed in
``finally``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from netprobe.core.trace import Flow, netdev_ingress_devices, netdev_trace_ruleset, parse_trace_messages, trace_ruleset
from netprobe.lab.apply import in_netns
from netprobe.net import sockets

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # tests/: helpers
from helpers import send_probes, veth_namespaces  # noqa: E402

PREFIX = os.environ.get("NETPROBE_TEST_NS_PREFIX", "nprf")
TABLE = "netprobe_trace_5ec0rded"

NFT_INPUT = """table inet filter {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 22 accept
    tcp dport 179 drop comment "no bgp from outside"
    udp dport 4789 reject
  }
}
"""
NFT_POLICY = """table inet filter {
  chain input {
    type filter hook input priority 0; policy drop;
    ct state established,related accept
    tcp dport 22 accept
  }
}
"""
IPT_INPUT = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p udp --dport 53 -j ACCEPT
-A INPUT -p tcp --dport 179 -m comment --comment "no bgp from outside" -j DROP
COMMIT
"""
NFT_OUTPUT = """table inet filter {
  chain output {
    type filter hook output priority 0; policy accept;
    tcp dport 5473 drop comment "no typha from here"
  }
}
"""
NFT_NETDEV = """table netdev edge {
  chain in {
    type filter hook ingress device "eth0" priority 0; policy accept;
    ip protocol 4 drop comment "no ipip at the edge"
  }
}
"""
LEGACY = """*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp --dport 22 -j ACCEPT
-A INPUT -p udp -m udp --dport 8472 -m comment --comment "no flannel vxlan" -j DROP
COMMIT
"""
OTHER_TRACE = """table inet someone_else {
  chain pre {
    type filter hook prerouting priority 0; policy accept;
    icmp type echo-request meta nftrace set 1
  }
}
"""

# name: (what it shows, where the rules go, loader, rules, flow kind, dport, direction, probes)
CASES = {
    "nft_comment_drop": ("an inet filter input rule with a comment drops TCP 179", "b", "nft", NFT_INPUT,
                         "tcp", 179, "ingress", 1),
    "nft_reject": ("an inet filter input rule rejects UDP 4789", "b", "nft", NFT_INPUT, "udp", 4789, "ingress", 1),
    "chain_policy": ("input's policy drop drops TCP 179 (no rule matched)", "b", "nft", NFT_POLICY,
                     "tcp", 179, "ingress", 1),
    "iptables_nft": ("an iptables-nft rule with a comment drops TCP 179", "b", "iptables-nft", IPT_INPUT,
                     "tcp", 179, "ingress", 1),
    "output_drop": ("the sender's own output rule drops TCP 5473", "a", "nft", NFT_OUTPUT, "tcp", 5473, "egress", 1),
    "netdev_ingress": ("a netdev ingress chain on b's eth0 drops IPIP (traced from our netdev chain ahead of it)",
                       "b", "nft", NFT_NETDEV, "ipip", None, "ingress", 1),
    "iptables_legacy": ("an iptables-legacy rule drops UDP 8472: no trace past ours, counters moved by 3",
                        "b", "iptables-legacy", LEGACY, "udp", 8472, "ingress", 3),
    "foreign_trace": ("another table traces pings; our flow (TCP 22) is accepted", "b", "nft",
                      NFT_INPUT + OTHER_TRACE, "tcp", 22, "ingress", 1),
}
LOADERS = {"nft": ["nft", "-f", "-"], "iptables-nft": ["iptables-nft-restore"],
           "iptables-legacy": ["iptables-legacy-restore"]}


def sh(ns: str, argv: list[str], stdin: str = "", check: bool = True) -> str:
    proc = subprocess.run(["ip", "netns", "exec", ns, *argv], input=stdin, capture_output=True, text=True, timeout=30)
    if check and proc.returncode:
        raise RuntimeError(f"{argv}: {proc.stderr}")
    return proc.stdout


def record(name: str) -> dict:
    comment, side, loader, rules, proto, dport, direction, probes = CASES[name]
    with veth_namespaces(f"{PREFIX}-rec") as (a, b, addr_a, addr_b):
        ns = b if side == "b" else a
        flow = Flow(proto, addr_a, addr_b, None if proto == "ipip" else 40001, dport)
        sh(ns, LOADERS[loader], rules)
        doc = {"name": name, "comment": comment,
               "recorded": f"tests/data/trace/record.py; kernel {platform.release()}, "
                           f"{sh(ns, ['nft', '--version']).strip()}",
               "flow": {"proto": flow.proto, "src": flow.src, "dst": flow.dst, "sport": flow.sport,
                        "dport": flow.dport},
               "direction": direction, "probes": probes}
        if loader == "iptables-legacy":
            doc["legacy_before"] = sh(ns, ["iptables-legacy-save", "-c"])
        with in_netns(a):
            sender = sockets.open_sender()
        with in_netns(ns):
            listener = sockets.open_trace_listener()
        try:
            sh(ns, ["nft", "-f", "-"], trace_ruleset(TABLE, [(flow, direction)]))
            chains = sh(ns, ["nft", "list", "chains"])
            netdev = netdev_trace_ruleset(TABLE, [(flow, direction)], netdev_ingress_devices(chains))
            if netdev:
                sh(ns, ["nft", "-f", "-"], netdev)
            doc["chains"] = sh(ns, ["nft", "list", "chains"])
            doc["tables"] = sh(ns, ["nft", "list", "tables"])
            if name == "foreign_trace":
                sh(a, ["ping", "-c", "1", "-W", "1", addr_b])
            doc["send_errors"] = send_probes(sender, flow, probes)
            time.sleep(0.3)
            messages = []
            while True:
                try:
                    messages.append(listener.recv(1 << 16).hex())
                except BlockingIOError:
                    break
            doc["messages"] = messages
        finally:
            listener.close()
            sender.close()
        drops = {(e.family, e.table, e.chain) for m in messages for e in parse_trace_messages(bytes.fromhex(m))
                 if e.verdict == "drop" and e.kind == "rule"}
        doc["listings"] = {" ".join(k): sh(ns, ["nft", "-a", "list", "chain", *k]) for k in sorted(drops)}
        if loader == "iptables-nft":
            doc["iptables_nft_save"] = sh(ns, ["iptables-nft-save", "-t", "filter"])
        if loader == "iptables-legacy":
            doc["legacy_after"] = sh(ns, ["iptables-legacy-save", "-c"])
        return doc


def main() -> None:
    for name in CASES:
        doc = record(name)
        (HERE / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
        print(f"{name}: {len(doc['messages'])} messages")


if __name__ == "__main__":
    main()
