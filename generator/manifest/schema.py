"""The JSON Schema of plugin manifests, generated from the model and published in the repo."""

from __future__ import annotations

from typing import Any

from .model import Manifest

SCHEMA_FILE = "environments/plugin-manifest.schema.json"


def manifest_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) for plugin.yaml files."""
    schema = Manifest.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
