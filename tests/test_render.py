"""Rendering: golden charts, determinism, and user input staying data."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import yaml

from generator.render import INPUTS_FILE, Renderer, from_record
from tests.charts import CASES, GOLDEN, load_case, render_case


@pytest.mark.parametrize("case", CASES)
def test_golden_chart(case: str, request: pytest.FixtureRequest) -> None:
    chart = render_case(case)
    golden = GOLDEN / case
    if request.config.getoption("--update-golden"):
        shutil.rmtree(golden, ignore_errors=True)
        for rel, data in chart.items():
            (golden / rel).parent.mkdir(parents=True, exist_ok=True)
            (golden / rel).write_bytes(data)
    expected = {
        p.relative_to(golden).as_posix(): p.read_bytes() for p in golden.rglob("*") if p.is_file()
    }
    assert sorted(chart) == sorted(expected), (
        "file set differs; run pytest --update-golden if intended"
    )
    for rel in chart:
        assert chart[rel] == expected[rel], f"{case}/{rel} differs from the golden file"


def test_chart_shape_follows_the_manifest() -> None:
    assert "templates/ingress.yaml" in render_case("claude")
    minimal = render_case("minimal")
    assert "templates/ingress.yaml" in minimal  # declared but disabled: the toggle is in values
    values = yaml.safe_load(minimal["values.yaml"])
    assert values["ingress"]["enabled"] is False
    assert values["volumes"] == []
    full = yaml.safe_load(render_case("full")["values.yaml"])
    assert full["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi", "ephemeral-storage": "100Mi"},
        "limits": {"cpu": "1.5", "memory": "1Gi", "ephemeral-storage": "2Gi"},
    }
    # Scratch disk is bounded even when the manifest says nothing of it.
    assert yaml.safe_load(minimal["values.yaml"])["resources"] == {
        "requests": {"ephemeral-storage": "256Mi"},
        "limits": {"ephemeral-storage": "4Gi"},
    }
    assert full["image"] == {
        "repository": "ghcr.io/example/team/workbench",
        "tag": "2.3.1",
        "pullPolicy": "Always",
    }
    assert full["env"] == {
        "LOG_LEVEL": "debug",
        "PUBLIC_KEY": "ssh-ed25519 AAAA",
        "REGION": "eu-west-1",
    }
    assert full["deployment"] == {
        "id": "c0golden0full0fixture000",
        "tools": ["kubectl", "helm"],
        "requirement": "Every optional feature on",
    }


def test_output_is_deterministic_and_lf_only() -> None:
    for case in CASES:
        first, second = render_case(case), render_case(case)
        assert first == second
        for rel, data in first.items():
            assert b"\r" not in data, rel
            assert data.endswith(b"\n"), rel


def test_plugin_parts_are_shared_between_deployments() -> None:
    dep, plugin = load_case("claude")
    renderer = Renderer()
    a = renderer.render(dep, plugin)
    b = renderer.render(
        dataclasses.replace(dep, id="other", release="claude-environment-other"), plugin
    )
    assert a["templates/deployment.yaml"] is b["templates/deployment.yaml"]
    assert a["values.yaml"] != b["values.yaml"]


def test_inputs_record_rebuilds_the_same_chart() -> None:
    for case in CASES:
        chart = render_case(case)
        dep, plugin = from_record(chart[INPUTS_FILE], case)
        assert Renderer().render(dep, plugin) == chart


def test_inputs_record_holds_no_secret_values() -> None:
    record = json.loads(render_case("full")[INPUTS_FILE])
    assert record["deployment"]["secret_keys"] == ["DB_PASSWORD", "LICENSE", "SESSION_TOKEN"]
    assert "DB_PASSWORD" not in record["deployment"]["env"]


HOSTILE = [
    "{{ .Release.Name }}",
    "{% raw %}x{% endraw %}",
    '"\nkind: Secret',
    "---",
    "a\u2028kind: Secret",
    "[[ chart ]]",
    "x\x85y: z",
    "# not a comment",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_stay_literal_data(value: str) -> None:
    dep, plugin = load_case("claude")
    dep = dataclasses.replace(
        dep,
        env=(("DISPLAY_NUM", value), ("HEIGHT", "768"), ("WIDTH", "1024")),
        tools=(value,),
        requirement=value,
    )
    chart = Renderer().render(dep, plugin)
    docs = list(yaml.safe_load_all(chart["values.yaml"]))
    assert len(docs) == 1
    values = docs[0]
    assert values["env"]["DISPLAY_NUM"] == value
    assert values["deployment"]["tools"] == [value]
    assert values["deployment"]["requirement"] == value
    baseline = yaml.safe_load(render_case("claude")["values.yaml"])
    assert set(values) == set(baseline)
    assert set(values["env"]) == set(baseline["env"])
    chart_yaml = list(yaml.safe_load_all(chart["Chart.yaml"]))
    assert len(chart_yaml) == 1 and chart_yaml[0]["name"] == "claude-environment"


def test_hostile_descriptions_stay_comments() -> None:
    dep, plugin = load_case("claude")
    manifest = plugin.manifest
    required = manifest.dependencies.env_vars.required[0].model_copy(
        update={"description": "key\nkind: Secret\n---\nx: {{ .Values }}\u2028y: 1"}
    )
    env_vars = manifest.dependencies.env_vars.model_copy(update={"required": [required]})
    deps = manifest.dependencies.model_copy(update={"env_vars": env_vars})
    plugin = dataclasses.replace(
        plugin, manifest=manifest.model_copy(update={"dependencies": deps})
    )
    chart = Renderer().render(dep, plugin)
    values = list(yaml.safe_load_all(chart["values.yaml"]))
    assert len(values) == 1
    assert "kind" not in values[0] and "y" not in values[0] and "x" not in values[0]
    schema = json.loads(chart["values.schema.json"])
    assert (
        "kind: Secret"
        in schema["properties"]["secretEnv"]["properties"]["ANTHROPIC_API_KEY"]["description"]
    )


def test_fast_inputs_record_matches_the_plain_serialisation() -> None:
    from generator.render import dump_json
    from generator.render.inputs import record

    for case in CASES:
        dep, plugin = load_case(case)
        renderer = Renderer()
        assert renderer.inputs_record(dep, plugin) == dump_json(
            record(dep, plugin, renderer.templates.generator)
        )
