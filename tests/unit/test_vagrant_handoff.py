"""The Vagrant side of two habits:

- The Vagrantfile header runs netprobe with the inventory's token_file, /etc/netprobe/token, which
  the provisioner makes 0600 root: the command needs sudo.
- deploy/vagrant-provision.sh must leave the lab-host marker before `netprobe lab firewall`, which
  otherwise refuses to replace a host firewall (netprobe/lab/hostguard.py).
"""

from __future__ import annotations

import re
from pathlib import Path

from netprobe.lab.hostguard import LAB_MARKER

REPO = Path(__file__).resolve().parents[2]


def test_vagrantfile_header_shows_sudo_where_the_token_needs_it():
    header = [line for line in (REPO / "Vagrantfile").read_text().splitlines() if line.startswith("#")]
    uses = [line for line in header if re.search(r"netprobe (mesh|verify|preflight)\b.*/etc/netprobe/inventory", line)]
    assert uses and all("sudo netprobe" in line for line in uses), uses


def test_provisioner_leaves_the_lab_host_marker_before_applying_the_firewall():
    text = (REPO / "deploy" / "vagrant-provision.sh").read_text()
    marker = text.find(str(LAB_MARKER))
    apply = text.find('netprobe lab firewall "$NETPROBE_SCENARIO" --host "$NETPROBE_HOST"\n')
    assert 0 <= marker < apply
