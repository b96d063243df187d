"""Golden charts against the real pinned helm CLI and kubeconform."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from generator.render import Renderer
from generator.tools.kubeconform import schema_root
from generator.validate import placeholder_values
from tests.charts import CASES, load_case, render_case, write_chart

pytestmark = pytest.mark.helm

# Values that turn every optional feature on, as helm's own tests do for the starter chart.
OPTIONAL_ON = ["--set", "ingress.enabled=true", "--set", "existingSecret=prepared-secret"]


def helm(helm_bin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_bin, *args], capture_output=True, text=True, check=False)


def set_flags(chart: Path) -> list[str]:
    out: list[str] = []
    for name, value in placeholder_values(chart).get("secretEnv", {}).items():
        out += ["--set", f"secretEnv.{name}={value}"]
    return out


def kubeconform(kubeconform_bin: str, manifests: str) -> subprocess.CompletedProcess[str]:
    root = schema_root()
    version = "1.36.0"
    location = f"{root}/{{{{ .NormalizedKubernetesVersion }}}}-local{{{{ .StrictSuffix }}}}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json"
    return subprocess.run(
        [
            kubeconform_bin,
            "-strict",
            "-summary",
            "-kubernetes-version",
            version,
            "-schema-location",
            location,
            "-",
        ],
        input=manifests,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(params=CASES)
def chart_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    dep, _ = load_case(request.param)
    return write_chart(render_case(request.param), tmp_path / dep.namespace / dep.release)


def test_lint_strict(helm_bin: str, chart_dir: Path) -> None:
    for extra in ([], OPTIONAL_ON):
        proc = helm(helm_bin, "lint", "--strict", str(chart_dir), *set_flags(chart_dir), *extra)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "[WARNING]" not in proc.stdout
        assert "deprecated" not in (proc.stdout + proc.stderr).lower()


def test_template_passes_kubeconform_strict(
    helm_bin: str, kubeconform_bin: str, chart_dir: Path
) -> None:
    for extra in ([], OPTIONAL_ON):
        proc = helm(
            helm_bin,
            "template",
            chart_dir.name,
            str(chart_dir),
            "-n",
            chart_dir.parent.name,
            *set_flags(chart_dir),
            *extra,
        )
        assert proc.returncode == 0, proc.stderr
        kinds = {d["kind"] for d in yaml.safe_load_all(proc.stdout) if d}
        assert {"Deployment"} <= kinds
        check = kubeconform(kubeconform_bin, proc.stdout)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "Invalid: 0, Errors: 0" in check.stdout


def test_install_by_hand_without_required_secret_names_it(helm_bin: str, tmp_path: Path) -> None:
    for case, missing in (("claude", ["ANTHROPIC_API_KEY"]), ("full", ["DB_PASSWORD", "LICENSE"])):
        dep, _ = load_case(case)
        chart = write_chart(render_case(case), tmp_path / case)
        proc = helm(helm_bin, "template", dep.release, str(chart))
        assert proc.returncode != 0
        for name in missing:
            assert name in proc.stderr, proc.stderr
        # An existing Secret satisfies the schema instead of the values.
        ok = helm(helm_bin, "template", dep.release, str(chart), "--set", "existingSecret=mine")
        assert ok.returncode == 0, ok.stderr


def test_template_resources_match_the_manifest(helm_bin: str, tmp_path: Path) -> None:
    chart = write_chart(render_case("claude"), tmp_path / "c")
    proc = helm(
        helm_bin,
        "template",
        "rel",
        str(chart),
        "-n",
        "a8s",
        "--set",
        "secretEnv.ANTHROPIC_API_KEY=k",
    )
    docs = {d["kind"]: d for d in yaml.safe_load_all(proc.stdout) if d}
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "a8s-claude:latest"
    assert container["imagePullPolicy"] == "Never"
    assert container["resources"] == {  # scratch disk bounded by default (docs/chart.md)
        "requests": {"cpu": "1", "memory": "2Gi", "ephemeral-storage": "256Mi"},
        "limits": {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "4Gi"},
    }
    assert [p["name"] for p in container["ports"]] == ["vnc", "streamlit", "novnc", "api"]
    assert {e["name"]: e["value"] for e in container["env"]} == {
        "DISPLAY_NUM": "1",
        "HEIGHT": "900",
        "WIDTH": "1024",
    }
    assert container["envFrom"] == [{"secretRef": {"name": "rel-env"}}]
    assert container["volumeMounts"][0]["mountPath"] == "/home/computeruse/.github-credentials"
    assert docs["Secret"]["data"] == {"ANTHROPIC_API_KEY": "aw=="}
    paths = docs["Ingress"]["spec"]["rules"][0]["http"]["paths"]
    assert [(p["path"], p["backend"]["service"]["port"]["name"]) for p in paths] == [
        ("/streamlit", "streamlit"),
        ("/novnc", "novnc"),
        ("/api", "api"),
    ]
    annotations = docs["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert json.loads(annotations["overseer.dev/tools"]) == ["git", "browser"]
    assert annotations["overseer.dev/requirement"] == "test deployment"


@pytest.mark.parametrize(
    "value", ["{{ .Release.Name }}", "{% raw %}", '"\nkind: Secret', "---", "a\u2028b: c"]
)
def test_hostile_values_come_out_literally_in_helm_template(
    helm_bin: str, tmp_path: Path, value: str
) -> None:
    dep, plugin = load_case("claude")
    baseline = write_chart(Renderer().render(dep, plugin), tmp_path / "base")
    dep = dataclasses.replace(
        dep,
        env=(("DISPLAY_NUM", value), ("HEIGHT", "1"), ("WIDTH", "2")),
        tools=(value,),
        requirement=value,
    )
    chart = write_chart(Renderer().render(dep, plugin), tmp_path / "hostile")
    args = ["-n", "a8s", "--set", "secretEnv.ANTHROPIC_API_KEY=k"]
    base_docs = [
        d
        for d in yaml.safe_load_all(helm(helm_bin, "template", "rel", str(baseline), *args).stdout)
        if d
    ]
    proc = helm(helm_bin, "template", "rel", str(chart), *args)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert [d["kind"] for d in docs] == [d["kind"] for d in base_docs]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["DISPLAY_NUM"] == value
    assert pod["metadata"]["annotations"]["overseer.dev/requirement"] == value
    assert json.loads(pod["metadata"]["annotations"]["overseer.dev/tools"]) == [value]
    base_dep = next(d for d in base_docs if d["kind"] == "Deployment")
    assert set(deployment) == set(base_dep)
    assert set(pod["spec"]["containers"][0]) == set(
        base_dep["spec"]["template"]["spec"]["containers"][0]
    )
