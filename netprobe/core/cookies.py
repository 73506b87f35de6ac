"""Probe ids keyed into the packet itself (zmap-style), so replies are matched without state
on the wire and forged probes and replies are rejected.

Every key here is derived from ``keys.probe_key`` (never the cluster secret itself), and every
check is bound to the *destination* of the packet it authenticates: ``dest_key(key, dst)`` is the
key of one host's address, so a probe made for host B does not verify at host C.

TCP SYN: the id's low 15 bits pick the source port (the *slot*), the whole id rides in the TCP
timestamp option (TSval, as a Linux client sends one), the IP id (IPv6: TSecr) is the slot XOR a
keyed 16-bit *marker* (what the kernel BPF filter tests, cheaply), and the sequence number is a 32-bit keyed
MAC of the flow (addresses, ports) and the id: the responder recomputes it, and the prober
matches a SYN-ACK/RST's ack-1 (or an ICMP error's quoted seq) against the exact one it sent.

UDP, VXLAN and IPIP probes carry a payload: magic, version, flags, marker, id, timestamp and a
truncated HMAC-SHA256 over them *and the flow* (encapsulation, outer and inner addresses and
ports; ``flow_bytes``), keyed by the destination's key. Rewriting any address or port, or sending
the probe to another host, breaks the tag.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from netprobe.core.wire import MAGIC, PAYLOAD_MARKER_OFFSET, SLOT_BASE, SLOT_MASK
from netprobe.errors import BadPacket

ID_MASK = 0xFFFFFFFF

VERSION = 2  # 2: the tag covers the flow and is keyed per destination; the marker field
FLAG_ECHO = 0x01  # set by the responder on its answer
_HEADER = struct.Struct("!4sBBHIQ")  # magic, version, flags, marker, probe id, timestamp (ns)
TAG_LEN = 16
PAYLOAD_LEN = _HEADER.size + TAG_LEN  # 36 bytes
assert _HEADER.size == 20 and PAYLOAD_MARKER_OFFSET == 6  # the BPF filters read the marker there


def slot_of(probe_id: int) -> int:
    """The source port (and IPIP outer IP id) that carries a probe's low bits."""
    return SLOT_BASE | (probe_id & SLOT_MASK)


def marker_of(key: bytes) -> int:
    """The keyed 16-bit marker of a cluster's probes (IP id XOR slot of a SYN; a payload's marker
    field): the kernel filter passes only packets that carry it, so packets made without the key
    reach Python once in 65,536. Anyone who sees one probe learns it: it is a filter, not a MAC."""
    return int.from_bytes(hmac.new(key, b"netprobe bpf marker", hashlib.sha256).digest()[:2], "big")


def dest_key(key: bytes, dst: bytes) -> bytes:
    """The key of probes to (and echoes to) the host at address ``dst`` (packed)."""
    return hmac.new(key, b"netprobe destination\0" + dst, hashlib.sha256).digest()


class ProbeKeys:
    """``key`` (``keys.probe_key``), its marker and its per-destination keys, cached (bounded)."""

    MAX_CACHED = 4096

    def __init__(self, key: bytes):
        self.key = key
        self.marker = marker_of(key)
        self._dest: dict[bytes, bytes] = {}

    def for_dest(self, dst: bytes) -> bytes:
        k = self._dest.get(dst)
        if k is None:
            if len(self._dest) >= self.MAX_CACHED:
                self._dest.clear()
            k = self._dest[dst] = dest_key(self.key, dst)
        return k


# ------------------------------------------------------------------ TCP

def syn_ip_id(marker: int, sport: int) -> int:
    """The keyed marker word of a probe SYN: its IP id over IPv4, the low 16 bits of its TSecr over
    IPv6 (which has no IP id); what the responder's kernel filter tests."""
    return (sport ^ marker) & 0xFFFF


def tcp_seq(dkey: bytes, probe_id: int, src: bytes, dst: bytes, dport: int) -> int:
    """Sequence number of the SYN for ``probe_id`` from ``src`` to ``dst`` (``dkey``: dst's key)."""
    msg = src + dst + struct.pack("!HHI", slot_of(probe_id), dport, probe_id & ID_MASK)
    return int.from_bytes(hashlib.blake2b(msg, key=dkey, digest_size=4).digest(), "big")


def tcp_syn_probe_id(dkey: bytes, src: bytes, dst: bytes, sport: int, dport: int, seq: int,
                     tsval: int | None) -> int | None:
    """The probe id a SYN carries (its TSval), or None unless its sequence number is the 32-bit
    keyed MAC of exactly this flow and id."""
    if tsval is None or slot_of(tsval) != sport:
        return None
    return tsval if tcp_seq(dkey, tsval, src, dst, dport) == seq else None


# ------------------------------------------------------------------ payloads

def flow_bytes(encap: int, src: bytes, dst: bytes, sport: int, dport: int, inner_src: bytes = b"",
               inner_dst: bytes = b"", outer_sport: int = 0, outer_dport: int = 0) -> bytes:
    """What a payload tag covers besides the header: how the probe travels and every address and
    port of it (outer; inner for VXLAN and IPIP). Length-prefixed, so it stays unambiguous when
    addresses get longer."""
    return b"".join((bytes((encap, len(src))), src, dst, bytes((len(inner_src),)), inner_src, inner_dst,
                     struct.pack("!HHHH", sport, dport, outer_sport, outer_dport)))


@dataclass(frozen=True)
class ProbePayload:
    probe_id: int
    timestamp_ns: int
    flags: int = 0
    marker: int = 0

    @property
    def is_echo(self) -> bool:
        return bool(self.flags & FLAG_ECHO)


def _tag(dkey: bytes, header: bytes, flow: bytes) -> bytes:
    return hmac.new(dkey, header + flow, hashlib.sha256).digest()[:TAG_LEN]


def encode_payload(dkey: bytes, payload: ProbePayload, flow: bytes) -> bytes:
    """The payload of a probe (or echo) travelling as ``flow``, keyed by its destination's key."""
    header = _HEADER.pack(MAGIC, VERSION, payload.flags, payload.marker & 0xFFFF, payload.probe_id & ID_MASK,
                          payload.timestamp_ns)
    return header + _tag(dkey, header, flow)


def decode_payload_untrusted(data: bytes) -> tuple[ProbePayload, bytes, bytes]:
    """Split a payload into (fields, signed header, tag) without checking the tag.

    Raises BadPacket when it is not a netprobe payload of a version we speak.
    """
    if len(data) < PAYLOAD_LEN:
        raise BadPacket("payload too short")
    magic, version, flags, marker, probe_id, ts = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BadPacket("not a netprobe payload")
    if version != VERSION:
        raise BadPacket(f"payload version {version} not supported")
    header = bytes(data[: _HEADER.size])
    return ProbePayload(probe_id, ts, flags, marker), header, bytes(data[_HEADER.size : PAYLOAD_LEN])


def verify_payload(dkey: bytes, data: bytes, flow: bytes) -> ProbePayload:
    """Decode and authenticate a payload that travelled as ``flow`` to the host whose key is
    ``dkey``; BadPacket unless the tag matches."""
    payload, header, tag = decode_payload_untrusted(data)
    if not hmac.compare_digest(tag, _tag(dkey, header, flow)):
        raise BadPacket("payload tag does not verify")
    return payload


def is_fresh(payload: ProbePayload, now_ns: int, *, window_ns: int = 30 * 10**9) -> bool:
    """True when the payload's timestamp is within ``window_ns`` of ``now_ns`` (either way)."""
    return abs(now_ns - payload.timestamp_ns) <= window_ns
