"""Strict readers for fields of decoded JSON/YAML (data we did not write): each returns the value
in its Python type or raises ``FieldError`` naming the field path, e.g. ``cells[3].evidence.reply``.

Pure. Callers turn FieldError into their edge's error (ConfigError for files, AgentError for
replies), so every malformed input is one line, never a KeyError or a traceback.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any, TypeVar

E = TypeVar("E", bound=Enum)

MAX_STRING = 4096


class FieldError(ValueError):
    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def mapping(value: Any, field: str, *, allowed: set[str] | None = None, required: set[str] = frozenset()) -> dict:
    if not isinstance(value, dict):
        raise FieldError(field, f"must be an object, got {type(value).__name__}")
    prefix = f"{field}." if field else ""
    if allowed is not None:
        for key in value:
            if key not in allowed:
                raise FieldError(f"{prefix}{key}", "unknown field")
    for key in sorted(required):
        if key not in value:
            raise FieldError(f"{prefix}{key}", "is required")
    return value


def array(value: Any, field: str, *, limit: int | None = None) -> list:
    if not isinstance(value, list):
        raise FieldError(field, f"must be a list, got {type(value).__name__}")
    if limit is not None and len(value) > limit:
        raise FieldError(field, f"at most {limit} entries, got {len(value)}")
    return value


def string(value: Any, field: str, *, optional: bool = False, limit: int = MAX_STRING) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise FieldError(field, f"must be a string, got {_shown(value)}")
    if len(value) > limit:
        raise FieldError(field, f"at most {limit} characters, got {len(value)}")
    return value


def boolean(value: Any, field: str, *, optional: bool = False) -> bool | None:
    if value is None and optional:
        return None
    if not isinstance(value, bool):
        raise FieldError(field, f"must be true or false, got {_shown(value)}")
    return value


def integer(value: Any, field: str, lo: int, hi: int, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(field, f"must be an integer, got {_shown(value)}")
    if not lo <= value <= hi:
        raise FieldError(field, f"must be in {lo}-{hi}, got {value}")
    return value


def number(value: Any, field: str, lo: float, hi: float, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError(field, f"must be a number, got {_shown(value)}")
    if not math.isfinite(value) or not lo <= value <= hi:
        raise FieldError(field, f"must be in {lo}-{hi}, got {_shown(value)}")
    return float(value)


def choice(value: Any, kind: type[E], field: str, *, optional: bool = False) -> E | None:
    if value is None and optional:
        return None
    try:
        return kind(value)
    except (ValueError, TypeError):
        names = ", ".join(str(m.value) for m in kind)
        raise FieldError(field, f"must be one of {names}, got {_shown(value)}") from None
