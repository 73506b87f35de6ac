"""The result model: JSON v1 (docs/design.md "Result JSON") round trips, errors that name file and field, diff."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import cell
from netprobe.core.checks import CHECKS
from netprobe.core.result import (
    SCHEMA,
    SCHEMA_V1,
    Cell,
    Change,
    Evidence,
    HostInfo,
    Icmp,
    Reach,
    ReplyKind,
    Result,
    Verdict,
    Where,
    diff,
)
from netprobe.core.fields import InvalidReport
from netprobe.errors import ConfigError

FULL_EVIDENCE = Evidence(sent=True, reply=ReplyKind.ICMP, icmp=Icmp(3, 13, "198.18.0.2"), reply_arrived=True,
                         reply_accepted=False, arrived=True, accepted=False, answered=True, attempts=2,
                         send_error="Network is unreachable")



def sample() -> Result:
    return Result(
        cells=[
            cell(rtt_ms=0.125, evidence=Evidence(reply=ReplyKind.SYN_ACK, reply_arrived=True, reply_accepted=True,
                                                 arrived=True, accepted=True, answered=True)),
            cell("apiserver", "b", "a", Reach.BLOCKED, Where.DESTINATION_INGRESS, Verdict.REJECTED,
                 evidence=FULL_EVIDENCE),
            cell("etcd", "a", "b", Reach.UNKNOWN, None, Verdict.FILTERED),
            cell("ipip", "b", "a", Reach.BLOCKED, Where.SOURCE_EGRESS, Verdict.FILTERED,
                 evidence=Evidence(sent=False, send_error="Operation not permitted")),
        ],
        hosts=[HostInfo("a", "198.18.0.1", ("node", "etcd")), HostInfo("b", "198.18.0.2", ("node",))],
        checks=[CHECKS["bgp"].to_dict(), CHECKS["etcd"].to_dict()],
        profile="calico",
        started="2024-05-01T10:00:00+00:00",
        finished="2024-05-01T10:00:02+00:00",
        errors=[{"host": "c", "message": "agent unreachable"}],
        skipped=[{"check": "typha", "reason": "no host has role 'typha'"}],
        netprobe_version="0.1.0",
    )


# ------------------------------------------------------------------ JSON v1


def test_json_round_trip():
    r = sample()
    assert Result.from_json(r.to_json()) == r


def test_json_round_trip_of_an_empty_result():
    r = Result(cells=[])
    back = Result.from_json(r.to_json())
    assert back == r


def test_top_level_fields_of_design_section_7():
    d = json.loads(sample().to_json())
    assert d["schema"] == SCHEMA == "netprobe.result/v2"
    assert {"schema", "status", "counts", "netprobe_version", "started", "finished", "profile", "hosts", "checks",
            "codes", "matrices", "detail", "errors"} <= set(d)
    assert d["hosts"][0] == {"name": "a", "address": "198.18.0.1", "roles": ["node", "etcd"]}
    assert {"id", "proto", "port", "direction"} <= set(d["checks"][0])


def test_summary_counts_like_preflight_json():
    d = json.loads(sample().to_json())
    r = sample()
    n = {str(reach): sum(c.reach is reach for c in r.cells) for reach in Reach}
    assert d["counts"] == {"cells": len(r.cells), **n, "skipped": len(r.skipped), "errors": len(r.errors)}
    assert d["status"] == ("partial" if r.errors else "fail" if n["blocked"] + n["unknown"] else "ok")


def test_v1_files_still_read():
    d = json.loads(json.dumps(sample().to_dict_v1()))
    assert d["schema"] == "netprobe.result/v1" and "status" not in d
    assert Result.from_dict(d) == sample()


def test_cell_and_evidence_fields():
    d = next(c for c in json.loads(sample().to_json())["detail"] if c["check"] == "apiserver")  # kept whole
    assert d == {
        "check": "apiserver", "src": "b", "dst": "a", "reach": "blocked", "where": "destination-ingress",
        "verdict": "rejected", "rtt_ms": None,
        "evidence": {"sent": True, "left": None, "arrived": True, "reached_ip": None, "accepted": False,
                     "answered": True, "reply": "icmp", "icmp": {"type": 3, "code": 13, "from": "198.18.0.2"},
                     "reply_arrived": True, "reply_accepted": False, "attempts": 2, "send_error": "Network is unreachable"},
    }


def test_below_ip_evidence_round_trips_and_an_older_results_reads_null():
    ev = Evidence(sent=True, left=True, arrived=True, reached_ip=False, accepted=False, answered=False, attempts=2)
    assert Evidence.from_dict(json.loads(json.dumps(ev.to_dict()))) == ev
    older = {k: v for k, v in ev.to_dict().items() if k not in ("left", "reached_ip")}
    back = Evidence.from_dict(older)
    assert (back.left, back.reached_ip) == (None, None) and back.arrived and not back.accepted
    with pytest.raises(InvalidReport, match=r"evidence\.left"):
        Evidence.from_dict({**ev.to_dict(), "left": "yes"})


def test_rtt_is_rounded_to_microseconds():
    d = cell(rtt_ms=1.23456789).to_dict()
    assert d["rtt_ms"] == 1.235


def test_evidence_defaults_when_absent():
    c = Cell.from_dict({"check": "bgp", "src": "a", "dst": "b", "reach": "unknown", "verdict": "filtered"})
    assert c == cell(reach=Reach.UNKNOWN, verdict=Verdict.FILTERED)
    assert c.evidence == Evidence() and not c.evidence.has_responder


@pytest.mark.parametrize("ev", [FULL_EVIDENCE, Evidence(), Evidence(sent=False), Evidence(arrived=False)])
def test_evidence_round_trip(ev):
    assert Evidence.from_dict(json.loads(json.dumps(ev.to_dict()))) == ev


def test_result_cell_lookup():
    r = sample()
    assert r.cell("etcd", "a", "b").verdict is Verdict.FILTERED
    assert r.cell("etcd", "b", "a") is None


def test_output_is_stable_json_text():
    text = sample().to_json()
    assert text.endswith("\n")
    assert text == Result.from_json(text).to_json()


# ------------------------------------------------------------------ errors


def _error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Result.from_json(text, source="old.json")
    assert info.value.file == "old.json"
    assert info.value.exit_code == 2
    assert str(info.value).startswith("old.json")
    return info.value


def test_not_json():
    e = _error('{"schema": ')
    assert e.field is None and "not valid JSON" in str(e) and "line 1" in str(e)


@pytest.mark.parametrize("text", ["[]", "42", '"netprobe.result/v1"', "null"])
def test_not_an_object(text):
    assert "not a JSON object" in str(_error(text))


@pytest.mark.parametrize("schema", [None, "netprobe.result/v3", "netprobe.expect/v1", 1])
def test_wrong_schema(schema):
    doc = {"cells": []} if schema is None else {"schema": schema, "cells": []}
    e = _error(json.dumps(doc))
    assert e.field == "schema" and "netprobe.result/v2" in str(e)


GOOD_CELL = {"check": "bgp", "src": "a", "dst": "b", "reach": "allowed", "where": None, "verdict": "open"}


@pytest.mark.parametrize("cells", [
    pytest.param([{k: v for k, v in GOOD_CELL.items() if k != "check"}], id="missing-check"),
    pytest.param([{**GOOD_CELL, "reach": "maybe"}], id="bad-reach"),
    pytest.param([{**GOOD_CELL, "where": "somewhere"}], id="bad-where"),
    pytest.param([{**GOOD_CELL, "verdict": "closed-ish"}], id="bad-verdict"),
    pytest.param([{**GOOD_CELL, "evidence": {"reply": "pong"}}], id="bad-reply"),
    pytest.param([{**GOOD_CELL, "evidence": {"icmp": {"type": 3}}}], id="icmp-without-code"),
    pytest.param([{**GOOD_CELL, "evidence": {"attempts": "two"}}], id="bad-attempts"),
    pytest.param([{**GOOD_CELL, "evidence": "lost"}], id="evidence-not-an-object"),
    pytest.param([{**GOOD_CELL, "evidence": {"icmp": "3/13"}}], id="icmp-not-an-object"),
    pytest.param([42], id="cell-not-an-object"),
    pytest.param(42, id="cells-not-a-list"),
])
def test_malformed_cells_name_the_field(cells):
    e = _error(json.dumps({"schema": SCHEMA_V1, "cells": cells}))
    assert e.field.startswith("cells")


@pytest.mark.parametrize(("cell_doc", "field"), [
    ({**GOOD_CELL, "check": None}, "cells[0].check"),
    ({**GOOD_CELL, "evidence": {"reply": "pong"}}, "cells[0].evidence.reply"),
    ({**GOOD_CELL, "evidence": {"attempts": 1e300}}, "cells[0].evidence.attempts"),
    ({**GOOD_CELL, "rtt_ms": -1}, "cells[0].rtt_ms"),
    ({**GOOD_CELL, "evidence": {"icmp": {"type": 3, "code": 300, "from": "x"}}}, "cells[0].evidence.icmp.code"),
])
def test_a_bad_cell_field_is_named_exactly(cell_doc, field):
    assert _error(json.dumps({"schema": SCHEMA_V1, "cells": [cell_doc]})).field == field


@pytest.mark.parametrize(("doc", "field"), [
    ({"errors": [1]}, "errors[0]"),
    ({"errors": [{"host": "a", "message": 5}]}, "errors[0].message"),
    ({"skipped": [None]}, "skipped[0]"),
    ({"hosts": [{"name": ["x"]}]}, "hosts[0].name"),
    ({"profile": ["calico"]}, "profile"),
])
def test_bad_top_level_fields_are_named(doc, field):
    assert _error(json.dumps({"schema": SCHEMA_V1, "cells": [], **doc})).field == field


@pytest.mark.parametrize("text", ['{"schema": "netprobe.result/v1", "cells": [], "x": 1e999}',
                                  '{"schema": "netprobe.result/v1", "cells": [' + "[" * 20000 + "]" * 20000 + "]}",
                                  '{"schema": "netprobe.result/v1", "cells": [], "n": ' + "9" * 5000 + "}",
                                  '{"schema": "netprobe.result/v1", "cells": [], "n": NaN}'])
def test_hostile_json_is_one_config_error(text):
    assert "not valid JSON" in str(_error(text))


@pytest.mark.parametrize("hosts", [
    pytest.param([{"address": "198.18.0.1"}], id="missing-name"),
    pytest.param(["a"], id="host-not-an-object"),
    pytest.param([{"name": "a", "roles": 5}], id="roles-not-a-list"),
    pytest.param(7, id="hosts-not-a-list"),
])
def test_malformed_hosts_name_the_field(hosts):
    e = _error(json.dumps({"schema": SCHEMA_V1, "cells": [], "hosts": hosts}))
    assert e.field.startswith("hosts")


@pytest.mark.parametrize("key", ["checks", "errors", "skipped"])
@pytest.mark.parametrize("value", [5, "text", {"a": 1}])
def test_lists_that_are_not_lists_name_the_field(key, value):
    e = _error(json.dumps({"schema": SCHEMA_V1, "cells": [], key: value}))
    assert e.field == key


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)


@st.composite
def result_documents(draw):
    """A v1 document with any of its parts replaced by arbitrary JSON."""
    doc = json.loads(sample().to_json())
    for _ in range(draw(st.integers(1, 4))):
        target, key = doc, draw(st.sampled_from(sorted(doc)))
        cells = doc.get("cells")
        if key == "cells" and isinstance(cells, list) and cells and draw(st.booleans()):
            target = draw(st.sampled_from(cells))
            if not isinstance(target, dict) or not target:
                continue
            key = draw(st.sampled_from(sorted(target)))
            evidence = target.get("evidence")
            if key == "evidence" and isinstance(evidence, dict) and evidence and draw(st.booleans()):
                target = evidence
                key = draw(st.sampled_from(sorted(target)))
        if key == "schema":
            continue
        if draw(st.booleans()):
            target.pop(key)
        else:
            target[key] = draw(JSON_VALUES)
    return json.dumps(doc)


@settings(max_examples=400)
@given(result_documents())
def test_any_malformed_document_raises_only_config_error(text):
    try:
        Result.from_json(text, source="r.json")
    except ConfigError as e:  # a field named, or JSON itself refused (e.g. Infinity, 40-digit numbers)
        assert e.file == "r.json" and (e.field or "not valid JSON" in str(e))
    # a document that loads must be usable: it saves again
    else:
        Result.from_json(Result.from_json(text).to_json())


# ------------------------------------------------------------------ diff


def test_diff_of_identical_results_is_empty():
    assert diff(sample(), sample()) == []


def test_diff_reports_reach_changes():
    old = Result(cells=[cell(), cell("etcd")])
    new = Result(cells=[cell(reach=Reach.BLOCKED, where=Where.NETWORK, verdict=Verdict.FILTERED), cell("etcd")])
    (change,) = diff(old, new)
    assert (change.check, change.src, change.dst) == ("bgp", "a", "b")
    assert change.old == old.cells[0] and change.new == new.cells[0]


def test_diff_reports_where_changes():
    old = Result(cells=[cell(reach=Reach.BLOCKED, where=Where.NETWORK, verdict=Verdict.FILTERED)])
    new = Result(cells=[cell(reach=Reach.BLOCKED, where=Where.DESTINATION_INGRESS, verdict=Verdict.FILTERED)])
    assert len(diff(old, new)) == 1


def test_diff_ignores_verdict_rtt_and_evidence_changes():
    old = Result(cells=[cell(verdict=Verdict.OPEN, rtt_ms=1.0)])
    new = Result(cells=[cell(verdict=Verdict.CLOSED, rtt_ms=9.0, evidence=FULL_EVIDENCE)])
    assert diff(old, new) == []


def test_diff_reports_cells_that_appear_and_disappear():
    old = Result(cells=[cell("bgp"), cell("etcd")])
    new = Result(cells=[cell("bgp"), cell("typha")])
    changes = diff(old, new)
    assert changes == [Change("etcd", "a", "b", old.cells[1], None), Change("typha", "a", "b", None, new.cells[1])]
    assert (changes[0].check, changes[0].new) == ("etcd", None)
    assert (changes[1].check, changes[1].old) == ("typha", None)


def test_diff_order_is_stable_and_sorted():
    cells = [cell(c, s, d) for c in ("etcd", "bgp") for s, d in (("b", "a"), ("a", "b"))]
    blocked = [Cell(c.check, c.src, c.dst, Reach.BLOCKED, Where.NETWORK, Verdict.FILTERED) for c in cells]
    changes = diff(Result(cells=cells), Result(cells=list(reversed(blocked))))
    assert [(c.check, c.src, c.dst) for c in changes] == [("bgp", "a", "b"), ("bgp", "b", "a"), ("etcd", "a", "b"),
                                                          ("etcd", "b", "a")]


def test_diff_survives_a_json_round_trip():
    old = sample()
    new = Result.from_json(old.to_json())
    assert diff(old, new) == []


def test_diff_of_results_whose_hosts_differ_matches_a_cell_by_cell_comparison():
    """A node joined and another left (and a check came): the remapped tables give exactly the
    changes a comparison of every cell gives, in the same order."""
    import random

    from helpers import cell, result
    from netprobe.core.result import HostInfo, diff

    rng = random.Random(7)
    states = [("allowed", None, "open"), ("blocked", "network", "filtered"), ("blocked", "destination-ingress",
              "filtered"), ("unknown", None, "error")]

    def run(hosts, checks):
        cells = []
        for check in checks:
            for s in hosts:
                for d in hosts:
                    if s != d and rng.random() < 0.9:
                        reach, where, verdict = rng.choice(states)
                        cells.append(cell(check, s, d, reach, where, verdict))
        return result(*cells, hosts=[HostInfo(h, "", ()) for h in hosts])

    old = run(["a", "b", "c", "d", "e"], ["bgp", "ipip"])
    new = run(["b", "a", "c", "e", "f", "g"], ["bgp", "typha"])
    got = [(c.check, c.src, c.dst, c.family, c.old and c.old.reach, c.new and c.new.reach) for c in diff(old, new)]
    before = {c.key: c for c in old.cells}
    after = {c.key: c for c in new.cells}
    want = []
    for key in sorted(before.keys() | after.keys(), key=lambda k: (k[0], k[3], k[1], k[2])):
        a, b = before.get(key), after.get(key)
        if a is not None and b is not None and (a.reach, a.where) == (b.reach, b.where):
            continue
        want.append((*key, a and a.reach, b and b.reach))
    assert got == want and any(w[4] is None for w in want) and any(w[5] is None for w in want)
