"""Probe ids keyed into TCP seq/sport and into authenticated payloads."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netprobe.core import cookies
from netprobe.core.cookies import (
    FLAG_ECHO,
    PAYLOAD_LEN,
    ProbePayload,
    decode_payload_untrusted,
    encode_payload,
    is_fresh,
    key_from_token,
    slot_of,
    tcp_probe_id,
    tcp_seq,
    verify_payload,
)
from netprobe.core.wire import MAGIC, SLOT_BASE, SLOT_MASK
from netprobe.errors import BadPacket

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
SRC = bytes([198, 18, 0, 1])
DST = bytes([198, 18, 0, 2])

rng = random.Random(1234)
MANY_IDS = [0, 1, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0xFFFFFFFF, 0x7FFFFFFF] + [rng.getrandbits(32) for _ in range(500)]


# ------------------------------------------------------------------ TCP


@pytest.mark.parametrize("probe_id", [0, 1, 0x7FFF, 0x8000, 0xFFFFFFFF])
def test_slot_is_in_the_probe_port_range(probe_id):
    slot = slot_of(probe_id)
    assert SLOT_BASE <= slot <= 0xFFFF
    assert slot & 0x7FFF == probe_id & 0x7FFF


def test_tcp_seq_round_trip_for_many_ids():
    for probe_id in MANY_IDS:
        for dport in (179, 2379):
            seq = tcp_seq(KEY, probe_id, SRC, DST, dport)
            assert 0 <= seq <= 0xFFFFFFFF
            assert tcp_probe_id(KEY, SRC, DST, slot_of(probe_id), dport, seq) == probe_id


@given(st.integers(0, 0xFFFFFFFF), st.binary(min_size=4, max_size=4), st.binary(min_size=4, max_size=4),
       st.integers(1, 65535), st.binary(min_size=1, max_size=64))
def test_tcp_seq_round_trip_property(probe_id, src, dst, dport, key):
    seq = tcp_seq(key, probe_id, src, dst, dport)
    assert tcp_probe_id(key, src, dst, slot_of(probe_id), dport, seq) == probe_id


def test_seq_depends_on_key_and_flow():
    pid = 0x12345678
    base = tcp_seq(KEY, pid, SRC, DST, 179)
    assert tcp_seq(OTHER_KEY, pid, SRC, DST, 179) != base
    assert tcp_seq(KEY, pid, DST, SRC, 179) != base
    assert tcp_seq(KEY, pid, SRC, DST, 2379) != base


def _wrong(decoded, probe_id):
    return decoded is None or decoded != probe_id


def test_wrong_key_gives_none_or_another_id():
    wrong = 0
    for probe_id in MANY_IDS:
        seq = tcp_seq(KEY, probe_id, SRC, DST, 179)
        decoded = tcp_probe_id(OTHER_KEY, SRC, DST, slot_of(probe_id), 179, seq)
        assert _wrong(decoded, probe_id)
        wrong += decoded is None
    # the slot check rejects nearly all of them (a chance match is 1 in 32768)
    assert wrong >= len(MANY_IDS) - 2


@pytest.mark.parametrize("flow", ["src", "dst", "dport", "sport"])
def test_wrong_flow_gives_none_or_another_id(flow):
    for probe_id in MANY_IDS[:100]:
        seq = tcp_seq(KEY, probe_id, SRC, DST, 179)
        args = {"src": SRC, "dst": DST, "sport": slot_of(probe_id), "dport": 179}
        args[flow] = {"src": bytes([198, 18, 0, 9]), "dst": bytes([198, 18, 0, 9]),
                      "sport": SLOT_BASE | ((probe_id + 1) & 0x7FFF), "dport": 180}[flow]
        decoded = tcp_probe_id(KEY, args["src"], args["dst"], args["sport"], args["dport"], seq)
        assert _wrong(decoded, probe_id)


def test_wrong_seq_gives_none_or_another_id():
    for probe_id in MANY_IDS[:100]:
        seq = tcp_seq(KEY, probe_id, SRC, DST, 179)
        assert _wrong(tcp_probe_id(KEY, SRC, DST, slot_of(probe_id), 179, (seq + 1) & 0xFFFFFFFF), probe_id)


@pytest.mark.parametrize("sport", [0, 179, 1024, SLOT_BASE - 1, 0x10000])
def test_source_port_outside_the_slots_is_never_ours(sport):
    for seq in (0, 1, 0xFFFFFFFF):
        assert tcp_probe_id(KEY, SRC, DST, sport, 179, seq) is None


# ------------------------------------------------------------------ payloads


def test_payload_layout():
    data = encode_payload(KEY, ProbePayload(0x01020304, 0x1122334455667788, FLAG_ECHO))
    assert len(data) == PAYLOAD_LEN == 36
    assert data[:4] == MAGIC == b"NPRB"
    assert data[4] == 1 and data[5] == FLAG_ECHO and data[6:8] == b"\0\0"
    assert data[8:12] == bytes([1, 2, 3, 4])
    assert data[12:20] == bytes.fromhex("1122334455667788")


@pytest.mark.parametrize("flags", [0, FLAG_ECHO])
def test_payload_round_trip(flags):
    for probe_id in MANY_IDS[:50]:
        p = ProbePayload(probe_id, 1_700_000_000_000_000_000 + probe_id, flags)
        data = encode_payload(KEY, p)
        assert verify_payload(KEY, data) == p
        assert verify_payload(KEY, data).is_echo is bool(flags)
        decoded, header, tag = decode_payload_untrusted(data)
        assert decoded == p and header == data[:20] and tag == data[20:]


def test_payload_may_be_followed_by_more_bytes():
    p = ProbePayload(7, 8)
    assert verify_payload(KEY, encode_payload(KEY, p) + b"trailing") == p


def test_payload_probe_id_is_masked_to_32_bits():
    assert verify_payload(KEY, encode_payload(KEY, ProbePayload(1 << 32 | 5, 0))).probe_id == 5


def test_wrong_key_does_not_verify():
    data = encode_payload(KEY, ProbePayload(1, 2))
    with pytest.raises(BadPacket, match="tag"):
        verify_payload(OTHER_KEY, data)


@pytest.mark.parametrize("index", range(PAYLOAD_LEN))
def test_any_flipped_bit_is_rejected(index):
    data = bytearray(encode_payload(KEY, ProbePayload(0xCAFE, 123456789)))
    data[index] ^= 0x01
    with pytest.raises(BadPacket):
        verify_payload(KEY, bytes(data))


@pytest.mark.parametrize("data,message", [
    (b"", "too short"),
    (MAGIC + b"\x01" * 31, "too short"),
    (b"XPRB" + b"\x01" * 32, "not a netprobe payload"),
    (MAGIC + b"\x02" + b"\0" * 31, "version 2"),
])
def test_decode_rejects(data, message):
    with pytest.raises(BadPacket, match=message):
        decode_payload_untrusted(data)


def test_key_from_token():
    assert key_from_token("t") == key_from_token(b"t") != key_from_token("u")
    assert len(key_from_token("t")) == 32


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
        verify_payload(KEY, data)
    except BadPacket:
        pass
    else:
        raise AssertionError("random bytes verified")


@settings(max_examples=300)
@given(st.integers(0, 0xFFFFFFFF), st.integers(0, 2**64 - 1), st.integers(0, PAYLOAD_LEN - 1),
       st.integers(1, 255), st.integers(0, PAYLOAD_LEN))
def test_mutated_or_truncated_payloads_never_verify(probe_id, ts, index, xor, cut):
    data = bytearray(encode_payload(KEY, ProbePayload(probe_id, ts)))
    data[index] ^= xor
    for candidate in (bytes(data), bytes(data[:cut])):
        with pytest.raises(BadPacket):
            verify_payload(KEY, candidate)


def test_module_exports_used_by_other_modules():
    assert cookies.ID_MASK == 0xFFFFFFFF and SLOT_MASK == 0x7FFF
