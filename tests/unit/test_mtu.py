"""The mtu check's pure parts: the k-ary search (core/mtu.py), the prober running it over real
padded probes and echoes (core/prober.py), its verdicts, words and wire fields."""

from __future__ import annotations

import errno
import json
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP

from netprobe.core import cookies, templates
from netprobe.core.checks import Proto, select_checks
from netprobe.core.compact_wire import compact_outcomes
from netprobe.core.echoes import build_echo, echo_payload
from netprobe.core.events import ProbeTarget, Via
from netprobe.core.keys import probe_key
from netprobe.core.mtu import FANOUT, MAX_STEPS, MTU_RANGE, MtuSearch, mtu_words
from netprobe.core.parse import parse_packet_untrusted
from netprobe.core.prober import Prober
from netprobe.core.reports import OutcomeReport
from netprobe.core.result import Cell, Evidence, Reach, ReplyKind, Verdict, Where
from netprobe.core.verdict import classify
from netprobe.report.words import describe_cell

KEY = probe_key("mtu-unit-token")
SRC, DST = "198.18.0.1", "198.18.0.2"
WALL = 1_700_000_000_000_000_000
IPIP_MTU = next(c for c in select_checks("calico") if c.pmtu)
VXLAN_MTU = next(c for c in select_checks("canal") if c.pmtu)
FLOOR = {Proto.IPIP: 84, Proto.VXLAN: 114}  # the unpadded probes


def placed(proto: Proto, ev: Evidence) -> tuple[Reach, Where | None]:
    c = classify(proto, ev)
    return c.reach, c.where


def run_search(required: int, floor: int, passes) -> MtuSearch:
    """A search where a size is echoed when ``passes(size)``."""
    search = MtuSearch(required, floor)
    while sizes := search.next_step():
        assert len(sizes) <= FANOUT and len(set(sizes)) == len(sizes)
        assert all(search.lo < s < search.hi for s in sizes)
        for size in sizes:
            if passes(size):
                search.echoed(size)
    return search


# ------------------------------------------------------------------ the search


@settings(max_examples=300, deadline=None)
@given(required=st.integers(*MTU_RANGE), data=st.data())
def test_the_search_finds_the_exact_largest_size_that_arrives(required, data):
    floor = data.draw(st.sampled_from(sorted(FLOOR.values())))
    boundary = data.draw(st.integers(floor, required - 1))
    search = run_search(required, floor, lambda size: size <= boundary)
    assert search.path_mtu == boundary and search.done
    assert search.steps <= MAX_STEPS


@pytest.mark.parametrize("required, steps", [(1500, 3), (9000, 4), (9216, 4)])
def test_a_black_hole_costs_a_fixed_few_windows(required, steps):
    """What the design promises: 3 windows for 1,500 bytes, 4 for jumbo frames."""
    for boundary in (84, 576, 1280, 1400, required - 1):
        assert run_search(required, 84, lambda size: size <= boundary).steps <= steps
    assert run_search(required, 84, lambda size: size <= 1400).steps == steps


def test_nothing_arriving_ends_after_one_step_with_no_path_mtu():
    """Not even the smallest probe came back (no responder): nothing to search."""
    search = MtuSearch(1500, 84)
    assert 84 in search.next_step()
    assert search.next_step() == [] and search.path_mtu is None and search.steps == 1


def test_a_lost_probe_costs_precision_not_correctness():
    """A size lost on the way is taken for too big; the result is still a size that arrived."""
    search = run_search(1500, 84, lambda size: size <= 1400 and size != 1396)
    assert search.path_mtu is not None and search.path_mtu <= 1400


def test_a_late_echo_still_counts():
    search = MtuSearch(1500, 84)
    first = search.next_step()
    search.echoed(first[0])
    second = search.next_step()  # of the first step only the smallest came back in its window
    assert max(second) < first[1]
    search.echoed(first[3])  # ... but then a larger one does
    assert search.lo == first[3] and all(s > first[3] for s in search.next_step())


def test_the_full_size_arriving_late_ends_the_search():
    search = MtuSearch(1500, 84)
    search.next_step()
    search.echoed(1500)
    assert search.path_mtu == 1500 and search.done and search.next_step() == []


def test_mtu_words():
    assert mtu_words("ipip", 1400, 1500) == "path MTU 1400 < 1500: IPIP pods need MTU <= 1380"
    assert mtu_words("vxlan", 1400, 1500) == "path MTU 1400 < 1500: VXLAN pods need MTU <= 1350"
    assert mtu_words("ipip", 1500, 1500) == "path MTU >= 1500"


# ------------------------------------------------------------------ the prober running it


def started(check, mtu: int = 1500, retries: int = 1, send_error: int | None = None):
    targets = [ProbeTarget(check, DST, "b", mtu=mtu)]
    s = Prober(KEY, SRC, targets, templates.for_targets(SRC, targets), window=1.0, retries=retries, first_id=5000)
    sends = s.start(0.0, WALL)
    for cmd in sends:
        s.send_done(cmd.probe_id, 0.0, send_error)
    return s, sends


def answer(s: Prober, sends, now: float, path_mtu: int, via: Via = Via.RAW) -> None:
    """The network carries what is at most ``path_mtu`` bytes; the responder echoes it."""
    keys = cookies.ProbeKeys(KEY)
    for cmd in sends:
        s.send_done(cmd.probe_id, now)
        if len(cmd.data) > path_mtu:
            continue
        probe = parse_packet_untrusted(cmd.data)
        sent = cookies.verify_payload(keys.for_dest(probe.dst), probe.payload, probe.flow())
        assert s.receive(build_echo(probe, echo_payload(keys, probe, sent)), via, now + 0.001) == cmd.probe_id


@pytest.mark.parametrize("check", [IPIP_MTU, VXLAN_MTU], ids=["ipip", "vxlan"])
def test_a_full_size_echo_in_the_first_window_is_all_it_takes(check):
    s, sends = started(check)
    (full,) = sends
    assert len(full.data) == 1500 and IP(full.data).flags == "DF"
    answer(s, sends, 0.0, 1500)
    assert s.finished
    (o,) = s.outcomes()
    assert (o.evidence.path_mtu, o.evidence.mtu, o.evidence.overlay) == (1500, 1500, str(check.proto))
    assert classify(check.proto, o.evidence).reach is Reach.ALLOWED


@pytest.mark.parametrize("check", [IPIP_MTU, VXLAN_MTU], ids=["ipip", "vxlan"])
def test_a_black_hole_is_searched_one_window_a_step(check):
    s, sends = started(check)
    answer(s, sends, 0.0, 1400)  # the full size never arrives
    now, windows, search_probes = 1.0, 0, set()
    while not s.finished:
        assert s.deadline == pytest.approx(now)
        sends = s.tick(now, WALL)
        search_probes |= {c.probe_id for c in sends if len(c.data) < 1500}
        windows += 1
        answer(s, sends, now, 1400)
        now += 1.0
    assert windows == 4  # the first window's end, then one per step: 3 steps for 1,500 bytes
    assert 5000 not in search_probes and len(search_probes) <= FANOUT * 3
    (o,) = s.outcomes()
    assert (o.evidence.path_mtu, o.evidence.mtu, o.evidence.attempts) == (1400, 1500, 2)  # the retry rode along
    assert (o.evidence.reply, o.evidence.sent) == (None, True)
    assert placed(check.proto, o.evidence) == (Reach.BLOCKED, Where.NETWORK)


def test_search_probes_are_their_overlays_probes_padded_and_authenticated():
    s, sends = started(VXLAN_MTU)
    s.send_done(sends[0].probe_id, 0.0)
    steps = s.tick(1.0, WALL)
    keys = cookies.ProbeKeys(KEY)
    for cmd in steps[:-1]:
        probe = parse_packet_untrusted(cmd.data)
        assert probe.outer_dport == 8472 and probe.vni == 1
        body = cookies.verify_payload(keys.for_dest(probe.dst), probe.payload, probe.flow())
        assert body.probe_id == cmd.probe_id and cookies.slot_of(cmd.probe_id) == probe.sport
    assert steps[-1].probe_id == sends[0].probe_id and len(steps[-1].data) == 1500  # the full size's retry


def test_a_search_echo_that_only_reached_the_tap_still_counts():
    """The sender's own INPUT dropping an echo says nothing about the size that arrived at B."""
    s, sends = started(IPIP_MTU, retries=0)
    answer(s, sends, 0.0, 1400, Via.TAP)
    now = 1.0
    while not s.finished:
        sends = s.tick(now, WALL)
        answer(s, sends, now, 1400, Via.TAP)
        now += 1.0
    assert s.outcomes()[0].evidence.path_mtu == 1400


def test_a_full_size_that_cannot_leave_is_refused_at_the_source():
    s, _sends = started(IPIP_MTU, mtu=9000, retries=0, send_error=errno.EMSGSIZE)
    now = 1.0
    while not s.finished:
        for cmd in s.tick(now, WALL):
            s.send_done(cmd.probe_id, now, errno.EMSGSIZE if len(cmd.data) > 1500 else None)
        now += 1.0
    ev = s.outcomes()[0].evidence
    assert (ev.sent, ev.mtu) == (False, 9000) and ev.send_error == "Message too long"
    assert placed(Proto.IPIP, ev) == (Reach.BLOCKED, Where.SOURCE_EGRESS)


def test_an_mtu_target_needs_its_size():
    with pytest.raises(ValueError, match="without a size"):
        Prober(KEY, SRC, [ProbeTarget(IPIP_MTU, DST)], templates.for_targets(SRC, [ProbeTarget(IPIP_MTU, DST)]))


# ------------------------------------------------------------------ verdicts, words, wire


MTU = {"mtu": 1500, "overlay": "ipip"}
NEVER = {"arrived": False, "accepted": False, "answered": False}


@pytest.mark.parametrize("fields, expected", [
    ({**MTU, "path_mtu": 1500, "reply": ReplyKind.ECHO, "reply_arrived": True}, (Reach.ALLOWED, None)),
    ({**MTU, "path_mtu": 1400}, (Reach.BLOCKED, Where.NETWORK)),
    ({**MTU, "path_mtu": None}, (Reach.UNKNOWN, None)),  # the sender alone heard nothing of any size
    ({**MTU, "path_mtu": None, **NEVER}, (Reach.BLOCKED, Where.NETWORK)),
    ({**MTU, "path_mtu": 1400, **NEVER}, (Reach.BLOCKED, Where.NETWORK)),
    ({**MTU, "path_mtu": 1400, "arrived": True, "accepted": True, "answered": True}, (Reach.ALLOWED, None)),
    ({**MTU, "path_mtu": 1400, "arrived": True, "accepted": False, "answered": False},
     (Reach.BLOCKED, Where.DESTINATION_INGRESS)),
    ({**MTU, "path_mtu": 1400, "sent": False, "send_error": "Message too long"}, (Reach.BLOCKED, Where.SOURCE_EGRESS)),
], ids=["full-size-echoed", "smaller-echoed", "nothing-heard-alone", "nothing-arrived", "smaller-arrived",
        "full-size-accepted-echo-lost", "full-size-dropped-by-the-destination", "full-size-refused-at-the-source"])
def test_mtu_verdicts(fields, expected):
    assert placed(Proto.IPIP, Evidence(**fields)) == expected


def test_small_probes_passing_never_make_the_cell_allowed():
    """The ipip probe's own echo (a small probe) is not the mtu cell's evidence."""
    ev = Evidence(reply=ReplyKind.ECHO, reply_arrived=True, reply_accepted=True, path_mtu=1499, mtu=1500,
                  overlay="ipip")
    assert placed(Proto.IPIP, ev) == (Reach.BLOCKED, Where.NETWORK)


def test_the_blocked_flow_says_the_figure():
    cell = Cell("mtu", "node1", "node3", Reach.BLOCKED, Where.NETWORK, Verdict.FILTERED,
                evidence=Evidence(path_mtu=1400, mtu=1500, overlay="vxlan"))
    assert describe_cell(cell) == ("mtu node1 -> node3 blocked in the network between node1 and node3 "
                                   "(path MTU 1400 < 1500: VXLAN pods need MTU <= 1350)")


def test_evidence_carries_the_figures_only_for_mtu_cells():
    ev = Evidence(path_mtu=1400, mtu=1500, overlay="ipip")
    assert Evidence.from_dict(ev.to_dict()) == ev
    assert {"path_mtu", "mtu", "overlay"}.isdisjoint(Evidence().to_dict())
    assert Evidence.from_dict(Evidence().to_dict()).mtu is None  # absent (an older agent or result): null


def _outcome(path_mtu: int | None) -> dict:
    ev = Evidence(left=True, reply=ReplyKind.ECHO, reply_arrived=True, reply_accepted=True, path_mtu=path_mtu, mtu=1500,
                  overlay="ipip")
    return OutcomeReport(1, "mtu", "b", DST, SRC, 0.5, ev).to_dict()


def test_only_an_mtu_outcome_whose_full_size_came_back_is_compacted():
    full, plain = compact_outcomes([_outcome(1500), _outcome(1400)], ["b"])
    assert [o["evidence"]["path_mtu"] for o in full] == [1400] and len(plain) == 1


def test_every_format_shows_the_figure():
    from helpers import cell, result

    from netprobe.report.jsonout import render_json
    from netprobe.report.junit import render_junit
    from netprobe.report.markdown import render_markdown
    from netprobe.report.table import render_table_text

    blocked = cell("mtu", "node1", "node3", "blocked", "network", path_mtu=1400, mtu=1500, overlay="ipip")
    res = result(blocked, cell("mtu", "node3", "node1"), checks=[IPIP_MTU.to_dict()])
    words = "path MTU 1400 < 1500: IPIP pods need MTU <= 1380"
    junit = ET.fromstring(render_junit(res).split("\n", 1)[1])
    failures = [f.get("message") for f in junit.iter("failure")]
    for text in (render_table_text(res, width=200), render_markdown(res).replace("\\", ""), *failures):
        assert words in text
    (detail,) = [d for d in json.loads(render_json(res))["detail"] if d["src"] == "node1"]
    assert (detail["evidence"]["path_mtu"], detail["evidence"]["mtu"], detail["evidence"]["overlay"]) == (1400, 1500,
                                                                                                       "ipip")
