"""Firewall text handling: shape checks with line numbers, ipset normalisation, load order."""

from __future__ import annotations

import pytest

from netprobe.lab import firewall as fw

IPT = """\
# rules.v4
*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
-A INPUT -p tcp --dport 22 -j ACCEPT
COMMIT
*raw
:PREROUTING ACCEPT [0:0]
COMMIT
"""


def test_valid_texts_pass():
    fw.check("iptables", IPT)
    fw.check("ip6tables", IPT)
    fw.check("nft", 'flush ruleset\ntable inet f {\n  chain c { tcp dport 1 accept comment "a { b"; }\n}\n')
    fw.check("ipset", "create s hash:ip\nadd s 198.18.0.1\n")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "no nft statements"),
        ("# only a comment\n", "no nft statements"),
        ("table inet f {\n", "1 '{' never closed"),
        ("}\n", "line 1: '}' closes nothing"),
        ('table inet f { chain c { comment "x; } }\n', "line 1: unbalanced quote"),
    ],
)
def test_nft_errors(text, words):
    with pytest.raises(fw.FirewallTextError, match=words):
        fw.check_nft(text)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("-A INPUT -j DROP\n", "line 1: '-A' outside a \\*table section"),
        ("*filter\n-A INPUT -j DROP\n", "\\*filter has no COMMIT"),
        ("*filter\n*nat\nCOMMIT\n", "line 2: \\*nat starts before \\*filter has its COMMIT"),
        ("*firewall\nCOMMIT\n", "line 1: unknown table \\*firewall"),
        ("COMMIT\n", "line 1: COMMIT outside"),
        ("*filter\niptables -A INPUT -j DROP\nCOMMIT\n",
         "line 2: expected ':CHAIN', '-A ...' or COMMIT, got 'iptables'"),
        ("*filter\n:INPUT\nCOMMIT\n", "line 2: a chain line"),
        ("# nothing\n", "no \\*table section"),
    ],
)
def test_iptables_restore_errors(text, words):
    with pytest.raises(fw.FirewallTextError, match=words):
        fw.check_iptables_restore(text)


def test_ipset_normalisation():
    text = """
        # the cluster's hosts
        ipset create cluster hash:ip family inet
        ipset add cluster 198.18.0.10
        add cluster 198.18.0.11
    """
    assert fw.normalize_ipset(text) == (
        "create cluster hash:ip family inet\nflush cluster\nadd cluster 198.18.0.10\nadd cluster 198.18.0.11\n"
    )
    with pytest.raises(fw.FirewallTextError, match="line 2: 'list' is not an ipset command"):
        fw.normalize_ipset("create s hash:ip\nlist s\n")
    with pytest.raises(fw.FirewallTextError, match="no ipset commands"):
        fw.normalize_ipset("# none\n")


def test_unknown_kind():
    with pytest.raises(fw.FirewallTextError, match="unknown firewall kind 'pf'"):
        fw.check("pf", "block all")


def test_commands_in_load_order_with_newlines():
    rules = fw.Firewall(nft="flush ruleset", iptables=IPT, ip6tables=IPT, ipset="create s hash:ip", iptables_legacy=IPT)
    cmds = fw.commands(rules)
    assert [c.argv for c in cmds] == [
        ("ipset", "restore", "-exist"), ("nft", "-f", "-"), ("iptables-restore",), ("iptables-legacy-restore",),
        ("ip6tables-restore",),
    ]
    assert [c.kind for c in cmds] == ["ipset", "nft", "iptables", "iptables-legacy", "ip6tables"]
    assert all(c.text.endswith("\n") for c in cmds)
    assert cmds[1].text == "flush ruleset\n"
    assert fw.commands(fw.Firewall()) == [] and fw.Firewall().empty and not rules.empty


def test_render_for_dry_run():
    out = fw.render("node2", fw.commands(fw.Firewall(nft="flush ruleset\n")))
    assert out == "# node2: 1 command(s)\n$ nft -f - <<'EOF'\nflush ruleset\nEOF\n"
    assert fw.render("node3", []) == "# node3: no firewall (nothing to apply)\n"


def test_a_scenario_loads_legacy_iptables_text_with_the_legacy_tool():
    from netprobe.errors import ConfigError
    from netprobe.lab.spec import parse_scenario

    text = "name: s\nhosts:\n  - name: a\n    firewall:\n      iptables-legacy: |\n" + "".join(
        f"        {line}\n" for line in IPT.splitlines())
    host = parse_scenario(text, source="s.yaml").hosts[0]
    assert host.firewall.iptables_legacy == IPT and host.firewall.text("iptables-legacy") == IPT
    assert [c.argv for c in fw.commands(host.firewall)] == [("iptables-legacy-restore",)]
    with pytest.raises(ConfigError, match=r"hosts\[0\]\.firewall\.iptables-legacy"):
        parse_scenario(text.replace("COMMIT", "# no commit"), source="s.yaml")
