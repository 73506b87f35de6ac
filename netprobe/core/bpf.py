"""Classic BPF programs that keep everything but netprobe's packets out of Python.

Both IPv4 capture kinds hand the filter an IPv4 packet at offset 0 (AF_PACKET SOCK_DGRAM and raw
IPv4 sockets), so one program text serves both. IPv6 differs: an ETH_P_IPV6 tap hands it the IPv6
header at 0, a raw IPv6 socket only what follows it (the transport header at 0, of the socket's
one protocol); the ``*_filter6`` programs take that offset into X and load through it. ``run`` is
a small interpreter of the same opcodes, so the filters are unit-tested on captured packets
without a kernel.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from netprobe.core.wire import (
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
SKF_AD_PKTTYPE = (-0x1000 + 4) & 0xFFFFFFFF

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


def _common_head(tap_incoming_only: bool) -> list[Insn]:
    head = []
    if tap_incoming_only:
        head += [Insn(LD | W | ABS, SKF_AD_PKTTYPE), Insn(JMP | JEQ | K, PACKET_OUTGOING, "drop", 0)]
    head += [
        Insn(LD | H | ABS, 6), Insn(JMP | JSET | K, 0x3FFF, "drop", 0),  # fragments: not ours
        Insn(LD | B | ABS, 9),
    ]
    return head


_TAIL = [Insn(RET | K, SNAPLEN, label="accept"), Insn(RET | K, 0, label="drop")]


def _payload_at(offset: int, marker: int, miss: str, label: str | None = None) -> list[Insn]:
    """Accept when a payload with the cluster's keyed ``marker`` starts ``offset`` bytes after
    the transport (or inner IP) header; else go to ``miss``. X holds that header's offset."""
    return [
        Insn(LD | W | IND, offset, label=label),
        Insn(JMP | JEQ | K, MAGIC_WORD, 0, miss),
        Insn(LD | H | IND, offset + PAYLOAD_MARKER_OFFSET),
        Insn(JMP | JEQ | K, marker & 0xFFFF, "accept", miss),
    ]


def sender_filter(*, tap: bool, marker: int) -> list[tuple[int, int, int, int]]:
    """Replies to our probes: SYN-ACK or RST to a probe slot, ICMP errors, payload echoes
    carrying the cluster's keyed ``marker`` (``cookies.marker_of``)."""
    prog = _common_head(tap_incoming_only=tap) + [
        Insn(JMP | JEQ | K, IPPROTO_TCP, "tcp", 0),
        Insn(JMP | JEQ | K, IPPROTO_ICMP, "icmp", 0),
        Insn(JMP | JEQ | K, IPPROTO_UDP, "udp", "drop"),
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
        *_payload_at(8, marker, "drop"),
    ] + _TAIL
    return assemble(prog)


def responder_filter(*, tap: bool, marker: int) -> list[tuple[int, int, int, int]]:
    """Probes arriving (SYNs whose IP id is their slot XOR the cluster's keyed ``marker``, payload
    probes with the marker in UDP, VXLAN or IPIP) and, on the tap, this host's answers leaving
    (SYN-ACK/RST to a probe slot, ICMP errors, echoes)."""
    prog = _common_head(tap_incoming_only=False) + [
        Insn(JMP | JEQ | K, IPPROTO_TCP, "tcp", 0),
        Insn(JMP | JEQ | K, IPPROTO_UDP, "udp", 0),
        Insn(JMP | JEQ | K, IPPROTO_IPIP, "ipip", 0),
        Insn(JMP | JEQ | K, IPPROTO_ICMP, "icmp" if tap else "drop", "drop"),
        Insn(LDX | B | MSH, 0, label="tcp"),
        Insn(LD | B | IND, 13),
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
        Insn(MISC | 0x00),                        # TAX: X = source port
        Insn(LD | H | ABS, 4),                    # A = IP id
        Insn(ALU | XOR | X),
        Insn(JMP | JEQ | K, marker & 0xFFFF, "accept", "drop"),
        Insn(LDX | B | MSH, 0, label="udp"),
        *_payload_at(8, marker, "vxlan"),
        *_payload_at(VXLAN_PAYLOAD_OFFSET, marker, "drop", label="vxlan"),
        Insn(LDX | B | MSH, 0, label="ipip"),
        *_payload_at(IPIP_PAYLOAD_OFFSET, marker, "drop"),
    ]
    if tap:
        prog += [
            Insn(LD | W | ABS, SKF_AD_PKTTYPE, label="icmp"),
            Insn(JMP | JEQ | K, PACKET_OUTGOING, 0, "drop"),
            Insn(LDX | B | MSH, 0),
            Insn(LD | B | IND, 0),
            Insn(JMP | JEQ | K, ICMP_UNREACH, "accept", "drop"),
        ]
    return assemble(prog + _TAIL)


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
    and time exceeded, payload echoes with the keyed ``marker``. ``proto``: the raw socket's."""
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
        *_payload_at(8, marker, "drop", label="udp"),
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


def run(prog: list[tuple[int, int, int, int]], packet: bytes, *, pkttype: int = 0) -> int:
    """Interpret ``prog`` over ``packet`` as the kernel would: the number of bytes to keep."""
    a = x = 0
    mem = [0] * 16
    pc = 0

    def load(size: int, off: int) -> int | None:
        if off == SKF_AD_PKTTYPE:
            return pkttype
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
