"""The one wrapper around kube-score, which grades manifests against production best practice.

Every chart's manifests go through a single process, as with kubeconform. kube-score relates
objects within a namespace (a Service to the pods it selects, a NetworkPolicy to the pods it
covers), so a caller that scores several charts at once gives each a namespace of its own, and
tells from a finding's namespace whose it is.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .binaries import find

CRITICAL = "critical"
WARNING = "warning"
# kube-score's grades: 1 critical, 5 warning, 7 "almost OK" (advice only), 10 OK.
_GRADES = {1: CRITICAL, 5: WARNING}
# Off by default in kube-score; on here, since every chart sets a profile.
OPTIONAL_CHECKS = ("container-seccomp-profile",)


@dataclass(frozen=True)
class Finding:
    """One check an object failed."""

    namespace: str
    kind: str
    name: str
    check: str
    grade: str  # CRITICAL or WARNING
    message: str


def score(files: Sequence[Path], *, skip: Sequence[str], kubernetes_version: str) -> list[Finding]:
    """Grade every object in `files` in one kube-score process; the failed checks, in order."""
    if not files:
        return []
    major_minor = ".".join(kubernetes_version.removeprefix("v").split(".")[:2])
    args = [find("kube-score"), "score", "-o", "json", "--kubernetes-version", f"v{major_minor}"]
    for check in OPTIONAL_CHECKS:
        args += ["--enable-optional-test", check]
    for check in skip:
        args += ["--ignore-test", check]
    proc = subprocess.run(
        [*args, *map(str, files)], capture_output=True, text=True, check=False, timeout=600
    )
    try:  # it exits 1 when it finds something: the report says what
        objects = json.loads(proc.stdout)
    except ValueError:
        raise UserError(
            f"kube-score failed: {proc.stderr.strip() or proc.stdout.strip()}"
        ) from None
    findings: list[Finding] = []
    for obj in objects or []:
        kind = obj.get("type_meta", {}).get("kind", "")
        meta = obj.get("object_meta", {})
        name, namespace = meta.get("name", ""), meta.get("namespace", "")
        for result in obj.get("checks") or []:
            grade = _GRADES.get(result.get("grade"))
            if grade is None or result.get("skipped"):
                continue
            check = result.get("check", {}).get("id", "")
            for comment in result.get("comments") or [{}]:
                where = f"({comment['path']}) " if comment.get("path") else ""
                summary = comment.get("summary") or result.get("check", {}).get("name", "")
                findings.append(Finding(namespace, kind, name, check, grade, where + summary))
    return findings
