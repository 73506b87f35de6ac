"""RFC 1071 Internet checksums, summed in native byte order so a template's sums are computed
once and a probe's checksum is finished with a few additions."""

from __future__ import annotations

import struct
import sys
from array import array

LITTLE = sys.byteorder == "little"


def fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ones_sum(data: bytes | bytearray | memoryview) -> int:
    """RFC 1071 one's complement sum in native byte order (pack the result with ``=H``)."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    return fold(sum(array("H", bytes(data))))


def pseudo_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """The sum of a TCP/UDP pseudo header."""
    return ones_sum(src + dst + struct.pack("!BBH", 0, proto, length))


def store_ip_checksum(buf: bytearray) -> None:
    """Redo the checksum of the IPv4 header at the start of ``buf``."""
    buf[10:12] = b"\0\0"
    struct.pack_into("=H", buf, 10, ~fold(ones_sum(memoryview(buf)[:20])) & 0xFFFF)


def store_udp_checksum(buf: bytearray, offset: int, start: int, pseudo: int) -> None:
    """Store at ``offset`` the checksum of buf[start:] plus the pseudo header (0 goes out as
    all ones: 0 means "no checksum" in UDP)."""
    buf[offset : offset + 2] = b"\0\0"
    csum = ~fold(ones_sum(memoryview(buf)[start:]) + pseudo) & 0xFFFF
    struct.pack_into("=H", buf, offset, csum)
    if buf[offset : offset + 2] == b"\0\0":
        buf[offset : offset + 2] = b"\xff\xff"
