"""Probe ids keyed into TCP SYNs and into authenticated payloads, bound to their flow and to the
destination host (issue #9, items 1 and 7)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netprobe.core import cookies
from netprobe.core.cookies import (
    FLAG_ECHO,
    PAYLOAD_LEN,
    ProbeKeys,
    ProbePayload,
    decode_payload_untrusted,
    dest_key,
    encode_payload,
    flow_bytes,
    is_fresh,
    marker_of,
    slot_of,
    syn_ip_id,
    tcp_seq,
    tcp_syn_probe_id,
    verify_payload,
)
from netprobe.core.keys import probe_key
from netprobe.core.parse import Encap
from netprobe.core.wire import MAGIC, SLOT_BASE, SLOT_MASK
from netprobe.errors import BadPacket

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
SRC = bytes([198, 18, 0, 1])
DST = bytes([198, 18, 0, 2])
DKEY = dest_key(KEY, DST)
FLOW = flow_bytes(Encap.UDP, SRC, DST, 40000, 53)

rng = random.Random(1234)
MANY_IDS = [0, 1, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0xFFFFFFFF, 0x7FFFFFFF] + [rng.getrandbits(32) for _ in range(500)]


# ------------------------------------------------------------------ keys


def test_destination_keys_differ_per_address_and_cluster():
    assert dest_key(KEY, DST) != dest_key(KEY, SRC) != dest_key(OTHER_KEY, SRC)
    assert dest_key(KEY, DST) == ProbeKeys(KEY).for_dest(DST)
    assert len(DKEY) == 32


def test_probe_keys_cache_is_bounded():
    keys = ProbeKeys(KEY)
    for i in range(ProbeKeys.MAX_CACHED * 2 + 3):
        keys.for_dest(i.to_bytes(4, "big"))
    assert len(keys._dest) <= ProbeKeys.MAX_CACHED


def test_marker_is_keyed_16_bits():
    assert 0 <= marker_of(KEY) <= 0xFFFF and marker_of(KEY) != marker_of(OTHER_KEY)
    assert syn_ip_id(marker_of(KEY), 40000) == 40000 ^ marker_of(KEY)


# ------------------------------------------------------------------ TCP


@pytest.mark.parametrize("probe_id", [0, 1, 0x7FFF, 0x8000, 0xFFFFFFFF])
def test_slot_is_in_the_probe_port_range(probe_id):
    slot = slot_of(probe_id)
    assert SLOT_BASE <= slot <= 0xFFFF
    assert slot & 0x7FFF == probe_id & 0x7FFF


def test_tcp_syn_round_trip_for_many_ids():
    for probe_id in MANY_IDS:
        for dport in (179, 2379):
            seq = tcp_seq(DKEY, probe_id, SRC, DST, dport)
            assert 0 <= seq <= 0xFFFFFFFF
            assert tcp_syn_probe_id(DKEY, SRC, DST, slot_of(probe_id), dport, seq, probe_id) == probe_id


@given(st.integers(0, 0xFFFFFFFF), st.binary(min_size=4, max_size=4), st.binary(min_size=4, max_size=4),
       st.integers(1, 65535), st.binary(min_size=1, max_size=64))
def test_tcp_seq_round_trip_property(probe_id, src, dst, dport, key):
    seq = tcp_seq(key, probe_id, src, dst, dport)
    assert tcp_syn_probe_id(key, src, dst, slot_of(probe_id), dport, seq, probe_id) == probe_id


def test_seq_depends_on_key_flow_and_id():
    pid = 0x12345678
    base = tcp_seq(DKEY, pid, SRC, DST, 179)
    assert tcp_seq(dest_key(KEY, SRC), pid, SRC, DST, 179) != base
    assert tcp_seq(DKEY, pid, DST, SRC, 179) != base
    assert tcp_seq(DKEY, pid, SRC, DST, 2379) != base
    assert tcp_seq(DKEY, pid ^ 0x10000, SRC, DST, 179) != base  # same slot, another id


def test_a_guessed_seq_passes_once_in_2_to_the_32():
    """The check is the whole 32-bit keyed sequence number (it was 15 bits: issue #9, item 7):
    an attacker who knows the id, ports and addresses must still guess it."""
    pid = 0xABCD1234
    seq = tcp_seq(DKEY, pid, SRC, DST, 179)
    hits = sum(tcp_syn_probe_id(DKEY, SRC, DST, slot_of(pid), 179, guess, pid) is not None
               for guess in rng.sample(range(1 << 32), 100_000) if guess != seq)
    assert hits == 0


@pytest.mark.parametrize("flow", ["src", "dst", "dport", "sport", "tsval", "key"])
def test_wrong_flow_or_key_is_not_ours(flow):
    for probe_id in MANY_IDS[:100]:
        seq = tcp_seq(DKEY, probe_id, SRC, DST, 179)
        args = {"key": DKEY, "src": SRC, "dst": DST, "sport": slot_of(probe_id), "dport": 179, "tsval": probe_id}
        args[flow] = {"src": bytes([198, 18, 0, 9]), "dst": bytes([198, 18, 0, 9]), "key": dest_key(KEY, SRC),
                      "sport": SLOT_BASE | ((probe_id + 1) & 0x7FFF), "dport": 180,
                      "tsval": probe_id ^ 0x8000_0000}[flow]
        assert tcp_syn_probe_id(args["key"], args["src"], args["dst"], args["sport"], args["dport"], seq,
                                args["tsval"]) is None


def test_a_syn_without_a_timestamp_is_not_ours():
    seq = tcp_seq(DKEY, 5, SRC, DST, 179)
    assert tcp_syn_probe_id(DKEY, SRC, DST, slot_of(5), 179, seq, None) is None


@pytest.mark.parametrize("sport", [0, 179, 1024, SLOT_BASE - 1, 0x10000])
def test_source_port_outside_the_slots_is_never_ours(sport):
    for seq in (0, 1, 0xFFFFFFFF):
        assert tcp_syn_probe_id(DKEY, SRC, DST, sport, 179, seq, sport) is None


# ------------------------------------------------------------------ payloads


def test_payload_layout():
    data = encode_payload(DKEY, ProbePayload(0x01020304, 0x1122334455667788, FLAG_ECHO, 0xBEEF), FLOW)
    assert len(data) == PAYLOAD_LEN == 36
    assert data[:4] == MAGIC == b"NPRB"
    assert data[4] == 2 and data[5] == FLAG_ECHO and data[6:8] == b"\xbe\xef"
    assert data[8:12] == bytes([1, 2, 3, 4])
    assert data[12:20] == bytes.fromhex("1122334455667788")


@pytest.mark.parametrize("flags", [0, FLAG_ECHO])
def test_payload_round_trip(flags):
    for probe_id in MANY_IDS[:50]:
        p = ProbePayload(probe_id, 1_700_000_000_000_000_000 + probe_id, flags, 7)
        data = encode_payload(DKEY, p, FLOW)
        assert verify_payload(DKEY, data, FLOW) == p
        assert verify_payload(DKEY, data, FLOW).is_echo is bool(flags)
        decoded, header, tag = decode_payload_untrusted(data)
        assert decoded == p and header == data[:20] and tag == data[20:]


def test_payload_may_be_followed_by_more_bytes():
    p = ProbePayload(7, 8)
    assert verify_payload(DKEY, encode_payload(DKEY, p, FLOW) + b"trailing", FLOW) == p


def test_payload_probe_id_is_masked_to_32_bits():
    assert verify_payload(DKEY, encode_payload(DKEY, ProbePayload(1 << 32 | 5, 0), FLOW), FLOW).probe_id == 5


def test_wrong_key_or_another_destinations_key_does_not_verify():
    data = encode_payload(DKEY, ProbePayload(1, 2), FLOW)
    for key in (dest_key(OTHER_KEY, DST), dest_key(KEY, SRC), KEY):
        with pytest.raises(BadPacket, match="tag"):
            verify_payload(key, data, FLOW)


OTHER = bytes([192, 0, 2, 66])
FLOWS = {
    "udp": (Encap.UDP, SRC, DST, 40000, 53),
    "vxlan": (Encap.VXLAN, SRC, DST, 40000, 40000, DST, SRC, 40000, 4789),
    "ipip": (Encap.IPIP, SRC, DST, 40000, 40000, DST, SRC),
}


@pytest.mark.parametrize("kind", FLOWS)
def test_every_address_and_port_of_the_flow_is_covered(kind):
    """Issue #9, item 1: a replayed probe with any address or port rewritten does not verify."""
    fields = list(FLOWS[kind]) + [b"", b"", 0, 0][len(FLOWS[kind]) - 5:]
    flow = flow_bytes(*fields)
    data = encode_payload(DKEY, ProbePayload(9, 10), flow)
    assert verify_payload(DKEY, data, flow).probe_id == 9
    for i in range(len(fields)):
        changed = list(fields)
        if isinstance(changed[i], bytes):
            changed[i] = OTHER if changed[i] != OTHER else SRC
        else:
            changed[i] = (changed[i] + 1) % 65536 if i else Encap(changed[i] % 3 + 1)
        with pytest.raises(BadPacket, match="tag"):
            verify_payload(DKEY, data, flow_bytes(*changed))


def test_flow_bytes_are_unambiguous():
    assert flow_bytes(Encap.UDP, SRC, DST, 1, 2) != flow_bytes(Encap.UDP, SRC, DST, 1, 2, SRC, DST)
    assert flow_bytes(Encap.UDP, SRC, DST, 1, 2) != flow_bytes(Encap.IPIP, SRC, DST, 1, 2)


@pytest.mark.parametrize("index", range(PAYLOAD_LEN))
def test_any_flipped_bit_is_rejected(index):
    data = bytearray(encode_payload(DKEY, ProbePayload(0xCAFE, 123456789), FLOW))
    data[index] ^= 0x01
    with pytest.raises(BadPacket):
        verify_payload(DKEY, bytes(data), FLOW)


@pytest.mark.parametrize("data,message", [
    (b"", "too short"),
    (MAGIC + b"\x01" * 31, "too short"),
    (b"XPRB" + b"\x01" * 32, "not a netprobe payload"),
    (MAGIC + b"\x01" + b"\0" * 31, "version 1"),  # the first format: its tag covered no flow
    (MAGIC + b"\x03" + b"\0" * 31, "version 3"),
])
def test_decode_rejects(data, message):
    with pytest.raises(BadPacket, match=message):
        decode_payload_untrusted(data)


def test_probes_are_keyed_by_the_probe_key_not_the_secret():
    secret = "a cluster secret of some length"
    key = probe_key(secret)
    data = encode_payload(dest_key(key, DST), ProbePayload(1, 2), FLOW)
    with pytest.raises(BadPacket):
        verify_payload(dest_key(secret.encode(), DST), data, FLOW)
    assert not hasattr(cookies, "key_from_token")


@pytest.mark.parametrize("delta_s,fresh", [(0, True), (29.999, True), (30, True), (-30, True), (30.001, False),
                                           (-30.001, False), (3600, False)])
def test_freshness_window(delta_s, fresh):
    now = 1_700_000_000 * 10**9
    p = ProbePayload(1, now - int(delta_s * 10**9))
    assert is_fresh(p, now) is fresh


def test_freshness_window_is_configurable():
    p = ProbePayload(1, 0)
    assert is_fresh(p, 5 * 10**9, window_ns=5 * 10**9)
    assert not is_fresh(p, 5 * 10**9 + 1, window_ns=5 * 10**9)


# ------------------------------------------------------------------ garbage


@settings(max_examples=300)
@given(st.binary(max_size=80))
def test_decode_random_bytes_raises_only_bad_packet(data):
    try:
        decode_payload_untrusted(data)
    except BadPacket:
        pass
    try:
        verify_payload(DKEY, data, FLOW)
    except BadPacket:
        pass
    else:
        raise AssertionError("random bytes verified")


@settings(max_examples=300)
@given(st.integers(0, 0xFFFFFFFF), st.integers(0, 2**64 - 1), st.integers(0, PAYLOAD_LEN - 1),
       st.integers(1, 255), st.integers(0, PAYLOAD_LEN))
def test_mutated_or_truncated_payloads_never_verify(probe_id, ts, index, xor, cut):
    data = bytearray(encode_payload(DKEY, ProbePayload(probe_id, ts), FLOW))
    data[index] ^= xor
    for candidate in (bytes(data), bytes(data[:cut])):
        with pytest.raises(BadPacket):
            verify_payload(DKEY, candidate, FLOW)


def test_module_exports_used_by_other_modules():
    assert cookies.ID_MASK == 0xFFFFFFFF and SLOT_MASK == 0x7FFF
