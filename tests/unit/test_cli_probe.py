"""`netprobe probe` bad input: one clear line on stderr and exit 2, before any socket opens."""

from __future__ import annotations

import socket

import pytest

from helpers import run_cli as run



def test_unknown_check(capsys):
    code, _, err = run(["probe", "198.51.100.7", "--checks", "bgp,ospf"], capsys)
    assert code == 2
    assert err.strip().splitlines() == ["netprobe: --checks: unknown check 'ospf' (known: bgp, ipip, typha, vxlan, wireguard, "
                                        "wireguard6, apiserver, etcd)"]


def test_unknown_profile(capsys):
    code, _, err = run(["probe", "198.51.100.7", "--profile", "weave"], capsys)
    assert code == 2 and "unknown profile 'weave'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("option", [["--apiserver-port", "70000"], ["--apiserver-port", "0"], ["--vni", "-1"],
                                    ["--timeout", "0"], ["--retries", "9"]])
def test_out_of_range_options(capsys, option):
    code, _, err = run(["probe", "198.51.100.7", *option], capsys)
    assert code == 2
    assert option[0] in err and "Traceback" not in err


def test_unresolvable_target(capsys, monkeypatch):
    def no_such_name(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)  # no DNS query leaves the test
    code, _, err = run(["probe", "no-such-host.example"], capsys)
    assert code == 2
    assert err.strip().splitlines() == ["netprobe: TARGET: cannot resolve 'no-such-host.example' to an IP address"]


def test_a_check_of_the_other_family_is_skipped_with_a_reason(capsys):
    code, _, err = run(["probe", "198.51.100.7", "--checks", "wireguard6"], capsys)
    assert code == 2
    assert err.strip().splitlines() == [
        "netprobe: wireguard6 skipped: it is not probed over IPv4 (198.51.100.7)",
        "netprobe: --checks: no check left to probe over IPv4 (198.51.100.7)"]
    code, _, err = run(["probe", "2001:db8::7", "--checks", "ipip,wireguard"], capsys)
    assert code == 2
    assert err.strip().splitlines() == [
        "netprobe: ipip skipped: it is not probed over IPv6 (2001:db8::7)",
        "netprobe: wireguard skipped: it is not probed over IPv6 (2001:db8::7)",
        "netprobe: --checks: no check left to probe over IPv6 (2001:db8::7)"]
