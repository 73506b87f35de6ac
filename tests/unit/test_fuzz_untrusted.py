"""Every parser of untrusted JSON and YAML, fuzzed (#9 items 4 and 5): whatever the document, it
parses or raises the parser's one error type with one line -- never a TypeError, KeyError,
AttributeError or RecursionError from inside.

Documents are valid ones with one part replaced, added or removed (so the fuzzer reaches deep
fields), plus arbitrary ones. Budgets fit CI: a few seconds each.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netprobe.agent.protocol import (
    HealthReply,
    InvalidRequest,
    ObservationsReply,
    PreflightRequest,
    ProbeReply,
    ProbeRequest,
    preflight_report_from_dict_untrusted,
)
from netprobe.core.checks import CHECKS
from netprobe.core.expect import load_expectation_text
from netprobe.core.fields import InvalidReport
from netprobe.core.inventory import parse_inventory
from netprobe.core.reports import ObservationReport, OutcomeReport
from netprobe.core.result import Evidence
from netprobe.core.result import Result
from netprobe.errors import ConfigError
from netprobe.lab.spec import parse_scenario
from helpers import sample_result

REPO = Path(__file__).resolve().parents[2]
KEYS = ["hosts", "name", "address", "roles", "agent", "checks", "id", "proto", "port", "to_role", "from_role",
        "profile", "rules", "default", "check", "from", "to", "reach", "where", "run_id", "targets", "timeout",
        "pool_cidrs", "service_cidr", "outcomes", "observations", "stats", "items", "status", "segments", "subnet",
        "firewall", "nft", "services", "expect", "kernel_drops", "cells", "evidence", "x"]
leaves = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10**30) | st.floats()
          | st.text(max_size=12) | st.sampled_from(["calico", "node", "etcd", "tcp", "udp", "10.0.0.0/8", "198.18.0.10",
                                                    "allowed", "blocked", "*", "role:node", "bgp"]))
values = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(KEYS) | st.integers() | st.text(max_size=4), children, max_size=4),
    max_leaves=10,
)
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw, doc):
    """``doc`` with one node replaced by any value, one key added to a mapping, or one removed."""
    doc = copy.deepcopy(doc)
    holders = []

    def walk(node):
        if isinstance(node, dict):
            holders.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            holders.append(node)
            for v in node:
                walk(v)

    walk(doc)
    holder = draw(st.sampled_from(holders))
    action = draw(st.sampled_from(["replace", "add", "remove"]))
    if isinstance(holder, dict):
        if action == "add" or not holder:
            holder[draw(st.sampled_from(KEYS) | st.integers())] = draw(values)
        else:
            key = draw(st.sampled_from(sorted(holder, key=str)))
            if action == "remove":
                del holder[key]
            else:
                holder[key] = draw(values)
    elif holder:
        i = draw(st.integers(0, len(holder) - 1))
        holder[i] = draw(values)
    else:
        holder.append(draw(values))
    return doc


def one_line(exc: Exception) -> None:
    assert "\n" not in str(exc)


# ------------------------------------------------------------------ the agent's requests (the API)

PROBE_REQUEST = {"run_id": "r1", "targets": [{"name": "b", "address": "198.51.100.2", "checks": ["bgp", "etcd"]}],
                 "checks": [CHECKS["bgp"].to_dict(), CHECKS["etcd"].to_dict()], "timeout": 0.2, "retries": 1,
                 "vni": 1}


@FUZZ
@given(mutated(PROBE_REQUEST) | values)
def test_probe_requests(doc):
    try:
        ProbeRequest.from_dict_untrusted(doc)
    except InvalidRequest as exc:
        one_line(exc)


@FUZZ
@given(mutated({"pool_cidrs": ["10.0.0.0/16"], "service_cidr": "10.96.0.0/12", "profile": "calico"}) | values)
def test_preflight_requests(doc):
    try:
        PreflightRequest.from_dict_untrusted(doc)
    except InvalidRequest as exc:
        one_line(exc)


# ------------------------------------------------------------------ the agent's replies (the client)

STATS = {"kernel_drops": 0, "matched": 3}
OUTCOME = OutcomeReport(7, "bgp", "b", "198.51.100.2", "198.51.100.1", 1.5, Evidence()).to_dict()
REPLIES = [
    (HealthReply.from_dict_untrusted, {"host": "a", "version": "0.1.0", "uptime_s": 1.0, "captures": 4,
                                       "kernel_drops": 0, "stats": STATS}),
    (ProbeReply.from_dict_untrusted, {"run_id": "r1", "host": "a", "outcomes": [OUTCOME], "stats": STATS}),
    (ObservationsReply.from_dict_untrusted, {"run_id": "r1", "host": "a", "stats": STATS, "observations": [
        ObservationReport("198.51.100.1", 7, "tcp", True, True, True, 2.0).to_dict()]}),
    (preflight_report_from_dict_untrusted, {"schema": "netprobe.preflight/v1", "host": "a", "profile": "calico",
                                            "pool_cidrs": [], "service_cidr": None, "root": "/", "items": [
                                                {"id": "arch", "group": "host", "title": "amd64", "status": "ok",
                                                 "evidence": "x86_64"}]}),
]


@pytest.mark.parametrize("parse, valid", REPLIES, ids=["health", "probes", "observations", "preflight"])
@FUZZ
@given(data=st.data())
def test_agent_replies(parse, valid, data):
    doc = data.draw(mutated(valid) | values)
    try:
        parse(doc)
    except InvalidReport as exc:
        one_line(exc)


# ------------------------------------------------------------------ files (the CLI)

INVENTORY = yaml.safe_load("""
token_file: token
apiserver_port: 6443
hosts:
  - {name: cp1, address: 192.0.2.10, roles: [node, apiserver, etcd]}
  - {name: node1, address: 192.0.2.11, roles: [node, typha], agent: 'unix:/run/n1.sock'}
checks:
  - {id: node-exporter, proto: tcp, port: 9100}
  - {id: metrics, proto: udp, port: 8472, to_role: typha, from_role: node}
""")
EXPECTATION = {"default": "allowed", "rules": [
    {"check": "etcd", "from": "role:node", "to": "role:etcd", "reach": "blocked", "where": "destination-ingress"},
    {"check": "*", "from": "cp1", "to": "*", "reach": "allowed"}]}
HOSTS = {"cp1": frozenset({"node", "etcd"}), "node1": frozenset({"node"})}


def dump(doc, as_json: bool) -> str:
    return json.dumps(doc) if as_json else yaml.safe_dump(doc)


@FUZZ
@given(mutated(INVENTORY) | values, st.booleans())
def test_inventories(doc, as_json):
    try:
        parse_inventory(dump(doc, as_json), source="inv.yaml")
    except ConfigError as exc:
        one_line(exc)
        assert exc.file == "inv.yaml"


@FUZZ
@given(mutated(EXPECTATION) | values)
def test_expectations(doc):
    try:
        load_expectation_text(yaml.safe_dump(doc), source="exp.yaml", hosts=HOSTS, checks=set(CHECKS))
    except ConfigError as exc:
        one_line(exc)
        assert exc.file == "exp.yaml"


SCENARIO = yaml.safe_load((REPO / "scenarios" / "demo.yaml").read_text())


@FUZZ
@given(mutated(SCENARIO) | values)
def test_scenarios(doc):
    try:
        parse_scenario(yaml.safe_dump(doc), source="sc.yaml")
    except ConfigError as exc:
        one_line(exc)
        assert exc.file == "sc.yaml"


RESULT = json.loads(sample_result().to_json())


@FUZZ
@given(mutated(RESULT))
def test_result_files(doc):
    try:
        Result.from_json(json.dumps(doc), source="r.json")
    except ConfigError as exc:
        one_line(exc)
        assert exc.file == "r.json"


# the issue's three, by name
@pytest.mark.parametrize("parse, text, words", [
    (lambda t: load_expectation_text(t, source="e", hosts=HOSTS, checks=set(CHECKS)),
     "default: allowed\nrules:\n  - {check: bgp, 1: a, from: a, to: b, reach: blocked}\n", "unknown key 1"),
    (lambda t: load_expectation_text(t, source="e", hosts=HOSTS, checks=set(CHECKS)),
     "default: allowed\nrules:\n  - {check: bgp, 1: a, zz: b, from: a, to: b, reach: blocked}\n", "unknown key"),
    (lambda t: parse_inventory(t, source="e"),
     "hosts: [{name: a, address: 192.0.2.1}]\nchecks: [{id: x, proto: tcp, port: 1, to_role: [etcd]}]\n",
     "unknown role ['etcd']"),
    (lambda t: parse_scenario(t, source="e"), yaml.safe_dump({**SCENARIO, "profile": ["calico"]}),
     "unknown profile ['calico']"),
])
def test_the_issues_cli_inputs_are_one_config_error(parse, text, words):
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")) as info:
        parse(text)
    one_line(info.value)


# ------------------------------------------------------------------ the API app end to end


class _Service:
    async def health(self) -> dict:
        return {"host": "fake"}

    async def run_probes(self, request) -> dict:
        return {"run_id": request.run_id, "host": "fake", "outcomes": [], "stats": {}}

    async def observations(self, run_id) -> dict:
        return {"run_id": run_id, "host": "fake", "observations": [], "stats": {}}

    async def preflight(self, params) -> dict:
        return {"ok": True}


@pytest.fixture(scope="module")
def api():
    import warnings

    with warnings.catch_warnings():  # starlette asks for httpx2 in its test client; httpx serves
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from netprobe.agent.api import build_app

    with TestClient(build_app(_Service(), token=None), backend="trio", raise_server_exceptions=True) as client:
        yield client


@FUZZ
@given(path=st.sampled_from(["/v1/probes", "/v1/preflight"]),
       doc=mutated(PROBE_REQUEST) | mutated({"pool_cidrs": ["10.0.0.0/16"], "profile": "calico"}) | values,
       raw=st.none() | st.binary(max_size=64))
def test_any_body_is_answered_200_or_4xx_on_one_line(api, path, doc, raw):
    body = raw if raw is not None else json.dumps(doc, allow_nan=True).encode()
    response = api.post(path, content=body)
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        error = response.json()["error"]
        assert "\n" not in error and "Traceback" not in error and len(error) < 1000
