"""Pure rendering: (deployment, plugin) -> {relative path: bytes} of one complete Helm chart.

Nothing here touches the disk except reading templates/ once. Everything that depends only on
the plugin (the Helm templates, values.schema.json, the static parts of values.yaml) is rendered
once per plugin version and shared by its deployments; per deployment only Chart.yaml,
values.yaml and the inputs record are rendered.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

from .. import __version__
from ..delivery import EXTERNAL, SEALED, plain_files, secret_name
from ..manifest import Manifest
from ..manifest.model import WRITABLE_PREFIX, Range, Resources, Variable
from ..paths import TEMPLATES_DIR
from .hardening import hardening
from .inputs import INPUTS_FILE, DeploymentInput, PluginInput, dump_json, dump_record, plugin_record

try:
    from yaml import CSafeDumper as _Dumper
except ImportError:  # pragma: no cover
    from yaml import SafeDumper as _Dumper  # type: ignore[assignment]

Chart = dict[str, bytes]

# Files only present when the manifest has something for them to describe.
_NEEDS_PORTS = {"templates/service.yaml", "templates/tests/test-connection.yaml"}
_NEEDS_INGRESS = {"templates/ingress.yaml"}
_PER_DEPLOYMENT = {"Chart.yaml", "values.yaml"}


def _json_filter(value: Any) -> str:
    # ensure_ascii matters: YAML treats U+0085, U+2028 and U+2029 as line breaks, so a raw one
    # inside a scalar could start a new key. Escaped, every value stays one scalar.
    return json.dumps(value, ensure_ascii=True, sort_keys=True)


def _yaml_filter(value: Any, indent: str = "") -> str:
    text = yaml.dump(
        value,
        Dumper=_Dumper,
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=False,
        width=100000,
    )
    text = text.removesuffix("...\n")
    return "\n".join(indent + line for line in text.rstrip("\n").split("\n"))


def _comment_filter(value: Any, indent: str = "") -> str:
    # splitlines() knows every line break YAML knows, so nothing escapes the comment.
    lines = str(value).splitlines() or [""]
    clean = (
        (line if line.isprintable() else "".join(c if c.isprintable() else " " for c in line))
        for line in lines
    )
    return "\n".join(f"{indent}# {line}".rstrip() for line in clean)


def _block(key: str, value: Any) -> str:
    """`key:` followed by the value as an indented YAML block (or inline when empty)."""
    if not value:
        return f"{key}: {_json_filter(value)}"
    return f"{key}:\n{_yaml_filter(value, '  ')}"


def _environment(root: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        block_start_string="[%",
        block_end_string="%]",
        variable_start_string="[[",
        variable_end_string="]]",
        comment_start_string="[#",
        comment_end_string="#]",
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # templates are read once per process; skip a stat per render
        autoescape=False,  # noqa: S701 - output is YAML and Go templates, not HTML
    )
    env.filters.update(json=_json_filter, yaml=_yaml_filter, comment=_comment_filter)
    return env


@dataclass
class TemplateSet:
    """The chart templates on disk, loaded once."""

    root: Path = TEMPLATES_DIR / "chart"
    files: dict[str, bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.files = {
            p.relative_to(self.root).as_posix(): p.read_bytes()
            for p in sorted(self.root.rglob("*"))
            if p.is_file()
        }
        self.env = _environment(self.root)

    @cached_property
    def generator(self) -> dict[str, str]:
        """Identifies this generator and template set in every inputs record."""
        digest = hashlib.sha256()
        for path, data in self.files.items():
            digest.update(path.encode() + b"\0" + hashlib.sha256(data).digest())
        return {"version": __version__, "templates": "sha256:" + digest.hexdigest()[:16]}


@lru_cache(maxsize=1)
def _default_templates() -> TemplateSet:
    # Loaded once per process: a long-running server renders many times.
    return TemplateSet()


@dataclass(frozen=True)
class PluginBundle:
    """Everything about a chart that depends only on its plugin."""

    plugin: PluginInput
    static_files: Chart
    context: dict[str, Any]
    variables: dict[str, Variable]
    plugin_record: str  # the plugin part of the inputs record, serialised once


def _image(m: Manifest) -> dict[str, str]:
    repo = m.image.name if m.image.registry == "local" else f"{m.image.registry}/{m.image.name}"
    return {"repository": repo, "tag": m.image.tag, "pull_policy": m.image.pull_policy}


# Scratch disk when the manifest does not bound it: enough for logs and caches, and a limit that
# evicts a runaway pod before it fills the node's disk.
DEFAULT_EPHEMERAL_STORAGE = Range(min="256Mi", max="4Gi")


def _resources(m: Manifest) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    res = m.dependencies.resources or Resources()
    if res.ephemeral_storage is None:
        res = res.model_copy(update={"ephemeral_storage": DEFAULT_EPHEMERAL_STORAGE})
    for field_name, kind in (
        ("cpu", "cpu"),
        ("memory", "memory"),
        ("ephemeral_storage", "ephemeral-storage"),
    ):
        bounds = getattr(res, field_name)
        if bounds and bounds.min:
            out.setdefault("requests", {})[kind] = bounds.min
        if bounds and bounds.max:
            out.setdefault("limits", {})[kind] = bounds.max
    return out


def _volumes(m: Manifest) -> list[dict[str, Any]]:
    out = []
    for v in m.dependencies.volumes:
        entry: dict[str, Any] = {"name": v.name, "mountPath": v.mount_path, "type": v.type}
        if v.type == "secret":
            entry.update(secretName="", optional=True)
        elif v.type == "configMap":
            entry.update(configMapName="", optional=True)
        out.append(entry)
    # Under a read-only root, the paths the image must write to are scratch volumes.
    for i, path in enumerate(m.security.writable_paths):
        out.append({"name": f"{WRITABLE_PREFIX}{i}", "mountPath": path, "type": "emptyDir"})
    return out


def _ingress(m: Manifest) -> dict[str, Any]:
    ing = m.ingress
    return {
        "enabled": bool(ing and ing.enabled),
        "host": (ing.host or "") if ing else "",
        "className": (ing.class_name or "") if ing else "",
        "annotations": {},
        "paths": [
            {"path": p.path, "pathType": p.path_type, "servicePort": p.service_port}
            for p in (ing.paths if ing else [])
        ],
    }


def _doc(var: Variable) -> str:
    kind = "required" if var.required else "optional"
    if not var.required and var.default is not None and not var.secret:
        kind += f", default {json.dumps(var.default)}"
    text = f"{var.name} ({kind})"
    return f"{text}: {var.description}" if var.description else text


def values_schema(m: Manifest) -> dict[str, Any]:
    """values.schema.json: `helm install` without a required value fails and names it."""
    variables = m.variables()
    plain = [v for v in variables if not v.secret]
    secret = [v for v in variables if v.secret]

    def props(vs: list[Variable], **extra: Any) -> dict[str, Any]:
        return {v.name: {"type": "string", "description": _doc(v), **extra} for v in vs}

    schema: dict[str, Any] = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": f"Values of the {m.name} chart",
        "type": "object",
        "required": ["image", "env", "secretEnv", "existingSecret", "deployment"],
        "properties": {
            "replicaCount": {"type": "integer", "minimum": 0},
            "image": {
                "type": "object",
                "required": ["repository", "pullPolicy"],
                "properties": {
                    "repository": {"type": "string", "minLength": 1},
                    "tag": {"type": "string"},
                    "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                },
            },
            "env": {
                "type": "object",
                "description": "Non-secret environment variables.",
                "additionalProperties": False,
                "required": [v.name for v in plain if v.required],
                "properties": props(plain),
            },
            "secretEnv": {
                "type": "object",
                "description": "Secret environment variables; never committed in the clear.",
                "additionalProperties": False,
                "properties": props(secret, minLength=1),
            },
            "existingSecret": {
                "type": "string",
                "description": "Name of an existing Secret holding the secret variables.",
            },
            "secretRevision": {
                "type": "string",
                "description": (
                    "Changes when secretEnv does, to roll the pods; set by overseer apply, "
                    "or by the render when the secrets travel with the chart."
                ),
            },
            "deployment": {
                "type": "object",
                "required": ["id", "tools", "requirement"],
                "properties": {
                    "id": {"type": "string"},
                    "tools": {"type": "array", "items": {"type": "string"}},
                    "requirement": {"type": "string"},
                },
            },
        },
    }
    required_secrets = [v.name for v in secret if v.required]
    if required_secrets:
        schema["if"] = {"properties": {"existingSecret": {"const": ""}}}
        schema["then"] = {"properties": {"secretEnv": {"required": required_secrets}}}
    return schema


def _delivery(dep: DeploymentInput) -> dict[str, str]:
    # values.yaml's view of how the secrets travel: the Secret a controller makes for the pods
    # (sealed and external secrets), and the revision that rolls them when the values change.
    part = dict(dep.secret_delivery)
    method = part.get("method", "apply")
    pulled = method in (SEALED, EXTERNAL)
    return {
        "method": method,
        "secret": secret_name(dep.release) if pulled else "",
        "revision": part.get("revision", ""),
        "store": part.get("store", ""),
        "key": part.get("key", ""),
    }


class Renderer:
    """Renders charts; caches per-plugin work. Not thread-safe: one thread renders at a time.

    A server keeps one across its rounds (under the writer lock): a plugin's bundle is about a
    sixth of a small round's CPU, made again each round when each had its own renderer.
    """

    _BUNDLES_KEPT = 64

    def __init__(self, templates: TemplateSet | None = None) -> None:
        self.templates = templates or _default_templates()
        self._bundles: dict[tuple[str, str, int], PluginBundle] = {}
        self._chart_yaml = self.templates.env.get_template("Chart.yaml.jinja")
        self._values_yaml = self.templates.env.get_template("values.yaml.jinja")

    def bundle(self, plugin: PluginInput) -> PluginBundle:
        """Render (once) everything that depends only on the plugin."""
        key = (plugin.name, plugin.version, id(plugin.manifest))
        cached = self._bundles.get(key)
        # The bundle holds its manifest, so an id in the key names that very object.
        if cached is not None and cached.plugin.manifest is plugin.manifest:
            return cached
        m = plugin.manifest
        ctx: dict[str, Any] = {
            "chart": m.name,
            "plugin": {"name": plugin.name, "version": plugin.version},
            "description": f"Overseer environment {m.name} {m.version} ({m.image.reference})",
            "image": _image(m),
            "volumes": _volumes(m),
            "resources": _resources(m),
            "ports": [
                {"name": p.name, "containerPort": p.container_port, "protocol": p.protocol}
                for p in m.ports
            ],
            "ingress": _ingress(m),
            **hardening(m),
        }
        # values.yaml sections that depend only on the plugin, serialised once per plugin.
        ctx["snippets"] = {
            key: _block(key, ctx[key])
            for key in (
                "volumes",
                "resources",
                "ports",
                "ingress",
                "readinessProbe",
                "livenessProbe",
                "startupProbe",
                "podSecurityContext",
                "securityContext",
                "networkPolicy",
            )
        }
        static: Chart = {}
        for path, data in self.templates.files.items():
            out_path = path.removesuffix(".jinja")
            if out_path in _PER_DEPLOYMENT:
                continue
            if out_path in _NEEDS_PORTS and not m.ports:
                continue
            if out_path in _NEEDS_INGRESS and not (m.ingress and m.ingress.paths):
                continue
            if path.endswith(".jinja"):
                static[out_path] = self.templates.env.get_template(path).render(ctx).encode()
            else:
                static[out_path] = data
        static["values.schema.json"] = dump_json(values_schema(m))
        bundle = PluginBundle(
            plugin, static, ctx, {v.name: v for v in m.variables()}, plugin_record(plugin)
        )
        if len(self._bundles) >= self._BUNDLES_KEPT:  # a long-lived renderer: old versions go
            self._bundles.pop(next(iter(self._bundles)))
        self._bundles[key] = bundle
        return bundle

    @staticmethod
    def generator() -> dict[str, str]:
        """Identifies this generator and its templates (shared by every renderer)."""
        return _default_templates().generator

    def inputs_record(self, dep: DeploymentInput, plugin: PluginInput) -> bytes:
        """The bytes of the chart's inputs record (cheap: compared on every render)."""
        return dump_record(dep, self.bundle(plugin).plugin_record, self.templates.generator)

    def render(
        self, dep: DeploymentInput, plugin: PluginInput, inputs: bytes | None = None
    ) -> Chart:
        """The complete chart of one deployment (`inputs`: its record, when already made)."""
        bundle = self.bundle(plugin)
        env_docs = [
            {"name": name, "value": value, "doc": _doc(bundle.variables[name])}
            for name, value in dep.env
        ]
        secrets = [v for v in bundle.variables.values() if v.secret]
        hint = " ".join(f"--set secretEnv.{v.name}=..." for v in secrets if v.required)
        ctx = {
            **bundle.context,
            "deployment": {"id": dep.id, "release": dep.release},
            "env": env_docs,
            "secrets": [{"name": v.name, "doc": _doc(v)} for v in secrets],
            "install_hint": f"helm install {dep.release} . {hint}".rstrip(),
            "request": {"id": dep.id, "tools": list(dep.tools), "requirement": dep.requirement},
            "delivery": _delivery(dep),
        }
        chart = dict(bundle.static_files)
        chart.update(plain_files(dict(dep.secret_delivery), dep.namespace, dep.release))
        chart["Chart.yaml"] = self._chart_yaml.render(ctx).encode()
        chart["values.yaml"] = self._values_yaml.render(ctx).encode()
        chart[INPUTS_FILE] = inputs or dump_record(
            dep, bundle.plugin_record, self.templates.generator
        )
        return chart
