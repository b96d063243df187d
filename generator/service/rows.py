"""A deployment's row, read: its `config` column as a model, and the render input it gives."""

from __future__ import annotations

import json
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from ..delivery import Delivery, record_part
from ..delivery.config import NONE
from ..manifest import Manifest
from ..render import DeploymentInput


class DeploymentConfig(BaseModel):
    """A deployment's request without its secret values: the `config` column."""

    # Keys an older row may carry are kept, not refused; numbers a YAML config held are text.
    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)

    environment_type: str = ""
    tools: list[str] = Field(default_factory=list)
    data: dict[str, str] = Field(default_factory=dict)  # the plain variables' values
    secret_keys: list[str] = Field(default_factory=list)  # names only: values are sealed apart
    requirement: str = ""
    ttl_seconds: int | None = None


def dump_config(config: DeploymentConfig) -> str:
    """Serialise a deployment's non-secret request."""
    # JSON, which is also YAML (the spec stores YAML): json.loads is ~10x faster on the render path.
    return json.dumps(config.model_dump(), sort_keys=True)


def load_config(text: str) -> DeploymentConfig:
    """Parse a deployment's `config` column (JSON, or the YAML of older rows)."""
    try:
        data: Any = json.loads(text)
    except ValueError:
        data = yaml.safe_load(text)
    return DeploymentConfig.model_validate(data or {})


def render_input(
    row: dict[str, Any], manifest: Manifest, delivery: Delivery = NONE
) -> DeploymentInput:
    """Build a render input from a row of `render_rows.iter_live_for_render` and its plugin's manifest.

    The stored values are matched against the manifest the chart is rendered from, which may be a
    newer version than the one the deployment was created with: variables it no longer declares
    are dropped (the chart's schema would refuse them) and new optional ones take their default.
    """
    config = load_config(row["config"])
    stored = config.data
    env = {
        v.name: stored.get(v.name, v.default)
        for v in manifest.variables()
        if not v.secret and stored.get(v.name, v.default) is not None
    }
    declared = {v.name for v in manifest.variables()}
    secret_keys = tuple(k for k in config.secret_keys if k in declared)
    method = delivery.secrets.of(row["namespace"])
    secrets: dict[str, str] = {}
    # Nothing to carry for `apply`, nor for a plugin that declares no secret variable.
    if method.pulls and any(v.secret for v in manifest.variables()):
        secrets = record_part(
            method, row["namespace"], row["deployment_id"], row.get("secret_revision"), secret_keys
        )
    return DeploymentInput(
        id=row["id"],
        release=row["deployment_id"],
        namespace=row["namespace"],
        env=tuple(sorted((k, str(v)) for k, v in env.items())),
        secret_keys=secret_keys,
        tools=tuple(config.tools),
        requirement=config.requirement,
        secret_delivery=tuple(sorted(secrets.items())),
    )
