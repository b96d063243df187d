"""What a chart is rendered from, and the record of it kept beside the chart.

The record (`overseer-inputs.json`) holds everything but secret values, so a CI job can
re-render a chart and compare it without the database (`overseer render --check --offline`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..chart_path import ChartPath
from ..errors import UserError
from ..manifest import Manifest, validate_data

INPUTS_FILE = "overseer-inputs.json"
RECORD_SCHEMA = 1


@dataclass(frozen=True)
class PluginInput:
    """The plugin a chart is rendered from."""

    name: str
    version: str
    manifest: Manifest


@dataclass(frozen=True)
class DeploymentInput:
    """One deployment, as rendering needs it. Holds no secret values, only their names."""

    id: str
    release: str
    namespace: str
    env: tuple[tuple[str, str], ...]
    secret_keys: tuple[str, ...]
    tools: tuple[str, ...]
    requirement: str
    # How its secret values travel with the chart (`delivery.secrets.record_part`); empty when
    # `overseer apply` passes them at install time.
    secret_delivery: tuple[tuple[str, str], ...] = ()

    @property
    def chart_path(self) -> ChartPath:
        """Chart directory relative to the GitOps repository root."""
        return ChartPath.of(self.namespace, self.release)


def dump_json(data: Any) -> bytes:
    """Deterministic JSON: sorted keys, ASCII only, LF endings, trailing newline."""
    return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=True) + "\n").encode()


def _plugin_part(plugin: PluginInput) -> dict[str, Any]:
    return {
        "name": plugin.name,
        "version": plugin.version,
        "manifest": plugin.manifest.model_dump(mode="json", by_alias=True),
    }


def _deployment_part(dep: DeploymentInput) -> dict[str, Any]:
    part: dict[str, Any] = {
        "id": dep.id,
        "release": dep.release,
        "namespace": dep.namespace,
        "env": dict(dep.env),
        "secret_keys": list(dep.secret_keys),
        "tools": list(dep.tools),
        "requirement": dep.requirement,
    }
    if dep.secret_delivery:  # absent for `apply`: those records stay as they were
        part["secret_delivery"] = dict(dep.secret_delivery)
    return part


def _nested(data: Any) -> str:
    # A value as dump_json writes it one level deep inside the record.
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=True).replace("\n", "\n  ")


def plugin_record(plugin: PluginInput) -> str:
    """The plugin part of a record, serialised; computed once per plugin and reused."""
    return _nested(_plugin_part(plugin))


def dump_record(dep: DeploymentInput, plugin_part: str, generator: dict[str, str]) -> bytes:
    """Exactly `dump_json(record(...))`, without re-serialising the plugin for every chart."""
    return (
        f'{{\n  "deployment": {_nested(_deployment_part(dep))},\n'
        f'  "generator": {_nested(generator)},\n'
        f'  "plugin": {plugin_part},\n'
        f'  "schema": {RECORD_SCHEMA}\n}}\n'
    ).encode()


def record(dep: DeploymentInput, plugin: PluginInput, generator: dict[str, str]) -> dict[str, Any]:
    """The inputs record of one chart."""
    return {
        "schema": RECORD_SCHEMA,
        "generator": generator,
        "deployment": _deployment_part(dep),
        "plugin": _plugin_part(plugin),
    }


def from_record(data: bytes, source: str) -> tuple[DeploymentInput, PluginInput]:
    """Rebuild render inputs from a chart's record; raise UserError when it is unusable."""
    try:
        doc = json.loads(data)
        if doc.get("schema") != RECORD_SCHEMA:
            raise UserError(f"{source}: unsupported inputs record schema {doc.get('schema')!r}")
        d, p = doc["deployment"], doc["plugin"]
        manifest = validate_data(p["manifest"], f"{source}: plugin manifest")
        dep = DeploymentInput(
            id=d["id"],
            release=d["release"],
            namespace=d["namespace"],
            env=tuple(sorted(d["env"].items())),
            secret_keys=tuple(d["secret_keys"]),
            tools=tuple(d["tools"]),
            requirement=d["requirement"],
            secret_delivery=tuple(sorted(d.get("secret_delivery", {}).items())),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{source}: unreadable inputs record ({exc}); re-render it") from None
    return dep, PluginInput(p["name"], p["version"], manifest)
