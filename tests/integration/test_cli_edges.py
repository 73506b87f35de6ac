"""The CLI at its edges as a user meets them: no privileges, SIGTERM, refusing unsafe setups."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys

import pytest

pytestmark = pytest.mark.netns
NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps=-all"]


@pytest.fixture
def empty_netns():
    import uuid

    name = f"nptest-cli-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.mark.parametrize("args", [
    ["probe", "127.0.0.1", "--checks", "bgp"],  # the namespace's own loopback
    ["responder", "--listen", "unix:/tmp/np-unprivileged.sock"],
])
def test_without_privileges_one_line_and_exit_2(empty_netns, args):
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is not installed")
    if subprocess.run([*NOBODY, sys.executable, "-c", "import netprobe.cli"], capture_output=True).returncode:
        pytest.skip("user nobody cannot read this checkout (its folder is private), so it cannot run netprobe")
    proc = subprocess.run(["ip", "netns", "exec", empty_netns, *NOBODY, sys.executable, "-m", "netprobe", *args],
                          capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "NETPROBE_TOKEN": "t-0123456789abcdef"})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "CAP_NET_RAW" in lines[0], proc.stderr


def test_responder_refuses_tcp_without_a_token(empty_netns):
    proc = subprocess.run(["ip", "netns", "exec", empty_netns, sys.executable, "-m", "netprobe", "responder",
                           "--listen", "tcp://127.0.0.1:7879"], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert "token" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_responder_stops_cleanly_on_sigterm(empty_netns, tmp_path):
    sock = tmp_path / "agent.sock"
    token = tmp_path / "token"
    token.write_text("sigterm-token-0123456789\n")
    proc = subprocess.Popen(["ip", "netns", "exec", empty_netns, sys.executable, "-m", "netprobe", "responder",
                             "--listen", f"unix:{sock}", "--token-file", str(token)],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert "ready" in proc.stderr.readline()
        assert sock.exists() and (sock.stat().st_mode & 0o777) == 0o600
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert not sock.exists()  # the socket file goes with it
    finally:
        if proc.poll() is None:
            proc.kill()
