"""Every format says a blocked cell's explanation: the table (matrix or rollup), Markdown, JUnit,
the HTML page, JSON, the verify/diff findings; the fix comes under the sentence, never inline."""

from __future__ import annotations

import dataclasses
import html
import json
import xml.etree.ElementTree as ET

import pytest

from helpers import cell, result
from netprobe.core.explain import Explain, Fix, Hop
from netprobe.core.result import Result, diff
from netprobe.core.trace import RuleFound
from netprobe.core.verdicts import from_changes
from netprobe.report import render
from netprobe.report.verdict import render_findings_text

RULE = RuleFound("inet", "filter", "input", 7, 'tcp dport 179 drop comment "no bgp"', "no bgp", "drop")
FIX = Fix("nft insert rule inet filter input position 7 ip saddr 192.0.2.12 ip daddr 192.0.2.13 tcp dport 179 accept",
          "iptables -I INPUT -s 192.0.2.12 -d 192.0.2.13 -p tcp --dport 179 -j ACCEPT")
RULE_WORDS = 'inet filter input handle 7 `tcp dport 179 drop comment "no bgp"`'
HOP_WORDS = "died after 192.0.2.1 (hop 2, core)"


@pytest.fixture
def explained() -> Result:
    ingress = dataclasses.replace(cell("bgp", "node-2", "node-3", "blocked", "destination-ingress", arrived=True,
                                       accepted=False), explain=Explain(rule=RULE, fix=FIX))
    network = dataclasses.replace(cell("bgp", "node-1", "node-3", "blocked", "network", arrived=False),
                                  explain=Explain(hop=Hop("192.0.2.1", 2, "core")))
    return result(ingress, network, cell("bgp", "node-3", "node-2", "allowed"))


def test_the_table_says_it_in_words_with_the_fix_under_it(explained):
    lines = render(explained, "table", width=120, wrap=False).splitlines()  # piped: never wrapped
    at = next(i for i, line in enumerate(lines) if "node-2 -> node-3" in line)
    assert lines[at].strip().endswith(f"blocked at node-3's INPUT (filtered): {RULE_WORDS}")
    assert lines[at + 1].strip() == f"fix (not applied): {FIX.nft}"
    assert FIX.iptables not in "\n".join(lines)  # an nft rule's drop: no iptables line undoes it
    assert any(line.strip().endswith(HOP_WORDS) for line in lines)


def test_the_rollup_says_it_too(explained):
    text = render(explained, "table", width=20)  # too narrow for a matrix: the per-host rollup
    assert "Too many hosts for a matrix" in text
    assert RULE_WORDS in text and f"  fix (not applied): {FIX.nft}" in text and HOP_WORDS in text


def test_markdown_lists_the_fix_as_code(explained):
    text = render(explained, "markdown")
    assert "inet filter input handle 7 \\`tcp dport 179 drop comment \"no bgp\"\\`" in text
    assert f"  - fix (not applied): `{FIX.nft}`" in text


def test_junit_failure_carries_the_sentence_the_fix_and_the_json(explained):
    root = ET.fromstring(render(explained, "junit").split("\n", 1)[1])
    failure = next(case.find("failure") for case in root.iter("testcase") if case.get("name") == "node-2 -> node-3")
    assert failure.get("message").endswith(RULE_WORDS)
    body = failure.text.splitlines()
    assert body[1] == f"fix (not applied): {FIX.nft}"
    explain = json.loads(next(line for line in body if line.startswith("explain: "))[len("explain: "):])
    assert explain["rule"]["handle"] == 7 and explain["fix"]["iptables"] == FIX.iptables


def test_the_html_page_explains_the_cell(explained):
    page = render(explained, "html")
    item = next(line for line in page.split("<li ")[1:] if 'data-src="node-2"' in line)
    assert html.escape(RULE_WORDS) in item and html.escape(FIX.nft) in item
    data = json.loads(page.split('<script id="netprobe-data" type="application/json">')[1].split("</script>")[0]
                      .replace("<\\/", "</"))
    details = [text for m in data["matrices"] for text in m["explain"].values()]  # a canvas cell's detail
    assert any(RULE_WORDS in text and FIX.nft in text for text in details)


def test_json_carries_the_explanation(explained):
    again = Result.from_json(render(explained, "json"))
    assert again.cell("bgp", "node-2", "node-3").explain == Explain(rule=RULE, fix=FIX)


def test_verify_and_diff_findings_carry_the_new_cells_explanation(explained):
    before = result(*[dataclasses.replace(c, reach="allowed", where=None, verdict="open", explain=None)
                      for c in explained.cells])
    judgement = from_changes(diff(before, explained), mode="baseline")
    finding = next(f for f in judgement.findings if f.key == ("bgp", "node-2", "node-3", 4))
    assert finding.describe().endswith(f"now blocked at destination-ingress (filtered): {RULE_WORDS}")
    assert finding.to_dict()["explain"]["rule"]["text"] == RULE.text
    text = render_findings_text(judgement)
    assert f"    fix (not applied): {FIX.nft}" in text
    network = next(f for f in judgement.findings if f.key == ("bgp", "node-1", "node-3", 4))
    assert network.describe().endswith(HOP_WORDS)
