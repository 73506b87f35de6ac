"""The Vagrantfile and its provisioning, read as text (no vagrant run: see
tests/integration/test_lab_vagrant_validate.py): VMs get the shipped unit and `netprobe lab firewall`."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_vagrantfile_shape():
    text = (REPO / "Vagrantfile").read_text()
    assert "debian/bookworm64" in text
    assert 'provider "virtualbox"' in text and 'provider "libvirt"' in text
    assert "private_network" in text
    script = (REPO / "deploy" / "vagrant-provision.sh").read_text()
    assert 'netprobe lab firewall "$NETPROBE_SCENARIO" --host "$NETPROBE_HOST"' in script
    assert "pip install -q /vagrant" in script and "netprobe-responder.service" in script
    # offline (make vm-test): from a wheelhouse in the synced folder, never an index
    assert '--no-index --find-links "/vagrant/$NETPROBE_WHEELHOUSE"' in script
    # the local box and TCG are the make target's choice (environment), not the file's default
    assert 'ENV["NETPROBE_LIBVIRT_TCG"] == "1"' in text and 'ENV.fetch("NETPROBE_VM_MEMORY", "1024")' in text


def test_responder_unit():
    unit = (REPO / "deploy" / "netprobe-responder.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert exec_start.endswith("netprobe responder --listen tcp://0.0.0.0:7879 --token-file /etc/netprobe/token")
    assert "[Install]" in unit and "WantedBy=multi-user.target" in unit
