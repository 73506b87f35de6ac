"""Markdown: glyphs per cell and escaping of what GitHub would read as table or formatting."""

from __future__ import annotations

from netprobe.core.result import Cell, Evidence, HostInfo, Reach, Result, Verdict, Where
from netprobe.report.markdown import cell_markdown, md_escape, render_markdown


def test_cell_glyphs():
    blocked = Cell("bgp", "a", "b", Reach.BLOCKED, Where.RETURN_PATH, Verdict.FILTERED)
    assert cell_markdown(blocked) == "❌R"
    assert cell_markdown(blocked, mismatch=True) == "❌R ❗"
    assert cell_markdown(Cell("bgp", "a", "b", Reach.UNKNOWN, None, Verdict.FILTERED)) == "❓"
    assert cell_markdown(Cell("bgp", "a", "b", Reach.ALLOWED, None, Verdict.OPEN)) == "✅"
    assert cell_markdown(None) == "·"


def test_escaping_keeps_the_table_intact():
    assert md_escape("a|b_c*d") == "a\\|b\\_c\\*d"
    cell = Cell("bgp", "n|1", "n_2", Reach.BLOCKED, Where.NETWORK, Verdict.FILTERED, evidence=Evidence(arrived=False))
    text = render_markdown(Result(cells=[cell], hosts=[HostInfo("n|1", "", ()), HostInfo("n_2", "", ())]))
    header, rule, row = [line for line in text.splitlines() if line.startswith("|")]
    assert header == "| from \\\\ to | n\\_2 |"
    assert rule == "|---|:-:|"
    assert row == "| **n\\|1** | ❌N |"
    assert "- bgp n\\|1 -> n\\_2 blocked in the network between n\\|1 and n\\_2 (never arrived)" in text
    assert text.rstrip().endswith("**0 allowed, 1 blocked, 0 unknown**")
