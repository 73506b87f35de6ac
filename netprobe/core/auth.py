"""Signed control-API requests: the caller proves it knows the cluster secret without sending it.

``Authorization: NetprobeHMAC ts=<unix seconds>, nonce=<32 hex>, body=<sha256 hex of the body>,
sig=<hex HMAC-SHA256>`` where ``sig = HMAC(control_key(secret), canonical)`` and ``canonical`` is
the lines ``NetprobeHMAC-v1``, method, path, query, ts, nonce, body hash. The agent checks, in
this order and before it reads the body: the header's shape, the signature (constant time), the
timestamp within ``WINDOW`` seconds of its clock, the nonce never seen in the window; then,
after reading the body, its hash. A sniffer learns neither the secret nor the control key (nor
the probe key, an independent HKDF output), cannot alter a request, and cannot replay one to
the same agent. It can replay a captured request to *another* agent within the window (once
per agent), and on plain tcp:// it reads the replies.

Replies to a signed request carry ``X-Netprobe-Reply-Sig: HMAC(control_key, "reply" | nonce |
status | sha256(body))``, so a client on plain tcp:// also knows the answer came from an agent
holding the key and belongs to its request.

Pure: the clock and the nonce are passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import OrderedDict
from dataclasses import dataclass

from netprobe.core.keys import MIN_SECRET_BYTES, control_key

SCHEME = "NetprobeHMAC"
REPLY_HEADER = "x-netprobe-reply-sig"
WINDOW = 60            # seconds a signed request is good for, either side of the agent's clock
NONCE_MEMORY = 65536   # nonces remembered; beyond, the oldest are forgotten and the floor rises
MAX_HEADER = 512

_HEADER_RE = re.compile(
    rb"NetprobeHMAC ts=(\d{1,12}), nonce=([0-9a-f]{32}), body=([0-9a-f]{64}), sig=([0-9a-f]{64})"
)


class AuthFailed(Exception):
    """The request is not signed by a holder of the control key (answered 401, one line)."""


class SecretTooShort(ValueError):
    pass


def check_secret(secret: str | bytes) -> None:
    """Refuse a cluster secret shorter than ``MIN_SECRET_BYTES`` bytes."""
    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    if len(raw) < MIN_SECRET_BYTES:
        raise SecretTooShort(f"the cluster token must be at least {MIN_SECRET_BYTES} bytes, got {len(raw)}")


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _canonical(method: str, path: str, query: str, ts: int, nonce: str, digest: str) -> bytes:
    return "\n".join(("NetprobeHMAC-v1", method.upper(), path, query, str(ts), nonce, digest)).encode("utf-8")


def _mac(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Signer:
    """The client side: ``Signer.from_secret(s).authorization(...)`` is the header's value."""

    key: bytes

    @classmethod
    def from_secret(cls, secret: str | bytes) -> Signer:
        check_secret(secret)
        return cls(control_key(secret))

    def authorization(self, method: str, path: str, query: str, body: bytes, *, now: float, nonce: bytes) -> str:
        ts, n, digest = int(now), nonce.hex(), body_hash(body)
        sig = _mac(self.key, _canonical(method, path, query, ts, n, digest))
        return f"{SCHEME} ts={ts}, nonce={n}, body={digest}, sig={sig}"

    def reply_ok(self, nonce: str, status: int, body: bytes, presented: str | None) -> bool:
        """Is ``presented`` the agent's signature of this reply to the request with ``nonce``?"""
        if presented is None:
            return False
        return hmac.compare_digest(presented.encode("ascii", "replace"), reply_sig(self.key, nonce, status, body).encode())


def reply_sig(key: bytes, nonce: str, status: int, body: bytes) -> str:
    return _mac(key, f"NetprobeHMAC-reply-v1\n{nonce}\n{status}\n{body_hash(body)}".encode())


@dataclass(frozen=True)
class Verified:
    """A request whose headers verified; the body must still hash to ``body_sha256``."""

    nonce: str
    body_sha256: str

    def body_ok(self, body: bytes) -> bool:
        return hmac.compare_digest(body_hash(body), self.body_sha256)


class Verifier:
    """The agent side: verifies headers and remembers nonces (bounded, see ``NONCE_MEMORY``).

    When the memory is full the oldest nonce is forgotten and ``floor`` rises to its timestamp:
    a request no newer than the floor is refused, so a forgotten nonce can never be replayed.
    """

    def __init__(self, secret: str | bytes, *, window: int = WINDOW, memory: int = NONCE_MEMORY):
        check_secret(secret)
        self.key = control_key(secret)
        self.window = window
        self.memory = memory
        self.floor = -1
        self._seen: OrderedDict[str, int] = OrderedDict()  # nonce -> ts, in order of arrival

    def verify(self, header: bytes | None, method: str, path: str, query: str, *, now: float) -> Verified:
        if not header:
            raise AuthFailed("unauthorized: no NetprobeHMAC signature")
        m = _HEADER_RE.fullmatch(header[:MAX_HEADER].strip())
        if m is None:
            raise AuthFailed("unauthorized: malformed NetprobeHMAC signature")
        ts, nonce, digest, sig = int(m[1]), m[2].decode(), m[3].decode(), m[4]
        expected = _mac(self.key, _canonical(method, path, query, ts, nonce, digest)).encode()
        if not hmac.compare_digest(sig, expected):
            raise AuthFailed("unauthorized: bad signature (another cluster token?)")
        skew = ts - int(now)
        if abs(skew) > self.window:
            raise AuthFailed(f"unauthorized: request timestamp {skew:+d} s off this agent's clock "
                             f"(more than {self.window} s: clocks out of sync?)")
        self._forget(int(now))
        if nonce in self._seen or ts <= self.floor:
            raise AuthFailed("unauthorized: replayed request")
        self._seen[nonce] = ts
        while len(self._seen) > self.memory:
            _, old_ts = self._seen.popitem(last=False)
            self.floor = max(self.floor, old_ts)
        return Verified(nonce, digest)

    def _forget(self, now: int) -> None:
        """Drop the oldest nonces whose timestamps left the window (their requests now fail the
        clock check anyway). Arrival order is nearly timestamp order; a straggler just stays."""
        horizon = now - self.window
        while self._seen:
            nonce, ts = next(iter(self._seen.items()))
            if ts >= horizon:
                break
            del self._seen[nonce]

    def sign_reply(self, nonce: str, status: int, body: bytes) -> str:
        return reply_sig(self.key, nonce, status, body)
