"""Signed control requests (core/auth.py): what a sniffer can and cannot do with what it saw."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netprobe.core.auth import AuthFailed, SecretTooShort, Signer, Verifier
from netprobe.core.keys import control_key, probe_key

SECRET = "0123456789abcdef-cluster"
NOW = 1_800_000_000.0


def sign(method="POST", path="/v1/probes", body=b"{}", *, now=NOW, nonce=b"\x01" * 16, secret=SECRET) -> bytes:
    return Signer.from_secret(secret).authorization(method, path, "", body, now=now, nonce=nonce).encode()


def test_a_signed_request_verifies_once_and_its_body_must_match():
    v = Verifier(SECRET)
    ok = v.verify(sign(), "POST", "/v1/probes", "", now=NOW + 3)
    assert ok.body_ok(b"{}") and not ok.body_ok(b"{} ")
    with pytest.raises(AuthFailed, match="replayed"):
        v.verify(sign(), "POST", "/v1/probes", "", now=NOW + 4)


def test_the_header_carries_neither_the_secret_nor_a_key():
    header = sign()
    for secret in (SECRET.encode(), control_key(SECRET), probe_key(SECRET)):
        assert secret not in header and secret.hex().encode() not in header


@pytest.mark.parametrize("change", [
    dict(method="GET"), dict(path="/v1/preflight"), dict(secret="another-cluster-secret"),
])
def test_anything_else_signed_does_not_verify(change):
    with pytest.raises(AuthFailed, match="bad signature"):
        Verifier(SECRET).verify(sign(**{k: v for k, v in change.items() if k == "secret"}),
                                change.get("method", "POST"), change.get("path", "/v1/probes"), "", now=NOW)


def test_the_clock_window_names_the_skew():
    v = Verifier(SECRET, window=60)
    with pytest.raises(AuthFailed, match=r"-61 s off this agent's clock"):
        v.verify(sign(now=NOW - 61), "POST", "/v1/probes", "", now=NOW)
    with pytest.raises(AuthFailed, match=r"\+61 s"):
        v.verify(sign(now=NOW + 61), "POST", "/v1/probes", "", now=NOW)
    v.verify(sign(now=NOW - 60), "POST", "/v1/probes", "", now=NOW)


def test_a_full_nonce_memory_raises_the_floor_so_a_forgotten_nonce_stays_refused():
    v = Verifier(SECRET, memory=4)
    for i in range(6):
        v.verify(sign(now=NOW + i, nonce=bytes([i]) * 16), "POST", "/v1/probes", "", now=NOW + 6)
    assert len(v._seen) == 4 and v.floor == NOW + 1
    for i in (0, 1):  # forgotten, but no newer than the floor
        with pytest.raises(AuthFailed, match="replayed"):
            v.verify(sign(now=NOW + i, nonce=bytes([i]) * 16), "POST", "/v1/probes", "", now=NOW + 6)
    v.verify(sign(now=NOW + 7, nonce=b"\x09" * 16), "POST", "/v1/probes", "", now=NOW + 7)


def test_old_nonces_leave_memory_with_the_window():
    v = Verifier(SECRET, window=60)
    for i in range(100):
        v.verify(sign(now=NOW, nonce=i.to_bytes(16, "big")), "POST", "/v1/probes", "", now=NOW)
    v.verify(sign(now=NOW + 100, nonce=b"\xff" * 16), "POST", "/v1/probes", "", now=NOW + 100)
    assert len(v._seen) == 1


def test_reply_signatures_bind_the_request_status_and_body():
    signer, v = Signer.from_secret(SECRET), Verifier(SECRET)
    sig = v.sign_reply("ab" * 16, 200, b'{"x": 1}')
    assert signer.reply_ok("ab" * 16, 200, b'{"x": 1}', sig)
    assert not signer.reply_ok("cd" * 16, 200, b'{"x": 1}', sig)
    assert not signer.reply_ok("ab" * 16, 200, b'{"x": 2}', sig)
    assert not signer.reply_ok("ab" * 16, 201, b'{"x": 1}', sig)
    assert not signer.reply_ok("ab" * 16, 200, b'{"x": 1}', None)
    assert not signer.reply_ok("ab" * 16, 200, b'{"x": 1}', "é" + sig[1:])


def test_secrets_under_16_bytes_are_refused():
    for make in (Signer.from_secret, Verifier):
        with pytest.raises(SecretTooShort, match="at least 16 bytes, got 15"):
            make("x" * 15)
    Verifier("é" * 8)  # bytes, not characters


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600) | st.text(max_size=600).map(str.encode))
def test_any_header_is_refused_with_auth_failed_only(header):
    with pytest.raises(AuthFailed):
        Verifier(SECRET).verify(header, "POST", "/v1/probes", "", now=NOW)
