"""Naming the rule that dropped a flow (docs/design.md, "Naming the rule"). Pure.

In: the kernel's nftables trace messages (NFT_MSG_TRACE, one per rule a traced packet completes and
per chain policy applied), ``nft list`` text. Out: per flow, the rule or chain policy that gave the
drop verdict (``RuleFound``) or why none could be named (``NotNamed``); the nft ruleset of the
temporary trace table; and the lines that would allow the flow (``fix_lines``). iptables-legacy,
which nftables cannot trace, is read from its counters in ``core/iptables_save.py``. The shell is
``netprobe/net/rulefinder.py``.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from netprobe.core.wire import IPPROTO_IPIP, IPPROTO_TCP, IPPROTO_UDP, NFNL_MSG_NFT_TRACE

TRACE_TABLE_PREFIX = "netprobe_trace_"
PRIORITY_FIRST = -(2**31)  # before every other chain of the hook: raw (-300), conntrack (-200), defrag (-400)
PROTOS = {"tcp": IPPROTO_TCP, "udp": IPPROTO_UDP, "ipip": IPPROTO_IPIP}
_PROTO_NAMES = {num: name for name, num in PROTOS.items()}
FAMILIES = {1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6"}  # NFPROTO_*
HOOK_CHAINS = {"input": "INPUT", "output": "OUTPUT", "forward": "FORWARD"}


@dataclass(frozen=True)
class Flow:
    """One probe's flow as the kernel sees it (the outer header). A port of None matches any."""

    proto: str  # "tcp" | "udp" | "ipip"
    src: str
    dst: str
    sport: int | None = None
    dport: int | None = None

    def __post_init__(self):
        if self.proto not in PROTOS:
            raise ValueError(f"unknown flow protocol {self.proto!r}")
        for end in ("src", "dst"):  # one spelling per address: traced packets are compared with it
            object.__setattr__(self, end, str(ipaddress.ip_address(getattr(self, end))))
        if self.proto == "ipip":
            object.__setattr__(self, "sport", None)
            object.__setattr__(self, "dport", None)

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.src).version

    def covers(self, packet: Flow) -> bool:
        """Whether a packet (every field known) belongs to this flow."""
        return (self.proto, self.src, self.dst) == (packet.proto, packet.src, packet.dst) \
            and self.sport in (None, packet.sport) and self.dport in (None, packet.dport)


@dataclass(frozen=True)
class RuleFound:
    """The rule (or chain policy) whose verdict dropped a flow."""

    family: str  # nft family ("ip", "ip6", "inet", "netdev", "bridge") or "iptables-legacy"
    table: str
    chain: str
    handle: int | None  # nft rule handle; None for a chain policy and for iptables-legacy
    text: str  # as `nft -a list` (counters zeroed out) / `iptables-save` shows it; "policy drop" for a policy
    comment: str | None
    verdict: str  # "drop", "reject", "policy drop"
    # additive, when iptables (-nft or -legacy) owns the rule: its iptables-save form (`-P CHAIN
    # DROP` for a policy) and its number in the chain (`iptables -I CHAIN N` goes before it)
    iptables: str | None = None
    position: int | None = None

    def to_dict(self) -> dict:
        found = {"family": self.family, "table": self.table, "chain": self.chain, "handle": self.handle,
                 "text": self.text, "comment": self.comment, "verdict": self.verdict}
        if self.iptables is not None:  # additive: only iptables' own rules carry it
            found |= {"iptables": self.iptables, "position": self.position}
        return found


@dataclass(frozen=True)
class NotNamed:
    """Nothing could be named, and why (one line for the operator)."""

    reason: str


# ---------------------------------------------------------------- trace messages

@dataclass(frozen=True)
class TraceEvent:
    """One trace message: a traced packet completed a rule (``rule``), fell off a base chain
    (``policy``) or a regular one (``return``). Only the first message of each hook carries the
    packet's headers (``packet``); the rest are tied to it by ``trace_id``."""

    trace_id: int
    family: str
    table: str
    chain: str
    kind: str  # "rule" | "policy" | "return"
    handle: int | None
    verdict: str | None  # "drop", "accept", "continue", "jump", ...
    headers: bool = False  # this message carries the packet's headers: a new hook, or a new packet
    packet: Flow | None = None  # their flow, when TCP, UDP or IPIP


_NLMSG = struct.Struct("=IHHII")
_NLA = struct.Struct("=HH")
# enum nft_trace_attributes
_TABLE, _CHAIN, _HANDLE, _TYPE, _VERDICT, _ID = 1, 2, 3, 4, 5, 6
_NETWORK, _TRANSPORT, _POLICY = 8, 9, 16
_KINDS = {1: "policy", 2: "return", 3: "rule"}
# NF_DROP.. and the nftables-internal verdicts (NFT_CONTINUE = -1 ...)
_VERDICTS = {0: "drop", 1: "accept", 2: "stolen", 3: "queue", 4: "repeat", 5: "stop",
             -1: "continue", -2: "break", -3: "jump", -4: "goto", -5: "return"}


def _attrs(data: bytes) -> dict[int, bytes]:
    found, off = {}, 0
    while off + 4 <= len(data):
        length, kind = _NLA.unpack_from(data, off)
        if length < 4 or off + length > len(data):
            break
        found[kind & 0x3FFF] = data[off + 4:off + length]
        off += (length + 3) & ~3
    return found


def _verdict(code: int) -> str:
    return _VERDICTS.get(code if code < 0 else code & 0xFF, str(code))


def _u32(raw: bytes | None) -> int | None:
    return None if raw is None or len(raw) != 4 else struct.unpack("!I", raw)[0]


def packet_flow(network: bytes, transport: bytes | None) -> Flow | None:
    """The flow of a traced packet from its network and transport headers (None: not TCP, UDP
    or IPIP, or too short to say)."""
    if not network:
        return None
    if network[0] >> 4 == 4 and len(network) >= 20:
        proto, src, dst = network[9], network[12:16], network[16:20]
    elif network[0] >> 4 == 6 and len(network) >= 40:
        proto, src, dst = network[6], network[8:24], network[24:40]
    else:
        return None
    name = _PROTO_NAMES.get(proto)
    if name is None:
        return None
    sport = dport = None
    if name != "ipip":
        if transport is None or len(transport) < 4:
            return None
        sport, dport = struct.unpack_from("!HH", transport)
    return Flow(name, str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst)), sport, dport)


def parse_trace_messages(data: bytes) -> list[TraceEvent]:
    """Every trace event in one netlink read (other messages and truncated ones are skipped:
    the kernel wrote them, a short read is the only damage)."""
    events, off = [], 0
    while off + _NLMSG.size <= len(data):
        length, kind = _NLMSG.unpack_from(data, off)[:2]
        if length < _NLMSG.size or off + length > len(data):
            break
        if kind == NFNL_MSG_NFT_TRACE and length >= _NLMSG.size + 4:
            event = _event(data[off + _NLMSG.size:off + length])
            if event is not None:
                events.append(event)
        off += (length + 3) & ~3
    return events


def _event(body: bytes) -> TraceEvent | None:
    attrs = _attrs(body[4:])  # after struct nfgenmsg: the table's family, version, resource id
    trace_id, kind = _u32(attrs.get(_ID)), _u32(attrs.get(_TYPE))
    if trace_id is None or kind not in _KINDS or _TABLE not in attrs or _CHAIN not in attrs:
        return None
    handle = struct.unpack("!Q", attrs[_HANDLE])[0] if len(attrs.get(_HANDLE, b"")) == 8 else None
    verdict = None
    if _VERDICT in attrs:
        code = _attrs(attrs[_VERDICT]).get(1)  # NFTA_VERDICT_CODE
        verdict = _verdict(struct.unpack("!i", code)[0]) if code is not None and len(code) == 4 else None
    elif _POLICY in attrs:
        verdict = _verdict(_u32(attrs[_POLICY]))
    packet = packet_flow(attrs[_NETWORK], attrs.get(_TRANSPORT)) if _NETWORK in attrs else None
    return TraceEvent(trace_id, FAMILIES.get(body[0], str(body[0])), _name(attrs[_TABLE]), _name(attrs[_CHAIN]),
                      _KINDS[kind], handle, verdict, _NETWORK in attrs, packet)


def _name(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("utf-8", "replace")


class TraceBook:
    """Trace events in; per flow, the first event that dropped one of its packets, else the last
    place another table saw it. Events of packets that are none of our flows are only counted."""

    def __init__(self, flows: Iterable[Flow]):
        self._by_addresses: dict[tuple[str, str, str], list[Flow]] = {}
        for flow in dict.fromkeys(flows):
            self._by_addresses.setdefault((flow.proto, flow.src, flow.dst), []).append(flow)
        self._in_flight: dict[int, Flow] = {}  # trace id -> our flow the packet belongs to
        self.drops: dict[Flow, TraceEvent] = {}
        self.last: dict[Flow, TraceEvent] = {}  # outside our own table
        self.seen: set[Flow] = set()
        self.foreign = 0

    def add(self, event: TraceEvent) -> None:
        if event.headers:  # a new hook, or a new packet: ids are reused (the kernel makes them from skb addresses)
            p = event.packet
            flow = None if p is None else next(
                (f for f in self._by_addresses.get((p.proto, p.src, p.dst), ()) if f.covers(p)), None)
            if flow is None:
                self._in_flight.pop(event.trace_id, None)
            else:
                self._in_flight[event.trace_id] = flow
        flow = self._in_flight.get(event.trace_id)
        if flow is None:
            self.foreign += 1
            return
        self.seen.add(flow)
        if event.table.startswith(TRACE_TABLE_PREFIX) or (event.kind == "rule" and event.handle is None):
            return  # our own marking rule, and the kernel's handle-less "end of rules" note
        self.last[flow] = event
        if event.verdict == "drop":
            self.drops.setdefault(flow, event)
            del self._in_flight[event.trace_id]  # a dropped packet is gone; its id may be reused


# ---------------------------------------------------------------- the trace table

def trace_ruleset(table: str, flows: Sequence[tuple[Flow, str]]) -> str:
    """The inet table that sets ``meta nftrace`` for exactly these flows and nothing else: the
    ingress flows at prerouting, the egress flows at output, each hook at ``PRIORITY_FIRST``."""
    chains = []
    sets: list[str] = []
    for direction, hook in (("ingress", "prerouting"), ("egress", "output")):
        mine = [f for f, d in flows if d == direction]
        if mine:
            rules = _marking(mine, direction, sets)
            chains.append(_chain(direction, f"hook {hook}", rules))
    return f"table inet {table} {{\n" + "".join(sets) + "".join(chains) + "}\n"


def netdev_trace_ruleset(table: str, flows: Sequence[tuple[Flow, str]], devices: Sequence[str]) -> str | None:
    """A netdev table marking the ingress flows at the ingress hook of each device that has
    netdev ingress chains, ahead of them (those run before prerouting). None when not needed."""
    mine = [f for f, d in flows if d == "ingress"]
    devices = [d for d in devices if '"' not in d and "\\" not in d]
    if not mine or not devices:
        return None
    sets: list[str] = []
    rules = _marking(mine, "ingress", sets)
    chains = [_chain(f"dev{i}", f'hook ingress device "{dev}"', rules) for i, dev in enumerate(devices)]
    return f"table netdev {table} {{\n" + "".join(sets) + "".join(chains) + "}\n"


def _chain(name: str, hook: str, rules: list[str]) -> str:
    body = "".join(f"    {r}\n" for r in rules)
    return f"  chain {name} {{\n    type filter {hook} priority {PRIORITY_FIRST}; policy accept;\n{body}  }}\n"


def _marking(flows: list[Flow], prefix: str, sets: list[str]) -> list[str]:
    """One set per shape of flow (address family, protocol, which ports are known) and one rule
    per set: a lookup per packet, however many flows."""
    shapes: dict[tuple, list[str]] = {}
    for f in flows:  # an IPIP flow has no ports
        ports = [p for p in (f.sport, f.dport) if p is not None]
        element = " . ".join([f.src, f.dst, *map(str, ports)])
        shapes.setdefault((f.version, f.proto, f.sport is not None, f.dport is not None), []).append(element)
    rules = []
    for (version, proto, sport, dport), elements in shapes.items():
        addr = "ip" if version == 4 else "ip6"
        name = f"{prefix}_{proto}{version}{'s' if sport else ''}{'d' if dport else ''}"
        keys = [f"{addr} saddr", f"{addr} daddr"] + [f"{proto} {p}" for p, on in (("sport", sport), ("dport", dport))
                                                     if on]
        types = [f"ipv{version}_addr"] * 2 + ["inet_service"] * (len(keys) - 2)
        sets.append(f"  set {name} {{\n    type {' . '.join(types)}\n"
                    f"    elements = {{ {', '.join(dict.fromkeys(elements))} }}\n  }}\n")
        guard = "" if len(keys) > 2 else f"meta l4proto {PROTOS[proto]} "
        rules.append(f"{guard}{' . '.join(keys)} @{name} meta nftrace set 1")
    return rules


# ---------------------------------------------------------------- nft listings

_TABLE_LINE = re.compile(r"^\s*table\s+(\S+)\s+(\S+)\s*\{?")
_DEVICES = re.compile(r'\bdevices?\s*=?\s*(?:\{([^}]*)\}|"([^"]*)"|(\S+?)[;\s])')


def trace_tables(listing: str) -> list[tuple[str, str]]:
    """(family, name) of every trace table in `nft list tables` (or any listing) text."""
    found = []
    for line in listing.splitlines():
        m = _TABLE_LINE.match(line)
        if m and m.group(2).startswith(TRACE_TABLE_PREFIX):
            found.append((m.group(1), m.group(2)))
    return found


def netdev_ingress_devices(listing: str) -> list[str]:
    """The devices that netdev-family ingress chains hook, from `nft list chains` text (nft
    1.0.6's JSON omits the device), ours excluded."""
    devices, family, table = [], None, ""
    for line in listing.splitlines():
        m = _TABLE_LINE.match(line)
        if m:
            family, table = m.group(1), m.group(2)
        elif family == "netdev" and "hook ingress" in line and not table.startswith(TRACE_TABLE_PREFIX):
            d = _DEVICES.search(line)
            if d:
                names = d.group(1).split(",") if d.group(1) is not None else [d.group(2) or d.group(3)]
                devices += [n.strip().strip('"') for n in names if n.strip()]
    return list(dict.fromkeys(devices))


_RULE_LINE = re.compile(r"^\s*(.*?)\s*# handle (\d+)\s*$")
_COUNTER = re.compile(r"\bcounter packets \d+ bytes \d+")
_COMMENT = re.compile(r'\bcomment "((?:[^"\\]|\\.)*)"')


def chain_rules(listing: str) -> list[tuple[int, str]]:
    """(handle, text) of each rule, in order, from `nft -a list chain` text; counters' figures
    dropped (they change, and a result is diffed)."""
    rules = []
    for line in listing.splitlines():
        m = _RULE_LINE.match(line)
        if m and not m.group(1).endswith("{"):
            rules.append((int(m.group(2)), " ".join(_COUNTER.sub("counter", m.group(1)).split())))
    return rules


def rule_found(drop: TraceEvent, rules: Sequence[tuple[int, str]] | None,
               iptables: tuple[str, str | None, int | None] | None = None) -> RuleFound | NotNamed:
    """The drop event named: its rule's text and comment from the chain's listing (``rules``,
    from ``chain_rules``), or the chain's policy. ``iptables``: (iptables-save form, its comment,
    its position) when iptables-nft owns the rule (its comment lives there: nft shows none)."""
    ipt, ipt_comment, position = iptables or (None, None, None)
    if drop.kind == "policy":
        return RuleFound(drop.family, drop.table, drop.chain, None, "policy drop", None, "policy drop", ipt, position)
    text = next((t for h, t in rules or () if h == drop.handle), None)
    if text is None:
        return NotNamed(f"{drop.family} {drop.table} {drop.chain} handle {drop.handle} dropped it, "
                        "but the rule was gone when listed")
    m = _COMMENT.search(text)
    comment = m.group(1) if m else ipt_comment
    reject = re.search(r"\breject\b", text) or (ipt is not None and "-j REJECT" in ipt)
    return RuleFound(drop.family, drop.table, drop.chain, drop.handle, text, comment,
                     "reject" if reject else "drop", ipt, position)


# ---------------------------------------------------------------- the fix

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")


def nft_name(name: str) -> str:
    """A table or chain name as an nft command line takes it (quoted unless a plain identifier)."""
    return name if _IDENTIFIER.match(name) else f'"{name}"'


def fix_lines(flow: Flow, hook: str, rule: RuleFound | None) -> dict:
    """The nft line and the iptables line that would allow exactly this flow (addresses,
    protocol, destination port: the source port of a probe is one of many). Before the named
    rule when nft/iptables owns it (``insert ... position HANDLE``, ``iptables-nft|-legacy -I
    CHAIN N``), after every rule for a chain policy, else at the top of the hook's chain
    (``inet filter`` for nft). Only the line of the tool that owns the rule can undo its drop (a
    drop in any table is final). Printed, never applied."""
    addr, tool = ("ip", "iptables") if flow.version == 4 else ("ip6", "ip6tables")
    if rule is not None and rule.iptables:  # the variant that owns the rule (a host may have both)
        tool += "-legacy" if rule.family == "iptables-legacy" else "-nft"
    match = f"{addr} saddr {flow.src} {addr} daddr {flow.dst} "
    ipt_match = f"-s {flow.src} -d {flow.dst} "
    if flow.proto == "ipip":
        match += f"meta l4proto {IPPROTO_IPIP}"
        ipt_match += f"-p {IPPROTO_IPIP}"
    else:
        match += f"{flow.proto} dport {flow.dport}" if flow.dport is not None else f"meta l4proto {flow.proto}"
        ipt_match += f"-p {flow.proto}" + (f" -m {flow.proto} --dport {flow.dport}" if flow.dport is not None else "")

    nft_rule = rule is not None and rule.family != "iptables-legacy"
    if nft_rule and rule.handle is not None:
        where = f"insert rule {rule.family} {nft_name(rule.table)} {nft_name(rule.chain)} position {rule.handle}"
    elif nft_rule:  # the chain's policy dropped it: after every rule
        where = f"add rule {rule.family} {nft_name(rule.table)} {nft_name(rule.chain)}"
    else:
        where = f"insert rule inet filter {hook}"

    table_opt = f"-t {rule.table} " if rule is not None and rule.iptables and rule.table != "filter" else ""
    if rule is not None and rule.iptables and rule.position is not None:
        ipt_where = f"{table_opt}-I {rule.chain} {rule.position}"
    elif rule is not None and rule.iptables:  # its policy
        ipt_where = f"{table_opt}-A {rule.chain}"
    else:
        ipt_where = f"-I {HOOK_CHAINS[hook]}"
    return {"nft": f"nft {where} {match} accept", "iptables": f"{tool} {ipt_where} {ipt_match} -j ACCEPT"}
