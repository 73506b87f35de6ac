"""The one exit-code rule, as a table: partial beats failed beats ok, for every command."""

from __future__ import annotations

import pytest

from netprobe.core.exitcode import compared_exit_code, exit_code, mesh_exit_code, probe_exit_code
from netprobe.core.result import Cell, Reach, Result, Verdict

ERROR = [{"host": "n3", "stage": "probe", "message": "agent unreachable"}]


def cell(reach: Reach) -> Cell:
    return Cell("bgp", "n1", "n2", reach, None, Verdict.OPEN)


@pytest.mark.parametrize("partial, failed, code", [
    (False, False, 0),
    (False, True, 1),
    (True, False, 3),
    (True, True, 3),
])
def test_the_rule(partial, failed, code):
    assert exit_code(partial=partial, failed=failed) == code


@pytest.mark.parametrize("reaches, errors, code", [
    ([Reach.ALLOWED], [], 0),
    ([], [], 0),
    ([Reach.ALLOWED, Reach.BLOCKED], [], 1),
    ([Reach.UNKNOWN], [], 1),          # unproven fails a mesh
    ([Reach.ALLOWED], ERROR, 3),
    ([Reach.BLOCKED, Reach.UNKNOWN], ERROR, 3),
])
def test_mesh(reaches, errors, code):
    assert mesh_exit_code(Result([cell(r) for r in reaches], errors=errors)) == code


@pytest.mark.parametrize("errors, differences, code", [
    ([[], []], 0, 0),
    ([[], []], 2, 1),
    ([[], ERROR], 0, 3),
    ([ERROR, []], 1, 3),   # verify (and lab run) with errors and a mismatch: 3, as lab run always said
])
def test_verify_lab_run_and_diff(errors, differences, code):
    assert compared_exit_code([Result([], errors=e) for e in errors], differences) == code


@pytest.mark.parametrize("reaches, drops, code", [
    ([Reach.ALLOWED, Reach.UNKNOWN], 0, 0),  # unknown is the normal answer without a responder
    ([Reach.BLOCKED], 0, 1),
    ([Reach.BLOCKED], 5, 3),
    ([Reach.ALLOWED], 1, 3),
])
def test_probe(reaches, drops, code):
    assert probe_exit_code([cell(r) for r in reaches], drops) == code
