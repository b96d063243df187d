"""The one wrapper around kubeconform, with offline Kubernetes schemas.

The schemas come from the kubernetes-validate wheel. Its files reference each other by absolute
paths under an `https://kubernetes.io/api/` base; kubeconform would resolve those over the
network. We copy one Kubernetes version's strict schemas once into a cache, with the references
made relative and the remote ids dropped, and point kubeconform at the copy.
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


@dataclass(frozen=True)
class Finding:
    """A resource kubeconform did not accept."""

    filename: str
    kind: str
    name: str
    message: str


def validate(files: list[Path], *, version: str = KUBERNETES_VERSION) -> list[Finding]:
    """Validate manifests strictly in one kubeconform process; return every failure."""
    if not files:
        return []
    root = schema_root(version)
    location = f"{root}/{{{{ .NormalizedKubernetesVersion }}}}-local{{{{ .StrictSuffix }}}}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json"
    proc = subprocess.run(
        [
            find("kubeconform"),
            "-strict",
            "-output",
            "json",
            "-kubernetes-version",
            version,
            "-schema-location",
            location,
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
    return [
        Finding(r.get("filename", ""), r.get("kind", ""), r.get("name", ""), r.get("msg", ""))
        for r in report.get("resources", []) or []
        if r.get("status") in ("statusInvalid", "statusError")
    ]
