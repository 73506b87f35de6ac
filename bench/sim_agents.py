#!/usr/bin/env python3
"""N simulated agents in one process, each on its own unix socket, speaking the real control API
(HTTP/1.1 + JSON: POST /v1/probes, GET /v1/runs/ID/observations, GET /v1/health, bearer token).

They return synthetic outcomes and observations of the exact shapes a real responder sends
(compact rows when the request asks ``compact``, full records otherwise) with a known set of
blocked cells, so the coordinator's own cost can be measured without a packet on any wire.
Each probe reply waits the request's window x (retries + 1), as a real agent does.

    python bench/sim_agents.py DIR N TOKEN   # serves DIR/node-I.sock for I < N until killed
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import sys

import trio

PLAIN_REPLY = {"ipip": "echo", "vxlan": "echo"}  # the rest are TCP: syn-ack


def name(i: int) -> str:
    return f"node-{i}"


def address(i: int) -> str:
    return f"198.18.{(i + 10) // 250}.{(i + 10) % 250 + 1}"


def blocked_cells(n: int) -> dict[tuple[str, str, str], str]:
    """The planted failures: (check, src, dst) -> 'ingress' | 'network'. Deterministic, spread over the matrix."""
    out = {}
    if n >= 40:
        out[("bgp", name(7), name(33))] = "ingress"
        out[("ipip", name(n - 1), name(n // 2))] = "network"
        out[("bgp", name(n // 3), name(n - 2))] = "ingress"
    if n >= 3:
        out[("etcd", name(n - 1), name(0))] = "ingress"
        out[("typha", name(2), name(1))] = "network"
    return out


def roles(i: int) -> list[str]:
    return ["node"] + (["apiserver", "etcd"] if i == 0 else []) + (["typha"] if i in (1, 2) else [])


PLACEHOLDER = "RUN-ID-PLACEHOLDER"


class Fabric:
    def __init__(self, n: int):
        self.n = n
        self.blocked = blocked_cells(n)
        self.addr = {name(i): address(i) for i in range(n)}
        self.ids = itertools.count(1)
        self.plain_seen: dict[str, dict[str, dict[str, list[int]]]] = {}  # run -> dst -> src ip -> ids
        self.full_seen: dict[str, dict[str, list[dict]]] = {}
        self.cached: dict[str, tuple[list, bytes]] = {}  # host -> (targets expected, probe reply body)
        self.cached_seen: dict[str, bytes] = {}

    def precompute(self) -> None:
        """The replies to the calico mesh of the whole inventory, serialised before the run, so the
        simulator's own CPU stays out of the coordinator's figures (a sampled run is made live)."""
        from netprobe.core.checks import select_checks
        from netprobe.core.mesh_logic import Peer
        from netprobe.core.sampling import plan_peers

        hosts = [(name(i), address(i), frozenset(roles(i)), None) for i in range(self.n)]
        peers, _ = plan_peers(hosts, select_checks("calico"), Peer)
        for src, wanted in peers.items():
            req = {"run_id": PLACEHOLDER, "compact": True, "retries": 0,
                   "targets": [{"name": p.name, "address": p.address, "checks": list(p.checks)} for p in wanted]}
            body = self.probe(src, req)
            self.cached[src] = ([p.name for p in wanted], json.dumps(body, separators=(",", ":")).encode())
        for dst in self.addr:
            self.cached_seen[dst] = json.dumps(self.observations(dst, PLACEHOLDER),
                                               separators=(",", ":")).encode()

    def probe_bytes(self, me: str, req: dict) -> bytes:
        names, body = self.cached.get(me, (None, b""))
        if req.get("compact") and names is not None and [t["name"] for t in req["targets"]] == names:
            return body.replace(PLACEHOLDER.encode(), req["run_id"].encode())
        return json.dumps(self.probe(me, req), separators=(",", ":")).encode()

    def observations_bytes(self, me: str, run: str) -> bytes:
        if me in self.cached_seen and run not in self.full_seen:
            return self.cached_seen[me].replace(PLACEHOLDER.encode(), run.encode())
        return json.dumps(self.observations(me, run), separators=(",", ":")).encode()

    def probe(self, me: str, req: dict) -> dict:
        run = req["run_id"]
        compact = req.get("compact", False)
        plain_seen = self.plain_seen.setdefault(run, {})
        full_seen = self.full_seen.setdefault(run, {})
        src_ip = self.addr[me]
        rows, outcomes = {}, []
        for index, t in enumerate(req["targets"]):
            dst = t["name"]
            for cid in t["checks"]:
                pid = next(self.ids) & 0xFFFFFFFF
                fate = self.blocked.get((cid, me, dst))
                reply = PLAIN_REPLY.get(cid, "syn-ack")
                if fate is None:
                    if compact:
                        g = rows.setdefault((cid, reply), {"source": src_ip, "check": cid, "reply": reply,
                                                           "targets": [], "ids": [], "rtt_us": []})
                        g["targets"].append(index)
                        g["ids"].append(pid)
                        g["rtt_us"].append(150)
                        plain_seen.setdefault(dst, {}).setdefault(src_ip, []).append(pid)
                        continue
                    full_seen.setdefault(dst, []).append({"src": src_ip, "probe_id": pid, "proto": "tcp",
                                                          "arrived": True, "accepted": True, "answered": True,
                                                          "t": 0.0})
                    ev = {"sent": True, "arrived": None, "accepted": None, "answered": None, "reply": reply,
                          "icmp": None, "reply_arrived": True, "reply_accepted": True, "attempts": 1,
                          "send_error": None}
                    outcomes.append({"probe_id": pid, "check": cid, "name": dst, "address": t["address"],
                                     "source": src_ip, "rtt_ms": 0.15, "evidence": ev})
                    continue
                if fate == "ingress":
                    full_seen.setdefault(dst, []).append({"src": src_ip, "probe_id": pid, "proto": "tcp",
                                                          "arrived": True, "accepted": False, "answered": False,
                                                          "t": 0.0})
                ev = {"sent": True, "arrived": None, "accepted": None, "answered": None, "reply": None,
                      "icmp": None, "reply_arrived": False, "reply_accepted": False,
                      "attempts": req.get("retries", 1) + 1, "send_error": None}
                outcomes.append({"probe_id": pid, "check": cid, "name": dst, "address": t["address"],
                                 "source": src_ip, "rtt_ms": None, "evidence": ev})
        body = {"run_id": run, "host": me, "outcomes": outcomes, "stats": {"kernel_drops": 0}}
        if compact:
            body["plain"] = list(rows.values())
        return body

    def observations(self, me: str, run: str) -> dict:
        body = {"run_id": run, "host": me, "observations": self.full_seen.get(run, {}).pop(me, []),
                "stats": {"kernel_drops": 0}}
        plain = self.plain_seen.get(run, {}).pop(me, None)
        if plain is not None:
            body["plain"] = {"sources": list(plain), "counts": [len(v) for v in plain.values()],
                             "ids": [pid for v in plain.values() for pid in v]}
        return body


async def handle(stream, me: str, fabric: Fabric, token: str) -> None:
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buf += data
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in lines[1:] if ":" in h)}
            length = int(headers.get("content-length", "0"))
            while len(buf) < length:
                buf += await stream.receive_some(65536)
            body, buf = buf[:length], buf[length:]
            status, data = 200, b""
            if headers.get("authorization") != f"Bearer {token}":
                status, data = 401, b'{"error":"unauthorized"}'
            elif method == "POST" and path == "/v1/probes":
                req = json.loads(body)
                await trio.sleep(req.get("timeout", 1.0) * (req.get("retries", 1) + 1))  # the reply windows
                data = fabric.probe_bytes(me, req)
            elif method == "GET" and path.startswith("/v1/runs/") and path.endswith("/observations"):
                data = fabric.observations_bytes(me, path.split("/")[3])
            elif method == "GET" and path == "/v1/health":
                data = json.dumps({"host": me, "version": "sim"}).encode()
            else:
                status, data = 404, b'{"error":"not found"}'

            await stream.send_all(b"HTTP/1.1 %d OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                                  % (status, len(data)) + data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionResetError):
        return


async def serve(directory: str, n: int, token: str) -> None:
    fabric = Fabric(n)
    if os.environ.get("SIM_PRECOMPUTE", "1") == "1":
        fabric.precompute()
    async with trio.open_nursery() as nursery:
        for i in range(n):
            path = os.path.join(directory, f"{name(i)}.sock")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            s.listen(64)
            listener = trio.SocketListener(trio.socket.from_stdlib_socket(s))

            async def one(stream, me=name(i)):
                async with stream:
                    await handle(stream, me, fabric, token)
            nursery.start_soon(trio.serve_listeners, one, [listener])
        print("ready", flush=True)


if __name__ == "__main__":
    trio.run(serve, sys.argv[1], int(sys.argv[2]), sys.argv[3])
