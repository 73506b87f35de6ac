"""Regressions apart from fixes, and the one exit rule, for verify/diff verdicts."""

from __future__ import annotations

import pytest

from helpers import cell
from netprobe.core.result import Change
from netprobe.core.verdicts import Kind, classify, from_changes

A = cell(reach="allowed")
B = cell(reach="blocked", where="destination-ingress")
BN = cell(reach="blocked", where="network")
U = cell(reach="unknown")


@pytest.mark.parametrize(("old", "new", "kind"), [
    (A, B, Kind.REGRESSION), (A, U, Kind.REGRESSION), (A, None, Kind.REGRESSION), (B, U, Kind.REGRESSION),
    (B, None, Kind.REGRESSION), (None, B, Kind.REGRESSION), (None, U, Kind.REGRESSION),
    (B, A, Kind.FIX), (U, A, Kind.FIX),
    (B, BN, Kind.CHANGE), (U, B, Kind.CHANGE), (None, A, Kind.CHANGE),
])
def test_classify(old, new, kind):
    assert classify(old, new) is kind


def test_fail_on_and_exit_rule():
    changes = [Change("bgp", "a", "b", B, A)]
    assert from_changes(changes).exit_code == 0
    assert from_changes(changes, fail_on="changes").exit_code == 1
    assert from_changes([Change("bgp", "a", "b", A, B)]).exit_code == 1
    assert from_changes(changes, partial=True).exit_code == 3
    assert from_changes([]).status == "ok"
