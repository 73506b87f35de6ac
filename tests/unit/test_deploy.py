"""deploy/: the Kubernetes manifests against the Kubernetes API schemas (kubernetes-validate,
offline, strict: an unknown or misspelt field fails), the properties the issue asks of them,
the Containerfile against the README's install steps, and the Prometheus rules with promtool."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from netprobe.core.inventory import DEFAULT_AGENT_PORT

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "kubernetes"
PROM = REPO / "deploy" / "prometheus"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
VERSIONS = ["1.29.0", "1.31.0", kubernetes_validate.latest_version()]


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def all_docs() -> list[dict]:
    return [d for p in MANIFESTS for d in docs(p)]


def one(kind: str, name: str) -> dict:
    [found] = [d for d in all_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_manifests_validate_against_the_api_schemas(path, version):
    for doc in docs(path):
        kubernetes_validate.validate(doc, version, strict=True)


def test_a_misspelt_field_is_caught():
    ds = one("DaemonSet", "netprobe-responder")
    ds["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in MANIFESTS)


def test_every_object_lives_in_the_netprobe_namespace_or_its_rbac_targets():
    for doc in all_docs():
        ns = doc["metadata"].get("namespace")
        if doc["kind"] in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert ns is None
        elif doc["kind"] in ("Role", "RoleBinding"):
            assert ns in ("netprobe", "calico-system", "kube-system", "default")
        else:
            assert ns == "netprobe", doc["metadata"]


def test_responder_daemonset():
    pod = one("DaemonSet", "netprobe-responder")["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["automountServiceAccountToken"] is False  # the responder reads no API
    [c] = pod["containers"]
    sc = c["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_RAW", "NET_ADMIN"]}
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc.get("privileged", False) is False
    # control-plane nodes: their NoSchedule taint is tolerated
    taint = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
    assert any(tolerates(t, taint) for t in pod["tolerations"])
    # the token from the Secret, read where --token-file says
    args = c["args"]
    token_file = args[args.index("--token-file") + 1]
    [mount] = [m for m in c["volumeMounts"] if token_file.startswith(m["mountPath"] + "/")]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "netprobe-token"
    assert token_file.endswith("/token")
    # the port the inventory defaults to, named "control" (what `netprobe inventory` reads)
    [port] = c["ports"]
    assert (port["name"], port["containerPort"], port["hostPort"]) == ("control", DEFAULT_AGENT_PORT, DEFAULT_AGENT_PORT)
    assert f"tcp://$(NODE_IP):{DEFAULT_AGENT_PORT}" in args
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"


def tolerates(toleration: dict, taint: dict) -> bool:
    if toleration.get("effect") not in (None, taint["effect"]):
        return False
    if toleration.get("operator") == "Exists":
        return toleration.get("key") in (None, taint["key"])
    return toleration.get("key") == taint["key"]


def test_watch_deployment_runs_without_privileges():
    pod = one("Deployment", "netprobe-watch")["spec"]["template"]["spec"]
    [c] = pod["containers"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    assert pod["serviceAccountName"] == "netprobe-watch"
    assert "hostNetwork" not in pod


def test_rbac_grants_exactly_what_the_inventory_reads():
    grants = set()
    for doc in all_docs():
        if doc["kind"] in ("Role", "ClusterRole"):
            for rule in doc["rules"]:
                for res in rule["resources"]:
                    for verb in rule["verbs"]:
                        grants.add((doc["metadata"].get("namespace", "*"), res, verb))
    assert grants == {("*", "nodes", "list"), ("calico-system", "pods", "list"), ("kube-system", "pods", "list"),
                      ("default", "endpoints", "get"), ("netprobe", "daemonsets", "get")}
    bound = {(d["metadata"].get("namespace", "*"), d["roleRef"]["name"]) for d in all_docs()
             if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
             and d["subjects"] == [{"kind": "ServiceAccount", "name": "netprobe-watch", "namespace": "netprobe"}]}
    roles = {(d["metadata"].get("namespace", "*"), d["metadata"]["name"]) for d in all_docs()
             if d["kind"] in ("Role", "ClusterRole")}
    assert bound == roles


def containerfile_runs() -> list[str]:
    text = (K8S / "Containerfile").read_text()
    return [m.strip() for m in re.findall(r"^RUN (.+)$", text, re.M)]


def test_containerfile_steps_are_the_readme_install_steps():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Install", 1)[1].split("\n## ", 1)[0]
    readme_cmds = {" ".join(shlex.split(line.split("#", 1)[0])) for line in section.splitlines()
                   if line.startswith("python3 -m pip")}
    runs = containerfile_runs()
    assert runs
    for run in runs:
        for step in run.split("&&"):
            step = " ".join(shlex.split(step))
            if step.startswith("python3 -m pip"):
                assert step in readme_cmds, f"Containerfile runs {step!r}, the README does not say it"
            else:
                assert step.startswith("rm -rf "), step  # only cleanup besides pip


def test_prometheus_rules_check_and_fire():
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: `make test` installs Debian's prometheus package"
    check = subprocess.run([promtool, "check", "rules", str(PROM / "netprobe-alerts.yaml")],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run([promtool, "test", "rules", "netprobe-alerts.test.yaml"], cwd=PROM,
                          capture_output=True, text=True, timeout=60)
    assert test.returncode == 0, test.stdout + test.stderr
def test_the_manifests_args_are_options_the_commands_take():
    from netprobe.commands.responder import responder
    from netprobe.commands.watch import watch

    for kind, name, command in (("DaemonSet", "netprobe-responder", responder), ("Deployment", "netprobe-watch", watch)):
        [c] = one(kind, name)["spec"]["template"]["spec"]["containers"]
        assert c["args"][0] == command.name
        command.make_context(command.name, list(c["args"][1:]))  # raises on an unknown option


