"""Builders every test module shares: CLI runs, cells and results, captured packets.

Importable as ``helpers`` (pytest puts tests/ on sys.path for its conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"
PACKETS = DATA / "packets"
SAMPLE_RESULT = DATA / "golden" / "sample_result.json"

_DEFAULT_VERDICT = {"allowed": "open", "blocked": "filtered", "unknown": "error"}


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``netprobe ARGV`` in-process, as the entry point runs it: (exit code, stdout, stderr)."""
    from netprobe.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def cell(check="bgp", src="a", dst="b", reach="allowed", where=None, verdict=None, *, rtt_ms=None, evidence=None,
         **evidence_fields):
    """A result cell; enums may be given as their strings, the verdict defaults from the reach,
    evidence from keyword fields (``arrived=True, accepted=False``)."""
    from netprobe.core.result import Cell, Evidence, Reach, Verdict, Where

    reach = Reach(reach)
    verdict = Verdict(verdict if verdict is not None else _DEFAULT_VERDICT[str(reach)])
    if evidence is None:
        evidence = Evidence(**evidence_fields)
    return Cell(check, src, dst, reach, None if where is None else Where(where), verdict, rtt_ms, evidence)


def result(*cells, hosts=None, errors=None, checks=None, **fields):
    """A Result of ``cells``; hosts default to every name the cells use (no roles)."""
    from netprobe.core.result import HostInfo, Result

    if hosts is None:
        names = dict.fromkeys(n for c in cells for n in (c.src, c.dst))
        hosts = [HostInfo(n, "", ()) for n in names]
    return Result(cells=list(cells), hosts=list(hosts), errors=list(errors or []), checks=list(checks or []), **fields)


def sample_result():
    """The golden sample: 3 hosts, 2 checks, every reach, where and verdict, a skip, an error."""
    from netprobe.core.result import Result

    return Result.from_json(SAMPLE_RESULT.read_text(encoding="utf-8"))


def captured(name: str) -> dict:
    """A packet captured from real namespaces (tests/data/packets/NAME.json): its bytes in
    ``data``, the probe key of the token it was made with in ``key``."""
    from netprobe.core.keys import probe_key

    record = json.loads((PACKETS / f"{name}.json").read_text())
    record["data"] = bytes.fromhex(record["hex"])
    record["key"] = probe_key(record["token"])
    return record


CAPTURED = sorted(p.stem for p in PACKETS.glob("*.json"))


def rechecksummed(data: bytes, *layers: tuple[type, int]) -> bytes:
    """``data`` dissected by scapy with the checksum of each (layer, nth) deleted, then rebuilt:
    scapy recomputes them, so equal bytes mean our checksums are right."""
    from scapy.layers.inet import IP

    pkt = IP(data)
    for layer, nth in layers:
        del pkt.getlayer(layer, nth).chksum
    return bytes(pkt)


def cells_of(doc: dict) -> list[dict]:
    """Every cell of a result document (v1 or v2) as v1 cell dicts (check, src, dst, reach, ...)."""
    from netprobe.core.result import Result

    if "cells" in doc:
        return doc["cells"]
    return [c.to_dict() for c in Result.from_dict(doc).cells]


def stop_processes(procs, *, grace: float = 5) -> None:
    """SIGTERM every process still running, wait up to ``grace`` seconds each, then SIGKILL."""
    import subprocess

    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            p.kill()


def veth_namespaces(prefix: str, *, ipv6: bool = False):
    """Two namespaces ``PREFIX-<uuid>-a`` and ``-b`` joined by a veth made inside them (``eth0``
    in each, nothing in the root namespace), addressed 198.18.<n>.1 and .2/24 (and with ``ipv6``
    2001:db8:<n>::1 and ::2/64, nodad); a context manager yielding (a, b, address of a, address
    of b[, IPv6 address of a, of b]) that removes both, and any process still in them, on every
    way out."""
    import contextlib
    import subprocess
    import uuid

    @contextlib.contextmanager
    def pair():
        tag = uuid.uuid4().hex[:8]
        a, b, n = f"{prefix}-{tag}-a", f"{prefix}-{tag}-b", int(tag[:2], 16)
        made = []
        try:
            for ns in (a, b):
                subprocess.run(["ip", "netns", "add", ns], check=True)
                made.append(ns)
            subprocess.run(["ip", "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b],
                           check=True)
            for ns, host in ((a, 1), (b, 2)):
                subprocess.run(["ip", "-n", ns, "addr", "add", f"198.18.{n}.{host}/24", "dev", "eth0"], check=True)
                if ipv6:
                    subprocess.run(["ip", "-n", ns, "addr", "add", f"2001:db8:{n:x}::{host}/64", "dev", "eth0",
                                    "nodad"], check=True)
                for dev in ("eth0", "lo"):
                    subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
            six = (f"2001:db8:{n:x}::1", f"2001:db8:{n:x}::2") if ipv6 else ()
            if ipv6:  # a neighbor solicitation sent before b joined its solicited-node group waits 1 s
                subprocess.run(["ip", "netns", "exec", a, "ping", "-6", "-c", "1", "-W", "5", six[1]],
                               capture_output=True, check=True, timeout=10)
            yield a, b, f"198.18.{n}.1", f"198.18.{n}.2", *six
        finally:
            for ns in made:
                pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
                for pid in pids:
                    subprocess.run(["kill", "-9", pid], capture_output=True)
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    return pair()


def send_probes(sender, flow, count: int = 1) -> list:
    """``count`` probes of a ``core.trace.Flow`` (TCP SYN, UDP or IPIP probe, from netprobe's
    templates; payloads zero) on a raw sender socket: the send errors (None: sent)."""
    from netprobe.core import templates
    from netprobe.net import sockets

    sport = flow.sport or 40001
    if flow.proto == "tcp":
        template = templates.TcpSynTemplate(flow.src, flow.dst, flow.dport)
        packets = [template.build(sport, 1000 + i) for i in range(count)]
    elif flow.proto == "udp":
        packets = [templates.UdpProbeTemplate(flow.src, flow.dst, flow.dport).build(sport, bytes(36))] * count
    else:
        template = templates.IpipProbeTemplate(flow.src, flow.dst)
        packets = [template.build(40000 + i, bytes(36)) for i in range(count)]
    return [sockets.send_packet(sender, data, flow.dst) for data in packets]
