"""A lab whose hosts carry real node names (ip-198-18-5-99.eu-west-1.compute.internal) comes
up, probes and goes down: namespaces, sockets and logs use the derived short names."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns
SCENARIO = Path(__file__).resolve().parents[1] / "data" / "scenarios" / "real-node-names.yaml"


def test_lab_run_with_real_node_names():
    name = f"hbreal-{uuid.uuid4().hex[:6]}"
    try:
        proc = subprocess.run([sys.executable, "-m", "netprobe", "lab", "run", str(SCENARIO), "--name", name],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "ip-198-18-5-99.eu-west-1.compute.internal" in proc.stdout
        assert "expectation holds" in proc.stdout
    finally:
        subprocess.run([sys.executable, "-m", "netprobe", "lab", "down", name], capture_output=True, timeout=60)
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"nplab-{name}." not in left
