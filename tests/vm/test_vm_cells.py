"""The VM lab against the netns lab: `make vm-test` runs a scenario on real VMs (real kernels,
virtio NICs, systemd units) and this test runs `netprobe lab run` of the same scenario; every
cell must have the same reach and the same "where".

Marker ``vm``; runs only after `make vm-test` made the VM result (NETPROBE_VM_RESULT, and
NETPROBE_VM_SCENARIO names its scenario); skipped otherwise, so `make test` stays VM-free.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from netprobe.config import load_result

pytestmark = pytest.mark.vm

RESULT = os.environ.get("NETPROBE_VM_RESULT")
SCENARIO = os.environ.get("NETPROBE_VM_SCENARIO")


def cell_differences(lab, vm) -> list[str]:
    """Every cell whose reach or where differs (or that only one run has): netns lab -> VMs."""
    from netprobe.core.result import diff

    return [change.describe() for change in diff(lab, vm)]


@pytest.mark.skipif(not (RESULT and SCENARIO and Path(RESULT).is_file()),
                    reason="no VM result: run `make vm-test` (NETPROBE_VM_RESULT, NETPROBE_VM_SCENARIO)")
@pytest.mark.skipif(os.geteuid() != 0, reason="netprobe lab run needs root")
def test_vm_cells_equal_the_netns_lab(tmp_path):
    import subprocess

    vm = load_result(RESULT)
    assert not vm.errors, vm.errors
    lab_json = tmp_path / "lab.json"
    proc = subprocess.run([sys.executable, "-m", "netprobe", "lab", "run", SCENARIO, "--name", f"vmcmp-{os.getpid()}",
                           "--format", "json", "-o", str(lab_json)], capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    lab = load_result(str(lab_json))
    assert len(vm.cells) == len(lab.cells) > 0
    assert cell_differences(lab, vm) == []
