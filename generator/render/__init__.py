"""Render deployments into Helm charts, purely: inputs in, `{path: bytes}` out."""

from .chart import Chart, Renderer, TemplateSet, values_schema
from .inputs import INPUTS_FILE, DeploymentInput, PluginInput, dump_json, from_record

__all__ = [
    "INPUTS_FILE",
    "Chart",
    "DeploymentInput",
    "PluginInput",
    "Renderer",
    "TemplateSet",
    "dump_json",
    "from_record",
    "values_schema",
]
