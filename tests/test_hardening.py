"""Rendered charts a platform team would ship: kube-score's verdict, probes, the pod's security,
and the NetworkPolicy, from the manifest's optional fields."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from generator.config import SCORE_SKIP
from generator.manifest import advice, parse_manifest
from generator.tools import kube_score
from generator.validate import placeholder_values, validate
from tests.charts import FIXTURES, load_case, render_case, write_chart

pytestmark = pytest.mark.helm


def manifests(helm_bin: str, chart: Path, *values: str) -> str:
    flags: list[str] = []
    for name, value in placeholder_values(chart).get("secretEnv", {}).items():
        flags += ["--set", f"secretEnv.{name}={value}"]
    for value in values:
        flags += ["--set", value]
    proc = subprocess.run(
        [helm_bin, "template", chart.name, str(chart), *flags],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


def objects(text: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(text) if d}


def score(tmp_path: Path, text: str, skip: tuple[str, ...]) -> list[kube_score.Finding]:
    target = tmp_path / "manifests.yaml"
    target.write_text(text)
    return kube_score.score([target], skip=skip, kubernetes_version="1.36.0")


def case_chart(case: str, tmp_path: Path) -> Path:
    dep, _ = load_case(case)
    return write_chart(render_case(case), tmp_path / dep.namespace / dep.release)


def test_the_full_fixture_scores_no_critical_finding(
    helm_bin: str, kube_score_bin: str, tmp_path: Path
) -> None:
    chart = case_chart("full", tmp_path)
    # Only the one check an environment fails by design (one pod) is skipped here.
    found = score(tmp_path, manifests(helm_bin, chart), ("deployment-replicas",))
    assert [f for f in found if f.grade == kube_score.CRITICAL] == [], found
    assert found == []
    # Scaled out, the pods spread across nodes and a PodDisruptionBudget covers them.
    scaled = manifests(helm_bin, chart, "replicaCount=3")
    assert score(tmp_path, scaled, ()) == []
    kinds = objects(scaled)
    assert ("PodDisruptionBudget", chart.name) in kinds
    assert ("PodDisruptionBudget", chart.name) not in objects(manifests(helm_bin, chart))


def test_the_spec_example_shows_only_its_documented_exceptions(
    helm_bin: str, kubeconform_bin: str, kube_score_bin: str, tmp_path: Path
) -> None:
    chart = case_chart("claude", tmp_path)
    (report,) = validate([chart])
    assert report.problems == []
    checks = sorted(w.rsplit("[", 1)[1].rstrip("]") for w in report.warnings)
    assert checks == ["container-image-pull-policy", "container-image-tag"]
    assert "Image with latest tag" in "\n".join(report.warnings)
    (strict,) = validate([chart], strict=True)
    assert sorted(p.rsplit("[", 1)[1].rstrip("]") for p in strict.problems) == checks
    # What the default list skips, it skips for the reasons docs/chart.md gives; run, those
    # checks find the image's user and root filesystem, which the manifest leaves as they are.
    unskipped = score(tmp_path, manifests(helm_bin, chart), ("deployment-replicas",))
    assert {f.check for f in unskipped if f.grade == kube_score.CRITICAL} == {
        "container-image-pull-policy",
        "container-image-tag",
        *(c for c in SCORE_SKIP if c != "deployment-replicas"),
    }


def test_validate_names_the_chart_and_resource_of_a_finding(
    helm_bin: str, kubeconform_bin: str, kube_score_bin: str, tmp_path: Path
) -> None:
    good = case_chart("full", tmp_path / "a")
    bad = case_chart("full", tmp_path / "b")
    values = bad / "values.yaml"
    data = yaml.safe_load(values.read_text())
    data["securityContext"]["privileged"] = True
    data["readinessProbe"] = {}
    values.write_text(yaml.safe_dump(data))
    reports = {r.chart: r for r in validate([tmp_path])}
    assert reports[str(good)].problems == []
    assert sorted(reports[str(bad)].problems) == [
        f"kube-score: Deployment/{bad.name}: (workbench) The container is privileged "
        "[container-security-context-privileged]",
        f"kube-score: Deployment/{bad.name}: Container is missing a readinessProbe [pod-probes]",
    ]


def test_probes_follow_the_manifest(helm_bin: str, tmp_path: Path) -> None:
    claude = objects(manifests(helm_bin, case_chart("claude", tmp_path)))
    (container,) = claude[("Deployment", "claude-environment-golden1")]["spec"]["template"]["spec"][
        "containers"
    ]
    # None declared: TCP readiness on the first port, and nothing else.
    assert container["readinessProbe"]["tcpSocket"] == {"port": "vnc"}
    assert "livenessProbe" not in container and "startupProbe" not in container
    full = objects(manifests(helm_bin, case_chart("full", tmp_path)))
    (container,) = full[("Deployment", "workbench-golden3")]["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["readinessProbe"]["httpGet"] == {"port": "http", "path": "/healthz"}
    assert container["readinessProbe"]["periodSeconds"] == 5
    assert container["livenessProbe"]["tcpSocket"] == {"port": "http"}
    assert container["startupProbe"]["exec"] == {
        "command": ["/bin/workbench", "check", "--startup"]
    }
    text = (FIXTURES / "claude" / "plugin.yaml").read_text() + "probes:\n  readiness: none\n"
    off = parse_manifest(text.encode(), "off")
    assert off.probes.readiness == "none"


def test_the_pod_runs_with_nothing_it_did_not_ask_for(helm_bin: str, tmp_path: Path) -> None:
    claude = objects(manifests(helm_bin, case_chart("claude", tmp_path)))
    pod = claude[("Deployment", "claude-environment-golden1")]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "readOnlyRootFilesystem": False,
    }
    full = objects(manifests(helm_bin, case_chart("full", tmp_path)))
    pod = full[("Deployment", "workbench-golden3")]["spec"]["template"]["spec"]
    assert (
        pod["securityContext"]["runAsUser"] == 10001 and pod["securityContext"]["fsGroup"] == 10001
    )
    context = pod["containers"][0]["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["runAsNonRoot"] is True
    assert context["capabilities"] == {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}
    # Under the read-only root, the writable paths are scratch volumes.
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["/tmp"] == "writable-0" and mounts["/home/workbench/.cache"] == "writable-1"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["writable-0"] == {"name": "writable-0", "emptyDir": {}}


def test_the_network_policy_admits_only_what_the_manifest_declares(
    helm_bin: str, tmp_path: Path
) -> None:
    claude = objects(manifests(helm_bin, case_chart("claude", tmp_path)))
    release = "claude-environment-golden1"
    policy = claude[("NetworkPolicy", release)]["spec"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == release
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    same, controller, test_pod = policy["ingress"]
    assert same["from"] == [{"podSelector": {}}]
    assert [p["port"] for p in same["ports"]] == ["vnc", "streamlit", "novnc", "api"]
    assert controller["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]
    assert [p["port"] for p in controller["ports"]] == ["api", "novnc", "streamlit"]
    assert test_pod["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/component": "connection-test",
    }
    assert policy["egress"] == [{}]  # by default: anywhere
    # The helm test pod may reach the first port and DNS, and nothing may reach it; the Service
    # never routes to it.
    tester = claude[("NetworkPolicy", f"{release}-test")]["spec"]
    assert tester["ingress"] == [] and tester["egress"][0]["ports"] == [
        {"port": 5900, "protocol": "TCP"}
    ]
    service = claude[("Service", release)]["spec"]["selector"]
    pod_labels = claude[("Pod", f"{release}-test-connection")]["metadata"]["labels"]
    assert not all(pod_labels.get(k) == v for k, v in service.items())

    full = objects(manifests(helm_bin, case_chart("full", tmp_path)))
    policy = full[("NetworkPolicy", "workbench-golden3")]["spec"]
    rules = [
        (rule["from"][0], [p["port"] for p in rule["ports"]]) for rule in policy["ingress"][:3]
    ]
    assert rules == [
        ({"podSelector": {}}, ["http"]),
        (
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "ingress-system"}
                }
            },
            ["http", "metrics"],
        ),
        (
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
            ["metrics"],
        ),
    ]
    dns, database, https = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert database == {
        "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
        "ports": [{"port": 5432, "protocol": "TCP"}],
    }
    assert https["ports"] == [{"port": 443, "protocol": "TCP"}]


def test_register_warns_of_what_a_production_chart_should_not_do() -> None:
    example = parse_manifest((FIXTURES / "claude" / "plugin.yaml").read_bytes(), "example")
    said = advice(example)
    assert [s.split(" ", 1)[0] for s in said] == ["image.tag", "image.pull_policy"]
    full = parse_manifest((FIXTURES / "full" / "plugin.yaml").read_bytes(), "full")
    assert advice(full) == []
    minimal = parse_manifest((FIXTURES / "minimal" / "plugin.yaml").read_bytes(), "minimal")
    assert [s.split(" ", 1)[0] for s in advice(minimal)] == ["dependencies.resources"]


def test_kube_score_is_pinned(kube_score_bin: str) -> None:
    from tests.conftest import _versions

    out = subprocess.run([kube_score_bin, "version"], capture_output=True, text=True).stdout
    assert _versions()["KUBE_SCORE_VERSION"] in out
    assert shutil.which("kube-score") is not None
