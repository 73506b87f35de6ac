"""`netprobe probe` and `netprobe mesh` agree on every cell of every shipped scenario.

For each scenario: its lab up with a responder per host, one mesh, then from every host (`lab
exec`) `netprobe probe` to every other host for the checks the mesh planned for that pair. The
probes from one host run in one interpreter, one CLI invocation after the other (``BATCH``: the
CLI's ``main`` per target, so scapy loads once per host, not once per pair); the hosts of a
scenario probe at once, and a few scenarios run at once.

**Agree** means the one-shot probe never contradicts the mesh. For a cell, with M the mesh's and
P the probe's (check, source, destination):

- P `allowed` or `blocked`: M has the same reach, and when both are blocked the same `where`;
- P `unknown`: fine exactly where the mesh's verdict rests on evidence only the destination has,
  i.e. M's evidence *without* its responder half (arrived, accepted, answered set to null) is
  itself `unknown` by the same rules (``verdict.classify``). A probe that is unknown where the
  mesh's own sender saw enough to decide (a SYN-ACK or echo it accepted, an ICMP error, a refused
  send) is a disagreement.

(Same definition as docs/design.md, "Evidence and verdicts".) A scenario listed in
``BELOW_IP_OR_ELSEWHERE`` disagrees for a reason outside the probe/mesh pair; it is an expected
failure naming that reason, and turns into a failure once it agrees (strict).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import NETPROBE, REPO, TEST_PREFIX
from helpers import cells_of

from netprobe.core.checks import Check
from netprobe.core.result import Cell, Reach
from netprobe.core.verdict import classify
from netprobe.lab.spec import load_scenario

pytestmark = pytest.mark.netns

SCENARIOS = sorted((REPO / "scenarios").glob("*.yaml"))
LABS_AT_ONCE = 3
# Runs each argv of the JSON list in argv[1] as `netprobe ARGV`, in this interpreter; prints the
# exit codes and outputs as one JSON list.
BATCH = """
import contextlib, io, json, sys
from netprobe.cli import main
done = []
for argv in json.loads(sys.argv[1]):
    out, code = io.StringIO(), 0
    with contextlib.redirect_stdout(out):
        try:
            main(argv)
        except SystemExit as exit_:
            code = exit_.code
    done.append({"code": code, "stdout": out.getvalue()})
print(json.dumps(done))
"""
BELOW_IP_OR_ELSEWHERE: dict[str, str] = {}  # scenario -> why probe and mesh may differ there


def disagreement(mesh: Cell, probe: Cell, check: Check) -> str | None:
    """Why ``probe`` contradicts ``mesh`` (the module's definition of agreeing), or None."""
    if probe.reach is Reach.UNKNOWN:
        alone = dataclasses.replace(mesh.evidence, arrived=None, accepted=None, answered=None)
        said = classify(check.proto, alone, None, mesh.family).reach
        if said is Reach.UNKNOWN:
            return None  # only the destination's evidence could decide
        return f"probe unknown where the mesh's sender alone says {said}"
    if probe.reach is not mesh.reach:
        return f"probe {probe.reach}, mesh {mesh.reach}"
    if probe.reach is Reach.BLOCKED and probe.where is not mesh.where:
        return f"both blocked, probe at {probe.where}, mesh at {mesh.where}"
    return None


def _run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def compare_scenario(path: Path, tmp_path: Path) -> list[str]:
    """Every disagreement of ``path``'s scenario, one line each."""
    scenario = load_scenario(path)
    name = f"{TEST_PREFIX}{uuid.uuid4().hex[:5]}"
    up = _run([*NETPROBE, "lab", "up", str(path), "--name", name, "--responders"])
    assert up.returncode == 0, up.stderr
    try:
        lab = Path("/run/netprobe/lab") / name
        result_path = tmp_path / f"{path.stem}.json"
        mesh = _run([*NETPROBE, "mesh", "-i", str(lab / "inventory.yaml"), "--profile", scenario.profile,
                     "--timeout", "0.5", "-o", str(result_path), "-q"])
        assert mesh.returncode in (0, 1), mesh.stderr
        doc = json.loads(result_path.read_text())
        checks = {c["id"]: Check.from_dict(c) for c in doc["checks"]}
        cells = {c.key: c for c in (Cell.from_dict(d) for d in cells_of(doc))}
        address = {(h.name, 4): h.address for h in scenario.hosts} | {(h.name, 6): h.address6 for h in scenario.hosts}
        # source -> (destination, family) -> the checks the mesh planned (a dual-stack pair: both families)
        wanted: dict[str, dict[tuple[str, int], list[str]]] = {}
        for check, src, dst, family in cells:
            wanted.setdefault(src, {}).setdefault((dst, family), []).append(check)

        def from_host(src: str) -> list[tuple[tuple[str, int], dict]]:
            argvs = [["probe", address[dst], "--checks", ",".join(checks), "--profile", scenario.profile,
                      "--vxlan-port", str(scenario.vxlan_port), "--vni", str(scenario.vni), "--timeout", "0.5",
                      "--token-file", str(lab / "token"), "--format", "json"] for dst, checks in wanted[src].items()]
            proc = _run([*NETPROBE, "lab", "exec", name, scenario.short(src), "--", sys.executable, "-c", BATCH,
                         json.dumps(argvs)])
            assert proc.returncode == 0, f"{src}: {proc.stderr}"
            return list(zip(wanted[src], json.loads(proc.stdout)))

        with ThreadPoolExecutor(len(wanted) or 1) as pool:
            probed = {src: done for src, done in zip(wanted, pool.map(from_host, wanted))}
    finally:
        _run([*NETPROBE, "lab", "down", name])
    found = []
    for src, (dst, _family), run in ((src, to, run) for src, done in probed.items() for to, run in done):
        assert run["code"] in (0, 1), f"{src} -> {dst}: exit {run['code']}"
        for raw in json.loads(run["stdout"])["cells"]:
            probe = dataclasses.replace(Cell.from_dict(raw), src=src, dst=dst)
            why = disagreement(cells[probe.key], probe, checks[probe.check])
            if why:
                found.append(f"{path.stem}: {probe.check} {src} -> {dst} (IPv{probe.family}): {why}")
    return found


@pytest.fixture(scope="module")
def disagreements(tmp_path_factory) -> dict[str, list[str]]:
    """Every shipped scenario compared, ``LABS_AT_ONCE`` at a time: scenario -> disagreements."""
    tmp = tmp_path_factory.mktemp("agree")
    with ThreadPoolExecutor(LABS_AT_ONCE) as pool:
        return dict(zip((p.stem for p in SCENARIOS), pool.map(lambda p: compare_scenario(p, tmp), SCENARIOS)))


@pytest.mark.parametrize("path", [
    pytest.param(p, marks=pytest.mark.xfail(reason=BELOW_IP_OR_ELSEWHERE[p.stem], strict=True))
    if p.stem in BELOW_IP_OR_ELSEWHERE else p for p in SCENARIOS], ids=lambda p: p.stem)
def test_probe_never_contradicts_mesh(disagreements, path):
    assert disagreements[path.stem] == []
