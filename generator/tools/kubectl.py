"""The one wrapper around kubectl: reading workload readiness for `overseer status`."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .binaries import find


@dataclass(frozen=True)
class Readiness:
    """Whether a release's Deployments have all their replicas ready."""

    ready: bool
    detail: str


def release_readiness(kubeconfig: Path | None, release: str, namespace: str) -> Readiness:
    """Readiness of the Deployments labelled with this Helm release."""
    args = [
        find("kubectl"),
        "get",
        "deployments",
        "--namespace",
        namespace,
        "--output",
        "json",
        "--selector",
        f"app.kubernetes.io/instance={release}",
    ]
    if kubeconfig:
        args += ["--kubeconfig", str(kubeconfig)]
    proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        return Readiness(
            False, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "kubectl failed"
        )
    items = json.loads(proc.stdout).get("items", [])
    if not items:
        return Readiness(False, "no Deployment found for the release")
    waiting = []
    for item in items:
        want = item.get("spec", {}).get("replicas", 1)
        ready = item.get("status", {}).get("readyReplicas", 0) or 0
        if ready < want:
            waiting.append(f"deployment/{item['metadata']['name']}: {ready}/{want} ready")
    return Readiness(not waiting, "; ".join(waiting) or "all replicas ready")
