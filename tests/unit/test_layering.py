"""Imports point only downward: cli -> commands -> orchestration -> edges -> core -> errors.

Read from the source (module-level and function-level imports alike), so a lazy import inside a
command cannot hide an upward edge. Edges on the same layer are allowed only where listed, and
no two modules may import each other, directly or through others (a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import netprobe

ROOT = Path(netprobe.__file__).resolve().parent

LAYERS = {
    "netprobe.cli": 5, "netprobe.__main__": 5,
    "netprobe.commands": 4,
    "netprobe.orchestration": 3,
    # the edges: each does one kind of I/O
    "netprobe.agent": 2, "netprobe.net": 2, "netprobe.lab": 2, "netprobe.preflight": 2,
    "netprobe.report": 2, "netprobe.config": 2, "netprobe.kube": 2, "netprobe.monitor": 2,
    "netprobe.core": 1,
    "netprobe.errors": 0, "netprobe": 0,
}
# same-layer edges that are part of the design (docs/design.md, "Layout")
PEER_EDGES = {
    ("netprobe.agent", "netprobe.net"),        # the responder runs the prober shell and captures
    ("netprobe.agent", "netprobe.preflight"),  # the agent serves its host's preflight
    ("netprobe.agent", "netprobe.config"),
    ("netprobe.lab", "netprobe.config"),
    ("netprobe.kube", "netprobe.config"),
    ("netprobe.__main__", "netprobe.cli"),
    ("netprobe.monitor", "netprobe.report"),   # the live page draws the report's heatmap
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every netprobe module ``path`` imports, at any depth of its code."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}  # `from pkg import module`
    modules = {m for m in found if m == "netprobe" or m.startswith("netprobe.")}
    return {m for m in modules if _exists(m)} - {name}


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:]) if "." in module else Path()
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def layer_of(module: str) -> tuple[str, int]:
    best = max((k for k in LAYERS if module == k or module.startswith(k + ".")), key=len)
    return best, LAYERS[best]


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(ROOT.rglob("*.py"))}


def test_every_module_has_a_layer():
    assert all(layer_of(m)[0] != "netprobe" or m == "netprobe" for m in graph()), \
        "a new top-level module needs a layer in LAYERS (and a line in docs/design.md)"


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(edges.items()):
        here, rank = layer_of(module)
        for target in sorted(targets):
            there, target_rank = layer_of(target)
            if there == here or target_rank < rank or target == "netprobe":
                continue
            if target_rank == rank and (here, there) in PEER_EDGES:
                continue
            found.append(f"{module} -> {target}")
    return found


def import_cycles(edges: dict[str, set[str]]) -> list[str]:
    """Each cycle once, as 'a -> b -> a' (a package importing its own submodules is no cycle)."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                found.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    return [c for c in found if not _package_self_import(c)]


def _package_self_import(cycle: str) -> bool:
    mods = cycle.split(" -> ")
    return any(b.startswith(a + ".") or a.startswith(b + ".") for a, b in zip(mods, mods[1:]))


def test_imports_point_only_downward():
    assert upward_imports(graph()) == []


def test_no_import_cycles():
    assert import_cycles(graph()) == []


def test_the_checks_can_fail():
    """An upward import and a two-module cycle are both caught."""
    edges = {"netprobe.core.checks": {"netprobe.commands.mesh"}, "netprobe.commands.mesh": set(),
             "netprobe.lab.apply": {"netprobe.lab.runtime"}, "netprobe.lab.runtime": {"netprobe.lab.apply"}}
    assert upward_imports(edges) == ["netprobe.core.checks -> netprobe.commands.mesh"]
    assert import_cycles(edges) == ["netprobe.lab.apply -> netprobe.lab.runtime -> netprobe.lab.apply"]
