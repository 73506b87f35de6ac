"""Key derivation: RFC 5869's own test vector, and independent keys per job."""

from __future__ import annotations

from netprobe.core.keys import control_key, hkdf_sha256, probe_key


def test_rfc5869_test_case_1():
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    okm = hkdf_sha256(ikm, info, 42, salt=salt)
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                         "34007208d5b887185865")


def test_each_job_gets_its_own_key():
    secret = "0123456789abcdef0123456789abcdef"
    assert probe_key(secret) != control_key(secret)
    assert probe_key(secret) == probe_key(secret.encode())
    assert secret.encode() not in (probe_key(secret), control_key(secret))
    assert probe_key(secret) != probe_key(secret + "x")
