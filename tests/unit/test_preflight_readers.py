"""The readers on fixture trees: os-release, CNI configs, the process table, kube-proxy's config
through /proc/PID/root, /proc/net sockets and their owners, and the addresses fixture."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from netprobe.errors import ConfigError
from netprobe.preflight.facts import Socket
from netprobe.preflight.fsroot import Root
from netprobe.preflight.gather import read_facts
from netprobe.preflight.model import Status
from netprobe.preflight.read_host import (parse_cni_config, parse_os_release, parse_proc_net, read_cni, read_kube,
                                          read_processes, read_sockets)
from netprobe.preflight.read_net import read_net
from netprobe.preflight.rules import evaluate
from netprobe.preflight.rules_cluster import kube_proxy_item

DATA = Path(__file__).resolve().parent.parent / "data" / "preflight" / "ubuntu-node"


def write(root: Path, rel: str, text: str | bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def process(root: Path, pid: int, comm: str, argv: list[str], sockets: dict[int, int] | None = None) -> None:
    write(root, f"proc/{pid}/comm", comm + "\n")
    write(root, f"proc/{pid}/cmdline", b"".join(a.encode() + b"\0" for a in argv))
    (root / f"proc/{pid}/fd").mkdir(parents=True, exist_ok=True)
    for fd, inode in (sockets or {}).items():
        os.symlink(f"socket:[{inode}]", root / f"proc/{pid}/fd/{fd}")


def test_parse_os_release():
    text = 'NAME="Ubuntu"\nVERSION_ID="22.04"\n# comment\nID=ubuntu\nPRETTY_NAME="Ubuntu 22.04.3 LTS"\nBAD LINE\n'
    assert parse_os_release(text) == {"NAME": "Ubuntu", "VERSION_ID": "22.04", "ID": "ubuntu",
                                      "PRETTY_NAME": "Ubuntu 22.04.3 LTS"}


def test_parse_cni_config():
    conf = parse_cni_config("f", '{"name": "k8s-pod-network", "plugins": [{"type": "calico"}, {"type": "portmap"}]}')
    assert conf.name == "k8s-pod-network" and conf.types == ("calico", "portmap") and conf.error is None
    assert parse_cni_config("f", '{"cniVersion": "0.3.1", "name": "lo", "type": "loopback"}').types == ("loopback",)
    assert "bad JSON" in parse_cni_config("f", "{nope").error
    assert parse_cni_config("f", "[]").error == "not a JSON object"


def test_read_cni(tmp_path):
    assert read_cni(Root(tmp_path)).exists is False
    write(tmp_path, "etc/cni/net.d/10-calico.conflist", '{"name": "k8s", "plugins": [{"type": "calico"}]}')
    write(tmp_path, "etc/cni/net.d/10-weave.conflist", '{"name": "weave", "plugins": [{"type": "weave-net"}]}')
    write(tmp_path, "etc/cni/net.d/calico-kubeconfig", "not a network config")
    facts = read_cni(Root(tmp_path))
    assert facts.exists and [c.file.rsplit("/", 1)[-1] for c in facts.configs] == [
        "10-calico.conflist", "10-weave.conflist"]
    assert facts.directory == f"{tmp_path}/etc/cni/net.d"


def test_parse_proc_net_tcp_and_udp():
    tcp = (DATA / "proc/net/tcp").read_text()
    assert parse_proc_net(tcp, "tcp") == [Socket("tcp", "0.0.0.0", 179, 4242), Socket("tcp", "0.0.0.0", 9099, 5555)]
    tcp6 = ("  sl  local_address                         remote_address                        st\n"
            "   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A "
            "00000000:00000000 00:00000000 00000000     0        0 777 1 0 100 0 0 10 0\n")
    assert parse_proc_net(tcp6, "tcp") == [Socket("tcp", "::1", 22, 777)]
    udp = ("   sl  local_address rem_address   st\n"
           "  12: 00000000:12B5 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 0 2 0 0\n")
    assert parse_proc_net(udp, "udp") == [Socket("udp", "0.0.0.0", 4789, 0)]


def test_read_sockets_and_owners(tmp_path):
    write(tmp_path, "proc/net/tcp", (DATA / "proc/net/tcp").read_text())
    process(tmp_path, 812, "bird", ["bird"], {7: 4242, 8: 99999})
    process(tmp_path, 950, "nginx", ["nginx"], {6: 5555})
    os.symlink("/dev/null", tmp_path / "proc/950/fd/0")
    facts = read_sockets(Root(tmp_path))
    assert facts.sources == (f"{tmp_path}/proc/net/tcp",)
    assert facts.owners == {4242: [812], 5555: [950]}


def test_read_sockets_unreadable(tmp_path):
    facts = read_sockets(Root(tmp_path))
    assert facts.listening is None and facts.owners is None


def test_read_processes(tmp_path):
    assert read_processes(Root(tmp_path)) is None
    process(tmp_path, 10, "kube-proxy", ["/usr/local/bin/kube-proxy", "--v=2"])
    write(tmp_path, "proc/self/comm", "python\n")  # not a pid: ignored
    table = read_processes(Root(tmp_path))
    assert list(table) == [10] and table[10].cmdline == ("/usr/local/bin/kube-proxy", "--v=2")


@pytest.mark.parametrize(
    ("config", "mode", "error"),
    [("mode: ipvs\n", "ipvs", None), ("kind: KubeProxyConfiguration\nmode: \"\"\n", "", None),
     ("mode: [unclosed\n", None, "bad YAML"), (None, None, "not readable")],
)
def test_kube_proxy_config_through_proc_root(tmp_path, config, mode, error):
    process(tmp_path, 977, "kube-proxy", ["kube-proxy", "--config=/var/lib/kube-proxy/config.conf"])
    if config is not None:
        write(tmp_path, "proc/977/root/var/lib/kube-proxy/config.conf", config)
    facts = read_kube(Root(tmp_path), read_processes(Root(tmp_path)))
    assert facts.proxy_config_mode == mode
    assert (error or "") in (facts.proxy_config_error or "")


def test_kube_ipvs_link(tmp_path):
    assert read_kube(Root(tmp_path), None).ipvs_link is None
    (tmp_path / "sys/class/net/eth0").mkdir(parents=True)
    assert read_kube(Root(tmp_path), None).ipvs_link is False
    (tmp_path / "sys/class/net/kube-ipvs0").mkdir()
    assert read_kube(Root(tmp_path), None).ipvs_link is True


def test_kube_proxy_detected_end_to_end(tmp_path):
    process(tmp_path, 977, "kube-proxy", ["kube-proxy", "--config", "/cfg.yaml"])
    write(tmp_path, "proc/977/root/cfg.yaml", "mode: iptables\n")
    facts = read_facts(tmp_path)
    item = kube_proxy_item(facts)
    assert item.status is Status.OK and "iptables" in item.evidence and "/cfg.yaml" in item.evidence


def test_addresses_fixture(tmp_path):
    write(tmp_path, "netprobe-addrs.json", json.dumps({
        "addresses": [{"ifname": "eth0", "address": "192.168.3.4/24"}, {"ifname": "eth0", "address": "fd00::5/64"}],
        "routes": [{"dst": "10.0.0.0/8", "dev": "eth0", "table": 100}]}))
    net = read_net(Root(tmp_path))
    assert [a.cidr for a in net.addresses] == ["192.168.3.4/24", "fd00::5/64"]
    assert net.routes[0].table == 100 and net.source.startswith("fixture")


def test_root_without_fixture_never_reads_live_netlink(tmp_path, monkeypatch):
    import netprobe.preflight.read_net as read_net_module

    def boom():
        raise AssertionError("live netlink read under --root")

    monkeypatch.setattr(read_net_module, "read_netlink", boom)
    net = read_net(Root(tmp_path))
    assert net.addresses is None and "not read" in net.source
    (item,) = [i for i in evaluate(read_facts(tmp_path)).items if i.id.startswith("pool:")]
    assert item.status is Status.UNKNOWN


@pytest.mark.parametrize(
    ("content", "where"),
    [("{bad", "bad JSON"), ("[]", "JSON object"),
     ('{"addresses": [{"ifname": "eth0"}]}', "addresses[0]"),
     ('{"routes": [{"dst": "300.1.1.0/24"}]}', "routes[0]")],
)
def test_bad_addresses_fixture_is_a_config_error(tmp_path, content, where):
    write(tmp_path, "netprobe-addrs.json", content)
    with pytest.raises(ConfigError, match=r"netprobe-addrs\.json") as err:
        read_net(Root(tmp_path))
    assert where in str(err.value)


def test_checked_in_tree_end_to_end():
    """The checked-in Ubuntu node: every reader and rule together."""
    report = evaluate(read_facts(DATA))
    status = {i.id: i.status for i in report.items}
    assert report.host == "node1" and report.root == str(DATA)
    assert status["kernel"] is Status.OK and status["distro"] is Status.OK
    assert status["module:ip_tables"] is Status.OK and "loaded" in report.item("module:ip_tables").evidence
    assert "modules.builtin" in report.item("module:ipt_REJECT").evidence
    assert "available as a module" in report.item("module:ipip").evidence
    # CONFIG_IP_NF_MATCH_RPFILTER=m but the module is not installed
    assert status["module:ipt_rpfilter"] is Status.FAIL
    pool = report.item("pool:192.168.0.0/16")
    assert pool.status is Status.FAIL and "192.168.10.11/24 on eth0" in pool.evidence
    assert "tunl0" not in pool.evidence and "ignored 2" in pool.evidence
    assert status["service-range"] is Status.OK and "10.96.0.0/12" in report.item("service-range").evidence
    assert status["cni"] is Status.WARN and "flannel" in report.item("cni").evidence
    assert status["kube-proxy"] is Status.OK and "Kubernetes 1.28.2" in report.item("kube-proxy").evidence
    assert status["port:179/tcp"] is Status.OK and "bird (pid 812)" in report.item("port:179/tcp").evidence
    assert status["port:5473/tcp"] is Status.OK  # only an established connection uses 5473
    assert status["port:9099/tcp"] is Status.WARN and "nginx" in report.item("port:9099/tcp").evidence
    assert report.exit_code == 1
