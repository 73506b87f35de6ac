"""Classic BPF programs that keep everything but netprobe's packets out of Python.

Every IPv4 capture hands the filter the network header at offset 0 (AF_PACKET SOCK_DGRAM taps and
raw IPv4 sockets), so one program text serves all. A tap bound to ETH_P_ALL also sees other
protocols and both directions: its program keeps IPv4 of one direction (the kernel's ancillary
loads say which), so the sender and the responder each have a tap for what comes in and one for
what this host sends, read with a plain recv (recvfrom's address costs an ioctl per packet). IPv6
differs: an ETH_P_IPV6 tap hands the filter the IPv6 header at 0, a raw IPv6 socket only what
follows it (the transport header at 0, of the socket's one protocol); the ``*_filter6`` programs
take that offset into X and load through it. ``run`` is a small interpreter of the same opcodes,
so the filters are unit-tested on captured packets without a kernel.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from netprobe.core.wire import (
    ETH_P_IP,
    FLAG_ECHO,
    ICMP6_DST_UNREACH,
    ICMP6_TIME_EXCEEDED,
    ICMP_TIME_EXCEEDED,
    ICMP_UNREACH,
    IPIP_PAYLOAD_OFFSET,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_IPIP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV6_HEADER_LEN,
    MAGIC_WORD,
    PACKET_OUTGOING,
    PAYLOAD_FLAGS_OFFSET,
    PAYLOAD_MARKER_OFFSET,
    SLOT_BASE,
    SYN_TSECR_OFFSET,
    TCP_ACK,
    TCP_RST,
    TCP_SYN,
    VXLAN6_PAYLOAD_OFFSET,
    VXLAN_PAYLOAD_OFFSET,
)

# opcodes (linux/filter.h)
LD, LDX, ST, ALU, JMP, RET, MISC = 0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x07
W, H, B = 0x00, 0x08, 0x10
IMM, ABS, IND, MEM, MSH = 0x00, 0x20, 0x40, 0x60, 0xA0
K, X = 0x00, 0x08
AND, XOR = 0x50, 0xA0
JA, JEQ, JGE, JSET = 0x00, 0x10, 0x30, 0x40
RET_A = 0x10
SKF_AD_PROTOCOL = (-0x1000 + 0) & 0xFFFFFFFF  # ancillary loads (linux/filter.h): the ethertype
SKF_AD_PKTTYPE = (-0x1000 + 4) & 0xFFFFFFFF   # PACKET_HOST, PACKET_OUTGOING, ...

SNAPLEN = 0x40000
SYN_ACK = TCP_SYN | TCP_ACK


@dataclass(frozen=True)
class Insn:
    code: int
    k: int = 0
    jt: int | str = 0  # a label name until assembled
    jf: int | str = 0
    label: str | None = None


def assemble(insns: list[Insn]) -> list[tuple[int, int, int, int]]:
    """Resolve labels into relative jump offsets: (code, jt, jf, k) rows."""
    where = {ins.label: i for i, ins in enumerate(insns) if ins.label}
    out = []
    for i, ins in enumerate(insns):
        def rel(t):
            if isinstance(t, str):
                off = where[t] - i - 1
                if not 0 <= off <= 255:
                    raise ValueError(f"jump to {t} out of range")
                return off
            return t
        k = rel(ins.k) if ins.code == JMP | JA else ins.k
        out.append((ins.code, rel(ins.jt), rel(ins.jf), k & 0xFFFFFFFF))
    return out


def pack(prog: list[tuple[int, int, int, int]]) -> bytes:
    """The struct sock_filter array the kernel takes."""
    return b"".join(struct.pack("=HBBI", code, jt, jf, k) for code, jt, jf, k in prog)


def _head(tap: bool, *, leaving: bool = False) -> list[Insn]:
    """What every program checks first. A tap (ETH_P_ALL) hands it every protocol, only IPv4 goes
    on, and both directions: only what this host sends (``leaving``: PACKET_OUTGOING) or only
    what it receives. Fragments are never ours (probes and their answers are small)."""
    head = []
    if tap:
        head += [Insn(LD | H | ABS, SKF_AD_PROTOCOL), Insn(JMP | JEQ | K, ETH_P_IP, 0, "drop"),
                 Insn(LD | W | ABS, SKF_AD_PKTTYPE),
                 Insn(JMP | JEQ | K, PACKET_OUTGOING, 0 if leaving else "drop", "drop" if leaving else 0)]
    return head + [Insn(LD | H | ABS, 6), Insn(JMP | JSET | K, 0x3FFF, "drop", 0)]


_TAIL = [Insn(RET | K, SNAPLEN, label="accept"), Insn(RET | K, 0, label="drop")]


def _payload_at(offset: int, marker: int, miss: str, *, echo: bool | None = None,
                label: str | None = None) -> list[Insn]:
    """Accept when a payload with the cluster's keyed ``marker`` starts ``offset`` bytes after
    the transport (or inner IP) header and, unless ``echo`` is None, its echo flag says ``echo``
    (an answer) or not (a probe); else go to ``miss``. X holds that header's offset."""
    insns = [
        Insn(LD | W | IND, offset, label=label),
        Insn(JMP | JEQ | K, MAGIC_WORD, 0, miss),
        Insn(LD | H | IND, offset + PAYLOAD_MARKER_OFFSET),
        Insn(JMP | JEQ | K, marker & 0xFFFF, "accept" if echo is None else 0, miss),
    ]
    if echo is not None:
        insns += [Insn(LD | B | IND, offset + PAYLOAD_FLAGS_OFFSET),
                  Insn(JMP | JSET | K, FLAG_ECHO, "accept" if echo else miss, miss if echo else "accept")]
    return insns


def _payloads(marker: int, *, echo: bool) -> list[Insn]:
    """Payload packets with the marker, probes or (``echo``) answers: UDP or VXLAN from label
    ``udp`` on, IPIP from ``ipip``."""
    return [Insn(LDX | B | MSH, 0, label="udp"),
            *_payload_at(8, marker, "vxlan", echo=echo),
            *_payload_at(VXLAN_PAYLOAD_OFFSET, marker, "drop", echo=echo, label="vxlan"),
            Insn(LDX | B | MSH, 0, label="ipip"),
            *_payload_at(IPIP_PAYLOAD_OFFSET, marker, "drop", echo=echo)]


def _probes(marker: int) -> list[Insn]:
    """Probes of the cluster: SYNs (no ACK, no RST) from a slot port whose IP id is the slot XOR
    ``marker``, payload probes (not echoes) in UDP, VXLAN or IPIP."""
    return [
        Insn(LD | B | ABS, 9),
        Insn(JMP | JEQ | K, IPPROTO_TCP, 0, "not-tcp"),
        Insn(LDX | B | MSH, 0),
        Insn(LD | B | IND, 13),
        Insn(ALU | AND | K, TCP_SYN | TCP_ACK | TCP_RST),
        Insn(JMP | JEQ | K, TCP_SYN, 0, "drop"),
        Insn(LD | H | IND, 0),                    # A = source port
        Insn(JMP | JGE | K, SLOT_BASE, 0, "drop"),
        Insn(MISC | 0x00),                        # TAX: X = source port
        Insn(LD | H | ABS, 4),                    # A = IP id
        Insn(ALU | XOR | X),
        Insn(JMP | JEQ | K, marker & 0xFFFF, "accept", "drop"),
        Insn(JMP | JEQ | K, IPPROTO_UDP, "udp", 0, label="not-tcp"),
        Insn(JMP | JEQ | K, IPPROTO_IPIP, "ipip", "drop"),
        *_payloads(marker, echo=False),
    ]


def sender_filter(*, tap: bool, marker: int) -> list[tuple[int, int, int, int]]:
    """Replies to our probes coming in: SYN-ACK or RST to a probe slot, ICMP errors, payload
    echoes carrying the cluster's keyed ``marker`` (``cookies.marker_of``) and the echo flag in
    UDP, VXLAN or IPIP (an echo keeps its probe's encapsulation)."""
    return assemble(_head(tap) + [
        Insn(LD | B | ABS, 9),
        Insn(JMP | JEQ | K, IPPROTO_TCP, "tcp", 0),
        Insn(JMP | JEQ | K, IPPROTO_ICMP, "icmp", 0),
        Insn(JMP | JEQ | K, IPPROTO_UDP, "udp", 0),
        Insn(JMP | JEQ | K, IPPROTO_IPIP, "ipip", "drop"),
        Insn(LDX | B | MSH, 0, label="tcp"),
        Insn(LD | H | IND, 2),
        Insn(JMP | JGE | K, SLOT_BASE, 0, "drop"),
        Insn(LD | B | IND, 13),
        Insn(JMP | JSET | K, TCP_RST, "accept", 0),
        Insn(ALU | AND | K, SYN_ACK),
        Insn(JMP | JEQ | K, SYN_ACK, "accept", "drop"),
        Insn(LDX | B | MSH, 0, label="icmp"),
        Insn(LD | B | IND, 0),
        Insn(JMP | JEQ | K, ICMP_UNREACH, "accept", 0),
        Insn(JMP | JEQ | K, ICMP_TIME_EXCEEDED, "accept", "drop"),
        Insn(LDX | B | MSH, 0, label="udp"),
        *_payload_at(8, marker, "vxlan", echo=True),  # an echo, not a peer's probe to this host
        *_payload_at(VXLAN_PAYLOAD_OFFSET, marker, "drop", echo=True, label="vxlan"),
        Insn(LDX | B | MSH, 0, label="ipip"),
        *_payload_at(IPIP_PAYLOAD_OFFSET, marker, "drop", echo=True),
    ] + _TAIL)


def leaving_filter(*, marker: int) -> list[tuple[int, int, int, int]]:
    """For the sender's second tap: this host's own probes leaving (after the netdev/tc egress
    hooks) -- the evidence that they got out. Never its answers to others' probes."""
    return assemble(_head(True, leaving=True) + _probes(marker) + _TAIL)


def responder_filter(*, tap: bool, marker: int) -> list[tuple[int, int, int, int]]:
    """Probes coming in: SYNs whose IP id is their slot XOR the cluster's keyed ``marker``, payload
    probes with the marker in UDP, VXLAN or IPIP (never echoes to this host's own prober)."""
    return assemble(_head(tap) + _probes(marker) + _TAIL)


def answers_filter(*, marker: int) -> list[tuple[int, int, int, int]]:
    """For the responder's second tap: this host's answers leaving -- SYN-ACK/RST to a probe slot,
    ICMP unreachables, echoes in any encapsulation; never its own probes."""
    return assemble(_head(True, leaving=True) + [
        Insn(LD | B | ABS, 9),
        Insn(JMP | JEQ | K, IPPROTO_TCP, "tcp", 0),
        Insn(JMP | JEQ | K, IPPROTO_ICMP, "icmp", 0),
        Insn(JMP | JEQ | K, IPPROTO_UDP, "udp", 0),
        Insn(JMP | JEQ | K, IPPROTO_IPIP, "ipip", "drop"),
        Insn(LDX | B | MSH, 0, label="tcp"),
        Insn(LD | B | IND, 13),
        Insn(JMP | JSET | K, TCP_RST, "slot", 0),
        Insn(ALU | AND | K, SYN_ACK),
        Insn(JMP | JEQ | K, SYN_ACK, 0, "drop"),
        Insn(LD | H | IND, 2, label="slot"),
        Insn(JMP | JGE | K, SLOT_BASE, "accept", "drop"),
        Insn(LDX | B | MSH, 0, label="icmp"),
        Insn(LD | B | IND, 0),
        Insn(JMP | JEQ | K, ICMP_UNREACH, "accept", "drop"),
        *_payloads(marker, echo=True),
    ] + _TAIL)


# ------------------------------------------------------------------ IPv6

def _head6(tap: bool, proto: int | None, *, incoming_only: bool) -> list[Insn]:
    """A = the transport protocol, X = the transport header's offset: a tap reads the IPv6 header's
    next header (an extension header, a fragment's among them, matches no protocol: dropped), a
    raw socket is of one protocol and starts at its transport header."""
    if tap:
        head = [Insn(LD | W | ABS, SKF_AD_PKTTYPE), Insn(JMP | JEQ | K, PACKET_OUTGOING, "drop", 0)] \
            if incoming_only else []
        return head + [Insn(LDX | W | IMM, IPV6_HEADER_LEN), Insn(LD | B | ABS, 6)]
    if proto is None:
        raise ValueError("a raw IPv6 socket's filter needs its protocol")
    return [Insn(LDX | W | IMM, 0), Insn(LD | W | IMM, proto)]


def sender_filter6(*, tap: bool, marker: int, proto: int | None = None) -> list[tuple[int, int, int, int]]:
    """``sender_filter`` for IPv6: SYN-ACK or RST to a probe slot, ICMPv6 destination unreachable
    and time exceeded, payload echoes (UDP or VXLAN) with the keyed ``marker`` and the echo flag.
    ``proto``: the raw socket's."""
    prog = _head6(tap, proto, incoming_only=True) + [
        Insn(JMP | JEQ | K, IPPROTO_TCP, "tcp", 0),
        Insn(JMP | JEQ | K, IPPROTO_ICMPV6, "icmp", 0),
        Insn(JMP | JEQ | K, IPPROTO_UDP, "udp", "drop"),
        Insn(LD | H | IND, 2, label="tcp"),
        Insn(JMP | JGE | K, SLOT_BASE, 0, "drop"),
        Insn(LD | B | IND, 13),
        Insn(JMP | JSET | K, TCP_RST, "accept", 0),
        Insn(ALU | AND | K, SYN_ACK),
        Insn(JMP | JEQ | K, SYN_ACK, "accept", "drop"),
        Insn(LD | B | IND, 0, label="icmp"),
        Insn(JMP | JEQ | K, ICMP6_DST_UNREACH, "accept", 0),
        Insn(JMP | JEQ | K, ICMP6_TIME_EXCEEDED, "accept", "drop"),
        *_payload_at(8, marker, "vxlan", echo=True, label="udp"),  # an echo, not a peer's probe
        *_payload_at(VXLAN6_PAYLOAD_OFFSET, marker, "drop", echo=True, label="vxlan"),
    ] + _TAIL
    return assemble(prog)


def responder_filter6(*, tap: bool, marker: int, proto: int | None = None) -> list[tuple[int, int, int, int]]:
    """``responder_filter`` for IPv6: SYNs whose TSecr carries their slot XOR the keyed ``marker``
    (IPv6 has no IP id), payload probes with the marker in UDP or VXLAN (inner IPv6), and on the
    tap this host's answers leaving (SYN-ACK/RST to a probe slot, ICMPv6 destination unreachable,
    echoes). ``proto``: the raw socket's."""
    prog = _head6(tap, proto, incoming_only=False) + [
        Insn(JMP | JEQ | K, IPPROTO_TCP, "tcp", 0),
        Insn(JMP | JEQ | K, IPPROTO_UDP, "udp", 0),
        Insn(JMP | JEQ | K, IPPROTO_ICMPV6, "icmp" if tap else "drop", "drop"),
        Insn(LD | B | IND, 13, label="tcp"),
        Insn(ALU | AND | K, TCP_SYN | TCP_ACK | TCP_RST),
        Insn(JMP | JEQ | K, TCP_SYN, "syn", 0),
    ]
    if tap:
        prog += [
            Insn(JMP | JSET | K, TCP_RST, "answer", 0),
            Insn(JMP | JEQ | K, SYN_ACK, "answer", "drop"),
            Insn(LD | W | ABS, SKF_AD_PKTTYPE, label="answer"),  # answers: only those leaving
            Insn(JMP | JEQ | K, PACKET_OUTGOING, 0, "drop"),
            Insn(LD | H | IND, 2),
            Insn(JMP | JGE | K, SLOT_BASE, "accept", "drop"),
        ]
    else:
        prog += [Insn(JMP | JA, "drop")]
    prog += [
        Insn(LD | H | IND, 0, label="syn"),       # A = source port
        Insn(JMP | JGE | K, SLOT_BASE, 0, "drop"),
        Insn(ST, 0),                              # M[0] = source port (X holds the header's offset)
        Insn(LD | H | IND, SYN_TSECR_OFFSET + 2),  # A = TSecr's low 16 bits
        Insn(LDX | W | MEM, 0),
        Insn(ALU | XOR | X),
        Insn(JMP | JEQ | K, marker & 0xFFFF, "accept", "drop"),
        *_payload_at(8, marker, "vxlan", label="udp"),
        *_payload_at(VXLAN6_PAYLOAD_OFFSET, marker, "drop", label="vxlan"),
    ]
    if tap:
        prog += [
            Insn(LD | W | ABS, SKF_AD_PKTTYPE, label="icmp"),
            Insn(JMP | JEQ | K, PACKET_OUTGOING, 0, "drop"),
            Insn(LD | B | IND, 0),
            Insn(JMP | JEQ | K, ICMP6_DST_UNREACH, "accept", "drop"),
        ]
    return assemble(prog + _TAIL)


def run(prog: list[tuple[int, int, int, int]], packet: bytes, *, pkttype: int = 0, protocol: int = ETH_P_IP) -> int:
    """Interpret ``prog`` over ``packet`` as the kernel would: the number of bytes to keep.
    ``pkttype`` and ``protocol`` (the ethertype) are what the kernel's ancillary loads give."""
    a = x = 0
    mem = [0] * 16
    pc = 0

    def load(size: int, off: int) -> int | None:
        if off == SKF_AD_PKTTYPE:
            return pkttype
        if off == SKF_AD_PROTOCOL:
            return protocol
        if off < 0 or off + size > len(packet):
            return None
        return int.from_bytes(packet[off : off + size], "big")

    while pc < len(prog):
        code, jt, jf, k = prog[pc]
        pc += 1
        cls = code & 0x07
        if cls in (LD, LDX):
            size = {W: 4, H: 2, B: 1}[code & 0x18]
            mode = code & 0xE0
            if cls == LDX and mode == MSH:
                v = load(1, k)
                if v is None:
                    return 0
                x = (v & 0x0F) * 4
                continue
            if mode == IMM:
                v = k
            elif mode == MEM:
                v = mem[k]
            else:
                v = load(size, k + (x if mode == IND else 0))
                if v is None:
                    return 0  # out of bounds: the kernel drops the packet
            if cls == LD:
                a = v
            else:
                x = v
        elif cls == ST:
            mem[k] = a
        elif cls == ALU:
            operand = x if code & X else k
            op = code & 0xF0
            if op == AND:
                a &= operand
            elif op == XOR:
                a ^= operand
            else:
                raise ValueError(f"ALU op {op:#x} not supported")
        elif cls == JMP:
            op = code & 0xF0
            if op == JA:
                pc += k
                continue
            operand = x if code & X else k
            taken = {JEQ: a == operand, JGE: a >= operand, JSET: bool(a & operand)}[op]
            pc += jt if taken else jf
        elif cls == RET:
            return a if code & RET_A else k
        elif cls == MISC:
            if code == MISC | 0x00:
                x = a
            else:
                a = x
    raise ValueError("program fell off its end")
