"""What `lab firewall` says it replaces, and what makes a host a lab host."""

from __future__ import annotations

from netprobe.lab import firewall as fw
from netprobe.lab import hostguard


def test_flush_ruleset_replaces_every_table():
    f = fw.Firewall(nft="flush ruleset\ntable inet lab { }\n")
    assert hostguard.replaced(f, ["inet calico", "ip nat"], []) == [
        "nft table inet calico (`flush ruleset`)", "nft table ip nat (`flush ruleset`)"]


def test_without_flush_only_the_tables_it_names():
    f = fw.Firewall(nft="table inet lab {\n}\nflush table ip nat\n")
    assert hostguard.replaced(f, ["inet calico", "ip nat", "inet lab"], []) == ["nft table inet lab", "nft table ip nat"]


def test_iptables_and_ipset():
    f = fw.Firewall(iptables="*filter\n:INPUT DROP [0:0]\nCOMMIT\n", ipset="create allowed hash:ip\n")
    assert hostguard.replaced(f, [], ["allowed", "other"]) == [
        "iptables table filter (every chain and rule in it)", "ipset allowed (its members)"]


def test_legacy_iptables_tables_are_named_too():
    f = fw.Firewall(iptables_legacy="*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n")
    assert hostguard.replaced(f, [], []) == ["iptables-legacy table filter (every chain and rule in it)"]


def test_marker_makes_a_lab_host(tmp_path, monkeypatch):
    monkeypatch.setattr(hostguard, "current_lab_netns", lambda: None)
    marker = tmp_path / "lab-host"
    assert hostguard.lab_host_reason(marker) is None
    marker.write_text("demo node2\n")
    assert "lab VM" in hostguard.lab_host_reason(marker)
