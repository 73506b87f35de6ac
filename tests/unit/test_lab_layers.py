"""Imports inside netprobe/lab point one way (read from the source, TYPE_CHECKING imports
included): the runtime drives apply, state and processes; none of them calls back up."""

from __future__ import annotations

import ast
from pathlib import Path

import netprobe.lab

LAB = Path(netprobe.lab.__file__).parent


def lab_imports(module: str) -> set[str]:
    """The netprobe.lab modules ``module`` imports, anywhere in its source."""
    tree = ast.parse((LAB / f"{module}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "netprobe.lab":
                out |= {a.name for a in node.names}
            elif node.module.startswith("netprobe.lab."):
                out.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[2] for a in node.names if a.name.startswith("netprobe.lab.")}
    return out


def graph() -> dict[str, set[str]]:
    return {f.stem: lab_imports(f.stem) for f in LAB.glob("*.py") if f.stem != "__init__"}


def test_no_cycles():
    g = graph()
    done: set[str] = set()

    def visit(mod: str, path: list[str]) -> None:
        assert mod not in path, f"import cycle: {' -> '.join([*path, mod])}"
        if mod in done:
            return
        for dep in sorted(g.get(mod, ())):
            visit(dep, [*path, mod])
        done.add(mod)

    for mod in sorted(g):
        visit(mod, [])


def test_layers():
    g = graph()
    assert "runtime" not in g["apply"] | g["state"] | g["processes"]
    assert not {"apply", "state"} & g["processes"]  # processes know nothing of the lab handle
    assert "state" not in g["apply"]
