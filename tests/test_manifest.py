"""Manifest parsing and validation: the spec's example, every refusal, the input limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from generator.errors import ManifestInputError, ManifestTooLarge, ValidationFailed
from generator.manifest import MAX_MANIFEST_BYTES, parse_manifest
from generator.manifest.schema import SCHEMA_FILE, manifest_schema

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = (ROOT / "environments" / "claude" / "plugin.yaml").read_bytes()


def with_changes(**changes: object) -> bytes:
    data = yaml.safe_load(EXAMPLE)
    data.update(changes)
    return yaml.safe_dump(data, sort_keys=False).encode()


def problems(data: bytes) -> list[str]:
    with pytest.raises(ValidationFailed) as info:
        parse_manifest(data, "plugin.yaml")
    return [str(p) for p in info.value.problems]


def test_spec_example_is_accepted_with_every_field() -> None:
    m = parse_manifest(EXAMPLE)
    assert m.name == "claude-environment"
    assert m.version == "1.0.0"
    assert m.image.reference == "a8s-claude:latest"
    assert m.image.pull_policy == "Never"
    assert [v.name for v in m.dependencies.env_vars.required] == ["ANTHROPIC_API_KEY"]
    assert [(v.name, v.default) for v in m.dependencies.env_vars.optional] == [
        ("HEIGHT", "768"),
        ("WIDTH", "1024"),
        ("DISPLAY_NUM", "1"),
    ]
    assert m.dependencies.volumes[0].type == "secret"
    assert m.dependencies.resources is not None
    assert m.dependencies.resources.memory is not None
    assert m.dependencies.resources.memory.max == "4Gi"
    assert [p.name for p in m.ports] == ["vnc", "streamlit", "novnc", "api"]
    assert m.ingress is not None and [p.service_port for p in m.ingress.paths] == [
        "streamlit",
        "novnc",
        "api",
    ]


def test_secret_variables_follow_flag_then_name() -> None:
    m = parse_manifest(EXAMPLE)
    secrets = {v.name: v.secret for v in m.variables()}
    assert secrets == {
        "ANTHROPIC_API_KEY": True,
        "HEIGHT": False,
        "WIDTH": False,
        "DISPLAY_NUM": False,
    }
    data = yaml.safe_load(EXAMPLE)
    data["dependencies"]["env_vars"]["required"][0]["secret"] = False
    data["dependencies"]["env_vars"]["optional"][0]["secret"] = True
    m = parse_manifest(yaml.safe_dump(data).encode())
    secrets = {v.name: v.secret for v in m.variables()}
    assert secrets["ANTHROPIC_API_KEY"] is False and secrets["HEIGHT"] is True


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        ({"surprise": 1}, "surprise", "unknown key 'surprise'"),
        ({"version": 1.0}, "version", "quote it"),
        ({"version": "1.0"}, "version", "semantic version"),
        ({"name": "Claude"}, "name", "DNS-1123"),
        ({"name": "../../etc"}, "name", "DNS-1123"),
        ({"name": "a" * 64}, "name", "at most 63"),
        (
            {"ports": [{"name": "web", "container_port": 0}]},
            "ports[0].container_port",
            "greater than or equal to 1",
        ),
        (
            {"ports": [{"name": "web", "container_port": 65536}]},
            "ports[0].container_port",
            "less than or equal to 65535",
        ),
        (
            {
                "ports": [
                    {"name": "web", "container_port": 80},
                    {"name": "web", "container_port": 81},
                ]
            },
            "ports[1].name",
            "duplicate port name",
        ),
        (
            {"ingress": {"enabled": True, "paths": [{"path": "/x", "service_port": "nope"}]}},
            "ingress.paths[0].service_port",
            "not declared under ports",
        ),
        (
            {"image": {"name": "x", "pull_policy": "Sometimes"}},
            "image.pull_policy",
            "'Always', 'IfNotPresent' or 'Never'",
        ),
        ({"image": {"registry": "local"}}, "image.name", "required key is missing"),
        ({"ports": "vnc"}, "ports", "valid list"),
        (
            {"probes": {"readiness": {"tcp": "vnc", "exec": ["true"]}}},
            "probes.readiness",
            "exactly one of tcp, http or exec (got tcp, exec)",
        ),
        ({"probes": {"liveness": {"tcp": "ssh"}}}, "probes.liveness.tcp", "not declared"),
        ({"probes": {"readiness": "off"}}, "probes.readiness", "or give the word 'none'"),
        (
            {"probes": {"startup": {"http": {"port": "api", "path": "healthz"}}}},
            "probes.startup.http.path",
            "absolute URL path",
        ),
        (
            {"network": {"allow": [{"from": "monitoring", "ports": ["metrics"]}]}},
            "network.allow[0].ports[0]",
            "not declared under ports",
        ),
        (
            {"network": {"allow": [{"form": "x"}]}},
            "network.allow[0].form",
            "allowed keys here are: from, ports",
        ),
        (
            {"network": {"egress": [{"cidr": "10.0.0.1/8"}]}},
            "network.egress[0].cidr",
            "has host bits set",
        ),
        ({"network": {"egress": "none"}}, "network.egress", "or give the word 'all'"),
        (
            {"security": {"writable_paths": ["/home/computeruse/.github-credentials"]}},
            "security.writable_paths[0]",
            "duplicate mount path",
        ),
        (
            {"security": {"add_capabilities": ["net_admin"]}},
            "security.add_capabilities[0]",
            "capability name",
        ),
        ({"security": {"run_as_user": -1}}, "security.run_as_user", "greater than or equal to 0"),
        (
            {"dependencies": {"resources": {"ephemeral_storage": {"min": "2Gi", "max": "1Gi"}}}},
            "dependencies.resources.ephemeral_storage.min",
            "greater than max",
        ),
    ],
)
def test_invalid_manifest_names_the_key(change: dict[str, object], path: str, words: str) -> None:
    found = problems(with_changes(**change))
    assert any(p.startswith(path) and words in p for p in found), found


def test_resource_quantities_and_bounds() -> None:
    data = yaml.safe_load(EXAMPLE)
    data["dependencies"]["resources"] = {
        "cpu": {"min": "4", "max": "2"},
        "memory": {"min": "lots", "max": "1Gi"},
    }
    found = problems(yaml.safe_dump(data).encode())
    assert any(
        p.startswith("dependencies.resources.cpu.min") and "greater than max" in p for p in found
    )
    assert any(
        p.startswith("dependencies.resources.memory.min") and "Kubernetes quantity" in p
        for p in found
    )
    data["dependencies"]["resources"] = {
        "cpu": {"min": "500m", "max": "1"},
        "memory": {"min": "512Mi", "max": "1Gi"},
    }
    parse_manifest(yaml.safe_dump(data).encode())


def test_every_problem_reported_at_once_with_lines() -> None:
    bad = b"""name: Bad_Name
version: 1.0
image:
  name: x
  pull_policy: Sometimes
extra: 1
ports:
  - name: a
    container_port: 70000
  - name: a
    container_port: 80
ingress:
  enabled: true
  paths:
    - path: /x
      service_port: nope
"""
    with pytest.raises(ValidationFailed) as info:
        parse_manifest(bad, "bad.yaml")
    by_path = {p.path: p for p in info.value.problems}
    assert set(by_path) >= {
        "name",
        "version",
        "image.pull_policy",
        "extra",
        "ports[0].container_port",
        "ports[1].name",
        "ingress.paths[0].service_port",
    }
    assert by_path["name"].line == 1
    assert by_path["image.pull_policy"].line == 5
    assert by_path["ports[1].name"].line == 10
    assert by_path["ingress.paths[0].service_port"].line == 16
    assert "bad.yaml" in str(info.value)


def test_alias_bomb_is_refused_before_expansion() -> None:
    bomb = b'name: a\nx: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i in range(1, 12):
        bomb += f"x{i}: &a{i} [*{'a' if i == 1 else f'a{i - 1}'}, *{'a' if i == 1 else f'a{i - 1}'}]\n".encode()
    with pytest.raises(ManifestInputError, match="anchors and aliases"):
        parse_manifest(bomb)


def test_oversized_manifest_is_refused() -> None:
    data = EXAMPLE + b"#" * MAX_MANIFEST_BYTES
    with pytest.raises(ManifestTooLarge, match="over the 1048576-byte limit"):
        parse_manifest(data)


def test_non_utf8_is_refused_with_offset() -> None:
    with pytest.raises(ManifestInputError, match=r"not valid UTF-8 \(byte 0xff at offset 6\)"):
        parse_manifest(b"name: \xff\xfe\n")


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"- a\n- b\n", "a list"),
        (b"just text", "scalar"),
        (b"name: a\nname: b\n", "duplicate key 'name'"),
        (b"name: [unclosed\n", "invalid YAML: line"),
        (b"name: a\n---\nname: b\n", "invalid YAML"),
    ],
)
def test_malformed_input(data: bytes, words: str) -> None:
    with pytest.raises(ManifestInputError, match=words):
        parse_manifest(data)


def test_published_json_schema_is_current() -> None:
    published = json.loads((ROOT / SCHEMA_FILE).read_text())
    assert published == manifest_schema(), "run `make schema` to regenerate " + SCHEMA_FILE


def test_json_schema_accepts_example_and_carries_patterns() -> None:
    schema = manifest_schema()
    assert schema["additionalProperties"] is False
    assert schema["properties"]["name"]["pattern"].startswith("^[a-z0-9]")
    assert set(schema["required"]) == {"name", "version", "image"}
