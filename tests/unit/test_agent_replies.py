"""The reply half of the wire contract: every reply type round-trips through JSON, and every
way another machine's JSON can be wrong is one InvalidReport naming the field path."""

from __future__ import annotations

import json
import math

import pytest

from netprobe.agent.protocol import (
    HealthReply,
    ObservationsReply,
    ProbeReply,
    Stats,
    preflight_report_from_dict_untrusted,
)
from netprobe.core.fields import InvalidReport
from netprobe.core.reports import (
    ObservationReport,
    OutcomeReport,
    evidence_from_dict_untrusted,
)
from netprobe.core.result import Evidence, Icmp, ReplyKind
from netprobe.preflight.model import Item, Report, Status

EVIDENCE = Evidence(sent=True, reply=ReplyKind.ICMP, icmp=Icmp(3, 13, "198.51.100.1"), reply_arrived=True,
                    reply_accepted=False, attempts=2, send_error=None)
OUTCOME = OutcomeReport(41, "bgp", "node2", "198.51.100.12", "198.51.100.11", 0.25, EVIDENCE)
OBSERVATION = ObservationReport("198.51.100.11", 41, "tcp", True, False, True, 1234.5)
PROBE = ProbeReply("run-1", "node1", (OUTCOME,), Stats(3, {"matched": 1, "seconds": 0.5}))
OBSERVATIONS = ObservationsReply("run-1", "node2", (OBSERVATION,), Stats(0, {"echoes": 4}))
HEALTH = HealthReply("node1", "1.0", uptime_s=3.5, captures=4, kernel_drops=1, stats=Stats(0, {"probes": 9}))
PREFLIGHT = Report((Item("kernel", "host", "Kernel version", Status.OK, "6.1"),
                    Item("module:nf_conntrack_netlink", "kernel", "nf_conntrack_netlink", Status.WARN, "not loaded")),
                   host="node1", profile="calico",
                   pool_cidrs=("192.168.0.0/16",), service_cidr="10.96.0.0/12")


def wire(value) -> dict:
    return json.loads(json.dumps(value.to_dict()))


@pytest.mark.parametrize("value, parse", [
    (PROBE, ProbeReply.from_dict_untrusted),
    (OBSERVATIONS, ObservationsReply.from_dict_untrusted),
    (HEALTH, HealthReply.from_dict_untrusted),
    (Stats(), lambda d: Stats.from_dict_untrusted(d, "stats")),
    (OUTCOME, lambda d: OutcomeReport.from_dict_untrusted(d, "o")),
    (OBSERVATION, lambda d: ObservationReport.from_dict_untrusted(d, "o")),
    (PREFLIGHT, preflight_report_from_dict_untrusted),
], ids=["probe", "observations", "health", "stats", "outcome", "observation", "preflight"])
def test_every_reply_round_trips(value, parse):
    assert parse(wire(value)) == value


def test_outcome_matches_the_senders_dict_shape():
    """The dict the responder sends today (Outcome.to_dict) parses as it is."""
    sent = {"probe_id": 7, "check": "ipip", "name": "n2", "address": "192.0.2.2", "source": "192.0.2.1",
            "rtt_ms": None, "evidence": Evidence(sent=False, attempts=0, send_error="EPERM").to_dict()}
    assert OutcomeReport.from_dict_untrusted(sent, "o").to_dict() == sent


def test_unknown_keys_are_ignored_for_a_newer_agent():
    data = wire(PROBE)
    data["new_field"] = {"x": 1}
    data["outcomes"][0]["extra"] = 1
    assert ProbeReply.from_dict_untrusted(data) == PROBE


def test_health_needs_only_host_and_version():
    assert HealthReply.from_dict_untrusted({"host": "n1", "version": "1"}) == HealthReply("n1", "1")


def _set(path: str, value):
    """A probe reply with the value at ``path`` (dotted, [i] for list items) replaced; DELETE removes it."""
    data = wire(PROBE)
    *parents, last = path.replace("[", ".").replace("]", "").split(".")
    node = data
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    if value is DELETE:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return data


DELETE = object()
# (what is wrong, the reply, the field the error must name)
BAD_PROBE_REPLIES = [
    ("not an object", [1], "reply"),
    ("run_id missing", _set("run_id", DELETE), "reply.run_id"),
    ("run_id bad", _set("run_id", "../x"), "reply.run_id"),
    ("host missing", _set("host", DELETE), "reply.host"),
    ("host empty", _set("host", ""), "reply.host"),
    ("host not str", _set("host", 5), "reply.host"),
    ("outcomes missing", _set("outcomes", DELETE), "reply.outcomes"),
    ("outcomes not a list", _set("outcomes", {"0": {}}), "reply.outcomes"),
    ("outcome not an object", _set("outcomes", ["x"]), "reply.outcomes[0]"),
    ("check missing", _set("outcomes[0].check", DELETE), "reply.outcomes[0].check"),
    ("check not a name", _set("outcomes[0].check", "a b"), "reply.outcomes[0].check"),
    ("name too long", _set("outcomes[0].name", "n" * 300), "reply.outcomes[0].name"),
    ("probe_id a string", _set("outcomes[0].probe_id", "41"), "reply.outcomes[0].probe_id"),
    ("probe_id a bool", _set("outcomes[0].probe_id", True), "reply.outcomes[0].probe_id"),
    ("probe_id huge", _set("outcomes[0].probe_id", 10**30), "reply.outcomes[0].probe_id"),
    ("address not IPv4", _set("outcomes[0].address", "node2"), "reply.outcomes[0].address"),
    ("source missing", _set("outcomes[0].source", DELETE), "reply.outcomes[0].source"),
    ("rtt NaN", _set("outcomes[0].rtt_ms", math.nan), "reply.outcomes[0].rtt_ms"),
    ("rtt infinite", _set("outcomes[0].rtt_ms", math.inf), "reply.outcomes[0].rtt_ms"),
    ("rtt huge", _set("outcomes[0].rtt_ms", 1e300), "reply.outcomes[0].rtt_ms"),
    ("rtt negative", _set("outcomes[0].rtt_ms", -1), "reply.outcomes[0].rtt_ms"),
    ("evidence not an object", _set("outcomes[0].evidence", []), "reply.outcomes[0].evidence"),
    ("evidence key missing", _set("outcomes[0].evidence.sent", DELETE), "reply.outcomes[0].evidence.sent"),
    ("sent not a bool", _set("outcomes[0].evidence.sent", 1), "reply.outcomes[0].evidence.sent"),
    ("reply unknown kind", _set("outcomes[0].evidence.reply", "ack"), "reply.outcomes[0].evidence.reply"),
    ("arrived a string", _set("outcomes[0].evidence.arrived", "yes"), "reply.outcomes[0].evidence.arrived"),
    ("icmp type too big", _set("outcomes[0].evidence.icmp.type", 256), "reply.outcomes[0].evidence.icmp.type"),
    ("icmp from missing", _set("outcomes[0].evidence.icmp.from", DELETE), "reply.outcomes[0].evidence.icmp.from"),
    ("attempts negative", _set("outcomes[0].evidence.attempts", -1), "reply.outcomes[0].evidence.attempts"),
    ("send_error huge", _set("outcomes[0].evidence.send_error", "e" * 10_000),
     "reply.outcomes[0].evidence.send_error"),
    ("stats missing", _set("stats", DELETE), "reply.stats"),
    ("stats not an object", _set("stats", [0]), "reply.stats"),
    ("kernel_drops a float", _set("stats.kernel_drops", 1.5), "reply.stats.kernel_drops"),
    ("kernel_drops negative", _set("stats.kernel_drops", -1), "reply.stats.kernel_drops"),
    ("counter NaN", _set("stats.matched", math.nan), "reply.stats.matched"),
    ("counter a string", _set("stats.matched", "1"), "reply.stats.matched"),
    ("counter name bad", _set("stats.a b", 1), "reply.stats.a b"),
]


@pytest.mark.parametrize("data, field", [(d, f) for _, d, f in BAD_PROBE_REPLIES],
                         ids=[w for w, _, _ in BAD_PROBE_REPLIES])
def test_bad_probe_replies_name_the_field(data, field):
    before = json.dumps(data)  # NaN != NaN: compare the text
    with pytest.raises(InvalidReport) as info:
        ProbeReply.from_dict_untrusted(data)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert isinstance(info.value, ValueError)
    assert json.dumps(data) == before  # parsing never mutates its input


@pytest.mark.parametrize("change, field", [
    ({"observations": None}, "reply.observations"),
    ({"observations": [{**OBSERVATION.to_dict(), "src": "2001:db8::1::2"}]}, "reply.observations[0].src"),
    ({"observations": [{**OBSERVATION.to_dict(), "accepted": None}]}, "reply.observations[0].accepted"),
    ({"observations": [{**OBSERVATION.to_dict(), "t": math.inf}]}, "reply.observations[0].t"),
    ({"observations": [{k: v for k, v in OBSERVATION.to_dict().items() if k != "proto"}]},
     "reply.observations[0].proto"),
])
def test_bad_observations_replies_name_the_field(change, field):
    with pytest.raises(InvalidReport) as info:
        ObservationsReply.from_dict_untrusted({**wire(OBSERVATIONS), **change})
    assert info.value.field == field


@pytest.mark.parametrize("change, field", [
    ({"host": None}, "health.host"),
    ({"version": 1}, "health.version"),
    ({"uptime_s": "1"}, "health.uptime_s"),
    ({"captures": -1}, "health.captures"),
    ({"stats": {"x": math.nan}}, "health.stats.x"),
])
def test_bad_health_replies_name_the_field(change, field):
    with pytest.raises(InvalidReport) as info:
        HealthReply.from_dict_untrusted({**wire(HEALTH), **change})
    assert info.value.field == field


ITEM = PREFLIGHT.items[0].to_dict()


@pytest.mark.parametrize("change, field", [
    ({"schema": "netprobe.preflight/v0"}, "report.schema"),
    ({"host": 5}, "report.host"),
    ({"pool_cidrs": 5}, "report.pool_cidrs"),
    ({"pool_cidrs": [5]}, "report.pool_cidrs[0]"),
    ({"service_cidr": ["x"]}, "report.service_cidr"),
    ({"items": {}}, "report.items"),
    ({"items": [{**ITEM, "status": "maybe"}]}, "report.items[0].status"),
    ({"items": [{**ITEM, "evidence": None}]}, "report.items[0].evidence"),
    ({"items": [{k: v for k, v in ITEM.items() if k != "id"}]}, "report.items[0].id"),
    ({"items": [{**ITEM, "id": ""}]}, "report.items[0].id"),
])
def test_bad_preflight_reports_name_the_field(change, field):
    with pytest.raises(InvalidReport) as info:
        preflight_report_from_dict_untrusted({**PREFLIGHT.to_dict(), **change})
    assert info.value.field == field


def test_evidence_is_parsed_strictly_from_agents_and_result_files_alike():
    with pytest.raises(InvalidReport, match=r"^ev\.attempts: "):
        evidence_from_dict_untrusted({**EVIDENCE.to_dict(), "attempts": "2"}, "ev")
    with pytest.raises(InvalidReport, match=r"^evidence\.attempts: "):
        Evidence.from_dict({"attempts": "2"})
    with pytest.raises(InvalidReport, match=r"^ev\.icmp: is missing"):  # from an agent every key is required
        evidence_from_dict_untrusted({k: v for k, v in EVIDENCE.to_dict().items() if k != "icmp"}, "ev")


def test_preflight_report_keeps_each_lines_requirement_set_across_the_wire():
    from netprobe.preflight.model import Item, Report, Status

    report = Report((Item("kernel", "system", "kernel >= 5.10", Status.OK, "6.1", "current"),
                     Item("vxlan:flannel.1", "overlay", "VXLAN device", Status.WARN, "UDP 8472", "netprobe")),
                    host="n1", profile="canal", requirements="current", dataplane="bpf", wireguard=True)
    assert preflight_report_from_dict_untrusted(json.loads(json.dumps(report.to_dict()))) == report
    # an agent of before sends none of the new keys: the lines come through, their set unsaid
    old = report.to_dict()
    for key in ("requirements", "dataplane", "wireguard"):
        del old[key]
    for item in old["items"]:
        del item["requirements"]
    back = preflight_report_from_dict_untrusted(old)
    assert back.requirements == "" and back.items[0].requirements == "" and back.items[0].status is Status.OK


def test_compact_replies_round_trip_their_plain_rows():
    """A reply's plain rows survive to_dict -> from_dict_untrusted (they were dropped before)."""
    from netprobe.agent.protocol import ObservationsReply, ProbeReply
    from netprobe.core.compact_wire import compact_observations, compact_outcomes

    evidence = {"sent": True, "arrived": None, "accepted": None, "answered": None, "reply": "syn-ack", "icmp": None,
                "reply_arrived": True, "reply_accepted": True, "attempts": 1, "send_error": None}
    outcome = {"probe_id": 7, "check": "bgp", "name": "n2", "address": "198.18.0.2", "source": "198.18.0.1",
               "rtt_ms": 0.25, "evidence": evidence}
    full, plain = compact_outcomes([outcome], ["n2"])
    assert full == [] and len(plain) == 1
    raw = {"run_id": "r1", "host": "n1", "outcomes": full, "stats": {"kernel_drops": 0}, "plain": plain}
    reply = ProbeReply.from_dict_untrusted(raw, targets=1)
    assert reply.plain_count() == 1
    assert ProbeReply.from_dict_untrusted(reply.to_dict(), targets=1) == reply

    seen = {"src": "198.18.0.1", "probe_id": 7, "proto": "tcp", "arrived": True, "accepted": True, "answered": True,
            "t": 1.0}
    full, plain = compact_observations([seen])
    raw = {"run_id": "r1", "host": "n2", "observations": full, "stats": {"kernel_drops": 0}, "plain": plain}
    obs = ObservationsReply.from_dict_untrusted(raw)
    assert len(obs.plain) == 1
    assert ObservationsReply.from_dict_untrusted(obs.to_dict()) == obs
