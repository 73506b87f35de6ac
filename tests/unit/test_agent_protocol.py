"""ProbeRequest and PreflightRequest: the control API's request contract. Round trips and every
validation rule."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netprobe.agent.protocol import (
    MAX_CHECKS,
    MAX_TARGETS,
    AgentService,
    InvalidRequest,
    PreflightRequest,
    ProbeRequest,
)
from netprobe.core.checks import CHECKS, Check, Direction, Proto
from netprobe.core.mesh_logic import Peer


def request_dict(**overrides) -> dict:
    data = {
        "run_id": "run-1_a",
        "targets": [
            {"name": "node2", "address": "198.51.100.12", "checks": ["bgp", "ipip"]},
            {"name": "node3", "address": "198.51.100.13", "checks": ["etcd"]},
        ],
        "checks": [CHECKS["bgp"].to_dict(), CHECKS["ipip"].to_dict(), CHECKS["etcd"].to_dict()],
        "timeout": 0.5,
        "retries": 2,
        "vni": 4096,
    }
    data.update(overrides)
    return data


def test_round_trip_through_json():
    data = request_dict()
    request = ProbeRequest.from_dict_untrusted(data)
    assert request.run_id == "run-1_a"
    assert request.targets[0] == Peer("node2", "198.51.100.12", ("bgp", "ipip"))
    assert (request.timeout, request.retries, request.vni) == (0.5, 2, 4096)
    wire = json.loads(json.dumps(request.to_dict()))
    assert wire == data
    assert ProbeRequest.from_dict_untrusted(wire) == request


def test_defaults_apply_when_optional_fields_are_missing():
    data = request_dict()
    for key in ("timeout", "retries", "vni"):
        del data[key]
    request = ProbeRequest.from_dict_untrusted(data)
    assert (request.timeout, request.retries, request.vni) == (1.0, 1, 1)
    assert isinstance(request.timeout, float)


def test_checks_are_parsed_once_into_check_objects():
    minimal = {"id": "dns", "proto": "udp", "port": 53}
    request = ProbeRequest.from_dict_untrusted(
        request_dict(checks=[minimal, CHECKS["bgp"].to_dict()],
                     targets=[{"name": "n2", "address": "192.0.2.2", "checks": ["dns", "bgp"]}])
    )
    assert request.checks[0] == Check.from_dict(minimal)
    checks = request.check_map()
    assert checks["bgp"] == CHECKS["bgp"]
    assert checks["dns"].proto is Proto.UDP and checks["dns"].port == 53
    assert checks["dns"].direction is Direction.BOTH


def test_every_builtin_check_is_accepted_without_its_family():
    # which address a check goes to is the target's: the wire form carries no family (an agent
    # older than IPv6 refuses the key), so wireguard and wireguard6 arrive as plain UDP checks
    wire = [c.wire_dict() for c in CHECKS.values()]
    assert not any("family" in c for c in wire)
    request = ProbeRequest.from_dict_untrusted(
        request_dict(checks=wire, targets=[{"name": "n2", "address": "192.0.2.2", "checks": list(CHECKS)}]))
    assert request.check_map() == {c.id: dataclasses.replace(c, family=None) for c in CHECKS.values()}
    with pytest.raises(InvalidRequest) as info:  # the result file's form, with family, is not the wire's
        ProbeRequest.from_dict_untrusted(request_dict(checks=[CHECKS["wireguard6"].to_dict()], targets=[]))
    assert info.value.field == "checks[0].family"


def test_dual_stack_and_ipv6_only_targets():
    data = request_dict(targets=[
        {"name": "n2", "address": "192.0.2.2", "checks": ["bgp", "ipip"], "address6": "2001:DB8::2",
         "checks6": ["bgp"]},
        {"name": "n3", "address6": "2001:db8::3", "checks6": ["etcd"]},
    ])
    request = ProbeRequest.from_dict_untrusted(data)
    assert request.targets == (Peer("n2", "192.0.2.2", ("bgp", "ipip"), "2001:db8::2", ("bgp",)),
                               Peer("n3", None, (), "2001:db8::3", ("etcd",)))
    assert request.targets[0].targets() == (("bgp", "192.0.2.2", 4), ("ipip", "192.0.2.2", 4),
                                            ("bgp", "2001:db8::2", 6))
    # the wire form of an IPv4-only target is exactly what agents older than IPv6 know
    assert Peer("n4", "192.0.2.4", ("bgp",)).to_dict() == {"name": "n4", "address": "192.0.2.4", "checks": ["bgp"]}
    assert ProbeRequest.from_dict_untrusted(json.loads(json.dumps(request.to_dict()))) == request


def test_empty_target_list_is_a_valid_request():
    assert ProbeRequest.from_dict_untrusted(request_dict(targets=[])).targets == ()


def test_address_is_normalised():
    data = request_dict(targets=[{"name": "n2", "address": "192.0.2.2", "checks": ["bgp"]}])
    assert ProbeRequest.from_dict_untrusted(data).targets[0].address == "192.0.2.2"


@pytest.mark.parametrize(
    "field, value",
    [
        ("run_id", "a"),
        ("run_id", "A" * 64),
        ("run_id", "Az09_-"),
        ("timeout", 0.05),
        ("timeout", 30),
        ("retries", 0),
        ("retries", 5),
        ("vni", 0),
        ("vni", 2**24 - 1),
    ],
)
def test_boundaries_are_accepted(field, value):
    assert getattr(ProbeRequest.from_dict_untrusted(request_dict(**{field: value})), field) == value


def test_size_limits_are_accepted_at_the_limit():
    targets = [{"name": f"n{i}", "address": f"198.18.{i // 256}.{i % 256}", "checks": ["c0"]}
               for i in range(MAX_TARGETS)]
    checks = [{"id": f"c{i}", "proto": "tcp", "port": 1000 + i} for i in range(MAX_CHECKS)]
    request = ProbeRequest.from_dict_untrusted(request_dict(targets=targets, checks=checks))
    assert len(request.targets) == MAX_TARGETS and len(request.checks) == MAX_CHECKS


def _target(**kw):
    t = {"name": "n2", "address": "192.0.2.2", "checks": ["bgp"]}
    t.update(kw)
    return t


def _without(d: dict, key: str) -> dict:
    d = dict(d)
    del d[key]
    return d


BGP = CHECKS["bgp"].to_dict()
# (what is wrong, the request, the field the error must name)
INVALID = [
    ("not an object", [1, 2], "request"),
    ("unknown top-level field", request_dict(extra=1), "extra"),
    ("run_id missing", _without(request_dict(), "run_id"), "run_id"),
    ("run_id empty", request_dict(run_id=""), "run_id"),
    ("run_id too long", request_dict(run_id="a" * 65), "run_id"),
    ("run_id with a slash", request_dict(run_id="a/b"), "run_id"),
    ("run_id with a dot", request_dict(run_id="a.b"), "run_id"),
    ("run_id not a string", request_dict(run_id=7), "run_id"),
    ("targets missing", _without(request_dict(), "targets"), "targets"),
    ("targets not a list", request_dict(targets={"n": 1}), "targets"),
    ("too many targets", request_dict(targets=[_target()] * (MAX_TARGETS + 1)), "targets"),
    ("target not an object", request_dict(targets=["n2"]), "targets[0]"),
    ("target unknown field", request_dict(targets=[_target(port=1)]), "targets[0].port"),
    ("target name missing", request_dict(targets=[_without(_target(), "name")]), "targets[0].name"),
    ("target name bad", request_dict(targets=[_target(name="-x y")]), "targets[0].name"),
    ("target name not str", request_dict(targets=[_target(name=3)]), "targets[0].name"),
    ("address missing", request_dict(targets=[_without(_target(), "address")]), "targets[0].address"),
    ("address not IPv4", request_dict(targets=[_target(address="192.0.2")]), "targets[0].address"),
    ("address IPv6", request_dict(targets=[_target(address="2001:db8::1")]), "targets[0].address"),
    ("address6 IPv4", request_dict(targets=[_target(address6="192.0.2.9", checks6=["bgp"])]), "targets[0].address6"),
    ("address6 without checks6", request_dict(targets=[_target(address6="2001:db8::9")]), "targets[0].checks6"),
    ("checks6 without address6", request_dict(targets=[_target(checks6=["bgp"])]), "targets[0].address6"),
    ("checks6 empty", request_dict(targets=[_target(address6="2001:db8::9", checks6=[])]), "targets[0].checks6"),
    ("checks6 undefined", request_dict(targets=[_target(address6="2001:db8::9", checks6=["typha"])]),
     "targets[0].checks6"),
    ("ipip over IPv6", request_dict(targets=[_target(address6="2001:db8::9", checks6=["ipip"])]),
     "targets[0].checks6"),
    ("duplicate address6", request_dict(targets=[_target(address6="2001:db8::9", checks6=["bgp"]),
                                                 _target(name="n3", address="192.0.2.3", address6="2001:db8::9",
                                                         checks6=["bgp"])]), "targets[1].address6"),
    ("no address at all", request_dict(targets=[{"name": "n2"}]), "targets[0].address"),
    ("address a name", request_dict(targets=[_target(address="node2")]), "targets[0].address"),
    ("address not str", request_dict(targets=[_target(address=3221225986)]), "targets[0].address"),
    ("target checks missing", request_dict(targets=[_without(_target(), "checks")]), "targets[0].checks"),
    ("target checks not a list", request_dict(targets=[_target(checks="bgp")]), "targets[0].checks"),
    ("target checks empty", request_dict(targets=[_target(checks=[])]), "targets[0].checks"),
    ("target check not str", request_dict(targets=[_target(checks=[1])]), "targets[0].checks[0]"),
    ("target check twice", request_dict(targets=[_target(checks=["bgp", "bgp"])]), "targets[0].checks"),
    ("target check undefined", request_dict(targets=[_target(checks=["typha"])]), "targets[0].checks"),
    ("duplicate target name", request_dict(targets=[_target(), _target(address="192.0.2.3")]), "targets[1].name"),
    ("duplicate address", request_dict(targets=[_target(), _target(name="n3")]), "targets[1].address"),
    ("checks missing", _without(request_dict(), "checks"), "checks"),
    ("checks not a list", request_dict(checks={"bgp": BGP}), "checks"),
    ("too many checks", request_dict(checks=[{"id": f"c{i}", "proto": "tcp", "port": 1} for i in range(65)]),
     "checks"),
    ("check not an object", request_dict(checks=["bgp"]), "checks[0]"),
    ("check unknown field", request_dict(checks=[{**BGP, "flags": "S"}]), "checks[0].flags"),
    ("check id missing", request_dict(checks=[_without(BGP, "id")]), "checks[0].id"),
    ("check id bad", request_dict(checks=[{**BGP, "id": "a b"}]), "checks[0].id"),
    ("check proto missing", request_dict(checks=[_without(BGP, "proto")]), "checks[0].proto"),
    ("check proto bad", request_dict(checks=[{**BGP, "proto": "sctp"}]), "checks[0].proto"),
    ("check port missing for tcp", request_dict(checks=[_without(BGP, "port")]), "checks[0].port"),
    ("check port zero", request_dict(checks=[{**BGP, "port": 0}]), "checks[0].port"),
    ("check port too big", request_dict(checks=[{**BGP, "port": 65536}]), "checks[0].port"),
    ("check port a string", request_dict(checks=[{**BGP, "port": "179"}]), "checks[0].port"),
    ("ipip with a port", request_dict(checks=[{**CHECKS["ipip"].to_dict(), "port": 4}]), "checks[0].port"),
    ("check direction bad", request_dict(checks=[{**BGP, "direction": "up"}]), "checks[0].direction"),
    ("check role unknown", request_dict(checks=[{**BGP, "from_role": "king"}]), "checks[0].from_role"),
    ("to-role without role", request_dict(checks=[{**BGP, "direction": "to-role"}]), "checks[0].to_role"),
    ("check description not str", request_dict(checks=[{**BGP, "description": 1}]), "checks[0].description"),
    ("duplicate check id", request_dict(checks=[BGP, BGP]), "checks[1].id"),
    ("timeout too small", request_dict(timeout=0.049), "timeout"),
    ("timeout too big", request_dict(timeout=30.5), "timeout"),
    ("timeout a string", request_dict(timeout="1"), "timeout"),
    ("timeout a bool", request_dict(timeout=True), "timeout"),
    ("timeout NaN", request_dict(timeout=float("nan")), "timeout"),
    ("retries negative", request_dict(retries=-1), "retries"),
    ("retries too many", request_dict(retries=6), "retries"),
    ("retries a float", request_dict(retries=1.0), "retries"),
    ("retries a bool", request_dict(retries=False), "retries"),
    ("vni negative", request_dict(vni=-1), "vni"),
    ("vni too big", request_dict(vni=2**24), "vni"),
    ("vni a string", request_dict(vni="1"), "vni"),
]


@pytest.mark.parametrize("data, field", [(d, f) for _, d, f in INVALID], ids=[w for w, _, _ in INVALID])
def test_invalid_requests_raise_naming_the_field(data, field):
    before = copy.deepcopy(data)
    with pytest.raises(InvalidRequest) as info:
        ProbeRequest.from_dict_untrusted(data)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert isinstance(info.value, ValueError)
    assert data == before  # validation never mutates its input


def test_invalid_request_list_covers_every_field():
    fields = {f.split(".")[-1].split("[")[0] for _, _, f in INVALID}
    assert {"run_id", "targets", "checks", "timeout", "retries", "vni", "name", "address"} <= fields


names = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)


@given(
    run_id=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    hosts=st.dictionaries(names, st.tuples(st.ip_addresses(v=4).map(str) | st.none(),
                                           st.ip_addresses(v=6).map(str) | st.none()), max_size=8),
    wanted=st.lists(st.sampled_from(sorted(c.id for c in CHECKS.values() if c.proto is not Proto.IPIP)), min_size=1,
                    max_size=6, unique=True),
    timeout=st.floats(min_value=0.05, max_value=30),
    retries=st.integers(0, 5),
    vni=st.integers(0, 2**24 - 1),
)
def test_any_valid_request_round_trips(run_id, hosts, wanted, timeout, retries, vni):
    targets, seen = [], set()
    for n, (a4, a6) in hosts.items():
        if a4 in seen or a6 in seen or not (a4 or a6):
            continue
        seen |= {a4, a6}
        targets.append({"name": n, **({"address": a4, "checks": wanted} if a4 else {}),
                        **({"address6": a6, "checks6": wanted} if a6 else {})})
    data = {"run_id": run_id, "targets": targets, "checks": [CHECKS[c].wire_dict() for c in wanted],
            "timeout": timeout, "retries": retries, "vni": vni}
    request = ProbeRequest.from_dict_untrusted(data)
    assert ProbeRequest.from_dict_untrusted(json.loads(json.dumps(request.to_dict()))) == request
    assert request.to_dict() == data


def test_fake_services_can_be_checked_against_the_protocol():
    class Fake:
        async def health(self): return {}
        async def run_probes(self, request): return {}
        async def observations(self, run_id): return {}
        async def preflight(self, params): return {}

    assert isinstance(Fake(), AgentService)
    assert not isinstance(object(), AgentService)


def test_preflight_request_round_trip_and_defaults():
    request = PreflightRequest.from_dict_untrusted({"pool_cidrs": ["198.18.0.0/16"], "service_cidr": "10.96.0.0/12",
                                                    "profile": "canal"})
    assert request == PreflightRequest(("198.18.0.0/16",), "10.96.0.0/12", "canal")
    assert PreflightRequest.from_dict_untrusted(json.loads(json.dumps(request.to_dict()))) == request
    assert PreflightRequest.from_dict_untrusted({}) == PreflightRequest()


def test_preflight_request_carries_the_requirement_options_only_when_set():
    request = PreflightRequest(None, None, "canal", "legacy", "bpf", True, 8472)
    data = json.loads(json.dumps(request.to_dict()))
    assert data["requirements"] == "legacy" and data["vxlan_port"] == 8472 and data["wireguard"] is True
    assert PreflightRequest.from_dict_untrusted(data) == request
    # a request without them is exactly what it was (an agent of before never sees the keys)
    assert set(PreflightRequest().to_dict()) == {"pool_cidrs", "service_cidr", "profile"}


@pytest.mark.parametrize("data, field", [
    ({"wireguard": "yes"}, "wireguard"),
    ({"vxlan_port": 0}, "vxlan_port"),
    ({"vxlan_port": "8472"}, "vxlan_port"),
    ({"requirements": 3}, "requirements"),
    ([], "request"),
    ({"pool_cidr": "x"}, "pool_cidr"),
    ({"pool_cidrs": "198.18.0.0/16"}, "pool_cidrs"),
    ({"pool_cidrs": [1]}, "pool_cidrs[0]"),
    ({"service_cidr": 5}, "service_cidr"),
    ({"profile": None}, "profile"),
    ({"profile": "x" * 300}, "profile"),
])
def test_invalid_preflight_requests_name_the_field(data, field):
    with pytest.raises(InvalidRequest) as info:
        PreflightRequest.from_dict_untrusted(data)
    assert info.value.field == field
