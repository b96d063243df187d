"""The local kwok cluster, as the benchmarks that apply use it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def kubeconfig() -> Path:
    """The cluster's kubeconfig, with its kubectl put on PATH; exits when the cluster is not up."""
    found = subprocess.run(
        ["bash", str(ROOT / "tools" / "cluster.sh"), "kubeconfig"], capture_output=True, text=True
    )
    if found.returncode != 0:
        sys.exit("the local cluster is not up: run `make cluster-up`")
    bin_dir = subprocess.run(
        ["bash", str(ROOT / "tools" / "cluster-tools.sh"), "--bin-dir"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    return Path(found.stdout.strip())


def delete_namespace(config: Path, namespace: str) -> None:
    """Delete a benchmark's namespace, without waiting for it to go."""
    subprocess.run(
        ["kubectl", "--kubeconfig", str(config), "delete", "namespace", namespace, "--wait=false"],
        capture_output=True,
        check=False,
    )
