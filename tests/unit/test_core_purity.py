"""netprobe/core is sans-I/O (docs/design.md "Layout"): it never imports trio, sockets, subprocess or
pyroute2, never reads the clock or files. Checked twice: what importing every core module pulls in
(in a fresh interpreter), and an AST scan of the source."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import netprobe.core

CORE = Path(netprobe.core.__file__).resolve().parent
MODULES = sorted(f"netprobe.core.{m.name}" for m in pkgutil.iter_modules([str(CORE)]))
SOURCES = sorted(CORE.glob("*.py"))

# Importing the core must not pull these in (checked in sys.modules of a fresh interpreter).
# `socket` is not imported by anything the core needs today (PyYAML, hashlib, ipaddress, json);
# scapy (which does import socket) is loaded lazily by the packet builders only.
NEVER_LOADED = ["trio", "socket", "subprocess", "pyroute2", "scapy", "selectors", "asyncio", "httpx", "hypercorn",
                "starlette", "click", "rich", "netprobe.net", "netprobe.agent", "netprobe.lab",
                "netprobe.preflight", "netprobe.commands", "netprobe.report"]

# Modules the core source may not import, at any depth (function-level imports included).
BANNED_IMPORTS = {"socket", "trio", "subprocess", "pyroute2", "time", "select", "selectors", "asyncio",
                  "threading", "multiprocessing", "random", "secrets", "urllib", "http", "httpx", "ssl",
                  "shutil", "tempfile", "glob", "netprobe.net", "netprobe.agent", "netprobe.lab",
                  "netprobe.preflight", "netprobe.commands", "netprobe.orchestration", "netprobe.config", "netprobe.cli"}
BANNED_CALLS = {"open", "input", "print", "exec", "eval", "__import__"}
# attribute calls that read the clock, the environment, the disk or randomness
BANNED_ATTRS = {
    ("time", "time"), ("time", "time_ns"), ("time", "monotonic"), ("time", "monotonic_ns"), ("time", "sleep"),
    ("time", "perf_counter"), ("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"),
    ("date", "today"), ("os", "urandom"), ("os", "environ"), ("os", "getenv"), ("os", "system"), ("os", "popen"),
    ("os", "open"), ("os", "read"), ("os", "write"), ("os", "listdir"), ("os", "scandir"), ("os", "stat"),
    ("os", "getpid"), ("os", "remove"), ("os", "unlink"),
}
BANNED_METHODS = {"read_text", "read_bytes", "write_text", "write_bytes", "open", "iterdir", "unlink", "mkdir"}


def violations(source: str, filename: str = "<string>") -> list[str]:
    """Every way ``source`` does I/O or imports an edge, as 'file:line: what'."""
    found = []

    def banned(module: str) -> bool:
        return any(module == b or module.startswith(b + ".") for b in BANNED_IMPORTS)

    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if banned(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if banned(node.module):
                found.append(f"{where}: from {node.module} import ...")
            found += [f"{where}: from {node.module} import {a.name}" for a in node.names
                      if banned(f"{node.module}.{a.name}")]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in BANNED_CALLS:
            found.append(f"{where}: {node.func.id}(...)")
        elif isinstance(node, ast.Attribute):
            # time.time, and datetime.datetime.now too (the owner is the last name before the attr)
            owner = getattr(node.value, "id", None) or getattr(node.value, "attr", None)
            if (owner, node.attr) in BANNED_ATTRS:
                found.append(f"{where}: {owner}.{node.attr}")
            elif node.attr in BANNED_METHODS:
                found.append(f"{where}: .{node.attr}")
    return found


def test_core_modules_are_found():
    names = {m.rsplit(".", 1)[1] for m in MODULES}
    assert {"bpf", "checks", "cookies", "events", "inventory", "parse", "prober", "responder", "result", "templates",
            "verdict", "wire"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=[p.name for p in SOURCES])
def test_core_source_does_no_io(path):
    assert violations(path.read_text(), f"netprobe/core/{path.name}") == []


def test_core_source_text_has_none_of_the_banned_words():
    """The brief's literal list, as plain text (comments and docstrings may mention them)."""
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):  # drop docstrings; unparse drops the comments
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                body[0] = ast.Pass()
        code = ast.unparse(tree)
        for word in ("import socket", "import trio", "import subprocess", "pyroute2", "time.time", " open("):
            assert word not in code, f"{path.name}: {word}"


@pytest.mark.parametrize("snippet,what", [
    ("import socket", "import socket"),
    ("def f():\n    import trio", "import trio"),
    ("import subprocess as sp", "import subprocess"),
    ("from pyroute2 import IPRoute", "from pyroute2 import"),
    ("import time\nx = time.time()", "time.time"),
    ("from time import monotonic", "from time import"),
    ("import os\nos.urandom(4)", "os.urandom"),
    ("data = open('f').read()", "open(...)"),
    ("from pathlib import Path\nPath('x').read_text()", ".read_text"),
    ("from netprobe.net import sockets", "from netprobe.net import"),
    ("from netprobe import net", "from netprobe import net"),
    ("import datetime\ndatetime.datetime.now()", "datetime.now"),
])
def test_the_scanner_catches_io(snippet, what):
    found = violations(snippet)
    assert found and any(what in v for v in found), found


def test_the_scanner_allows_pure_code():
    assert violations("import struct, hashlib, hmac, json, os.path\nfrom dataclasses import dataclass\n"
                      "os.path.join('a', 'b')\nfrom netprobe.core import cookies\nfrom . import packets\n") == []


def test_importing_the_core_loads_no_edges():
    code = (
        "import importlib, json, sys\n"
        f"for name in {MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout))
    assert set(MODULES) <= loaded
    leaked = sorted(m for m in loaded for bad in NEVER_LOADED if m == bad or m.startswith(bad + "."))
    assert leaked == []


def test_parsing_does_not_load_scapy():
    """Parsers and the session's matching run on struct alone (docs/design.md "Performance rules")."""
    code = (
        "import sys\n"
        "from netprobe.core import parse, bpf, cookies\n"
        "data = bytes.fromhex('45000028000040004006' + '0000' + 'c6120002c6120001' + '0b3390c4'"
        " + '00000000' + '00000001' + '5014' + '0000' + '00000000')\n"
        "pkt = parse.parse_packet_untrusted(data)\n"
        "assert pkt.is_rst, pkt\n"
        "bpf.run(bpf.sender_filter(tap=True, marker=cookies.marker_of(b'k')), data)\n"
        "assert not any(m == 'scapy' or m.startswith('scapy.') for m in sys.modules), 'scapy loaded'\n"
        "assert 'socket' not in sys.modules, 'socket loaded'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
