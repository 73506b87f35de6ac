"""The machine-readable report: the result itself as ``netprobe.result/v1`` JSON (docs/design.md "Result JSON"),
so ``netprobe verify --baseline`` and ``netprobe diff`` can read back exactly what mesh wrote."""

from __future__ import annotations

from netprobe.core.result import Result


def render_json(result: Result) -> str:
    return result.to_json()


__all__ = ["render_json"]
