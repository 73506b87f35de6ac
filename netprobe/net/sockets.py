"""The raw sockets netprobe sends and captures with, each capture behind a kernel BPF filter.

Everything that can fail for lack of privilege fails here, once, as PrivilegeError.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct

from netprobe.core import bpf
from netprobe.core.wire import ETH_P_IP, ETH_P_IPV6, NETLINK_NETFILTER, NFNLGRP_NFTRACE
from netprobe.errors import PrivilegeError

SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SOL_PACKET = 263
PACKET_STATISTICS = 6
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
RCVBUF = 8 << 20


def _privileged(make):
    try:
        return make()
    except PermissionError:
        raise PrivilegeError(
            "raw sockets need root or CAP_NET_RAW (run as root, or setcap cap_net_raw,cap_net_admin+ep)"
        ) from None


def attach_filter(sock: socket.socket, prog: list[tuple[int, int, int, int]]) -> None:
    """Attach a classic BPF program, then drop whatever queued before it was in place."""
    code = bpf.pack(prog)
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    sock.setblocking(False)
    while True:
        try:
            sock.recv(65535)
        except BlockingIOError:
            break


def _big_buffer(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)


def open_sender() -> socket.socket:
    """A raw IPv4 socket that sends whole packets we built (IP_HDRINCL)."""
    sock = _privileged(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, RCVBUF)
    sock.setblocking(False)
    return sock


def open_tap(prog, ethertype: int = ETH_P_IP) -> socket.socket:
    """AF_PACKET tap on every interface: sees a packet as it arrives, before netfilter (ETH_P_IPV6:
    the IPv6 packets, the IPv6 header at offset 0)."""
    sock = _privileged(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ethertype)))
    _big_buffer(sock)
    attach_filter(sock, prog)
    return sock


def open_raw_listener(proto: int, prog) -> socket.socket:
    """A raw IPv4 socket of one protocol: the kernel feeds it only after INPUT accepted a packet."""
    sock = _privileged(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, proto))
    _big_buffer(sock)
    attach_filter(sock, prog)
    return sock


def open_trace_listener() -> socket.socket:
    """A netlink socket joined to the nftables trace group (needs CAP_NET_ADMIN): from now on
    the kernel queues here one message per rule a traced packet completes, in this namespace."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        sock.bind((0, 0))
        sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTRACE)
        _big_buffer(sock)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


# ------------------------------------------------------------------ IPv6
# Checked in namespaces (tests/integration/test_ipv6_netns.py): a raw IPv6 socket of IPPROTO_RAW
# sends the packet exactly as built (IPV6_HDRINCL is implied, Linux >= 4.5), and an OUTPUT drop
# or reject makes its sendto fail with EPERM, as IPv4's does; a raw IPv6 socket of a protocol is
# fed after INPUT (ip6_input's LOCAL_IN hook runs before raw delivery) but gets no IPv6 header:
# its data starts at the transport header, the source comes with recvfrom and the destination
# with IPV6_PKTINFO.

def open_sender6() -> socket.socket:
    """A raw IPv6 socket that sends whole packets we built: the kernel routes by the sendto
    address and adds nothing (no header, no checksum, no source address selection)."""
    sock = _privileged(lambda: socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, RCVBUF)
    sock.setblocking(False)
    return sock


def open_raw6_listener(proto: int, prog) -> socket.socket:
    """A raw IPv6 socket of one protocol, fed after INPUT, that reports each packet's destination
    address (IPV6_RECVPKTINFO); ``prog`` sees the transport header at offset 0."""
    sock = _privileged(lambda: socket.socket(socket.AF_INET6, socket.SOCK_RAW, proto))
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    _big_buffer(sock)
    attach_filter(sock, prog)
    return sock


PKTINFO_SPACE = socket.CMSG_SPACE(20)  # struct in6_pktinfo: the address and an interface index


def recv_raw6(sock: socket.socket) -> tuple[bytes, bytes, bytes] | None:
    """(transport header onwards, source, destination) of one packet of a raw IPv6 socket, the
    addresses packed; None when the kernel gave no destination (never, with IPV6_RECVPKTINFO)."""
    data, ancillary, _flags, addr = sock.recvmsg(65535, PKTINFO_SPACE)
    for level, kind, value in ancillary:
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(value) >= 16:
            return data, socket.inet_pton(socket.AF_INET6, addr[0].split("%")[0]), bytes(value[:16])
    return None


def tap_drops(sock: socket.socket) -> int:
    """Packets the kernel dropped on this tap since the last call (PACKET_STATISTICS)."""
    _packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    return drops


def raw_drops(sock: socket.socket) -> int:
    """Packets dropped on a raw socket (the 'drops' column of /proc/net/raw, raw6 for IPv6)."""
    inode = os.fstat(sock.fileno()).st_ino
    try:
        with open("/proc/net/raw6" if sock.family == socket.AF_INET6 else "/proc/net/raw") as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if len(cols) >= 13 and cols[9] == str(inode):
                    return int(cols[-1])
    except OSError:
        pass
    return 0


def send_packet(sock: socket.socket, data: bytes, address: str) -> int | None:
    """Send one built packet; the errno on failure (EPERM: our own OUTPUT refused it)."""
    try:
        sock.sendto(data, (address, 0))
        return None
    except BlockingIOError:
        return errno.EAGAIN
    except OSError as exc:
        return exc.errno or errno.EIO
