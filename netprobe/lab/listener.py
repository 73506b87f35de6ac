"""A stand-in for a host's services: listen on TCP and UDP ports, accept, say nothing.

    python -m netprobe.lab.listener --tcp 179 --tcp 2379 --udp 8472 [--ready-file PATH]

A SYN to a listened port, over IPv4 or IPv6, gets a SYN-ACK (``open``), as BIRD, Typha, the
apiserver or etcd would give. Connections are closed at once; UDP datagrams are read and dropped (never
answered, so this is no reflector). One thread, one selector; stops on SIGTERM/SIGINT.
``--ready-file`` is created once every socket listens, so the lab can wait for it.
"""

from __future__ import annotations

import argparse
import selectors
import signal
import socket
import sys
from pathlib import Path


def _bind(kind: int, port: int) -> socket.socket:
    """One socket for both families (IPv6 with IPV6_V6ONLY off), IPv4 alone where IPv6 is off."""
    try:
        sock = socket.socket(socket.AF_INET6, kind)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        where: tuple = ("::", port)
    except OSError:
        sock, where = socket.socket(socket.AF_INET, kind), ("0.0.0.0", port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(where)
    if kind == socket.SOCK_STREAM:
        sock.listen(128)
    sock.setblocking(False)
    return sock


def serve(tcp: list[int], udp: list[int], ready_file: str | None = None) -> int:
    sel = selectors.DefaultSelector()

    def on_signal(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    socks = []
    try:
        for port in tcp:
            socks.append(_bind(socket.SOCK_STREAM, port))
            sel.register(socks[-1], selectors.EVENT_READ, "tcp")
        for port in udp:
            socks.append(_bind(socket.SOCK_DGRAM, port))
            sel.register(socks[-1], selectors.EVENT_READ, "udp")
    except OSError as exc:
        print(f"listener: cannot listen: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"listening tcp={tcp} udp={udp}", flush=True)
    if ready_file:
        Path(ready_file).touch()
    while True:
        for key, _ in sel.select(timeout=1.0):
            sock = key.fileobj
            try:
                if key.data == "tcp":
                    for _ in range(64):  # drain the backlog, bounded
                        conn, _addr = sock.accept()
                        conn.close()
                else:
                    for _ in range(64):
                        sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:  # e.g. ECONNABORTED: the peer gave up; keep serving
                print(f"listener: {exc}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netprobe.lab.listener", description=__doc__.splitlines()[0])
    parser.add_argument("--tcp", type=int, action="append", default=[], help="TCP port to listen on (repeat)")
    parser.add_argument("--udp", type=int, action="append", default=[], help="UDP port to read on (repeat)")
    parser.add_argument("--ready-file", help="create this file once listening")
    args = parser.parse_args(argv)
    if not args.tcp and not args.udp:
        parser.error("give at least one --tcp or --udp port")
    return serve(args.tcp, args.udp, args.ready_file)


if __name__ == "__main__":
    sys.exit(main())
