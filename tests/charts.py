"""Helpers to render the fixture cases (tests/fixtures/<case>/) into charts."""

from __future__ import annotations

from pathlib import Path

import yaml

from generator.manifest import parse_manifest
from generator.render import Chart, DeploymentInput, PluginInput, Renderer

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = sorted(p.name for p in FIXTURES.iterdir() if (p / "plugin.yaml").exists())


def load_case(case: str) -> tuple[DeploymentInput, PluginInput]:
    manifest = parse_manifest((FIXTURES / case / "plugin.yaml").read_bytes(), case)
    d = yaml.safe_load((FIXTURES / case / "deployment.yaml").read_text())
    env = {
        v.name: v.default for v in manifest.variables() if not v.secret and v.default is not None
    }
    env.update(d["data"])
    dep = DeploymentInput(
        id=d["id"],
        release=d["release"],
        namespace=d["namespace"],
        env=tuple(sorted(env.items())),
        secret_keys=tuple(d["secret_keys"]),
        tools=tuple(d["tools"]),
        requirement=d["requirement"],
    )
    return dep, PluginInput(manifest.name, manifest.version, manifest)


def render_case(case: str) -> Chart:
    dep, plugin = load_case(case)
    return Renderer().render(dep, plugin)


def write_chart(chart: Chart, target: Path) -> Path:
    for rel, data in chart.items():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_bytes(data)
    return target
