"""The keys netprobe derives from the cluster secret (the token file), each for one job.

The secret itself never goes on the wire and never keys anything directly: HKDF-SHA256 (RFC 5869)
with a label per job gives independent keys, so whoever learns one (e.g. by sniffing probes)
learns nothing about the others.

- ``probe_key``: the cookies and payload tags of probes (TCP sequence numbers, HMAC of
  UDP/VXLAN/IPIP payloads). Every host of a cluster has it.
- ``control_key``: proves a caller of an agent's control API knows the secret (the request is
  signed with it; the key is not sent).

Pure.
"""

from __future__ import annotations

import hashlib
import hmac

MIN_SECRET_BYTES = 16
_SALT = b"netprobe cluster secret v2"


def _secret_bytes(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def hkdf_sha256(secret: bytes, info: bytes, length: int = 32, salt: bytes = _SALT) -> bytes:
    """RFC 5869: extract then expand."""
    prk = hmac.new(salt, secret, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def probe_key(secret: str | bytes) -> bytes:
    return hkdf_sha256(_secret_bytes(secret), b"netprobe probe key")


def control_key(secret: str | bytes) -> bytes:
    return hkdf_sha256(_secret_bytes(secret), b"netprobe control key")
