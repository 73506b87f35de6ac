"""The per-minute caps of what one agent probes (core/budget.py)."""

from __future__ import annotations

import ipaddress

import pytest

from netprobe.core.budget import NotAllowed, OverBudget, ProbeBudget


def addrs(first: int, n: int) -> list[str]:
    return [str(ipaddress.IPv4Address("10.0.0.0") + first + i) for i in range(n)]


def test_distinct_targets_a_minute_and_the_same_peers_again():
    b = ProbeBudget(probes_per_minute=10_000, targets_per_minute=100)
    b.admit(addrs(0, 60), 60, now=0)
    b.admit(addrs(0, 60), 60, now=1)           # the same peers: nothing new
    with pytest.raises(OverBudget, match="over 100 distinct targets a minute") as info:
        b.admit(addrs(60, 41), 41, now=2)
    assert info.value.retry_after == 60        # the oldest entry leaves the window at t=61
    b.admit(addrs(60, 40), 40, now=2)
    b.admit(addrs(200, 100), 100, now=63)      # a minute later the window is empty again


def test_probes_a_minute_slide():
    b = ProbeBudget(probes_per_minute=100, targets_per_minute=10)
    b.admit(addrs(0, 1), 70, now=0)
    with pytest.raises(OverBudget, match="over 100 probes a minute") as info:
        b.admit(addrs(0, 1), 31, now=30)
    assert info.value.retry_after == 31
    b.admit(addrs(0, 1), 30, now=30)
    b.admit(addrs(0, 1), 70, now=60.5)
    with pytest.raises(OverBudget) as info:
        b.admit(addrs(0, 1), 101, now=100)
    assert info.value.retry_after is None      # never fits


def test_a_refused_request_is_not_charged():
    b = ProbeBudget(probes_per_minute=100, targets_per_minute=10)
    with pytest.raises(OverBudget):
        b.admit(addrs(0, 11), 11, now=0)
    b.admit(addrs(0, 10), 10, now=0)


def test_the_allow_list():
    b = ProbeBudget(100, 100, allow=(ipaddress.IPv4Network("10.0.0.0/24"), ipaddress.IPv4Network("192.0.2.0/28")))
    b.admit(["10.0.0.255", "192.0.2.15"], 2, now=0)
    with pytest.raises(NotAllowed, match="target 192.0.2.16 is outside"):
        b.admit(["10.0.0.1", "192.0.2.16"], 2, now=0)


def test_the_allow_list_takes_both_families_each_for_its_own():
    b = ProbeBudget(100, 100, allow=(ipaddress.IPv4Network("192.0.2.0/24"), ipaddress.IPv6Network("2001:db8:1::/64")))
    b.admit(["192.0.2.7", "2001:db8:1::7"], 2, now=0)
    with pytest.raises(NotAllowed, match="target 2001:db8:2::7 is outside"):
        b.admit(["2001:db8:2::7"], 1, now=0)
    with pytest.raises(NotAllowed):  # an IPv4-mapped address is no member of the IPv4 network
        b.admit(["::ffff:192.0.2.7"], 1, now=0)
    # a dual-stack peer's two addresses are two distinct targets
    b2 = ProbeBudget(100, 3)
    b2.admit(["192.0.2.1", "2001:db8:1::1"], 2, now=0)
    with pytest.raises(OverBudget, match="distinct targets"):
        b2.admit(["192.0.2.2", "2001:db8:1::2"], 2, now=1)
