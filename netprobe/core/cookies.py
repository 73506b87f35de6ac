"""Probe ids keyed into the packet itself (zmap-style), so replies are matched without state
on the wire and forged replies are rejected.

TCP has no room for a tag: the id's low 15 bits pick the source port (the *slot*) and the whole id
is XORed with a keyed hash of the flow into the sequence number, so a SYN-ACK/RST (ack-1) or an
ICMP error (quoted seq) gives the id back and proves the replier saw our SYN. UDP, VXLAN and IPIP
probes carry a payload: magic, version, flags, id, timestamp and a truncated HMAC-SHA256 over them,
keyed by the cluster token, so the responder answers only probes it can authenticate.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from netprobe.core.wire import MAGIC, SLOT_BASE, SLOT_MASK
from netprobe.errors import BadPacket

ID_MASK = 0xFFFFFFFF

VERSION = 1
FLAG_ECHO = 0x01  # set by the responder on its answer
_HEADER = struct.Struct("!4sBBHIQ")  # magic, version, flags, reserved, probe id, timestamp (ns)
TAG_LEN = 16
PAYLOAD_LEN = _HEADER.size + TAG_LEN  # 36 bytes


def key_from_token(token: str | bytes) -> bytes:
    """The cookie/HMAC key all hosts of a cluster share, derived from the cluster token."""
    raw = token.encode() if isinstance(token, str) else token
    return hashlib.sha256(b"netprobe-v1:" + raw).digest()


def slot_of(probe_id: int) -> int:
    """The source port (and IPIP outer IP id) that carries a probe's low bits."""
    return SLOT_BASE | (probe_id & SLOT_MASK)


def _flow_mask(key: bytes, src: bytes, dst: bytes, sport: int, dport: int) -> int:
    digest = hashlib.blake2b(src + dst + struct.pack("!HH", sport, dport), key=key[:64], digest_size=4).digest()
    return int.from_bytes(digest, "big")


def tcp_seq(key: bytes, probe_id: int, src: bytes, dst: bytes, dport: int) -> int:
    """Sequence number of the SYN for ``probe_id`` (src/dst are 4-byte addresses)."""
    return (probe_id ^ _flow_mask(key, src, dst, slot_of(probe_id), dport)) & ID_MASK


def tcp_probe_id(key: bytes, src: bytes, dst: bytes, sport: int, dport: int, seq: int) -> int | None:
    """The probe id a SYN's (sport, seq) encodes, or None when they were not made with ``key``."""
    if not SLOT_BASE <= sport <= 0xFFFF:
        return None
    probe_id = (seq ^ _flow_mask(key, src, dst, sport, dport)) & ID_MASK
    return probe_id if slot_of(probe_id) == sport else None


@dataclass(frozen=True)
class ProbePayload:
    probe_id: int
    timestamp_ns: int
    flags: int = 0

    @property
    def is_echo(self) -> bool:
        return bool(self.flags & FLAG_ECHO)


def _tag(key: bytes, header: bytes) -> bytes:
    return hmac.new(key, header, hashlib.sha256).digest()[:TAG_LEN]


def encode_payload(key: bytes, payload: ProbePayload) -> bytes:
    header = _HEADER.pack(MAGIC, VERSION, payload.flags, 0, payload.probe_id & ID_MASK, payload.timestamp_ns)
    return header + _tag(key, header)


def decode_payload_untrusted(data: bytes) -> tuple[ProbePayload, bytes, bytes]:
    """Split a payload into (fields, signed header, tag) without checking the tag.

    Raises BadPacket when it is not a netprobe payload of a version we speak.
    """
    if len(data) < PAYLOAD_LEN:
        raise BadPacket("payload too short")
    magic, version, flags, _reserved, probe_id, ts = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BadPacket("not a netprobe payload")
    if version != VERSION:
        raise BadPacket(f"payload version {version} not supported")
    header = bytes(data[: _HEADER.size])
    return ProbePayload(probe_id, ts, flags), header, bytes(data[_HEADER.size : PAYLOAD_LEN])


def verify_payload(key: bytes, data: bytes) -> ProbePayload:
    """Decode and authenticate a payload; BadPacket unless the tag matches ``key``."""
    payload, header, tag = decode_payload_untrusted(data)
    if not hmac.compare_digest(tag, _tag(key, header)):
        raise BadPacket("payload tag does not verify")
    return payload


def is_fresh(payload: ProbePayload, now_ns: int, *, window_ns: int = 30 * 10**9) -> bool:
    """True when the payload's timestamp is within ``window_ns`` of ``now_ns`` (either way)."""
    return abs(now_ns - payload.timestamp_ns) <= window_ns
