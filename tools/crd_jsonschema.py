"""Convert CustomResourceDefinitions into kubeconform's strict JSON schemas.

Usage: crd_jsonschema.py OUT_DIR SOURCE=FILE.yaml...

Every served version of every CRD in the files becomes `OUT_DIR/<group>/<kind>_<version>.json`
(kind in lower case), the layout of kubeconform's
`{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json` schema location. SOURCE names
where the file came from (module@version) in OUT_DIR/index.json.

Strict as openapi2jsonschema's strict mode: an object schema that lists `properties` gets
`additionalProperties: false` unless it says otherwise or keeps unknown fields
(`x-kubernetes-preserve-unknown-fields: true`), so a misspelt field fails validation instead of
being pruned silently by the API server. The OpenAPI-only `nullable` and
`x-kubernetes-int-or-string` become JSON-schema types.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

Schema = dict[str, Any]

# Subschemas that describe the value itself (they take part in pruning, so strictness applies).
_MAP_KEYS = ("properties", "patternProperties")
# Junctors: a structural CRD repeats their fields in the main schema, so a closed junctor branch
# would reject fields that only the main schema names. They are converted but never closed.
_JUNCTORS = ("allOf", "anyOf", "oneOf")


def convert(schema: Schema, *, strict: bool = True) -> Schema:
    """A JSON schema for kubeconform from one CRD version's `openAPIV3Schema`."""
    out: Schema = {}
    for key, value in schema.items():
        if key in _MAP_KEYS and isinstance(value, dict):
            out[key] = {name: convert(sub, strict=strict) for name, sub in value.items()}
        elif key == "items" and isinstance(value, dict):
            out[key] = convert(value, strict=strict)
        elif key == "items" and isinstance(value, list):
            out[key] = [convert(sub, strict=strict) for sub in value]
        elif key == "additionalProperties" and isinstance(value, dict):
            out[key] = convert(value, strict=strict)
        elif key in _JUNCTORS and isinstance(value, list):
            out[key] = [convert(sub, strict=False) for sub in value]
        elif key == "not" and isinstance(value, dict):
            out[key] = convert(value, strict=False)
        else:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string") or schema.get("format") == "int-or-string":
        out.setdefault("type", ["integer", "string"])
    if schema.get("nullable") is True and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"] if "null" not in types else types
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    if (
        strict
        and "properties" in schema
        and "additionalProperties" not in schema
        and schema.get("x-kubernetes-preserve-unknown-fields") is not True
    ):
        out["additionalProperties"] = False
    return out


def crds(path: Path) -> list[Schema]:
    """The CustomResourceDefinitions (apiextensions.k8s.io/v1) among a file's documents."""
    with path.open(encoding="utf-8") as f:
        docs = list(yaml.load_all(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    found = []
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
            continue
        if doc.get("apiVersion") != "apiextensions.k8s.io/v1":
            raise SystemExit(f"{path}: {doc.get('apiVersion')} CRDs are not supported, only v1")
        found.append(doc)
    return found


def write(out_dir: Path, sources: list[tuple[str, Path]]) -> list[dict[str, str]]:
    """Write every served version's schema under out_dir; return the index of what was written."""
    index = []
    for source, path in sources:
        found = crds(path)
        if not found:
            raise SystemExit(f"{path}: no CustomResourceDefinition in it")
        for crd in found:
            spec = crd["spec"]
            group, kind = spec["group"], spec["names"]["kind"]
            for version in spec["versions"]:
                schema = (version.get("schema") or {}).get("openAPIV3Schema")
                # An unserved version is refused by the API server, so it gets no schema either.
                if not version.get("served", True) or schema is None:
                    continue
                target = out_dir / group / f"{kind.lower()}_{version['name']}.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(convert(schema), sort_keys=True), encoding="utf-8")
                index.append(
                    {
                        "apiVersion": f"{group}/{version['name']}",
                        "kind": kind,
                        "file": str(target.relative_to(out_dir)),
                        "source": f"{source} {path.name}",
                    }
                )
    return sorted(index, key=lambda e: (e["apiVersion"], e["kind"]))


def main(argv: list[str]) -> None:
    """Entry point: OUT_DIR SOURCE=FILE..."""
    if len(argv) < 2:
        raise SystemExit(__doc__)
    out_dir = Path(argv[0])
    sources = []
    for arg in argv[1:]:
        source, sep, file = arg.partition("=")
        if not sep:
            raise SystemExit(f"expected SOURCE=FILE, got {arg!r}")
        sources.append((source, Path(file)))
    index = write(out_dir, sources)
    (out_dir / "index.json").write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    print(f"{len(index)} CRD schemas written to {out_dir}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
