"""The explain round's wire contract: requests parsed strictly (unknown keys, bad flows, caps),
replies parsed as strictly but open to new keys, every error naming its field."""

from __future__ import annotations

import copy

import pytest

from netprobe.agent.protocol import (
    ArmReply, ArmRequest, CollectReply, CollectRequest, InvalidRequest, ResendProbe, ResendReply, ResendRequest,
)
from netprobe.core.checks import CHECKS
from netprobe.core.explain import Hop
from netprobe.core.explain_round import HOPS_PER_SOURCE, MAX_EXPLAIN_FLOWS, Resent
from netprobe.core.fields import InvalidReport
from netprobe.core.trace import Flow, NotNamed, RuleFound

FLOW = Flow("tcp", "192.0.2.10", "192.0.2.11", 32769, 179)
IPIP = Flow("ipip", "192.0.2.10", "192.0.2.11", None, None)
RULE = RuleFound("inet", "filter", "input", 7, "tcp dport 179 drop", None, "drop")


def resend_request(**kw) -> ResendRequest:
    probes = kw.pop("probes", (ResendProbe("b", "192.0.2.11", "bgp", 5, trace=True),
                               ResendProbe("c", "192.0.2.12", "bgp", 6, hops=True)))
    return ResendRequest("run1", (CHECKS["bgp"],), probes, **kw)


@pytest.mark.parametrize("request_", [
    ArmRequest("run1", (FLOW, IPIP), hold=5.0),
    resend_request(timeout=0.5, vni=7, max_ttl=8),
    CollectRequest("run1", ((FLOW, 1), (IPIP, 0)), timeout=0.2),
])
def test_requests_round_trip(request_):
    assert type(request_).from_dict_untrusted(request_.to_dict()) == request_


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d.update(extra=1), "extra"),
    (lambda d: d["flows"][0].update(proto="sctp"), "flows[0].proto"),
    (lambda d: d["flows"][0].update(dport=None), "flows[0].dport"),
    (lambda d: d["flows"][0].update(dport=70000), "flows[0].dport"),
    (lambda d: d["flows"][1].update(sport=1), "flows[1].sport"),
    (lambda d: d["flows"][0].update(src="::1"), "flows[0].dst"),  # one family: an IPv6 source, an IPv4 destination
    (lambda d: d["flows"][0].update(src="not-an-address"), "flows[0].src"),
    (lambda d: d["flows"][0].update(ttl=3), "flows[0].ttl"),
    (lambda d: d["flows"].append(d["flows"][0]), "flows"),
    (lambda d: d.update(hold=600), "hold"),
    (lambda d: d.update(flows=[d["flows"][0]] * (MAX_EXPLAIN_FLOWS + 1)), "flows"),
])
def test_a_bad_arm_request_names_its_field(change, field):
    d = copy.deepcopy(ArmRequest("run1", (FLOW, IPIP)).to_dict())
    change(d)
    with pytest.raises(InvalidRequest) as info:
        ArmRequest.from_dict_untrusted(d)
    assert info.value.field == field


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d["probes"][0].update(check="etcd"), "probes[0].check"),
    (lambda d: d["probes"][1].update(probe_id=5), "probes"),
    (lambda d: d["probes"][0].update(probe_id=-1), "probes[0].probe_id"),
    (lambda d: d["probes"][0].update(hops="yes"), "probes[0].hops"),
    (lambda d: d["probes"][0].update(address="node-b"), "probes[0].address"),
    (lambda d: d.update(max_ttl=64), "max_ttl"),
    (lambda d: d.update(timeout=100), "timeout"),
])
def test_a_bad_resend_request_names_its_field(change, field):
    d = copy.deepcopy(resend_request().to_dict())
    change(d)
    with pytest.raises(InvalidRequest) as info:
        ResendRequest.from_dict_untrusted(d)
    assert info.value.field == field


def test_a_resend_asks_for_at_most_a_routers_burst_of_hop_traces():
    many = tuple(ResendProbe(f"h{i}", f"192.0.2.{20 + i}", "bgp", i, hops=True) for i in range(HOPS_PER_SOURCE + 1))
    with pytest.raises(InvalidRequest, match="at most 6 probes with hops"):
        ResendRequest.from_dict_untrusted(resend_request(probes=many).to_dict())
    # the budget is charged each probe and each TTL-limited copy
    assert resend_request(max_ttl=16).packets() == 2 + 16


def test_collect_packets_are_bounded():
    d = CollectRequest("run1", ((FLOW, 1),)).to_dict()
    d["expected"][0]["packets"] = -1
    with pytest.raises(InvalidRequest) as info:
        CollectRequest.from_dict_untrusted(d)
    assert info.value.field == "expected[0].packets"


@pytest.mark.parametrize("reply", [
    ArmReply("run1", "node-b", 2),
    ResendReply("run1", "node-a", (Resent(5, "192.0.2.10", 0, RULE), Resent(6, "192.0.2.10", 1, NotNamed("why")),
                                   Resent(7, "192.0.2.10", 1, None, Hop("192.0.2.1", 2), "hops 1 did not answer"))),
    CollectReply("run1", "node-b", ((FLOW, RULE), (IPIP, NotNamed("no nftables trace support")))),
])
def test_replies_round_trip_and_ignore_new_keys(reply):
    d = reply.to_dict()
    d["added_by_a_newer_agent"] = True
    assert type(reply).from_dict_untrusted(d) == reply


@pytest.mark.parametrize(("reply", "change", "field"), [
    (CollectReply("r", "h", ((FLOW, RULE),)), lambda d: d["rules"][0].update(rule=None), "reply.rules[0]"),
    (CollectReply("r", "h", ((FLOW, RULE),)), lambda d: d["rules"][0]["rule"].pop("table"), "reply.rules[0].rule.table"),
    (ResendReply("r", "h", (Resent(5, "192.0.2.10", 1),)), lambda d: d["probes"][0].update(sent=-1),
     "reply.probes[0].sent"),
    (ResendReply("r", "h", (Resent(5, "192.0.2.10", 1),)), lambda d: d["probes"][0].update(hop={"ttl": 1}),
     "reply.probes[0].hop.address"),
    (ArmReply("r", "h", 1), lambda d: d.update(armed=MAX_EXPLAIN_FLOWS + 1), "reply.armed"),
])
def test_a_malformed_reply_names_its_field(reply, change, field):
    d = copy.deepcopy(reply.to_dict())
    change(d)
    with pytest.raises(InvalidReport) as info:
        type(reply).from_dict_untrusted(d)
    assert info.value.field == field
