"""The one wrapper around kubeconform, with offline Kubernetes and CRD schemas.

The Kubernetes schemas come from the kubernetes-validate wheel. Its files reference each other by
absolute paths under an `https://kubernetes.io/api/` base; kubeconform would resolve those over
the network. We copy one Kubernetes version's strict schemas once into a cache, with the
references made relative and the remote ids dropped, and point kubeconform at the copy.

Custom resources (Argo CD, Flux, SealedSecret, ExternalSecret) are checked against strict schemas
that `make tools` converts from the pinned CRDs (tools/crd-schemas.sh) into the same cache, as a
second schema location tried after the Kubernetes one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .binaries import find

KUBERNETES_VERSION = os.environ.get("OVERSEER_KUBERNETES_VERSION", "1.36.0")
CRD_SCHEMAS_VAR = "OVERSEER_CRD_SCHEMAS"
_NOT_FOUND = "could not find schema for "


def _cache_root() -> Path:
    return Path(os.environ.get("OVERSEER_CACHE", Path.home() / ".cache" / "overseer"))


def schema_root(version: str = KUBERNETES_VERSION) -> Path:
    """A kubeconform-readable copy of the wheel's strict schemas for `version` (made once)."""
    import kubernetes_validate

    pkg = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    dirname = f"v{version}-local-strict"
    source = pkg / dirname
    if not source.is_dir():
        known = sorted(p.name.split("-")[0] for p in pkg.glob("*-local-strict"))
        raise UserError(
            f"no offline schemas for Kubernetes {version}; "
            f"set OVERSEER_KUBERNETES_VERSION to one of {', '.join(v[1:] for v in known)}"
        )
    stamp = getattr(kubernetes_validate, "__version__", "0")
    root = _cache_root() / "kubeconform-schemas" / f"kv-{stamp}"
    target = root / dirname
    if (target / ".complete").exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))
    try:
        for src in source.glob("*.json"):
            text = src.read_text(encoding="utf-8").replace(
                '"/api/_definitions.json#', '"_definitions.json#'
            )
            doc = json.loads(text)
            if isinstance(doc, dict):
                doc.pop("$id", None)
            (staging / src.name).write_text(json.dumps(doc), encoding="utf-8")
        (staging / ".complete").touch()
        try:
            staging.rename(target)
        except OSError:
            if not (target / ".complete").exists():  # a concurrent run finished first otherwise
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def crd_schema_dir() -> Path | None:
    """The complete CRD schema directory kubeconform should use, or None when there is none.

    $OVERSEER_CRD_SCHEMAS when set, complete or not: the Makefile exports it (and `make -s path`
    prints it) as the directory for the checkout's own pins, so what make runs validates against
    exactly those. Otherwise the newest complete `crds-*` directory in the cache: the installed
    `overseer` (the server, the pre-commit hook, the CI kit) runs without tools/versions.env and
    cannot name the pins' directory, and the newest set beats validating no custom resource.
    """
    explicit = os.environ.get(CRD_SCHEMAS_VAR)
    if explicit:
        return Path(explicit) if (Path(explicit) / ".complete").exists() else None
    built = [
        (marker.stat().st_mtime, marker.parent)
        for marker in (_cache_root() / "kubeconform-schemas").glob("crds-*/.complete")
    ]
    return max(built)[1] if built else None


def _missing_schema(kind: str, api_version: str, version: str, crds: Path | None) -> str:
    """What to do about a kind kubeconform found no schema for."""
    group = api_version.rpartition("/")[0]
    if "." not in group:  # the core group, apps, batch...: a misspelt Kubernetes kind
        return f"{_NOT_FOUND}{kind}"
    if crds is None:
        explicit = os.environ.get(CRD_SCHEMAS_VAR)
        where = f"{CRD_SCHEMAS_VAR}={explicit} is not built" if explicit else "none are built"
        return (
            f"no schema for {kind} ({api_version}): not a Kubernetes {version} kind, and the "
            f"CRD schemas (Argo CD, Flux, SealedSecret, ExternalSecret) are missing ({where}); "
            "run `make tools`"
        )
    return (
        f"no schema for {kind} ({api_version}): neither Kubernetes {version} nor the "
        f"CRD schemas in {crds} define it (their list: index.json there)"
    )


@dataclass(frozen=True)
class Finding:
    """A resource kubeconform did not accept."""

    filename: str
    kind: str
    name: str
    message: str
    # A custom resource left unchecked because no CRD schemas are installed (a CI job with
    # only `pip install`): worth a warning, not a failure of the chart that holds it.
    unchecked: bool = False


def validate(files: list[Path], *, version: str = KUBERNETES_VERSION) -> list[Finding]:
    """Validate manifests strictly in one kubeconform process; return every failure.

    Kubernetes kinds are checked against `version`'s schemas, custom resources against the CRD
    schemas of crd_schema_dir(); a custom resource with no schema is a finding that says how to
    get one.
    """
    if not files:
        return []
    root = schema_root(version)
    locations = [
        f"{root}/{{{{ .NormalizedKubernetesVersion }}}}-local{{{{ .StrictSuffix }}}}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json"
    ]
    crds = crd_schema_dir()
    if crds is not None:
        locations.append(
            f"{crds}/{{{{ .Group }}}}/{{{{ .ResourceKind }}}}_{{{{ .ResourceAPIVersion }}}}.json"
        )
    proc = subprocess.run(
        [
            find("kubeconform"),
            "-strict",
            "-output",
            "json",
            "-kubernetes-version",
            version,
            *(arg for location in locations for arg in ("-schema-location", location)),
            "-n",
            str(os.cpu_count() or 2),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    try:
        report = json.loads(proc.stdout or "{}")
    except ValueError:
        raise UserError(
            f"kubeconform failed: {proc.stderr.strip() or proc.stdout.strip()}"
        ) from None
    findings = []
    for r in report.get("resources", []) or []:
        if r.get("status") not in ("statusInvalid", "statusError"):
            continue
        kind, message = r.get("kind", ""), r.get("msg", "")
        unchecked = False
        if message == f"{_NOT_FOUND}{kind}":
            message = _missing_schema(kind, r.get("version", ""), version, crds)
            unchecked = crds is None and "." in r.get("version", "").rpartition("/")[0]
        findings.append(Finding(r.get("filename", ""), kind, r.get("name", ""), message, unchecked))
    return findings
