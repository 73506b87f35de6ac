"""The pieces that make a 1,000-host mesh fit: the compact store, result v2, the compact wire
and its join, planning and sampling, the rollup view, gzipped results."""

from __future__ import annotations

import json

import pytest

from helpers import cell
from netprobe.core.checks import HostRef, plan_cells, select_checks
from netprobe.core.compact_join import join_store
from netprobe.core.compact_wire import (compact_observations, compact_outcomes, parse_plain_observations,
                                        parse_plain_outcomes)
from netprobe.core.inventory import parse_inventory
from netprobe.core.matrix_store import MatrixStore, is_plain
from netprobe.core.mesh_logic import join_cells, plan_mesh
from netprobe.core.reports import ObservationReport, OutcomeReport
from netprobe.core.result import Evidence, HostInfo, Reach, ReplyKind, Result, diff
from netprobe.core.sampling import runs_to_cover, sample_indices
from netprobe.errors import ConfigError
from netprobe.report.table import render_table_text

CALICO = select_checks("calico")
PLAIN = Evidence(sent=True, reply=ReplyKind.SYN_ACK, reply_arrived=True, reply_accepted=True, arrived=True,
                 accepted=True, answered=True)


def names(n):
    return [f"node-{i}" for i in range(n)]


def big_result(n=50, blocked=(("bgp", "node-7", "node-33"),)):
    """An n-host bgp mesh, every cell plain but the ``blocked`` ones (filtered at the destination)."""
    store = MatrixStore(names(n), ["bgp"])
    for src in names(n):
        for dst in names(n):
            if src == dst:
                continue
            if ("bgp", src, dst) in blocked:
                ev = Evidence(sent=True, arrived=True, accepted=False, answered=False, attempts=2)
                store.put(cell("bgp", src, dst, "blocked", "destination-ingress", "filtered", evidence=ev))
            else:
                store.put(cell("bgp", src, dst, "allowed", None, "open", rtt_ms=0.25, evidence=PLAIN))
    hosts = [HostInfo(h, f"198.18.0.{i + 1}", ("node",)) for i, h in enumerate(names(n))]
    return Result(cells=store, hosts=hosts, checks=[CALICO[0].to_dict()], profile="calico")


def test_store_keeps_plain_cells_as_one_byte_and_the_rest_whole():
    r = big_result(5)
    store = r.store
    assert len(store) == 20 and len(store.detail) == 0  # node-33 does not exist at 5 hosts
    blocked = cell("bgp", "node-1", "node-2", "blocked", "network", "filtered",
                   evidence=Evidence(arrived=False, accepted=False, answered=False))
    store.put(blocked)
    assert len(store) == 20 and store.get("bgp", "node-1", "node-2") == blocked
    assert list(store.problems()) == [blocked]
    assert store.get("bgp", "node-0", "node-1") == cell("bgp", "node-0", "node-1", "allowed", None, "open",
                                                        rtt_ms=0.25, evidence=PLAIN)
    assert is_plain(store.get("bgp", "node-0", "node-1")) and not is_plain(blocked)
    assert store.get("bgp", "node-0", "node-0") is None and store.get("nope", "node-0", "node-1") is None


def test_result_v2_round_trip_and_size():
    r = big_result(50)
    text = r.to_json()
    d = json.loads(text)
    assert d["schema"] == "netprobe.result/v2" and len(d["matrices"][0]["rows"]) == 50
    assert len(d["detail"]) == 1 and d["detail"][0]["dst"] == "node-33"
    assert len(text) < 60_000  # v1 wrote ~460 bytes per cell: 1.1 MB here
    back = Result.from_json(text)
    assert back.cells == r.cells and back.hosts == r.hosts and diff(r, back) == []


def test_a_list_result_writes_the_same_file_as_its_store():
    cells = list(big_result(6).cells)
    assert Result(cells=cells).to_json() == Result(cells=MatrixStore.from_cells(cells)).to_json()


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["matrices"][0]["rows"].__setitem__(0, "x" * 50), "matrices[0].rows"),
    (lambda d: d["matrices"][0]["rows"].__setitem__(0, "A"), "matrices[0].rows[0]"),
    (lambda d: d["matrices"][0]["rows"].pop(), "matrices[0].rows"),
    (lambda d: d["matrices"][0]["rtt_us"].pop(), "matrices[0].rtt_us"),
    (lambda d: d["matrices"][0]["rtt_us"].__setitem__(3, -1), "matrices[0].rtt_us[3]"),
    (lambda d: d["codes"].__setitem__("A", ["allowed", None, "nope"]), "codes.A[2]"),
    (lambda d: d["detail"][0].__setitem__("src", "ghost"), "detail[0]"),
    (lambda d: d.__setitem__("not_probed", {"ghost": "x"}), "not_probed.ghost"),
])
def test_a_bad_v2_file_is_one_error_naming_the_field(edit, field):
    d = json.loads(big_result(50).to_json())
    edit(d)
    with pytest.raises(ConfigError) as e:
        Result.from_json(json.dumps(d), source="r.json")
    assert e.value.field == field


def test_diff_of_two_stores_finds_the_changed_cells():
    old, new = big_result(50), big_result(50, blocked=(("bgp", "node-1", "node-2"),))
    changes = diff(old, new)
    assert [(c.src, c.dst) for c in changes] == [("node-1", "node-2"), ("node-7", "node-33")]


def test_50_hosts_fit_80_columns_and_name_the_broken_pair():
    text = render_table_text(big_result(50), width=80)
    assert max(map(len, text.splitlines())) <= 80
    assert "node-33: bgp inbound blocked at ingress from 1 of 49 peers (node-7)" in text
    assert "bgp node-7 -> node-33 blocked at node-33's INPUT" in text
    assert "…" not in text


def test_a_small_mesh_still_draws_its_matrix():
    text = render_table_text(big_result(4, blocked=(("bgp", "node-1", "node-2"),)), width=80)
    assert "from \\ to" in text and "✗D" in text


# dual stack, IPv4 only and IPv6 only, mixed: h0, h1, h3 have both families, h2 IPv4, h4 IPv6
ADDRESSES = ["address: 192.0.2.1, address6: '2001:db8::1'", "address: 192.0.2.2, address6: '2001:db8::2'",
             "address: 192.0.2.3", "address: 192.0.2.4, address6: '2001:db8::4'", "address: '2001:db8::5'"]
INVENTORY = parse_inventory(
    "hosts:\n" + "".join(
        f"  - {{name: h{i}, {ADDRESSES[i]}, roles: [{r}], agent: 'unix:/h{i}'}}\n"
        for i, r in enumerate(["node, apiserver, etcd", "node, typha", "node", "etcd", "node"])))


def test_fast_planning_plans_what_plan_cells_plans():
    checks = CALICO + select_checks(names=["wireguard", "wireguard6", "vxlan"])
    plan = plan_mesh(INVENTORY, checks)
    refs = [HostRef(h.name, h.address, h.roles, h.address6) for h in INVENTORY.hosts]
    cells, skipped = plan_cells(refs, checks)
    planned = {(c.check.id, c.src.name, c.dst.name, c.family) for c in cells}
    assert planned == {(cid, src, p.name, family) for src, peers in plan.peers.items() for p in peers
                       for cid, _address, family in p.targets()}
    assert {p[3] for p in planned} == {4, 6} and list(plan.skipped) == skipped


@pytest.mark.parametrize("m, k", [(999, 50), (10, 3), (7, 7), (5, 9), (12, 4)])
def test_sampling_covers_every_peer_within_ceil_m_over_k_runs(m, k):
    for run0 in (0, 17):
        seen = set()
        for run in range(run0, run0 + runs_to_cover(m, k)):
            chosen = sample_indices("node-3", m, k, run)
            assert len(chosen) == min(k, m) == len(set(chosen))
            seen |= set(chosen)
        assert seen == set(range(m))
    assert sample_indices("node-3", m, k, 5) == sample_indices("node-3", m, k, 5)


def test_a_sampled_plan_probes_k_peers_per_host():
    plan = plan_mesh(INVENTORY, CALICO, sample=(2, 0))
    assert all(len(peers) <= 2 for peers in plan.peers.values())


def fabric(blocked):
    """Outcome and observation records, as agents send them, for the INVENTORY calico mesh."""
    plan = plan_mesh(INVENTORY, CALICO)
    addr = {(h.name, f): a for h in INVENTORY.hosts for f, a in ((4, h.address4), (6, h.address6)) if a}
    outcomes, observations, pid = {}, {h.name: [] for h in INVENTORY.hosts}, 0
    for src, peers in plan.peers.items():
        outcomes[src] = []
        for p in peers:
            for cid, address, family in p.targets():
                pid += 1
                fate = blocked.get((cid, src, p.name, family))
                reply = None if fate else ("echo" if cid == "ipip" else "syn-ack")
                if fate != "network":
                    ok = fate is None
                    observations[p.name].append({"src": addr[(src, family)], "probe_id": pid, "proto": "tcp",
                                                 "arrived": True, "accepted": ok, "answered": ok, "t": 0.0})
                ev = {"sent": True, "arrived": None, "accepted": None, "answered": None, "reply": reply, "icmp": None,
                      "reply_arrived": bool(reply), "reply_accepted": bool(reply), "attempts": 1 if reply else 2,
                      "send_error": None}
                outcomes[src].append({"probe_id": pid, "check": cid, "name": p.name, "address": address,
                                      "source": addr[(src, family)], "rtt_ms": 0.2 if reply else None, "evidence": ev})
    return plan, outcomes, observations


class Reply:
    def __init__(self, full, plain, kind):
        self.plain = plain
        if kind == "sent":
            self.outcomes = [OutcomeReport.from_dict_untrusted(o, "o") for o in full]
        else:
            self.observations = [ObservationReport.from_dict_untrusted(o, "o") for o in full]


def test_the_compact_join_equals_the_full_join():
    blocked = {("bgp", "h0", "h2", 4): "ingress", ("ipip", "h2", "h1", 4): "network",
               ("etcd", "h2", "h3", 4): "ingress", ("bgp", "h1", "h0", 6): "ingress", ("bgp", "h4", "h1", 6): "network"}
    plan, outcomes, observations = fabric(blocked)
    expected = join_cells(plan.cells, {h: [OutcomeReport.from_dict_untrusted(o, "o") for o in outs]
                                       for h, outs in outcomes.items() if h != "h4"},
                          {h: [ObservationReport.from_dict_untrusted(o, "o") for o in obs]
                           for h, obs in observations.items() if h != "h2"}, {"h4": "agent h4: refused"})
    sent, seen = {}, {}
    for h, outs in outcomes.items():
        targets = [p.name for p in plan.peers[h]]
        full, plain = compact_outcomes(outs, targets)
        wire = json.loads(json.dumps(plain))
        sent[h] = Reply(full, parse_plain_outcomes(wire, "plain", 1 << 20, len(targets)), "sent")
        assert len(full) == sum(1 for o in outs if o["evidence"]["reply"] is None)
    for h, obs in observations.items():
        full, plain = compact_observations(obs)
        seen[h] = Reply(full, parse_plain_observations(json.loads(json.dumps(plain)), "plain", 1 << 20), "seen")
    del sent["h4"], seen["h2"]
    hosts = [(h.name, h.address4, h.address6) for h in INVENTORY.hosts]
    store = join_store(hosts, CALICO, plan.peers, sent, seen, {"h4": "agent h4: refused"})
    assert store == expected
    assert {c.key for c in store.problems()} == {c.key for c in expected if c.reach is not Reach.ALLOWED}
    assert {c.key for c in store.problems() if c.reach is Reach.BLOCKED} >= {("etcd", "h2", "h3", 4),
                                                                              ("bgp", "h1", "h0", 6)}
    assert store.get("bgp", "h0", "h1", 6).reach is Reach.ALLOWED and store.get("bgp", "h0", "h1").reach \
        is Reach.ALLOWED


@pytest.mark.parametrize("plain, field", [
    ([{"source": "192.0.2.1", "check": "bgp", "reply": "syn-ack", "targets": [5], "ids": [1], "rtt_us": [3]}],
     "plain[0].targets[0]"),
    ([{"source": "192.0.2.1", "check": "bgp", "reply": "syn-ack", "targets": [0], "ids": [-1], "rtt_us": [3]}],
     "plain[0].ids[0]"),
    ([{"source": "192.0.2.1", "check": "bgp", "reply": "icmp", "targets": [0], "ids": [1], "rtt_us": [3]}],
     "plain[0].reply"),
    ([{"source": "x", "check": "bgp", "reply": "rst", "targets": [0], "ids": [1], "rtt_us": [3]}], "plain[0].source"),
    ([{"source": "192.0.2.1", "check": "bgp", "reply": "rst", "targets": [0, 1], "ids": [1], "rtt_us": [3]}],
     "plain[0]"),
])
def test_bad_compact_rows_name_the_field(plain, field):
    from netprobe.core.fields import InvalidReport

    with pytest.raises(InvalidReport) as e:
        parse_plain_outcomes(plain, "plain", 1 << 20, 2)
    assert e.value.field == field


def test_gzipped_results_round_trip(tmp_path):
    from netprobe.config import load_result, write_file

    r = big_result(20)
    write_file(str(tmp_path / "r.json.gz"), r.to_json())
    assert (tmp_path / "r.json.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert load_result(str(tmp_path / "r.json.gz")).cells == r.cells
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8bnot really")
    with pytest.raises(ConfigError):
        load_result(str(tmp_path / "bad.gz"))


def test_from_to_and_only_failures_scope_the_view_and_the_verdict(tmp_path, capsys):
    from helpers import run_cli

    path = tmp_path / "r.json"
    path.write_text(big_result(50).to_json())
    expect = tmp_path / "e.yaml"
    expect.write_text("default: allowed\n")
    code, out, _ = run_cli(["verify", "--result", str(path), "--expect", str(expect), "--only-failures"], capsys)
    assert code == 1 and "node-7 -> node-33" in out and "1 blocked" in out and "0 allowed" in out
    code, out, _ = run_cli(["verify", "--result", str(path), "--expect", str(expect), "--from", "node-1*,node-2"],
                           capsys)
    assert code == 0 and "Every cell as expected" in out
    code, out, _ = run_cli(["verify", "--result", str(path), "--expect", str(expect), "--to", "node-3?"], capsys)
    assert code == 1 and "node-7 -> node-33" in out
    code, _, err = run_cli(["diff", str(path), str(path), "--from", "nodd-7"], capsys)
    assert code == 2 and "'nodd-7' matches no host" in err


def test_a_sampled_result_is_written_sparse_and_read_back():
    full = big_result(50)
    store = MatrixStore(full.store.hosts, ["bgp"], sparse=True)
    for i, src in enumerate(store.hosts):
        for dst in store.hosts[i + 1:i + 4]:
            store.put(full.store.get("bgp", src, dst))
    r = Result(cells=store, hosts=full.hosts, checks=full.checks, sample={"k": 3, "run": 7})
    d = json.loads(r.to_json())
    assert "sparse" in d["matrices"][0] and "rows" not in d["matrices"][0] and d["sample"] == {"k": 3, "run": 7}
    back = Result.from_json(r.to_json())
    assert back.cells == r.cells and back.sample == r.sample and len(back.cells) == 3 * 47 + 2 + 1
    d["matrices"][0]["sparse"][0][1] = [5, 2, 9]
    with pytest.raises(ConfigError) as e:
        Result.from_json(json.dumps(d))
    assert e.value.field == "matrices[0].sparse[0][1]"


def test_sampled_plans_cover_the_full_plan_within_ceil_m_over_k_runs():
    full = plan_mesh(INVENTORY, CALICO)
    got = set()
    for run in range(runs_to_cover(4, 2)):  # no host here has more than 4 peers
        plan = plan_mesh(INVENTORY, CALICO, sample=(2, run))
        got |= {(src, p) for src, peers in plan.peers.items() for p in peers}
    assert got == {(src, p) for src, peers in full.peers.items() for p in peers}
