"""Strict readers for fields of decoded JSON (data we did not write: an agent's reply, a result
file): each returns the value in its Python type or raises ``InvalidReport`` naming the field
path, e.g. ``outcomes[3].evidence.reply``. Callers turn that into their edge's error (AgentError
in the client, ConfigError for files), so a malformed input is one line, never a traceback.

Pure.
"""

from __future__ import annotations

import ipaddress
import math
from enum import StrEnum
from typing import Any, TypeVar

from netprobe.core.inventory import NAME_RE

MAX_TEXT = 512        # longest free-text field (a send error)
MAX_ATTEMPTS = 1000
MAX_PROBE_ID = 0xFFFFFFFF
MAX_NUMBER = 1e12     # a count, time or RTT beyond this is garbage, not data
E = TypeVar("E", bound=StrEnum)


class InvalidReport(ValueError):
    """A field that breaks its contract; ``field`` names where (``cells[3].evidence.reply``)."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


def obj(raw: Any, field: str, required: tuple[str, ...] = ()) -> dict:
    """``raw`` as a JSON object holding every key of ``required``."""
    if not isinstance(raw, dict):
        raise InvalidReport(field, f"must be an object, got {type(raw).__name__}")
    for key in required:
        if key not in raw:
            raise InvalidReport(f"{field}.{key}", "is missing")
    return raw


def items(raw: Any, field: str, limit: int) -> list:
    if not isinstance(raw, list):
        raise InvalidReport(field, f"must be a list, got {type(raw).__name__}")
    if len(raw) > limit:
        raise InvalidReport(field, f"at most {limit} entries, got {len(raw)}")
    return raw


def flag(raw: Any, field: str, *, optional: bool = False) -> bool | None:
    if raw is None and optional:
        return None
    if not isinstance(raw, bool):
        raise InvalidReport(field, f"must be true or false, got {raw!r:.40}")
    return raw


def integer(raw: Any, field: str, hi: int, lo: int = 0) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not lo <= raw <= hi:
        raise InvalidReport(field, f"must be an integer in {lo}-{hi}, got {raw!r:.40}")
    return raw


def number(raw: Any, field: str, *, optional: bool = False, signed: bool = False) -> float | None:
    """A finite number within ``MAX_NUMBER`` (NaN, inf and 1e308 are garbage), non-negative unless ``signed``."""
    if raw is None and optional:
        return None
    lo = -MAX_NUMBER if signed else 0
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not (
            math.isfinite(raw) and lo <= raw <= MAX_NUMBER):
        raise InvalidReport(field, f"must be a finite number in {lo:g}-{MAX_NUMBER:g}, got {raw!r:.40}")
    return float(raw)


def text(raw: Any, field: str, *, limit: int = MAX_TEXT, optional: bool = False) -> str | None:
    if raw is None and optional:
        return None
    if not isinstance(raw, str) or len(raw) > limit:
        raise InvalidReport(field, f"must be a string of at most {limit} characters, got {raw!r:.40}")
    return raw


def name(raw: Any, field: str) -> str:
    if not isinstance(raw, str) or not NAME_RE.match(raw):
        raise InvalidReport(field, f"must be a short name, got {raw!r:.40}")
    return raw


def ip(raw: Any, field: str) -> str:
    """An IPv4 or IPv6 address, in its canonical text (an IPv6 address compressed, lower case)."""
    try:
        if not isinstance(raw, str) or len(raw) > 64:
            raise ValueError
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise InvalidReport(field, f"must be an IPv4 or IPv6 address, got {raw!r:.40}") from None


def choice(kind: type[E], raw: Any, field: str) -> E:
    try:
        return kind(raw)
    except (ValueError, TypeError):
        raise InvalidReport(field, f"must be one of {', '.join(kind)}, got {raw!r:.40}") from None
