"""Pool overlap: host addresses and routes (IPv4 and IPv6), the service range, other pools."""

from __future__ import annotations

import pytest

from netprobe.errors import ConfigError
from netprobe.preflight.facts import Facts, HostAddress, HostRoute, NetFacts
from netprobe.preflight.model import Status
from netprobe.preflight.overlap import host_conflicts, parse_cidr
from netprobe.preflight.rules import evaluate, pool_items, service_item

POOL = parse_cidr("192.168.0.0/16", "--pool-cidr")
POOL6 = parse_cidr("fd00:10::/48", "--pool-cidr")


def conflicts(pool, addresses=(), routes=()):
    return [c.what for c in host_conflicts(pool, list(addresses), list(routes)).conflicts]


@pytest.mark.parametrize(
    ("pool", "addresses", "routes", "expected"),
    [
        (POOL, [HostAddress("eth0", "192.0.2.2/24")], [HostRoute("192.0.2.0/24", "eth0")], []),
        (POOL, [HostAddress("eth0", "192.168.1.10/24")], [], ["address 192.168.1.10/24 on eth0"]),
        # an address outside the pool whose subnet contains it still clashes
        (POOL, [HostAddress("eth0", "192.160.0.1/12")], [], ["address 192.160.0.1/12 on eth0"]),
        (POOL, [], [HostRoute("192.168.50.0/24", "eth1")], ["route 192.168.50.0/24 dev eth1 (table main)"]),
        (POOL, [], [HostRoute("192.168.0.0/15", "vpn0", table=100)], ["route 192.168.0.0/15 dev vpn0 (table 100)"]),
        (POOL, [], [HostRoute("192.168.9.0/24", None, type=6)], ["blackhole route 192.168.9.0/24 (table main)"]),
        # default routes, the local table, broadcast routes: not clashes
        (POOL, [], [HostRoute("0.0.0.0/0", "eth0"), HostRoute("192.168.1.255/32", "eth0", table=255, type=3),
                    HostRoute("192.168.1.0/24", "eth0", type=3)], []),
        # Calico's own addresses and routes are inside its pool by design
        (POOL, [HostAddress("tunl0", "192.168.77.64/32"), HostAddress("vxlan.calico", "192.168.77.65/32")],
         [HostRoute("192.168.77.0/26", None, type=6, proto=80), HostRoute("192.168.5.0/26", "tunl0", proto=12),
          HostRoute("192.168.77.70/32", "cali12345")], []),
        # families never mix
        (POOL, [HostAddress("eth0", "fd00:10::5/64")], [HostRoute("fd00:10::/64", "eth0")], []),
        (POOL6, [HostAddress("eth0", "fd00:10::5/64")], [], ["address fd00:10::5/64 on eth0"]),
        (POOL6, [], [HostRoute("fd00::/8", "eth0")], ["route fd00::/8 dev eth0 (table main)"]),
        (POOL6, [HostAddress("eth0", "192.168.1.1/24"), HostAddress("eth0", "fe80::1/64")],
         [HostRoute("::/0", "eth0"), HostRoute("fe80::/64", "eth0")], []),
    ],
)
def test_host_conflicts(pool, addresses, routes, expected):
    assert conflicts(pool, addresses, routes) == expected


def test_ignored_provider_entries_are_counted():
    checked = host_conflicts(POOL, [HostAddress("tunl0", "192.168.77.64/32")], [HostRoute("192.168.8.0/26", proto=12)])
    assert checked.conflicts == () and checked.ignored == 2


def facts_with(addresses, routes, source="netlink"):
    return Facts(net=NetFacts(addresses, routes, source))


def test_pool_items_name_the_conflict_and_fail():
    facts = facts_with([HostAddress("eth0", "192.168.1.10/24")], [HostRoute("192.168.1.0/24", "eth0")])
    (item,) = pool_items(facts, [POOL])
    assert item.id == "pool:192.168.0.0/16" and item.status is Status.FAIL
    assert "address 192.168.1.10/24 on eth0" in item.evidence and "route 192.168.1.0/24" in item.evidence


def test_pool_items_unknown_without_host_networks():
    (item,) = pool_items(Facts(net=NetFacts(source="no fixture")), [POOL])
    assert item.status is Status.UNKNOWN and "no fixture" in item.evidence


def test_pool_items_input_problems_fail_even_without_host_networks():
    pools = [POOL, parse_cidr("192.168.128.0/17", "p"), parse_cidr("10.1.2.0/28", "p"),
             parse_cidr("169.254.0.0/16", "p")]
    items = pool_items(Facts(net=NetFacts(source="none")), pools)
    assert [i.status for i in items] == [Status.UNKNOWN, Status.FAIL, Status.FAIL, Status.FAIL]
    assert "overlaps pool 192.168.0.0/16" in items[1].evidence
    assert "IPAM block (/26)" in items[2].evidence
    assert "link-local" in items[3].evidence


def test_pool_items_ok():
    (item,) = pool_items(facts_with([HostAddress("eth0", "192.0.2.2/24")], []), [POOL])
    assert item.status is Status.OK and "1 addresses" in item.evidence


@pytest.mark.parametrize(
    ("services", "status", "words"),
    [
        (["10.96.0.0/12"], Status.OK, ["overlaps no pool", "--service-cidr"]),
        (["192.168.200.0/24"], Status.FAIL, ["192.168.200.0/24 overlaps pool 192.168.0.0/16"]),
        (["10.96.0.0/12", "fd00:10::/108"], Status.FAIL, ["fd00:10::/108 overlaps pool fd00:10::/48"]),
    ],
)
def test_service_range(services, status, words):
    item = service_item(Facts(), [POOL, POOL6], [parse_cidr(s, "s") for s in services])
    assert item.status is status
    for word in words:
        assert word in item.evidence


def test_service_range_unknown_when_not_given_nor_found():
    assert service_item(Facts(), [POOL], None).status is Status.UNKNOWN


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "banana", "10.0.0.1/8", "", "fd00::1/64"])
def test_bad_cidrs_are_config_errors(bad):
    with pytest.raises(ConfigError) as err:
        parse_cidr(bad, "--pool-cidr")
    assert err.value.exit_code == 2 and "--pool-cidr" in str(err.value)
    assert "\n" not in str(err.value)


def test_host_bits_hint():
    with pytest.raises(ConfigError, match=r"did you mean 10\.0\.0\.0/8"):
        parse_cidr("10.0.0.1/8", "--pool-cidr")


def test_evaluate_defaults_and_validation():
    assert evaluate(Facts()).pool_cidrs == ("192.168.0.0/16",)
    assert evaluate(Facts(), profile="canal").pool_cidrs == ("10.244.0.0/16",)
    report = evaluate(Facts(), service_cidr="10.96.0.0/12, fd00:96::/108")
    assert report.service_cidr == "10.96.0.0/12,fd00:96::/108"
    with pytest.raises(ConfigError, match="--service-cidr"):
        evaluate(Facts(), service_cidr="10.96.0.0/99")
    with pytest.raises(ConfigError, match="unknown profile"):
        evaluate(Facts(), profile="weave")
