"""Numbers fixed by the wire, stated once: the packet templates, the parsers, the BPF programs
and the socket shells all read them from here, so a probe, its filter and its parser cannot
disagree about a port, a marker or an offset."""

from __future__ import annotations

# IP protocol numbers (IPv6: next header)
IPPROTO_ICMP = 1
IPPROTO_IPIP = 4
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58

TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x02, 0x04, 0x08, 0x10

ICMP_UNREACH = 3
ICMP_TIME_EXCEEDED = 11
ICMP6_DST_UNREACH = 1  # ICMPv6 (RFC 4443): destination unreachable, time exceeded
ICMP6_TIME_EXCEEDED = 3

DEFAULT_TTL = 64  # every probe's; the explain round's TTL-limited copies go lower (1..16)

# AF_PACKET (linux/if_ether.h, linux/if_packet.h): a tap bound to ETH_P_ALL sees every frame before
# the netdev/tc ingress hooks and this host's own after the netdev/tc egress hooks; one bound to
# ETH_P_IP sees IPv4 after the ingress hooks, and nothing leaving. "We sent it" is PACKET_OUTGOING.
ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4

IPV6_HEADER_LEN = 40  # probes and their answers carry no extension header

# Probe source ports (and the IPIP outer IP id) live in 32768-65535: the *slot* carries a
# probe id's low 15 bits; templates hold SLOT_BASE until a probe's slot is patched in.
SLOT_BASE = 32768
SLOT_MASK = 0x7FFF

# A probe SYN carries its id in the TCP timestamp option (kind 8, length 10: TSval, TSecr).
TCPOPT_TIMESTAMP = 8
# Where a probe SYN's TSecr starts, from the start of its TCP header (after MSS and SACK permitted):
# an IPv6 SYN has no IP id, so its keyed marker word rides in TSecr (ignored in a SYN, RFC 7323).
SYN_TSECR_OFFSET = 20 + 4 + 2 + 2 + 4

# nftables traces (linux/netfilter/nfnetlink.h, nf_tables.h): the kernel multicasts one
# NFT_MSG_TRACE message per rule a packet with meta nftrace set completes, to this group
NETLINK_NETFILTER = 12
NFNLGRP_NFTRACE = 9
NFNL_MSG_NFT_TRACE = (10 << 8) | 17  # subsystem NFNL_SUBSYS_NFTABLES, message NFT_MSG_TRACE

MAGIC = b"NPRB"  # first four bytes of every netprobe payload
MAGIC_WORD = int.from_bytes(MAGIC, "big")
PAYLOAD_FLAGS_OFFSET = 5   # a payload's flags byte (magic 4, version 1)
PAYLOAD_MARKER_OFFSET = 6  # the keyed 16-bit marker inside a payload (magic 4, version 1, flags 1)
FLAG_ECHO = 0x01           # a payload flag: the responder's answer, not a probe

# Inner Ethernet addresses of VXLAN probes: locally administered, never a real NIC's.
VXLAN_INNER_SRC_MAC = "02:6e:70:00:00:01"
VXLAN_INNER_DST_MAC = "02:6e:70:00:00:02"

# Offsets inside probes, from the start of the outer transport header (UDP or, for IPIP, the
# inner IPv4 header) to the netprobe payload: UDP + VXLAN + Ethernet + IPv4 + UDP, IPv4 + UDP.
VXLAN_PAYLOAD_OFFSET = 8 + 8 + 14 + 20 + 8
VXLAN6_PAYLOAD_OFFSET = 8 + 8 + 14 + IPV6_HEADER_LEN + 8  # over IPv6 the inner packet is IPv6 too
IPIP_PAYLOAD_OFFSET = 20 + 8
